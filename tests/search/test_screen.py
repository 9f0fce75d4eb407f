"""The sensitivity screen (lowbit.search.screen): which choices it drops, what it measures,
its file round trip and reuse, and a search on the screened space.

The synthetic evaluator's accuracy is closed form (lowbit.search.testing): 0.95 minus, per
layer, 0.002·((8 − w)² + (8 − a)²) + 0.05·(1 − keep) + 0.03·(1 − rank) + 0.01 for N:M. One
layer at 2 bits alone loses 0.072 (0.878), at 4 bits 0.032 (0.918); keep 0.25 alone loses
0.0375, rank 0.25 0.0225, N:M 0.01. So with the floor at 0.90 exactly the 2-bit choices go.
"""

from __future__ import annotations

import json
import re

import optuna
import pytest
from optuna.trial import TrialState

from lowbit.hwsim.errors import LowbitError
from lowbit.search.fidelity import Fidelity, accuracy_margin
from lowbit.search.run import SearchSetup, execute
from lowbit.search.screen import Screen, load_or_screen, screen
from lowbit.search.storage import open_storage
from lowbit.search.testing import SyntheticSpec


class _LocalPool:
    """The pool interface the screen uses (``map``), evaluated in-process; counts requests."""

    def __init__(self, spec: SyntheticSpec) -> None:
        self.evaluator = spec.build()
        self.requests = 0

    def map(self, requests):
        self.requests += len(requests)
        return [self.evaluator.evaluate(r) for r in requests]


def _bits_params(space) -> list[str]:
    return [n for n in space.distributions() if n.endswith(("w_bits", "a_bits"))]


def test_floor_drops_exactly_the_choices_that_alone_break_it(synthetic_space):
    pool = _LocalPool(SyntheticSpec())
    result = screen(space=synthetic_space, pool=pool, floor=0.90, fidelity=Fidelity())
    bits = _bits_params(synthetic_space)
    assert result.dropped == {name: [2] for name in bits}
    assert result.base_accuracy == pytest.approx(0.95)
    for entry in result.entries:  # every measured choice is judged by the floor and margin
        if entry.accuracy is not None:
            margin = accuracy_margin(entry.accuracy, samples=5000, z=2.0)
            assert entry.kept == (entry.accuracy >= 0.90 - margin)
    # one evaluation for the base, one per measured choice; the mildest choice, then
    # bisection: fewer than there are (keep: 6 choices, all kept: 0.875, 0.5, 0.25 measured)
    measured = [e for e in result.entries if e.accuracy is not None]
    assert result.evaluations == pool.requests == 1 + len(measured)
    keeps = [e for e in result.entries if e.param == "conv1.keep"]
    assert [e.value for e in keeps if e.accuracy is not None] == [0.875, 0.5, 0.25]
    assert all(e.kept for e in keeps)


def test_bisection_implies_the_unmeasured_choices(synthetic_space):
    pool = _LocalPool(SyntheticSpec())
    result = screen(space=synthetic_space, pool=pool, floor=0.93, fidelity=Fidelity())
    bits = _bits_params(synthetic_space)
    # 4 bits alone (0.918), measured first, is below 0.93 by more than 2 standard errors on
    # 5,000 images: dropped, and 2 bits with it, unmeasured
    for name in bits:
        four, two = (e for e in result.entries if e.param == name)
        assert (four.value, four.kept) == (4, False) and four.accuracy == pytest.approx(0.918)
        assert (two.value, two.kept, two.accuracy) == (2, False, None)
    # keep 0.5 (0.925) is 0.005 below, within the margin (0.0075 at 0.925 on 5,000 images):
    # kept, so 0.75 and 0.625 are kept unmeasured (0.875, the mildest, is measured first);
    # 0.25 (0.9125) and 0.375 (0.91875) are measured and dropped
    keeps = {e.value: e for e in result.entries if e.param == "conv1.keep"}
    assert keeps[0.5].kept and keeps[0.5].accuracy == pytest.approx(0.925)
    assert all(keeps[v].kept and keeps[v].accuracy is None for v in (0.75, 0.625))
    assert keeps[0.875].kept and keeps[0.875].accuracy == pytest.approx(0.94375)
    assert not keeps[0.375].kept and not keeps[0.25].kept
    measured = sum(e.accuracy is not None for e in result.entries)
    assert result.evaluations == pool.requests == 1 + measured


