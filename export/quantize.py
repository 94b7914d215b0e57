"""INT8 quantization with onnxruntime.quantization: static (calibrated) by default.

Static INT8 fixes every activation scale at calibration time, so a row's score never depends
on its batch-mates. ``dynamic`` computes activation scales per batch and is kept only so the
validation gate can show why it is rejected (the batch-invariance check fails).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


class _Rows(CalibrationDataReader):
    """Feeds calibration rows in fixed chunks."""

    def __init__(self, rows: np.ndarray, chunk: int = 256) -> None:
        self._chunks = iter([{ONNX_INPUT: rows[i : i + chunk]} for i in range(0, len(rows), chunk)])

    def get_next(self) -> dict | None:
        return next(self._chunks, None)


def quantize(
    fp32_path: str | Path, int8_path: str | Path, calibration_rows: np.ndarray, mode: str
) -> Path:
    """Write an INT8 model. ``calibration_rows`` are standardized float32 training rows."""
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose one of {MODES}")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = int8_path.with_suffix(".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(int8_path), weight_type=QuantType.QInt8)
        else:
            quantize_static(
                str(prepared),
                str(int8_path),
                _Rows(np.ascontiguousarray(calibration_rows, dtype=np.float32)),
                quant_format=QuantFormat.QDQ if mode == "static-qdq" else QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
    finally:
        prepared.unlink(missing_ok=True)
    return int8_path
