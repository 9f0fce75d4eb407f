"""A compressed model as files other tools run: INT8 ONNX for ONNX Runtime, TFLite (and
Vela's Ethos-U build), QONNX, and firmware configs.

- :mod:`~lowbit.models.export.deploy` — ``export_plan``: the config's model built for real,
  written as ``model.int8.onnx`` / ``model.fp32.onnx`` / ``deploy.json``;
- :mod:`~lowbit.models.export.plain` — ``deploy_copy``: the compressed model as a plain float
  network (BatchNorm folded) plus the grids its layers run on;
- :mod:`~lowbit.models.export.onnx_quant` — the QDQ graph with the search's exact grids
  (``_qdq_grids``: what it is given; ``_onnx_weights``: weights and biases as codes);
  ``_onnx_layout`` / ``_onnx_pad`` — bit-identical passes that fit ONNX Runtime's kernels
  (``_onnx_edit``: the graph-editing helper they share); ``_codecheck`` — fake-quant vs INT8
  code agreement and the export's check;
- :mod:`~lowbit.models.export.formats` — the export formats (``lowbit export --format``) and
  what consumes each; the edge formats, built from the same integer model and checked in
  their own runtime (the optional ``edge`` extra, ``_extras``):
  :mod:`~lowbit.models.export.tflite` (fully-integer TFLite written directly,
  ``_tflite_ir`` / ``_tflite_graph`` / ``_tflite_layers``: the QDQ graph as TFLite operators,
  ``_tflite_write``: the flatbuffer; checked in LiteRT), :mod:`~lowbit.models.export.vela`
  (Arm Vela's Ethos-U build and estimate beside lowbit's simulation),
  :mod:`~lowbit.models.export.qonnx` (QONNX ``Quant`` nodes; checked with qonnx's executor);
- :mod:`~lowbit.models.export.firmware` — the firmware config (``firmware.json``, with the
  exported files and their hashes);
- :mod:`~lowbit.models.export.ort` — ONNX Runtime sessions and kernel census, shared with
  host calibration (torch-free).
"""