def test_apply_narrows_the_space_and_keeps_the_base(synthetic_space):
    result = screen(
        space=synthetic_space, pool=_LocalPool(SyntheticSpec()), floor=0.90, fidelity=Fidelity()
    )
    narrowed = result.apply(synthetic_space)
    for name, dist in narrowed.distributions().items():
        assert 2 not in dist.choices if name.endswith("bits") else True
        assert set(dist.choices) <= set(synthetic_space.distributions()[name].choices)
    assert narrowed.size < synthetic_space.size
    narrowed.settings(narrowed.uniform_params(8, 8))  # the base is a point of it
    with pytest.raises(ValueError, match="invalid"):
        narrowed.settings(synthetic_space.uniform_params(2, 8))


def test_stored_screen_round_trips_and_is_reused_only_for_the_same_floor(synthetic_space, tmp_path):
    def write(path, text):
        path.write_text(text, encoding="utf-8")

    pool = _LocalPool(SyntheticSpec())

    def stored_or_new(floor):
        return load_or_screen(
            space=synthetic_space,
            pool=pool,
            floor=floor,
            fidelity=Fidelity(),
            run_dir=tmp_path,
            write=write,
        )

    first = stored_or_new(0.9)
    stored = json.loads((tmp_path / "screen.json").read_text(encoding="utf-8"))
    assert Screen.from_dict(stored) == first
    count = pool.requests
    again = stored_or_new(0.9)
    assert again == first and pool.requests == count  # reused, nothing measured
    other = stored_or_new(0.93)
    assert pool.requests > count and other.dropped != first.dropped


def test_searched_methods_search_the_screened_space_and_baselines_the_full_one(
    synthetic_space, tmp_path, ray_session
):
    run = tmp_path / "run"
    setup = SearchSetup(
        n_trials=12,
        out_dir=run,
        study_name="s",
        workers=2,
        progress=False,
        min_accuracy=0.90,
        methods=("joint", "quant-only", "uniform"),
    )
    result = execute(space=synthetic_space, evaluator=SyntheticSpec(), setup=setup)
    screen_section = result.summary["screen"]
    assert screen_section["dropped"] == {n: [2] for n in _bits_params(synthetic_space)}
    assert screen_section["size_after"] < screen_section["size_before"]
    storage = open_storage(None, run_dir=run)
    for study in ("s", "s-quant"):
        trials = optuna.load_study(study_name=study, storage=storage).get_trials(
            states=(TrialState.COMPLETE,)
        )
        assert len(trials) == 12
        assert all(v != 2 for t in trials for k, v in t.params.items() if k.endswith("bits"))
    labels = {
        study: [
            t.user_attrs.get("label")
            for t in optuna.load_study(study_name=study, storage=storage).trials
        ]
        for study in ("s", "s-quant")
    }
    # the screen's greedy points are among the warm starts (bits alone: one 4-bit layer
    # loses 0.032, more than the two smaller budgets, 0.0125 and 0.025)
    assert {"screen greedy 0.25", "screen greedy 0.5", "screen greedy 0.75"} <= set(labels["s"])
    assert "screen greedy 0.75" in labels["s-quant"]
    # the joint search also starts from the quantization-only search's greedy point
    assert "screen greedy bits 0.75" in labels["s"]
    # the measured points replace the uniformly pruned / low-ranked guesses; the uniform
    # bits stay
    assert "W8A8" in labels["s"]
    guesses = [label for label in labels["s"] if label and (" keep " in label or " rank " in label)]
    assert not guesses
    uniform = optuna.load_study(study_name="s-uniform", storage=storage).trials
    assert any(t.user_attrs.get("label") == "W2A8" for t in uniform)  # the full space
    # a resumed run reuses screen.json: the screen is not measured again
    before = (run / "screen.json").read_text(encoding="utf-8")
    again = execute(space=synthetic_space, evaluator=SyntheticSpec(), setup=setup).summary["screen"]
    assert (run / "screen.json").read_text(encoding="utf-8") == before
    assert again["seconds"] == screen_section["seconds"]


