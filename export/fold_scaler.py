"""Fold the standardizer into the ONNX graph: a comparison variant, not a second product.

:func:`fold_scaler` prepends the published ``scaler.json`` (signed log1p on amounts, then
``(x - mean) / scale``) as ONNX ops in front of the published INT8 graph, so one model takes raw
applicant rows ``features [n, 23]`` and returns ``probability [n, 1]``. The serving benchmark
(``make bench-serving``) serves it as a single Triton model to show what the ensemble's python
step costs. It does **not** validate input (no contract check): NaN, codes outside the contract
and negative amounts are scored silently, which is why the product is the ensemble.

The arithmetic runs in float64 like ``Standardizer.transform`` and is cast to float32 at the
end, so the folded model returns what the ensemble returns (checked on the holdout in tests).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.config import ONNX_INPUT, PUBLISHED_ONNX, PUBLISHED_SCALER
from preprocess_ensemble.features import Standardizer

FOLDED_INPUT = "features"  # the ensemble's input name: the same request works on both


def fold_scaler(
    onnx_path: str | Path = PUBLISHED_ONNX,
    scaler_path: str | Path = PUBLISHED_SCALER,
    out_path: str | Path | None = None,
) -> onnx.ModelProto:
    """Return (and optionally write) the model with the standardizer in front of it.

    Args:
        onnx_path: The network whose input ``input`` takes standardized rows.
        scaler_path: ``scaler.json`` written by :meth:`Standardizer.to_json`.
        out_path: Where to save the folded model; nothing is written when None.
    """
    model = onnx.load(str(onnx_path))
    scaler = Standardizer.from_json(scaler_path)
    graph = model.graph
    (old_input,) = [t for t in graph.input if t.name == ONNX_INPUT]
    n_features = len(scaler.names)
    inner = "folded_standardized"
    for node in graph.node:  # rewire the network to read the standardized tensor
        node.input[:] = [inner if name == ONNX_INPUT else name for name in node.input]

    log_mask = np.array([t == "signed_log1p" for t in scaler.transforms], dtype=bool)
    constants = {
        "folded_one": np.array(1.0, dtype=np.float64),
        "folded_log_mask": log_mask,
        "folded_mean": scaler.mean.astype(np.float64),
        "folded_scale": scaler.scale.astype(np.float64),
    }
    initializers = [numpy_helper.from_array(value, name) for name, value in constants.items()]
    nodes = [
        helper.make_node("Cast", [FOLDED_INPUT], ["folded_x64"], to=TensorProto.DOUBLE),
        helper.make_node("Abs", ["folded_x64"], ["folded_abs"]),
        helper.make_node("Add", ["folded_abs", "folded_one"], ["folded_abs1"]),
        helper.make_node("Log", ["folded_abs1"], ["folded_log"]),
        helper.make_node("Sign", ["folded_x64"], ["folded_sign"]),
        helper.make_node("Mul", ["folded_sign", "folded_log"], ["folded_slog"]),
        helper.make_node(
            "Where", ["folded_log_mask", "folded_slog", "folded_x64"], ["folded_transformed"]
        ),
        helper.make_node("Sub", ["folded_transformed", "folded_mean"], ["folded_centered"]),
        helper.make_node("Div", ["folded_centered", "folded_scale"], ["folded_scaled"]),
        helper.make_node("Cast", ["folded_scaled"], [inner], to=TensorProto.FLOAT),
    ]
    new_input = helper.make_tensor_value_info(
        FOLDED_INPUT, TensorProto.FLOAT, ["batch", n_features]
    )
    graph.input.remove(old_input)
    graph.input.insert(0, new_input)
    graph.initializer.extend(initializers)
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    onnx.checker.check_model(model)
    if out_path is not None:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(out_path))
    return model
