"""``lowbit export``: a deployment config as FP32 and real INT8 (QDQ) ONNX models."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._data_dir import add_data_dir_argument, apply_data_dir
from .models_cmd import format_table

HELP = "export a deployment config (configs/ID.json) as INT8 ONNX (+ TFLite, Vela, QONNX)"

#: what --format prints on stdout; the other --format values are export formats
_PRINT_FORMATS = ("table", "json")
_EXPORT_FORMATS = ("onnx", "tflite", "qonnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="ID.json", help="deployment config")
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory; an earlier export there is replaced whole (one warning line)",
    )
    parser.add_argument(
        "--weight-type",
        choices=("auto", "s8", "u8"),
        default="auto",
        help="int8 weight storage: s8 with VNNI, u8 (exact u8u8 kernels) without (default auto)",
    )
    parser.add_argument(
        "--finetune-steps",
        type=int,
        metavar="N",
        help="QAT steps (default: the config's own; for configs without them, the run's "
        "summary.json, else 0)",
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the INT8 vs fake-quant check on test"
    )
    parser.add_argument(
        "--no-pad-channels",
        action="store_true",
        help="keep the compressed channel counts in model.int8.onnx (default: pad convs with "
        "zero channels to ONNX Runtime's fast INT8 kernel: same outputs, up to 2x faster)",
    )
    parser.add_argument(
        "--format",
        action="append",
        choices=_PRINT_FORMATS + _EXPORT_FORMATS,
        default=[],
        help="repeatable. Artifacts: onnx (always written), tflite (fully-integer TFLite, "
        "checked in LiteRT; Vela's Ethos-U compilation when the config's target is Ethos-U), "
        "qonnx (QONNX Quant nodes, checked with qonnx's executor); tflite and qonnx need "
        "pip install 'lowbit[edge]'. Output: table (default) or json",
    )
    parser.add_argument(
        "--tflite-io",
        choices=("int8", "float"),
        default="int8",
        help="TFLite input/output: int8 input and int16 logits (firmware quantizes) or float "
        "with QUANTIZE/DEQUANTIZE ops (default int8)",
    )
    add_data_dir_argument(parser)


def finetune_steps_of(config_path: Path) -> int:
    """The search's ``finetune_steps`` from the run directory holding ``configs/ID.json``."""
    summary = config_path.resolve().parent.parent / "summary.json"
    from lowbit.hwsim.errors import LowbitError
    from lowbit.hwsim.fileio import read_json

    try:
        data = read_json(summary, what="run summary")
        return int((data.get("evaluator") or {}).get("finetune_steps", 0) or 0)
    except (LowbitError, ValueError, AttributeError, TypeError):
        return 0


def check_export_dir(out: str) -> Path:
    """``--out`` before the model is built: a new or empty directory, or an earlier export
    (its files are replaced) -- never a directory holding other files, such as a run's
    ``configs/``."""
    from lowbit.hwsim.errors import LowbitError
    from lowbit.hwsim.fileio import check_output_dir

    path = check_output_dir(out, flag="--out")
    if path.is_dir() and any(path.iterdir()) and not (path / "deploy.json").is_file():
        raise LowbitError(
            f"--out {path}: holds other files and no deploy.json (not an earlier export); "
            "choose a new or empty directory"
        )
    return path