def test_no_constraint_means_no_screen_unless_asked(synthetic_space, tmp_path, ray_session, capsys):
    setup = SearchSetup(n_trials=3, out_dir=tmp_path / "a", study_name="a", progress=False)
    assert (
        "screen"
        not in execute(space=synthetic_space, evaluator=SyntheticSpec(), setup=setup).summary
    )
    setup = SearchSetup(n_trials=3, out_dir=tmp_path / "b", study_name="b", screen="on")
    section = execute(space=synthetic_space, evaluator=SyntheticSpec(), setup=setup).summary[
        "screen"
    ]
    assert section["floor"] == pytest.approx(0.95 - 0.05)  # base accuracy minus DEFAULT_DROP
    # with progress on, the screen says what it does and what it dropped
    err = capsys.readouterr().err
    dropped = sum(len(v) for v in section["dropped"].values())
    assert "[screen] measuring each layer's choices one at a time" in err
    assert f"[screen] {section['evaluations']} evaluations" in err
    assert f"{dropped} choices below the floor 90.00% dropped" in err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: d["entries"][0].update(param="nodot"), "entries[0].param"),
        (lambda d: d["entries"][0].update(accuracy="x"), "entries[0].accuracy"),
        (lambda d: d["entries"][1].update(kept=1), "entries[1].kept"),
        (lambda d: d["entries"][0].pop("value"), "entries[0].fields"),
        (lambda d: d.update(entries=5), "entries: not a list"),
        (lambda d: d.update(floor=float("nan")), "floor: not a finite number"),
        (lambda d: d.update(samples=-1, seconds=True), "seconds: not a finite number"),
        (lambda d: d.update(version=1), "screen version 1"),
    ],
)
def test_a_damaged_screen_file_is_refused_with_its_field_and_measured_again(
    synthetic_space, tmp_path, damage, message
):
    def write(path, text):
        path.write_text(text, encoding="utf-8")

    pool = _LocalPool(SyntheticSpec())
    kwargs = dict(space=synthetic_space, floor=0.9, fidelity=Fidelity(), run_dir=tmp_path)
    first = load_or_screen(pool=pool, write=write, **kwargs)
    data = json.loads((tmp_path / "screen.json").read_text(encoding="utf-8"))
    damage(data)
    with pytest.raises(ValueError, match=re.escape(message)):
        Screen.from_dict(data)
    (tmp_path / "screen.json").write_text(json.dumps(data), encoding="utf-8")
    count = pool.requests
    again = load_or_screen(pool=pool, write=write, **kwargs)  # measured again, rewritten
    assert pool.requests == 2 * count and again.dropped == first.dropped
    assert Screen.from_dict(json.loads((tmp_path / "screen.json").read_text("utf-8"))) == again


def test_a_directory_where_the_screen_goes_is_one_clear_error_before_measuring(
    synthetic_space, tmp_path
):
    (tmp_path / "screen.json").mkdir()
    pool = _LocalPool(SyntheticSpec())
    with pytest.raises(LowbitError, match="screen.json: not a file"):
        load_or_screen(
            space=synthetic_space,
            pool=pool,
            floor=0.9,
            fidelity=Fidelity(),
            run_dir=tmp_path,
            write=None,
        )
    assert pool.requests == 0
