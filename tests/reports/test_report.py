"""report.html from a real (tiny) run directory: sections, images, links, per-layer data."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from html.parser import HTMLParser

import pytest

from lowbit.reports import ReportError, build_report, load_run, render_report, select_configs
from lowbit.reports.layers import config_detail

PNG = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects ids, image sources and link targets of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "a" and not attrs.get("href", "").startswith("#"):
            self.links.append(attrs["href"])


@pytest.fixture(scope="module")
def page(tiny_run):
    path = build_report(tiny_run)
    parser = _Page()
    parser.feed(path.read_text(encoding="utf-8"))
    return path, parser


def test_report_is_written_atomically_beside_the_run(tiny_run, page):
    path, _ = page
    assert path == tiny_run / "report.html"
    assert not list(tiny_run.glob(".report.html.*"))


def test_report_has_every_section_and_only_inline_png_images(tiny_run, page):
    _, parsed = page
    run = load_run(tiny_run)
    chosen = select_configs(run)
    assert {"overview", "pareto", "progress", "configs", "all-configs"} <= parsed.ids
    assert {f"cfg-{cid}" for cid in chosen} <= parsed.ids
    # Pareto + hypervolume, then settings + latency breakdown + roofline per chosen config
    assert len(parsed.images) == 2 + 3 * len(chosen)
    for src in parsed.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG


def test_every_pareto_config_is_linked_to_its_json(tiny_run, page):
    _, parsed = page
    with (tiny_run / "pareto.csv").open() as fh:
        ids = {row["config_id"] for row in csv.DictReader(fh)}
    assert ids
    targets = {link for link in parsed.links if link.endswith(".json")}
    assert {f"configs/{cid}.json" for cid in ids} <= targets
    for link in targets:
        assert json.loads((tiny_run / link).read_text())["kind"] == "lowbit-deployment-config"


def test_codesign_hardware_is_shown_beside_the_config(tiny_run, page):
    path, _ = page
    text = path.read_text(encoding="utf-8")
    run = load_run(tiny_run)
    budget = run.summary["co_design"]["area_budget_mm2"]
    assert "Area budget" in text and f"{budget:g} mm²" in text
    cid = select_configs(run)[0]
    hardware = run.configs[cid]["hardware"]
    block = text[text.index(f'id="cfg-{cid}"') :]
    assert "hardware parameter" in block[:4000]
    assert f"{hardware['area_mm2']:.3f}" in block[:4000]


def test_selected_configs_are_distinct_pareto_configs(tiny_run):
    run = load_run(tiny_run)
    chosen = select_configs(run)
    assert chosen and len(set(chosen)) == len(chosen) and set(chosen) <= set(run.configs)
    best = run.summary["methods"]["joint"]["best_within_1pt"]
    if best:
        assert chosen[0] == best["config_id"]


def test_layer_detail_reproduces_the_config(tiny_run):
    run = load_run(tiny_run)
    for cid, config in run.configs.items():
        detail = config_detail(config)
        assert detail.resimulated and not detail.note, detail.note
        assert sum(x.total_cycles for x in detail.layers) == config["simulation"]["total_cycles"]
        for layer in detail.layers:
            assert layer.compute_cycles + layer.stall_cycles + layer.overhead_cycles == (
                layer.total_cycles
            )
        plan = config["plan"]["layers"]
        for layer in detail.compute_layers:
            assert layer.w_bits == plan[layer.name]["w_bits"], cid


def test_validation_section_appears_when_validate_ran(tiny_run, tmp_path):
    from lowbit.search.validate import VALIDATION_COLUMNS

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    rows = []
    for i, cid in enumerate(sorted(load_run(run_dir).configs)):
        simulated = load_run(run_dir).pareto[i].latency_ms
        row = {key: 0.0 for key in VALIDATION_COLUMNS}
        row.update(
            config_id=cid,
            method=cid.rsplit("-", 1)[0],
            simulated_ms_b1=simulated,
            measured_int8_ms_b1=simulated * 1.1,
            accuracy_fake_quant=0.98,
            accuracy_int8=0.979,
            accuracy_diff_points=-0.1,
        )
        rows.append(row)
    metrics = {
        "b1": {
            "n": len(rows),
            "spearman": 0.987,
            "kendall": 0.9,
            "mape_pct": 9.1,
            "within_10pct": 1.0,
            "within_15pct": 1.0,
            "int8_speedup_vs_fp32": {"min": 1.5, "median": 2.0, "max": 2.5},
        }
    }
    validation = {"metrics": metrics, "accuracy": {"max_abs_diff_points": 0.1}, "configs": rows}
    (run_dir / "validation.json").write_text(json.dumps(validation))
    text = render_report(load_run(run_dir))
    section = text[text.index('id="validation"') :]
    assert "0.987" in section and "Simulated vs measured" in section
    assert section.count("data:image/png;base64,") >= 1
    assert all(row["config_id"] in section for row in rows)


def test_unknown_config_ids_and_missing_runs_are_clear_errors(tiny_run, tmp_path):
    with pytest.raises(ReportError, match="unknown config ids"):
        build_report(tiny_run, out=tmp_path / "r.html", configs=["joint-99999"])
    with pytest.raises(ReportError, match="no such run directory"):
        load_run(tmp_path / "nowhere")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "study.journal").write_text("")
    with pytest.raises(ReportError, match="not finished"):
        load_run(unfinished)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "summary.json").write_text("{not json")
    with pytest.raises(ReportError, match=re.escape("summary.json: not valid JSON")):
        load_run(broken)
    # wrong types in summary.json were an AttributeError / TypeError traceback
    summary = json.loads((tiny_run / "summary.json").read_text())
    summary["methods"], summary["reference"]["fp32_val"] = 5, "high"
    (broken / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ReportError) as err:
        load_run(broken)
    assert "methods: must be an object, got 5" in str(err.value)
    assert "reference.fp32_val: must be a finite number, got 'high'" in str(err.value)
    # a config of another model dropped into the run (validate refused it; report did not)
    other = tmp_path / "other"
    shutil.copytree(tiny_run, other)
    path = next((other / "configs").glob("*.json"))
    config = json.loads(path.read_text())
    config["model"] = "digits-mlp" if config["model"] != "digits-mlp" else "digits-cnn"
    path.write_text(json.dumps(config))
    with pytest.raises(ReportError, match=f"{path.name}: a config of model"):
        load_run(other)


def test_report_elsewhere_links_back_to_the_run(tiny_run, tmp_path):
    out = build_report(tiny_run, out=tmp_path / "elsewhere" / "r.html")
    parsed = _Page()
    parsed.feed(out.read_text(encoding="utf-8"))
    for link in (x for x in parsed.links if x.endswith(".json")):
        assert (out.parent / link).resolve().is_file()


def test_the_report_reads_the_runs_dataframes(tiny_run):
    """RunData is lowbit.results' tables of the run; re-simulated layers split every
    layer's stored cycles exactly."""
    from lowbit.results import load_run as load_tables

    run = load_run(tiny_run)
    tables = load_tables(tiny_run, resimulate_layers=True)
    assert [p.config_id for p in run.pareto] == list(tables.pareto.config_id)
    assert [t.number for t in run.trials] == list(tables.trials.number)
    assert [t.accuracy_val for t in run.trials if t.complete] == list(
        tables.trials.accuracy_val[tables.trials.state == "COMPLETE"]
    )
    assert {k for t in run.trials for k in t.params} == set(tables.params)
    layers = tables.layers
    assert layers.resimulated.all() and len(layers.config_id.unique()) == len(tables.pareto)
    split = layers.compute_cycles + layers.stall_cycles + layers.overhead_cycles
    assert (split == layers.total_cycles).all()
    for cid, config in run.configs.items():
        mine = layers[layers.config_id == cid]
        assert mine.total_cycles.sum() <= config["simulation"]["total_cycles"]
        stored = {x["name"]: x["total_cycles"] for x in config["simulation"]["layers"]}
        assert dict(zip(mine.layer, mine.total_cycles, strict=True)) == stored


