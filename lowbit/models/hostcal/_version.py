"""The host calibration method's version (:data:`CALIBRATION_VERSION`) and its history: a
profile calibrated by an older method is recalibrated
(:func:`lowbit.models.hostcal.calibration.load_or_calibrate`)."""

__all__ = ["CALIBRATION_VERSION"]

#: the calibration method's version, in each profile's sidecar: a profile calibrated by an
#: older method is recalibrated by :func:`load_or_calibrate` (2: per-pixel/per-image conv,
#: requantization and channel-block pool costs, Gauss-Newton fit; 3: single convs measured
#: in a network's context, wide convs; 4: the export pads conv channels; 5: depthwise convs'
#: own kernel, INT8 and FP32; data movement: quantize, dequantize, transpose, concat, split;
#: warm caches; 6: the per-node profiler's own time taken off the single-conv sweep; 7: the
#: integer element-wise kernels QLinearAdd and QLinearMul; the generic conv path's int32
#: output pass and its im2col copies, grouped convs in the sweep; 8: the GEMM library's own
#: INT8 rate (AMX where the CPU has it); weights that overflow L2 streamed from the largest
#: cache at a fitted rate, not hidden behind compute; 9: products of two activations
#: (attention) at their own rate and cost per head; 10: a transpose that moves the innermost
#: axis, ONNX Runtime's element-wise path, timed on its own; 11: the pass a float conv makes
#: for a fused ReLU6; QLinearConcat, which requantizes its inputs; 12: every shape measured
#: in passes, the least disturbed kept, and the profiler's own time fitted; 13: the clock the
#: core runs at, measured, not the OS's nominal figure; 14: the layout change back to NCHW
#: priced apart; a linear layer's or matmul's own requantization pass per output; 15: the
#: float GEMM library's own rate; a larger N blocking only when it fits 15 % better; 16:
#: the float blocked layout's reorders (ONNX Runtime's NCHWc on x86); 17: the GEMM library's
#: cost per row of its first operand; 18: weights stay in a cache level they fill up to 90 %
#: of, not half; 19: LayerNorm's and softmax's cost per row, a transpose's per contiguous
#: run; a residual Add's cost; the generic conv path at the GEMM library's cost per row; the
#: clock the median of readings between the phases; 20: activations that
#: overflow L2 move at the rate of a copy twice its size; 21: every timing at one reference
#: clock, by the clock read beside it; 22: the ReLU6 pass timed twice, the lesser kept; 23:
#: the Run call without the border operators the importer charges apart; 24: the median,
#: not the least, of the spot costs' rounds and of the copies; the float reorders on in-L2
#: shapes; warm weights at their home level's fitted rate even below DRAM's copy rate; 25:
#: single Gemms and MatMuls of unequal sides, a Gemm's own bias and column costs; 26: the
#: single GEMMs in rounds spread over the calibration, the elementwise operators timed twice,
#: the data movement three times; 27: the data movement's sessions (the ReLU6 pass's pairs
#: of chains) of all three rounds pooled, their median kept, the head-split transpose in
#: nine sessions a round; 28: the layout change back to NCHW timed at 32 channels as well as
#: at 256, hwsim pricing the channels between; 29: the single GEMMs' rounds merged by their
#: middle half's mean, a Gemm's own costs held by a weak prior, the elementwise operators
#: timed three times, the middle round kept; 30: where u8·s8 kernels saturate (AVX2 without
#: VNNI), convs with uint8 weights timed and their GEMM's rate fitted; the quick sweep at
#: three (batch, map) pairs, its profiler's cost fitted); 31: the copy bandwidth's buffers at
#: fixed page offsets, and a timing taken while another thread shared the core (a vector
#: probe read beside the clock) not kept where a pass caught it quiet, and measured again;
#: 32: the depthwise kernels' channel block 16 on x86 (ONNX Runtime's, AVX2 and AVX-512
#: alike; it was the 32-bit lanes, 8 with AVX2, so 24-200 channels ran at the aligned rate),
#: the FP32 depthwise kernel's cost per output row of a channel and its unaligned rate; 33:
#: the direct INT8 conv kernel's output channels in whole blocks of the ISA's (16 on x86),
#: the operator dispatch timed at three points, the GEMM chains that stream their weights
#: from L3 timed again at the end; 34: FP32 depthwise convs whose channels are not a multiple
#: of 4 priced as the grouped conv ONNX Runtime runs them with (per output and per channel),
#: timed on three such chains); 35: the share of the L3 that keeps this core's weights,
#: timed on float GEMM chains of growing footprint (a shared L3 keeps far less than its
#: size), and the float conv rate fitted on convs of at least four channel blocks (ONNX
#: Runtime's NCHWc kernel computes up to four a pass; narrower ones pulled it slow)
CALIBRATION_VERSION = 35
