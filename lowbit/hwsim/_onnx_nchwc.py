"""The reorders ONNX Runtime adds to a float graph for its blocked conv layout (NCHWc).

On x86 (AVX2, AVX-512) ONNX Runtime runs most float convolutions in a blocked layout, the
channels in blocks of a SIMD register, and converts at the borders with operators of its own
(``ReorderInput``: NCHW to blocked, channels padded to the block; ``ReorderOutput``: back).
The rules, read off ONNX Runtime 1.32's optimized graphs on AVX-512 (blocks of 16; the
importer assumes them, :func:`reorders` takes another block, 8 on AVX2):

* an ungrouped float Conv runs blocked when its input channels are a multiple of 4, or
  fewer than a block -- it then reads NCHW directly (a stem's 3 channels); a depthwise one
  when its channels are a multiple of 4 (96 do, 58 do not); a grouped one when each group
  has whole blocks of channels, in and out (48 channels in 2 groups do not);
* a tensor is blocked when a blocked conv computes it (with a ReLU6 or LeakyReLU it fuses),
  or a ReLU, Sigmoid, BatchNorm or Add whose 4-D activation inputs all are blocked, or a
  pooling or Concat whose inputs all are, each of whole blocks of channels;
* a blocked conv that reads a full block or more of channels from a tensor that is not
  blocked reorders it first, once per tensor (:data:`REORDER_INPUT`);
* a blocked tensor read by anything else -- the graph's output, a Reshape or Flatten, a
  Transpose, a Split, a Gemm, a conv that reads NCHW -- is reordered back once
  (:data:`REORDER_OUTPUT`), whatever the number of such readers.

A single float conv layer of 64 channels at 56x56 thus runs a ReorderInput, the conv and a
ReorderOutput, ~40 % of its time beside a kernel the NCHW graph shows alone; a chain of
8-channel convs reorders every output back for the next conv's NCHW read (2-3x the blocked
time on an Intel Xeon). ARM builds have no blocked layout: a profile without the two kinds'
costs leaves them free (the host calibration finds none there). :func:`reorders` lists them for
:func:`lowbit.hwsim._onnx_runtime.runtime_layers`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BLOCK_CHANNELS", "REORDER_INPUT", "REORDER_OUTPUT", "blocked_conv", "reorders"]

#: channels per block of ONNX Runtime's blocked layout on AVX-512 (16 floats; 8 on AVX2):
#: an ungrouped conv with fewer input channels reads NCHW directly
BLOCK_CHANNELS = 16
#: a blocked conv's channel alignment: input channels (per group) a multiple of it
_ALIGNMENT = 4
REORDER_INPUT = "reorder_input"
REORDER_OUTPUT = "reorder_output"

#: operators that run blocked when their 4-D activation inputs all are
_BLOCK_KEEPING = frozenset(
    {
        "MaxPool",
        "AveragePool",
        "GlobalMaxPool",
        "GlobalAveragePool",
        "Relu",
        *("Sigmoid", "Tanh", "HardSigmoid"),
        "Add",
        "Sum",
        "Concat",
        "BatchNormalization",
    }
)

#: activations with a blocked kernel only when fused into the blocked conv before them
_FUSED_ONLY = frozenset({"Clip", "LeakyRelu"})
#: block-keeping operators that need whole blocks of channels in every input (a Concat of
#: two 58-channel branches reorders each branch back; a MaxPool of 24 channels runs NCHW)
_WHOLE_BLOCKS = frozenset(
    {"MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "Concat"}
)


def _in_channels(g: Any, node: Any) -> int:
    shape = g.shapes.get(node.input[0]) or ()
    return int(shape[1]) if len(shape) == 4 else 0


def _out_channels(g: Any, node: Any) -> int:
    shape = g.shapes.get(node.output[0]) or ()
    return int(shape[1]) if len(shape) == 4 else 0


def _groups(node: Any) -> int:
    for attr in node.attribute:
        if attr.name == "group":
            return int(attr.i)
    return 1


def blocked_conv(g: Any, node: Any, *, block: int = BLOCK_CHANNELS) -> bool:
    """Does ONNX Runtime run this float Conv in its blocked layout (module docstring)?"""
    if node.op_type != "Conv":
        return False
    cin, cout, groups = _in_channels(g, node), _out_channels(g, node), _groups(node)
    if cin <= 0 or cout <= 0:
        return False
    if groups == 1:
        return cin < block or cin % _ALIGNMENT == 0
    if groups == cin == cout:  # depthwise, one filter per channel: the channels aligned
        return cin % _ALIGNMENT == 0
    # grouped: whole blocks of channels per group, in and out
    if cin % groups or cout % groups:
        return False
    return (cin // groups) % block == 0 and (cout // groups) % block == 0


def _reads_nchw(g: Any, conv: Any, *, block: int) -> bool:
    """A blocked conv that reads its input as NCHW (ungrouped, under a block of channels)."""
    return _groups(conv) == 1 and _in_channels(g, conv) < block


def _fused_activation(g: Any, node: Any, *, block: int) -> bool:
    """A Clip or LeakyReLU that ONNX Runtime fuses into the blocked conv before it (the
    conv's output read by nothing else); on its own it has no blocked kernel."""
    src = g.producer.get(node.input[0])
    return (
        src is not None
        and src.op_type == "Conv"
        and blocked_conv(g, src, block=block)
        and len(g.consumers.get(node.input[0], ())) == 1
        and node.input[0] not in g.outputs
    )


def _is_blocked(g: Any, tensor: str, memo: dict[str, bool], *, block: int) -> bool:
    if tensor in memo:
        return memo[tensor]
    memo[tensor] = False  # a cycle (none in a valid graph) stays unblocked
    node = g.producer.get(tensor)
    result = False
    if node is not None and tensor == node.output[0]:
        if node.op_type == "Conv":
            result = blocked_conv(g, node, block=block)
        elif node.op_type in _FUSED_ONLY:
            result = _fused_activation(g, node, block=block)
        elif node.op_type in _BLOCK_KEEPING:
            acts = [
                t for t in node.input if t and t not in g.static and len(g.shapes.get(t) or ()) == 4
            ]
            whole = node.op_type not in _WHOLE_BLOCKS or all(
                g.shapes[t][1] % block == 0 for t in acts
            )
            result = (
                bool(acts) and whole and all(_is_blocked(g, t, memo, block=block) for t in acts)
            )
    memo[tensor] = result
    return result


def _keeps_block(g: Any, reader: Any, memo: dict[str, bool], *, block: int) -> bool:
    """Does ``reader`` take a blocked input as it is (no ReorderOutput before it)?"""
    if reader.op_type == "Conv":
        return blocked_conv(g, reader, block=block) and not _reads_nchw(g, reader, block=block)
    if reader.op_type not in _BLOCK_KEEPING | _FUSED_ONLY:
        return False
    return _is_blocked(g, reader.output[0], memo, block=block)


def reorders(g: Any, *, block: int = BLOCK_CHANNELS) -> list[tuple[float, str, str]]:
    """``(key, tensor, kind)`` of every reorder of a float graph ``g`` with channel blocks of
    ``block`` (16: AVX-512; 8: AVX2): a ReorderInput just before the conv that needs it, a
    ReorderOutput just after the operator whose blocked output leaves the blocked layout
    (keys between node indices, graph order)."""
    memo: dict[str, bool] = {}
    out: list[tuple[float, str, str]] = []
    reordered: set[str] = set()  # one ReorderInput per tensor, shared by its convs
    for index, node in enumerate(g.nodes):
        conv = node.op_type == "Conv" and blocked_conv(g, node, block=block)
        if conv and not _reads_nchw(g, node, block=block):
            x = node.input[0]
            blocked = _is_blocked(g, x, memo, block=block)
            if x not in g.static and x not in reordered and not blocked:
                reordered.add(x)
                out.append((index - 0.45, x, REORDER_INPUT))
        for y in node.output[:1]:
            if not y or not _is_blocked(g, y, memo, block=block):
                continue
            readers = g.consumers.get(y, ())
            if y in g.outputs or any(not _keeps_block(g, r, memo, block=block) for r in readers):
                out.append((index + 0.45, y, REORDER_OUTPUT))
    return out
