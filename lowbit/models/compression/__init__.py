"""Compression transforms on a torch model: the per-layer plan and what carries it out.

- :mod:`~lowbit.models.compression.plan` — the versioned, JSON round-trippable per-layer plan
  and how it resolves per layer; :mod:`~lowbit.models.compression.spec` — one layer's
  settings (bits, keep ratio, N:M / unstructured sparsity, rank) and their checks;
- :mod:`~lowbit.models.compression.lowrank`, :mod:`~lowbit.models.compression.prune`,
  :mod:`~lowbit.models.compression.quant` — the three transforms (applied in that order);
- :mod:`~lowbit.models.compression.compress` — a plan applied to a model, activations
  calibrated (``compress``); :mod:`~lowbit.models.compression.qat` — a few steps of
  quantization-aware finetuning;
- :mod:`~lowbit.models.compression.quant_residual` — residual adds and global average pools
  fake-quantized as ONNX Runtime's QLinearAdd / QLinearGlobalAveragePool compute them;
  :mod:`~lowbit.models.compression.quant_matmul` — attention products (two activations);
- private helpers: the integer grids (``_grid``), BatchNorm folding (``_bn_fold``), the
  int32 bias the INT8 kernels add and their requantization (``_intbias``), the integer
  arithmetic of adds and pools (``_intadd``) and where quantized values flow (``_dataflow``).
"""
