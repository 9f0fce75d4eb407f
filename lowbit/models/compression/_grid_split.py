"""Tensors a compressed model quantizes onto more than one grid, found with ``torch.fx``.

Every quantized input is calibrated by its reader: a compute layer at its own activation
settings (``a_bits``, ``symmetric``, ``calibration``), an integer add or global pool
(:func:`~lowbit.models.compression._dataflow.quant_sites`) at the settings it took from its
readers. Readers of one tensor with the same settings hold the same grid (the same values
calibrated the same way), so the deployed graph has one QuantizeLinear per distinct setting.
A tensor with two is what mixed precision makes at a fork: a residual block's output read at
4 bits by the next block's first conv and at 8 by its shortcut.

ONNX Runtime cannot keep such a tensor integer (its QDQ fusion takes one quantizer per
tensor): a conv that writes it runs as a float conv, its input and weights dequantized at
every run, and quantizes its output once per grid; an integer add whose ReLU output is
split is followed by a DequantizeLinear, a float ReLU and one QuantizeLinear per grid.
:func:`split_outputs` names the layers that write such tensors, so the search's workload
(:mod:`lowbit.models.bridge`) charges what the deployed graph runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from lowbit.models.compression._dataflow import _Flow, _spec_of, quant_sites
from lowbit.models.compression.plan import LayerSpec
from lowbit.models.graph import COMPUTE_LAYERS

__all__ = ["SplitOutput", "split_outputs"]

#: writers whose split output runs a float conv (hwsim's importer's rule, checked against
#: ONNX Runtime's optimized graphs for convs; a Gemm's is not checked and not charged)
_CONVS = (nn.Conv1d, nn.Conv2d)


@dataclass(frozen=True, slots=True)
class SplitOutput:
    """A layer whose output is quantized onto ``grids`` (>= 2) grids.

    Attributes:
        name: module name of the writer (a compute layer, or an integer add).
        kind: ``conv`` (the writer is a compute layer) or ``add`` (an integer add; the split
            tensor is its ReLU's output).
        grids: distinct grids its readers quantize it to.
        conv_grids: those grids a conv reads (each goes back channels-last).
    """

    name: str
    kind: str
    grids: int
    conv_grids: int


def split_outputs(model: nn.Module, specs: dict[str, LayerSpec]) -> dict[str, SplitOutput]:
    """Layers of ``model`` whose output readers quantize it onto more than one grid, given
    the effective plan settings ``specs``; empty if the model cannot be traced."""
    flow = _Flow(model)
    if flow.graph is None:
        return {}
    sites = quant_sites(model, specs)

    def grids_read(node: fx.Node) -> tuple[set[tuple], set[tuple]]:
        """(every grid, the grids convs read) of ``node``'s output, through
        transparent operations and BatchNorm (folded into its conv when deployed)."""
        every: set[tuple] = set()
        by_compute: set[tuple] = set()
        todo = [node]
        while todo:
            current = todo.pop()
            for user in current.users:
                module = flow.module(user)
                folded = isinstance(module, nn.modules.batchnorm._BatchNorm)  # into the conv
                if flow.transparent(user, current) or (folded and user.args[0] is current):
                    todo.append(user)
                elif isinstance(module, COMPUTE_LAYERS) and user.args[0] is current:
                    spec = _spec_of(user.target, specs)
                    if spec is not None and spec.a_bits is not None:
                        grid = (spec.a_bits, spec.symmetric, spec.calibration)
                        every.add(grid)
                        if isinstance(module, _CONVS):
                            by_compute.add(grid)
                elif (site := sites.get(user.target)) is not None:
                    every.add((site.a_bits, site.symmetric, site.calibration))
        return every, by_compute

    out: dict[str, SplitOutput] = {}
    for node in flow.graph.nodes:
        module = flow.module(node)
        if isinstance(module, _CONVS) and flow.calls[node.target] == 1:
            spec = _spec_of(node.target, specs)
            if spec is None or spec.a_bits is None:
                continue  # a float layer writes a float tensor: each reader quantizes it
            kind = "conv"
        elif (site := sites.get(node.target)) is not None and site.kind == "add" and site.relu:
            kind = "add"
        else:
            continue
        every, by_compute = grids_read(node)
        if len(every) > 1:
            out[node.target] = SplitOutput(node.target, kind, len(every), len(by_compute))
    return out
