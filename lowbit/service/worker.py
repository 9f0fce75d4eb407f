"""The process that runs one search of the service: ``python -m lowbit.service.worker DIR``.

It reads ``DIR/job.json`` (written by :class:`lowbit.service.jobs.Jobs`), runs the search
into ``DIR/run`` with :func:`lowbit.search.run_search` (Ray workers included), writes the run's
report, and records how it ended in ``DIR/status.json``: completed, failed with the reason,
or cancelled (SIGTERM, sent by ``DELETE /v1/searches/{id}``, stops the search cleanly so
its Ray cluster shuts down).
"""

from __future__ import annotations

import json
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _run(job: dict[str, Any], run_dir: Path) -> None:
    import optuna

    from lowbit.reports import build_report
    from lowbit.search.registry import DEFAULT_SCREEN
    from lowbit.search.run import run_search
    from lowbit.search.setup import SearchSetup, ZooModel

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    req = job["request"]
    setup = SearchSetup(
        model=ZooModel(name=req["model"], finetune_steps=req.get("finetune_steps", 0)),
        hardware=req["profile"],
        n_trials=req["trials"],
        out_dir=run_dir,
        workers=req["workers"],
        study_name=job["study"],
        sampler=req["sampler"],
        seed=req["seed"],
        max_latency_ms=req.get("max_latency_ms"),
        min_accuracy=req.get("min_accuracy"),
        methods=("joint", *req.get("baselines", [])),
        objectives=tuple(req["objectives"]),
        pin_first_last=req.get("pin_first_last", False),
        trial_timeout_s=req.get("trial_timeout_s"),
        progress=True,
        co_design=req.get("co_design", False),
        area_budget_mm2=req.get("area_budget_mm2"),
        screen=req.get("screen", DEFAULT_SCREEN),
    )
    run_search(setup)
    build_report(run_dir)


def main(argv: list[str] | None = None) -> int:
    from lowbit.hwsim.errors import LowbitError
    from lowbit.search.results import write_json

    args = sys.argv[1:] if argv is None else argv
    job_dir = Path(args[0])
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    signal.signal(signal.SIGTERM, _stop)
    status: dict[str, Any]
    try:
        _run(job, job_dir / "run")
        status = {"state": "completed", "reason": None}
    except KeyboardInterrupt:
        status = {"state": "cancelled", "reason": "cancelled by request"}
    except LowbitError as exc:
        status = {"state": "failed", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a bug: keep the traceback in the log
        traceback.print_exc()
        status = {"state": "failed", "reason": f"{type(exc).__name__}: {exc}"}
    status["finished"] = time.time()
    write_json(job_dir / "status.json", status)
    return 0 if status["state"] == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
