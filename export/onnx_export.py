"""Export the trained PyTorch network to ONNX (opset 17, dynamic batch axis)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from export.config import ONNX_INPUT, ONNX_OPSET, ONNX_OUTPUT


def export_onnx(model: torch.nn.Module, n_features: int, path: str | Path) -> Path:
    """Write ``model`` as ONNX: input ``input`` [batch, n], output ``probability`` [batch, 1]."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    example = torch.zeros(2, n_features, dtype=torch.float32)
    torch.onnx.export(
        model,
        (example,),
        str(path),
        opset_version=ONNX_OPSET,
        input_names=[ONNX_INPUT],
        output_names=[ONNX_OUTPUT],
        dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}},
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def torch_probabilities(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """PyTorch eager probabilities [n] for standardized rows."""
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()[:, 0]
