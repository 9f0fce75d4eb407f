"""SCALE-Sim topology CSV -> :class:`~lowbit.hwsim.workload.Workload`.

Two formats, told apart by the header (or forced with ``kind=``):

* conv: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter, Strides,`` -> :class:`~lowbit.hwsim.workload.Conv2d`
* GEMM: ``Layer Name, M, N, K,`` -> :class:`~lowbit.hwsim.workload.Linear` with ``tokens = M``,
  ``out_features = N``, ``in_features = K`` (SCALE-Sim runs it as an M×K ifmap and N
  filters of 1×K, so P = M, W = K).

Semantics follow SCALE-Sim v3.0.0 (``scalesim/topology_utils.py``):

* Rows end with a trailing comma; SCALE-Sim drops the last field. We drop it when it is
  empty or a ``#`` comment and accept rows without the trailing comma too.
* No padding; the output size rounds up: ``E = ceil((H - F + S) / S)``.
* A conv row whose name contains ``DP`` is depthwise: SCALE-Sim simulates it as
  ``Channels`` separate layers of one channel and ``Num Filter`` filters each. Here it is
  one :class:`Conv2d` with ``groups = in_c = Channels`` and ``out_c = Channels * Num
  Filter`` (``Num Filter`` is the per-channel depth multiplier, 1 for a true depthwise
  conv), which has exactly those per-channel GEMMs.
* An optional last column ``N:M`` (v3 sparsity ratio) becomes ``Compression(nm=(N, M))``
  unless it is ``1:1``.
* Layer names are kept exactly as written (surrounding whitespace stripped).
"""

from __future__ import annotations

from pathlib import Path

from .errors import WorkloadError
from .fileio import MAX_INPUT_BYTES
from .workload import Compression, Conv2d, Layer, Linear, Workload, ceil_div

__all__ = ["CONV_COLUMNS", "GEMM_COLUMNS", "load_topology", "parse_topology"]

CONV_COLUMNS = (
    "Layer name",
    "IFMAP Height",
    "IFMAP Width",
    "Filter Height",
    "Filter Width",
    "Channels",
    "Num Filter",
    "Strides",
)
GEMM_COLUMNS = ("Layer Name", "M", "N", "K")
_KINDS = ("conv", "gemm")
#: the largest size of one layer dimension (keeps every product of them a finite float)
MAX_DIMENSION = 2**31 - 1


def load_topology(path: str | Path, *, kind: str | None = None) -> Workload:
    """Read a SCALE-Sim topology CSV (conv or GEMM format) into a workload named after
    the file's stem.

    Args:
        path: the CSV file.
        kind: "conv" or "gemm" to force the format; None detects it from the header.

    Raises:
        WorkloadError: the file is missing or malformed; the message names the file, and
            the line and column of every problem.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read topology file: {exc.strerror or exc}") from None
    if len(raw) > MAX_INPUT_BYTES:
        limit = MAX_INPUT_BYTES // 2**20
        raise WorkloadError(f"{path}: larger than {limit} MiB: not a topology CSV")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WorkloadError(f"{path}: not a text (UTF-8) topology CSV") from None
    return parse_topology(text, name=path.stem, source=str(path), kind=kind)


def parse_topology(
    text: str, *, name: str, source: str = "<topology>", kind: str | None = None
) -> Workload:
    """Parse topology CSV ``text`` (see :func:`load_topology`); ``source`` names it in errors."""
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"unknown topology kind {kind!r} (valid: {', '.join(_KINDS)})")
    lines = text.splitlines()
    header_no = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_no is None:
        raise WorkloadError(f"{source}: empty topology file (expected a header line)")
    header = _fields(lines[header_no])
    detected = _detect_kind(header)
    if kind is None:
        if detected is None:
            raise WorkloadError(
                f"{source}:{header_no + 1}: unrecognised header {lines[header_no].strip()!r}; "
                f"expected conv ({', '.join(CONV_COLUMNS)},) or GEMM ({', '.join(GEMM_COLUMNS)},)"
            )
        kind = detected
    columns = CONV_COLUMNS if kind == "conv" else GEMM_COLUMNS

    layers: list[Layer] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for index in range(header_no + 1, len(lines)):
        fields = _fields(lines[index])
        if not fields or fields == [""]:
            continue
        line_no = index + 1
        where = f"{source}:{line_no}"
        row_problems: list[str] = []
        layer = _parse_row(fields, columns, kind, where, row_problems)
        problems += row_problems
        if layer is None:
            continue
        if layer.name in first_line:
            problems.append(
                f"{where}: column 1 ({columns[0]}): duplicate layer name {layer.name!r} "
                f"(first on line {first_line[layer.name]})"
            )
            continue
        first_line[layer.name] = line_no
        layers.append(layer)
    if not layers and not problems:
        problems.append(f"{source}: no layers after the header")
    if problems:
        raise WorkloadError("; ".join(problems))
    return Workload(name, tuple(layers))


def _fields(line: str) -> list[str]:
    """Split a CSV line; drop SCALE-Sim's trailing empty field or ``#`` comment."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) > 1 and (fields[-1] == "" or fields[-1].startswith("#")):
        fields.pop()
    return fields


