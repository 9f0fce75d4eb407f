"""Refit host calibrations with the current model, no timing: how much of the spread between
calibrations is the fit's, and what a model change does to the constants.

Each argument is a calibration's measurements -- a host profile's JSON sidecar
(``~/.cache/lowbit/host/host-cpu.json``), or one that ``bench_host_model.py`` keeps beside
its output (``FILE.calibration-<i>.json``). Each is refitted by
:func:`lowbit.models.hostcal.profile_fit.from_measurements`; the table gives every fitted
constant per calibration and its spread within each consecutive pair (the calibrations
taken one after the other) -- the repeatability target is 5 %. Constants in cycles move
with the clock measured at each calibration as well as with the fit.

Usage::

    .venv/bin/python benchmarks/bench_host_refit.py A.json B.json [C.json D.json ...] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench_host_model import ROOT, spreads

from lowbit.hwsim.errors import LowbitError
from lowbit.hwsim.fileio import read_json
from lowbit.models.hostcal.profile_fit import from_measurements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sidecars", type=Path, nargs="+", help="calibration JSON sidecars")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench-results" / "bench_host_refit.json"
    )
    args = parser.parse_args(argv)
    profiles, cpus = [], set()
    for path in args.sidecars:
        try:  # the project's reader: a directory, binary or broken file is one line
            measurements = read_json(path, what="calibration sidecar")
        except LowbitError as exc:
            sys.exit(f"bench_host_refit: {exc}")
        try:
            cpus.add(measurements["cpu"].get("label", measurements["cpu"]["model"]))
            profiles.append(from_measurements(measurements).profile())
        except LowbitError as exc:  # an implausible timing, a profile that fails validation
            sys.exit(f"bench_host_refit: {path}: {exc}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            sys.exit(f"bench_host_refit: {path}: not a calibration sidecar ({exc!r})")
    every = spreads(profiles)
    pairs = [spreads(profiles[i : i + 2]) for i in range(0, len(profiles) - 1, 2)] or [every]
    print(f"{len(profiles)} calibrations refitted on {', '.join(sorted(cpus))}; spread per pair")
    over = over_in_time = 0
    for i, row in enumerate(every):
        pair_spreads = [pair[i]["spread_pct"] for pair in pairs]
        in_time = [pair[i]["time_spread_pct"] for pair in pairs]
        over += sum(spread > 5 for spread in pair_spreads)
        over_in_time += sum(spread > 5 for spread in in_time)
        values = " ".join(f"{v:9.4g}" for v in row["values"])
        print(
            f"  {row['constant']:34} {values}  "
            + " ".join(f"{x:5.1f}%" for x in pair_spreads)
            + "  in time "
            + " ".join(f"{x:5.1f}%" for x in in_time)
        )
    print(f"pair constants over 5 %: {over} of {len(pairs) * len(every)} ({over_in_time} in time)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "bench_host_refit",
                "cpus": sorted(cpus),
                "sidecars": [str(p) for p in args.sidecars],
                "constants": every,
                "pairs": pairs,
                "pair_constants_over_5pct": over,
                "pair_constants_over_5pct_in_time": over_in_time,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
