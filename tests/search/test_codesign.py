"""Hardware co-design: the profile's tunables in the search space under an area budget."""

from __future__ import annotations

import csv
import itertools
import json

import optuna
import pytest
from search_testkit import SYNTHETIC_LAYERS

from lowbit.hwsim.area import area_mm2
from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.profiles import load_profile
from lowbit.search import SearchSetup, ZooModel, load_config, run_search
from lowbit.search.codesign import AREA_CONSTRAINT, HARDWARE_KEY, build_codesign
from lowbit.search.space import SearchSpace, build_space

BUDGET_MM2 = 3.5  # below npu-bitfusion as given (3.94 mm2), so the budget binds


@pytest.fixture(scope="module")
def codesign():
    cd, _ = build_codesign("npu-bitfusion", area_budget_mm2=BUDGET_MM2)
    return cd


@pytest.fixture(scope="module")
def space(codesign):
    profile = load_profile("npu-bitfusion")
    return build_space(SYNTHETIC_LAYERS, profile, model="synthetic-cnn", codesign=codesign)


def test_choices_are_the_tunables_plus_the_value_as_given(codesign):
    profile = load_profile("npu-bitfusion")
    assert [c.key for c in codesign.choices] == [t.key for t in profile.tunables]
    rows = next(c for c in codesign.choices if c.key == "compute.rows")
    assert rows.base == profile.compute.rows and rows.base in rows.values
    assert set(rows.values) == set(profile.tunables[0].values) | {profile.compute.rows}


def test_space_samples_hardware_and_hands_it_to_the_evaluator(space, codesign):
    dists = space.distributions()
    hw = [name for name in dists if name.startswith("hw:")]
    assert sorted(hw) == sorted(c.param for c in codesign.choices if len(c.values) > 1)
    params = space.uniform_params(8, 8)
    settings = space.settings(params)
    assert settings[HARDWARE_KEY] == codesign.overrides({})  # uniform = the profile as given
    assert set(space.plan(params).layers) == {layer.name for layer in space.layers}
    chosen = {**params, "hw:compute.rows": 32, "hw:memory.wbuf.size_bytes": 131_072}
    assert space.hardware_overrides(chosen)["compute.rows"] == 32
    assert space.settings(chosen)[HARDWARE_KEY]["memory.wbuf.size_bytes"] == 131_072


def test_space_json_round_trip(space):
    again = SearchSpace.from_json(space.to_json())
    assert again == space
    assert again.codesign.profile({}).content_hash() == load_profile("npu-bitfusion").content_hash()


def test_area_constraint_is_set_at_ask_time(space, codesign):
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(12):
        trial = study.ask()
        params = space.suggest(trial)
        expected = area_mm2(load_profile("npu-bitfusion", overrides=codesign.overrides(params)))
        frozen = study.tell(trial, [0.9, 1.0])
        assert frozen.user_attrs["area_mm2"] == pytest.approx(expected)
        assert frozen.constraints[AREA_CONSTRAINT] == pytest.approx(expected - BUDGET_MM2)


def test_warm_start_hardware_is_the_largest_that_fits(codesign):
    overrides = codesign.warm_start_overrides()
    assert overrides is not None and codesign.area_mm2(overrides) <= BUDGET_MM2
    # no combination of choices within the budget has more area (3^4 = 81 combinations)
    keys = [c.key for c in codesign.choices]
    for combo in itertools.product(*(c.values for c in codesign.choices)):
        area = area_mm2(
            load_profile("npu-bitfusion", overrides=dict(zip(keys, combo, strict=True)))
        )
        assert area > BUDGET_MM2 or area <= codesign.area_mm2(overrides) + 1e-12
    roomy, _ = build_codesign("npu-bitfusion", area_budget_mm2=100.0)
    assert roomy.warm_start_overrides() == roomy.overrides({})
    tiny, _ = build_codesign("npu-bitfusion", area_budget_mm2=0.01)
    assert tiny.warm_start_overrides() is None


def test_codesign_input_errors():
    with pytest.raises(LowbitError, match=r"\[\[tunables\]\]"):
        build_codesign("cpu-x86-avx2")
    with pytest.raises(LowbitError, match="area budget needs co-design"):
        SearchSetup(
            model=ZooModel(name="digits-cnn"),
            hardware="npu-bitfusion",
            n_trials=1,
            out_dir="x",
            area_budget_mm2=3.0,
        )