def run(args: argparse.Namespace) -> int:
    apply_data_dir(args)
    from lowbit.hwsim.errors import LowbitError
    from lowbit.models.compression.plan import CompressionPlan
    from lowbit.models.export.deploy import export_plan
    from lowbit.search.config import load_config

    path = Path(args.config)
    cfg = load_config(path)
    check_export_dir(args.out)
    earlier = earlier_export(Path(args.out))  # warns before the work
    steps = args.finetune_steps
    if steps is None:
        steps = cfg.qat_steps if cfg.qat_steps is not None else finetune_steps_of(path)
    if steps < 0:
        raise LowbitError(f"--finetune-steps must be >= 0, got {steps}")
    printed = [f for f in args.format if f in _PRINT_FORMATS]
    if len(set(printed)) > 1:
        raise LowbitError("--format: give at most one of table, json")
    plan = CompressionPlan.from_dict(cfg.plan)
    # the config's seed, QAT seed and calibration subset: the model the search measured
    build = {**cfg.build_kwargs(), "finetune_steps": steps}
    result = export_plan(
        cfg.model,
        plan,
        out_dir=args.out,
        **build,
        weight_type=args.weight_type,
        config_id=cfg.id,
        check=not args.no_check,
        pad_channels=not args.no_pad_channels,
        formats=[f for f in args.format if f in _EXPORT_FORMATS],
        tflite_io=args.tflite_io,
        hardware=_searched_profile(cfg),
    )
    firmware = _firmware(cfg, plan, build, Path(args.out), result.deploy["files"])
    remove_stale(Path(args.out), earlier=earlier)
    if printed[:1] == ["json"]:
        json.dump(result.deploy, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    deploy = result.deploy
    rows = [
        [
            r["name"],
            r["kind"],
            "x".join(map(str, r.get("weight_shape", []))) or "-",
            _bits(r["w_bits"]),
            _bits(r["a_bits"]),
            r["runs_as"],
        ]
        for r in deploy["layers"]
    ]
    out = [f"{cfg.id}: {cfg.model} -> {result.out_dir}"]
    out.append(format_table(["layer", "kind", "weight shape", "W", "A", "runs as"], rows))
    check = deploy.get("check")
    if check:
        out.append(
            f"check on {check['split']} ({check['samples']} samples): argmax agreement "
            f"{check['argmax_agreement']:.2%}, max |logit diff| {check['max_abs_logit_diff']:.3g}"
            f", accuracy INT8 {check['accuracy_int8']:.2%} / fake-quant "
            f"{check['accuracy_fake_quant']:.2%} / FP32 {check['accuracy_fp32_onnx']:.2%}"
        )
    kernels = ", ".join(f"{k} x{v}" for k, v in deploy["ort_kernels"]["int8"].items())
    out.append(f"ONNX Runtime INT8 kernels: {kernels}")
    out.extend(_edge_lines(deploy))
    files = ", ".join(str(f) for f in deploy["files"].values())
    out.append(f"wrote {files}, {result.deploy_path.name}")
    out.append(firmware)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def _searched_profile(cfg):
    """The run's hardware profile if it is a built-in one whose content is unchanged."""
    from lowbit.hwsim.errors import LowbitError
    from lowbit.hwsim.profiles import load_profile

    try:
        profile = load_profile(cfg.hardware)
    except LowbitError:
        return None
    return profile if profile.content_hash() == cfg.hardware_hash else None


def _edge_lines(deploy: dict) -> list[str]:
    """One line per edge artifact: its runtime check, Vela's estimate vs lowbit's."""
    lines = []
    check = (deploy.get("tflite") or {}).get("check")
    if check:
        codes = check.get("code_agreement") or {}
        lowest = f" ({min(codes, key=codes.get)})" if codes else ""
        lines.append(
            f"TFLite (LiteRT) on {check['split']}: accuracy {check['accuracy_tflite']:.2%} vs "
            f"INT8 ONNX {check['accuracy_onnx_int8']:.2%} ({check['accuracy_diff_pt']:+.2f} pt), "
            f"argmax agreement {check['argmax_agreement']:.2%}, min code agreement "
            f"{check['min_code_agreement']:.2%}{lowest}"
        )
    vela = deploy.get("vela")
    if vela:
        sim = vela.get("lowbit") or {}
        lines.append(
            f"Vela {vela['accelerator']}: {vela['cycles']} cycles ({vela['latency_ms']:.4f} ms), "
            f"SRAM {vela['sram_bytes']} B, flash {vela['flash_bytes']} B, CPU operators "
            f"{vela['cpu_operators']}; lowbit simulated {sim.get('cycles')} cycles"
        )
    check = (deploy.get("qonnx") or {}).get("check")
    if check:
        lines.append(_qonnx_line(check, (deploy.get("check") or {}).get("accuracy_int8")))
    return lines


def _qonnx_line(check: dict, accuracy_int8: float | None) -> str:
    """deploy.json's qonnx check in one line, as the TFLite line: accuracy against the INT8
    ONNX model's (points), argmax and code agreement with the fake-quant model and the layer
    with the lowest code agreement."""
    accuracy = check.get("accuracy_qonnx")
    parts = [f"QONNX (qonnx executor) on {check['split']} ({check['samples']} images):"]
    if accuracy is not None and accuracy_int8 is not None:
        diff = 100 * (accuracy - accuracy_int8)
        parts.append(f"accuracy {accuracy:.2%} vs INT8 ONNX {accuracy_int8:.2%} ({diff:+.2f} pt),")
    elif accuracy is not None:
        parts.append(f"accuracy {accuracy:.2%},")
    parts.append(f"argmax agreement {check['argmax_agreement']:.2%} with the fake-quant model,")
    codes = check.get("code_agreement") or {}
    if codes:
        lowest = min(codes, key=codes.get)
        parts.append(f"min code agreement {codes[lowest]:.2%} ({lowest}),")
    parts.append(f"max |logit diff| {check['max_abs_logit_diff']:.3g}")
    return " ".join(parts)


def _firmware(cfg, plan, build: dict, out_dir: Path, files: dict) -> str:
    """Write firmware.json (models.firmware) when the run's profile is a built-in one whose
    content is unchanged, pointing at the export's ``files``; the line saying what happened."""
    from lowbit.models.bridge import to_workload
    from lowbit.models.export.deploy import build_compressed
    from lowbit.models.export.firmware import write_firmware_config

    profile = _searched_profile(cfg)
    if profile is None:
        return (
            f"firmware.json not written: the run's profile {cfg.hardware!r} is not a built-in "
            "profile as searched (use models.firmware.write_firmware_config)"
        )
    # models.export.write_zoo_firmware_config, with the config's calibration subset
    from lowbit import hwsim

    base, compressed = build_compressed(cfg.model, plan, **build)
    workload = to_workload(
        base, plan, name=cfg.model, round_trip=profile.overheads.two_grid_round_trip
    )
    sim = hwsim.simulate(workload, profile)
    path = write_firmware_config(
        out_dir / "firmware.json",
        compressed,
        plan=plan,
        profile=profile,
        sim_result=sim,
        model_name=cfg.model,
        artifacts={**files, "deploy": "deploy.json"},
    )
    return f"wrote {path.name} (firmware deployment config, {profile.family}: {profile.name})"


def earlier_export(out: Path) -> dict[str, tuple[int, int]]:
    """Over an earlier export (``out`` holds a deploy.json), warn on stderr in one line that
    its files are replaced, and return them (path relative to ``out`` -> inode and ctime,
    for :func:`remove_stale`); ``{}`` for a new or empty directory."""
    if not (out / "deploy.json").is_file():
        return {}
    files = {}
    for path in sorted(out.rglob("*")):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            files[path.relative_to(out).as_posix()] = (stat.st_ino, stat.st_ctime_ns)
    print(
        f"lowbit: warning: --out {out} holds an earlier export; it is replaced (the files "
        f"this export does not write again are removed): {', '.join(files)}",
        file=sys.stderr,
    )
    return files


def remove_stale(out: Path, *, earlier: dict[str, tuple[int, int]]) -> list[str]:
    """After a complete export into ``out``: remove the files of the earlier export
    (:func:`earlier_export`) that it did not write again (each written file is a new inode),
    and directories left empty, so old and new artifacts never mix; their names."""
    removed = []
    for name, stamp in earlier.items():
        path = out / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if (stat.st_ino, stat.st_ctime_ns) == stamp:
            path.unlink()
            removed.append(name)
    for folder in sorted({(out / n).parent for n in removed}, key=lambda p: -len(p.parts)):
        if folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def _bits(bits: int | None) -> str:
    return "float" if bits is None else str(bits)
