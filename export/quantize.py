"""INT8 quantization with onnxruntime.quantization: static (calibrated) by default.

Static INT8 fixes every activation scale at calibration time, so a row's score never depends
on its batch-mates. ``dynamic`` computes activation scales per batch and is kept only so the
validation gate can show why it is rejected (the batch-invariance check fails).

Weights are 7-bit (``reduce_range``): on x86-64 CPUs without AVX-512 VNNI, ONNX Runtime's U8S8
kernels add adjacent products a0*w0 + a1*w1 in a saturating int16 (VPMADDUBSW). With UINT8
activations up to 255 that sum stays exact only while |w0| + |w1| <= 128 for every adjacent pair
along the reduction axis; :func:`max_adjacent_weight_pair` measures it on a published file, so the
same file scores the same on every node type.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.config import ONNX_INPUT

MODES = ("static-qdq", "static-qoperator", "dynamic")
# |w0| + |w1| of adjacent INT8 weights may not pass this: 255 * 128 = 32640 <= 32767 (int16).
MAX_ADJACENT_WEIGHT_PAIR = 128


class _Rows(CalibrationDataReader):
    """Feeds calibration rows in fixed chunks."""

    def __init__(self, rows: np.ndarray, chunk: int = 256) -> None:
        self._chunks = iter([{ONNX_INPUT: rows[i : i + chunk]} for i in range(0, len(rows), chunk)])

    def get_next(self) -> dict | None:
        return next(self._chunks, None)


def quantize(
    fp32_path: str | Path,
    int8_path: str | Path,
    calibration_rows: np.ndarray,
    mode: str,
    reduce_range: bool = True,
) -> Path:
    """Write an INT8 model. ``calibration_rows`` are standardized float32 training rows.

    ``reduce_range=False`` (8-bit weights) exists only to show the gate rejecting it.
    """
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose one of {MODES}")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = int8_path.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        if mode == "dynamic":
            quantize_dynamic(
                str(prepared),
                str(int8_path),
                weight_type=QuantType.QInt8,
                reduce_range=reduce_range,
            )
        else:
            quantize_static(
                str(prepared),
                str(int8_path),
                _Rows(np.ascontiguousarray(calibration_rows, dtype=np.float32)),
                quant_format=QuantFormat.QDQ if mode == "static-qdq" else QuantFormat.QOperator,
                per_channel=True,
                reduce_range=reduce_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    finally:
        prepared.unlink(missing_ok=True)
    return int8_path


# Integer matrix products: (input index of the weight, attribute saying it is transposed). The
# weight's zero point is always two inputs later. QDQ files multiply float products of
# DequantizeLinear(INT8 weight); ONNX Runtime fuses them into the same integer kernels.
_INTEGER_PRODUCTS = {
    "QGemm": (3, "transB"),
    "QLinearMatMul": (3, None),
    "MatMulInteger": (1, None),
    "Gemm": (1, "transB"),
    "MatMul": (1, None),
}


def max_adjacent_weight_pair(path: str | Path) -> int:
    """Largest |w0 - z| + |w1 - z| over adjacent INT8 weights along each reduction axis.

    Covers the INT8 weight of every QGemm, QLinearMatMul and MatMulInteger node, and of every
    Gemm or MatMul fed by DequantizeLinear (QDQ). An odd reduction length pairs the last weight
    with zero, as the kernels pad it.
    """
    model = onnx.load(str(path))
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    dequantized = {
        n.output[0]: n.input for n in model.graph.node if n.op_type == "DequantizeLinear"
    }
    worst = 0
    for node in model.graph.node:
        if node.op_type not in _INTEGER_PRODUCTS:
            continue
        index, transposed_attr = _INTEGER_PRODUCTS[node.op_type]
        inputs = list(node.input)
        if node.op_type in ("Gemm", "MatMul"):
            if inputs[index] not in dequantized:
                continue  # a float product
            inputs, index = list(dequantized[inputs[index]]), 0  # (weight, scale, zero point)
        weights = initializers.get(inputs[index])
        if weights is None or weights.dtype != np.int8:
            continue
        zero_name = inputs[index + 2] if len(inputs) > index + 2 else ""
        zero = initializers.get(zero_name, np.zeros(1, dtype=np.int8))
        transposed = transposed_attr and any(
            a.name == transposed_attr and a.i for a in node.attribute
        )
        # Reduction runs along K: B is [K, N], or [N, K] when transposed; zero points are per N.
        w = weights.astype(np.int32).T if transposed else weights.astype(np.int32)
        w = np.abs(w - zero.astype(np.int32).reshape(1, -1))
        if len(w) % 2:
            w = np.vstack([w, np.zeros((1, w.shape[1]), dtype=w.dtype)])
        worst = max(worst, int((w[0::2] + w[1::2]).max()))
    return worst
