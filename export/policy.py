"""The decision policy as an ONNX graph (the ``credit_policy`` model), generated from JSON.

Input ``probabilities`` [n, C] (float32): column 0 the network's probability of default, columns
1..C-1 the same applicant with one feature at the reference (``credit_model_reasons``, C = 24), or
C = 1 (``credit_model``: no reason codes). Outputs, as the ``credit_scoring`` ensemble returns
them: ``probability`` [n, 1], ``pd`` [n, 1] (Platt, computed in float64), ``score`` [n, 1] int32,
``decision`` [n, 1], ``reason_codes`` [n, 4] and ``policy`` [n, 1] (strings).

The formulas (preprocess_ensemble/decisioning.py documents them; tests/oracle.py re-implements
them in numpy as the test oracle):

- ``logit(p) = ln(p) - ln(1 - p)`` with p clipped to [1e-7, 1 - 1e-7];
- ``pd = 1 / (1 + exp(-(a * logit(p) + b)))``;
- ``score = floor(offset - factor * logit(pd) + 0.5)``, factor = pdo / ln 2;
- ``decision``: approve from ``approve_from``, decline below ``decline_below``, else refer;
- ``reason_codes``: contribution_j = pd - pd_j; the four largest positive, ties to the lower
  feature index (ONNX TopK), named by the catalogue's codes, "" for the rest. A feature the
  network does not see has contribution 0 exactly and no code: it can never be a reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.config import ONNX_OPSET
from preprocess_ensemble.decisioning import PROBABILITY_EPS, Calibration, Policy

POLICY_INPUT = "probabilities"
OUTPUTS = ("probability", "pd", "score", "decision", "reason_codes", "policy")


def _logit(nodes: list, source: str, name: str) -> str:
    """Append nodes computing ln(p) - ln(1 - p) of clipped ``source`` (float64)."""
    nodes += [
        helper.make_node("Clip", [source, "eps", "one_minus_eps"], [f"{name}_clipped"]),
        helper.make_node("Log", [f"{name}_clipped"], [f"{name}_log_p"]),
        helper.make_node("Sub", ["one", f"{name}_clipped"], [f"{name}_q"]),
        helper.make_node("Log", [f"{name}_q"], [f"{name}_log_q"]),
        helper.make_node("Sub", [f"{name}_log_p", f"{name}_log_q"], [name]),
    ]
    return name


def policy_graph(
    policy: Policy, calibration: Calibration, codes: tuple[str, ...], count: int
) -> onnx.ModelProto:
    """The ``credit_policy`` graph for one policy version, calibration and code catalogue.

    ``codes``: one per contract feature, "" for a feature that may never be a reason.
    """
    table = np.array([*codes, *[""] * count], dtype=object)  # pads for C - 1 < count
    constants = {
        "eps": np.array(PROBABILITY_EPS, dtype=np.float64),
        "one_minus_eps": np.array(1.0 - PROBABILITY_EPS, dtype=np.float64),
        "one": np.array(1.0, dtype=np.float64),
        "half": np.array(0.5, dtype=np.float64),
        "zero": np.array(0.0, dtype=np.float64),
        "a": np.array(calibration.a, dtype=np.float64),
        "b": np.array(calibration.b, dtype=np.float64),
        "offset": np.array(policy.offset, dtype=np.float64),
        "factor": np.array(policy.factor, dtype=np.float64),
        "approve_from": np.array(policy.approve_from, dtype=np.int32),
        "decline_below": np.array(policy.decline_below, dtype=np.int32),
        "pad": np.zeros((1, count), dtype=np.float64),
        "k": np.array([count], dtype=np.int64),
        "first": np.array([0], dtype=np.int64),
        "second": np.array([1], dtype=np.int64),
        "end": np.array([np.iinfo(np.int64).max], dtype=np.int64),
        "axis": np.array([1], dtype=np.int64),
        "code_table": table,
        "no_code": np.array([""], dtype=object),
        "labels": np.array(["approve", "refer", "decline"], dtype=object),
        "policy_label": np.array([policy.label], dtype=object),
    }
    init = [numpy_helper.from_array(v, k) for k, v in constants.items()]
    nodes = [
        helper.make_node("Slice", [POLICY_INPUT, "first", "second", "axis"], ["probability"]),
        helper.make_node("Cast", [POLICY_INPUT], ["p64"], to=TensorProto.DOUBLE),
    ]
    z = _logit(nodes, "p64", "logit_p")
    nodes += [
        helper.make_node("Mul", ["a", z], ["a_z"]),
        helper.make_node("Add", ["a_z", "b"], ["calibrated_logit"]),
        helper.make_node("Neg", ["calibrated_logit"], ["minus_logit"]),
        helper.make_node("Exp", ["minus_logit"], ["exp_minus"]),
        helper.make_node("Add", ["one", "exp_minus"], ["denominator"]),
        helper.make_node("Div", ["one", "denominator"], ["pd_all"]),  # [n, C] float64
        helper.make_node("Slice", ["pd_all", "first", "second", "axis"], ["pd64"]),
        helper.make_node("Cast", ["pd64"], ["pd"], to=TensorProto.FLOAT),
    ]
    pd_logit = _logit(nodes, "pd64", "logit_pd")
    nodes += [
        helper.make_node("Mul", ["factor", pd_logit], ["factor_logit"]),
        helper.make_node("Sub", ["offset", "factor_logit"], ["raw_points"]),
        helper.make_node("Add", ["raw_points", "half"], ["raw_points_half"]),
        helper.make_node("Floor", ["raw_points_half"], ["points"]),
        helper.make_node("Cast", ["points"], ["score"], to=TensorProto.INT32),
        # decision: index 0 approve, 2 decline, 1 refer
        helper.make_node("GreaterOrEqual", ["score", "approve_from"], ["is_approve"]),
        helper.make_node("Less", ["score", "decline_below"], ["is_decline"]),
        helper.make_node("Cast", ["is_approve"], ["approve_i"], to=TensorProto.INT64),
        helper.make_node("Cast", ["is_decline"], ["decline_i"], to=TensorProto.INT64),
        helper.make_node("Sub", ["decline_i", "approve_i"], ["decline_minus_approve"]),
        helper.make_node("Add", ["decline_minus_approve", "second"], ["decision_index"]),
        helper.make_node("Gather", ["labels", "decision_index"], ["decision"], axis=0),
        # reason codes: contributions pd - pd_j, padded so that TopK always has `count` columns
        helper.make_node("Slice", ["pd_all", "second", "end", "axis"], ["pd_substituted"]),
        helper.make_node("Sub", ["pd64", "pd_substituted"], ["contributions"]),
        helper.make_node("Mul", ["pd64", "zero"], ["zero_column"]),
        helper.make_node("Add", ["zero_column", "pad"], ["zero_pad"]),
        helper.make_node("Concat", ["contributions", "zero_pad"], ["padded"], axis=1),
        helper.make_node("TopK", ["padded", "k"], ["top_values", "top_index"], axis=1),
        helper.make_node("Greater", ["top_values", "zero"], ["is_reason"]),
        helper.make_node("Gather", ["code_table", "top_index"], ["top_codes"], axis=0),
        helper.make_node("Where", ["is_reason", "top_codes", "no_code"], ["reason_codes"]),
        # the policy's id@version on every row
        helper.make_node("Cast", ["zero_column"], ["zero_index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["policy_label", "zero_index"], ["policy"], axis=0),
    ]
    outputs = [
        helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch", 1]),
        helper.make_tensor_value_info("pd", TensorProto.FLOAT, ["batch", 1]),
        helper.make_tensor_value_info("score", TensorProto.INT32, ["batch", 1]),
        helper.make_tensor_value_info("decision", TensorProto.STRING, ["batch", 1]),
        helper.make_tensor_value_info("reason_codes", TensorProto.STRING, ["batch", count]),
        helper.make_tensor_value_info("policy", TensorProto.STRING, ["batch", 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "credit_policy",
        [helper.make_tensor_value_info(POLICY_INPUT, TensorProto.FLOAT, ["batch", "columns"])],
        outputs,
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    model.ir_version = 8  # ONNX Runtime 1.19.2 (NGC 24.10) reads IR <= 10
    model.doc_string = (
        f"decision policy {policy.label}, Platt a={calibration.a!r} b={calibration.b!r}"
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def write_policy_graph(
    policy: Policy, calibration: Calibration, codes: tuple[str, ...], count: int, path: Path
) -> Path:
    """Save :func:`policy_graph` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(policy_graph(policy, calibration, codes, count), str(path))
    return path