@pytest.mark.slow
def test_codesign_search_respects_the_budget_and_records_the_hardware(ray_session, tmp_path):
    from lowbit import hwsim, models

    out = tmp_path / "run"
    setup = SearchSetup(
        model=ZooModel(name="digits-cnn"),
        hardware="npu-bitfusion",
        n_trials=8,
        out_dir=out,
        workers=2,
        methods=("joint", "uniform"),
        co_design=True,
        area_budget_mm2=BUDGET_MM2,
        progress=False,
    )
    result = run_search(setup)
    summary = result.summary
    assert summary["constraints"]["max_area_mm2"] == BUDGET_MM2
    assert summary["co_design"]["base_area_mm2"] == pytest.approx(
        area_mm2(load_profile("npu-bitfusion"))
    )
    # the journal: every trial's area is its hardware's, feasible exactly when within budget
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))
    )
    study = optuna.load_study(study_name=summary["study"], storage=storage)
    for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
        hw = {k[3:]: v for k, v in t.params.items() if k.startswith("hw:")}
        expected = area_mm2(load_profile("npu-bitfusion", overrides=hw))
        assert t.user_attrs["area_mm2"] == pytest.approx(expected)
        assert (t.constraints[AREA_CONSTRAINT] <= 0) == (expected <= BUDGET_MM2)
    ids = result.methods["joint"].pareto
    assert ids
    base = models.load_trained("digits-cnn")
    for cid in ids:
        path = out / "configs" / f"{cid}.json"
        cfg = load_config(path)  # still a valid deployment config
        hardware = json.loads(path.read_text())["hardware"]
        variant = load_profile("npu-bitfusion", overrides=hardware["overrides"])
        assert hardware["content_hash"] == cfg.hardware_hash == variant.content_hash()
        assert hardware["area_mm2"] == pytest.approx(area_mm2(variant))
        assert hardware["area_mm2"] <= BUDGET_MM2  # Pareto sets hold feasible trials only
        plan = models.CompressionPlan.from_dict(cfg.plan)
        sim = hwsim.simulate(models.to_workload(base, plan), variant)
        assert cfg.latency_ms == pytest.approx(sim.latency_s * 1e3)


def test_codesign_configs_are_written_once_complete(ray_session, space, tmp_path, monkeypatch):
    """Each deployment config of a co-design run is written exactly once, with its hardware
    section complete: what a second pass (``record_hardware``, before) used to add."""
    from lowbit.hwsim import fileio
    from lowbit.hwsim.area import area_breakdown
    from lowbit.search.run import SearchSetup, execute
    from lowbit.search.testing import SyntheticSpec

    writes: dict[str, list[bytes]] = {}
    real_write = fileio.atomic_write_bytes

    def counting_write(path, data):
        writes.setdefault(str(path), []).append(bytes(data))
        return real_write(path, data)

    monkeypatch.setattr(fileio, "atomic_write_bytes", counting_write)
    out = tmp_path / "run"
    setup = SearchSetup(
        n_trials=10,
        out_dir=out,
        study_name="cd",
        workers=1,
        progress=False,
        methods=("joint", "uniform"),
    )
    execute(space=space, evaluator=SyntheticSpec(), setup=setup)
    configs = sorted((out / "configs").glob("*.json"))
    assert configs
    with open(out / "pareto.csv", newline="", encoding="utf-8") as fh:
        params = {row["config_id"]: json.loads(row["params"]) for row in csv.DictReader(fh)}
    assert sorted(params) == [path.stem for path in configs]
    base_hash = load_profile("npu-bitfusion").content_hash()
    for path in configs:
        assert len(writes[str(path)]) == 1, f"{path.name} written {len(writes[str(path)])} times"
        assert writes[str(path)][0] == path.read_bytes()
        overrides = {k[3:]: v for k, v in params[path.stem].items() if k.startswith("hw:")}
        overrides = {c.key: overrides.get(c.key, c.base) for c in space.codesign.choices}
        variant = load_profile("npu-bitfusion", overrides=overrides)
        area = area_breakdown(variant)
        hardware = json.loads(path.read_text())["hardware"]
        assert list(hardware) == [
            "name",
            "content_hash",
            "base_content_hash",
            "overrides",
            "area_mm2",
            "area",
        ]
        assert hardware == {
            "name": "npu-bitfusion",
            "content_hash": variant.content_hash(),
            "base_content_hash": base_hash,
            "overrides": overrides,
            "area_mm2": area.total_mm2,
            "area": area.to_dict(),
        }
        config = load_config(path)  # a valid config that reads back to the same file
        assert config.hardware_hash == variant.content_hash()
        assert config.hardware_variant.overrides == overrides
        assert config.to_json() == path.read_text()