def _detect_kind(header: list[str]) -> str | None:
    lowered = [h.lower() for h in header]
    if len(lowered) >= 4 and lowered[1:4] == ["m", "n", "k"]:
        return "gemm"
    if len(lowered) >= 8 and "ifmap" in lowered[1] and "filter" in lowered[3]:
        return "conv"
    return None


def _parse_row(
    fields: list[str], columns: tuple[str, ...], kind: str, where: str, problems: list[str]
) -> Layer | None:
    n = len(columns)
    if len(fields) not in (n, n + 1):
        problems.append(
            f"{where}: expected {n} columns ({', '.join(columns)}) and an optional N:M "
            f"sparsity column, got {len(fields)}"
        )
        return None
    name = fields[0]
    if not name:
        problems.append(f"{where}: column 1 ({columns[0]}): empty layer name")
    values: list[int] = []
    for col in range(1, n):
        raw = fields[col]
        # ASCII digits only (int() also takes "1_0", "٣" and 5,000-digit numbers)
        value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 12 else 0
        if value < 1:
            problems.append(
                f"{where}: column {col + 1} ({columns[col]}): must be a positive integer, "
                f"got {raw[:40]!r}"
            )
        elif value > MAX_DIMENSION:
            problems.append(
                f"{where}: column {col + 1} ({columns[col]}): {value} is larger than any "
                f"layer dimension ({MAX_DIMENSION:,} at most)"
            )
        values.append(value)
    nm = (
        _parse_nm(fields[n], f"{where}: column {n + 1} (sparsity N:M)", problems)
        if len(fields) > n
        else None
    )
    if problems or not name:
        return None
    compression = Compression() if nm is None else Compression(nm=nm)
    if kind == "gemm":
        m, n_out, k = values
        return Linear(
            name=name, in_features=k, out_features=n_out, tokens=m, compression=compression
        )
    return _conv(name, values, compression, where, problems)


def _parse_nm(raw: str, where: str, problems: list[str]) -> tuple[int, int] | None:
    parts = raw.split(":")
    try:
        n, m = (int(p) for p in parts)
    except ValueError:
        problems.append(f"{where}: expected 'N:M' like 2:4, got {raw!r}")
        return None
    if not 0 < n <= m:
        problems.append(f"{where}: need 0 < N <= M, got {raw!r}")
        return None
    return None if n == m else (n, m)


def _conv(
    name: str, values: list[int], compression: Compression, where: str, problems: list[str]
) -> Conv2d | None:
    in_h, in_w, k_h, k_w, channels, filters, stride = values
    if k_h > in_h or k_w > in_w:
        # SCALE-Sim asserts the same (topology_utils.append_topo_arrays, "ISSUE #9")
        problems.append(
            f"{where}: filter {k_h}x{k_w} is larger than the {in_h}x{in_w} input "
            "(SCALE-Sim uses no padding)"
        )
        return None
    # SCALE-Sim's output size (topology_utils.topo_calc_hyperparams): ceil((H - F + S) / S)
    out_h = ceil_div(in_h - k_h + stride, stride)
    out_w = ceil_div(in_w - k_w + stride, stride)
    depthwise = "DP" in name
    return Conv2d(
        name=name,
        in_h=in_h,
        in_w=in_w,
        in_c=channels,
        out_c=channels * filters if depthwise else filters,
        k_h=k_h,
        k_w=k_w,
        stride=stride,
        out_h=out_h,
        out_w=out_w,
        groups=channels if depthwise else 1,
        compression=compression,
    )
