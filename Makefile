# Quick start: `make demo` and `make test`. Both create .venv if it is missing.
# Dev/CI pin exact versions (CPU torch) in requirements/constraints.txt.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.lowbit-installed
# Fashion-MNIST, lowbit's real image dataset: Debian's dataset-fashion-mnist installs it here
FASHION_MNIST ?= /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test bench lint venv data clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and exactly: the CPU wheel on this disk (any other spec may pull a CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

# Install dataset-fashion-mnist when its files are missing (sudo when not root; apt-get
# update and retry when the first install fails); fail with the instruction if that fails.
data:
	@if [ ! -f $(FASHION_MNIST) ]; then \
	  echo "Fashion-MNIST missing: installing Debian's dataset-fashion-mnist"; \
	  SUDO=""; \
	  if [ "$$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi; \
	  install="$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist"; \
	  $$install >/dev/null 2>&1 || { $$SUDO apt-get update -qq && $$install >/dev/null; } || true; \
	  if [ ! -f $(FASHION_MNIST) ]; then \
	    echo "lowbit: $(FASHION_MNIST) is missing and could not be installed: run" \
	      "'sudo apt-get install -y dataset-fashion-mnist'" >&2; \
	    exit 1; \
	  fi; \
	fi

demo: $(STAMP) data
	$(VENV)/bin/lowbit demo

test: $(STAMP) data
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/bench_hwsim.py
	@for b in benchmarks/bench_models.py benchmarks/bench_search.py \
	    benchmarks/bench_residual_int8.py; do \
	  if [ -f $$b ]; then $(PY) $$b || exit 1; fi; done

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