def test_screen_section_shows_each_layers_choices_and_strikes_the_dropped(tiny_run, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1] / "search"))
    from search_testkit import SYNTHETIC_LAYERS, bitfusion_profile

    from lowbit.search.fidelity import Fidelity
    from lowbit.search.screen import screen, screen_summary
    from lowbit.search.space import build_space
    from lowbit.search.testing import SyntheticSpec

    class Pool:  # the synthetic evaluator in-process: its accuracies are closed form
        evaluator = SyntheticSpec().build()

        def map(self, requests):
            return [self.evaluator.evaluate(r) for r in requests]

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    space = build_space(SYNTHETIC_LAYERS, bitfusion_profile(), model="synthetic-cnn")
    result = screen(space=space, pool=Pool(), floor=0.93, fidelity=Fidelity())
    (run_dir / "screen.json").write_text(json.dumps(result.to_dict()), encoding="utf-8")
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    summary["screen"] = screen_summary(result, space=space, screened=result.apply(space))
    (run_dir / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    text = render_report(load_run(run_dir))
    section = text[text.index('id="screen"') :]
    section = section[: section.index("</section>")]
    assert all(f"<td>{layer.name}</td>" in section for layer in SYNTHETIC_LAYERS)
    dropped = [e for e in result.entries if not e.kept]
    assert dropped and section.count("<s ") == len(dropped)
    assert "93.0 %" in section  # the floor
    assert "4: 91.8 %" in section and "2: not measured" in section  # 4 bits dropped: 2 too
    assert "0.75: not measured" in section  # kept: a harsher keep ratio was kept
    assert 'href="#screen"' in text  # in the page's navigation
    # a damaged file (an entry that names no setting) leaves the section out, no traceback
    damaged = result.to_dict()
    damaged["entries"][0]["param"] = "conv1"
    (run_dir / "screen.json").write_text(json.dumps(damaged), encoding="utf-8")
    assert 'id="screen"' not in render_report(load_run(run_dir))
    # without the file the run still renders, without the section
    (run_dir / "screen.json").unlink()
    assert 'id="screen"' not in render_report(load_run(run_dir))
