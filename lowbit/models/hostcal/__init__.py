"""Host-CPU calibration (torch-free): measure this CPU through ONNX Runtime and fit an
hwsim profile to it.

- :mod:`~lowbit.models.hostcal.calibration` — ``calibrate`` / ``write`` /
  ``load_or_calibrate``: the measurements, the profile and its JSON sidecar;
- :mod:`~lowbit.models.hostcal.bench` — chains of identical layers, dispatch and per-element
  costs, copy bandwidth, the timing harness;
- :mod:`~lowbit.models.hostcal.conv` — single INT8 convs and pools by ONNX Runtime's
  per-node profiler;
- ``_fit`` — the least-squares fit; ``_toml`` — the profile file;
- :mod:`~lowbit.models.hostcal.measure` — a deployment config's real INT8/FP32 latency and
  accuracy beside its simulated latency (what ``lowbit validate`` times; it rebuilds the
  model with torch, imported when it runs).
"""
