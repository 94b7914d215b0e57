"""The network's input encoding, as an ONNX graph: raw contract features in, encoded rows out.

One implementation: training encodes its rows by running this graph in ONNX Runtime, and the
published models start with the same graph, so Triton, the gate and every in-process scorer
see identical inputs. Per feature (``columns_for``):

- amounts: ``signed_log1p`` = sign(x) * ln(1 + |x|);
- repayment status PAY_x: ``delay`` = max(x, 0) months (the monotone part: 1..9 are an order)
  and two indicators ``status_-2`` (no consumption) and ``status_-1`` (paid duly); -2, -1 and 0
  are status codes, not an order;
- other features: ``identity``;
- features in ``TrainConfig.exclude_from_model``: no column at all.

Every column is then standardized with the training split's mean and scale, so the average
training applicant encodes to the zero vector: the reference of the reason codes
(:func:`reason_masks`, Regulation B comment 9(b)(2)-5, "average of all applicants").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from export.config import ONNX_INPUT, ONNX_OPSET, TrainConfig
from preprocess_ensemble.features import FeatureContract

RAW_INPUT = "features"  # raw contract rows [n, 23], the ensemble's input name
# Transforms in the order of the graph's concatenation (each over all raw columns).
TRANSFORMS = ("identity", "signed_log1p", "delay", "status_-2", "status_-1")
AMOUNT_KINDS = ("amount", "signed_amount")
STATUS_PREFIX = "PAY_"  # PAY_0, PAY_2 .. PAY_6: repayment status codes
MONOTONE_TRANSFORMS = ("delay",)  # the PD may not fall when one of these grows


def columns_for(contract: FeatureContract, config: TrainConfig) -> list[tuple[str, int]]:
    """The encoded columns, as (transform, raw feature index), in the network's input order."""
    unknown = set(config.exclude_from_model) - set(contract.names)
    if unknown:
        raise ValueError(f"exclude_from_model names unknown features {sorted(unknown)}")
    columns = []
    for j, (name, kind) in enumerate(zip(contract.names, contract.kinds, strict=True)):
        if name in config.exclude_from_model:
            continue
        if kind in AMOUNT_KINDS:
            columns.append((config.amount_transform, j))
        elif name.startswith(STATUS_PREFIX):
            columns += [("delay", j), ("status_-2", j), ("status_-1", j)]
        else:
            columns.append(("identity", j))
    return columns


@dataclass(frozen=True)
class Encoding:
    """Encoded columns and their standardization (mean, scale), fitted on the training split."""

    feature_names: tuple[str, ...]
    columns: tuple[tuple[str, int], ...]
    mean: np.ndarray  # float64 [n_columns]
    scale: np.ndarray  # float64 [n_columns]

    @property
    def width(self) -> int:
        """Number of encoded columns (the network's input width)."""
        return len(self.columns)

    def columns_of(self, feature: int) -> list[int]:
        """Encoded column indices of one raw feature (empty when the model does not see it)."""
        return [k for k, (_, j) in enumerate(self.columns) if j == feature]

    @property
    def monotone_columns(self) -> list[int]:
        """Encoded columns the PD must never decrease in."""
        return [k for k, (t, _) in enumerate(self.columns) if t in MONOTONE_TRANSFORMS]

    @property
    def seen_features(self) -> list[str]:
        """Raw features the network sees, in contract order."""
        return [self.feature_names[j] for j in sorted({j for _, j in self.columns})]

    def to_json(self, path: str | Path) -> Path:
        """Write the encoding's parameters (JSON, for the model card and reviewers)."""
        payload = {
            "description": __doc__.split("\n\n")[0],
            "columns": [
                {"feature": self.feature_names[j], "transform": t, "mean": m, "scale": s}
                for (t, j), m, s in zip(self.columns, self.mean, self.scale, strict=True)
            ],
        }
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        return Path(path)

    @classmethod
    def from_json(cls, path: str | Path, feature_names: tuple[str, ...]) -> Encoding:
        """Read what :meth:`to_json` wrote (``feature_names``: the contract's, in order)."""
        columns = json.loads(Path(path).read_text())["columns"]
        return cls(
            tuple(feature_names),
            tuple((c["transform"], feature_names.index(c["feature"])) for c in columns),
            np.array([c["mean"] for c in columns], dtype=np.float64),
            np.array([c["scale"] for c in columns], dtype=np.float64),
        )


def fit_encoding(
    contract: FeatureContract, config: TrainConfig, train_rows: np.ndarray
) -> Encoding:
    """Mean and scale of every encoded column over the training rows (computed in float64)."""
    columns = tuple(columns_for(contract, config))
    ones = np.ones(len(columns))
    unscaled = Encoding(contract.names, columns, np.zeros(len(columns)), ones)
    z = encode(unscaled, train_rows).astype(np.float64)
    scale = z.std(axis=0)
    scale[scale == 0] = 1.0
    return Encoding(contract.names, columns, z.mean(axis=0), scale)


def reason_masks(encoding: Encoding) -> np.ndarray:
    """Substitution masks [1 + n_features, width] (float32).

    Row 0 keeps the applicant; row 1 + j sets feature j's encoded columns to the training
    average (0 after standardization).
    """
    masks = np.ones((1 + len(encoding.feature_names), encoding.width), dtype=np.float32)
    for j in range(len(encoding.feature_names)):
        masks[1 + j, encoding.columns_of(j)] = 0.0
    return masks


def encoder_graph(encoding: Encoding, output: str = ONNX_INPUT, substitute: bool = False):
    """ONNX model: ``features`` [n, 23] -> encoded rows ``output`` [n, width] (float32).

    ``substitute``: the output is [n * (1 + 23), width] instead, each applicant followed by its
    23 reason-code substitutions (:func:`reason_masks`).
    """
    d = len(encoding.feature_names)
    index = [TRANSFORMS.index(t) * d + j for t, j in encoding.columns]
    init = [
        numpy_helper.from_array(np.array(v, dtype=dtype), name)
        for name, v, dtype in (
            ("one", 1.0, np.float32),
            ("zero", 0.0, np.float32),
            ("minus_one", -1.0, np.float32),
            ("minus_two", -2.0, np.float32),
            ("columns", index, np.int64),
            ("mean", encoding.mean, np.float32),
            ("scale", encoding.scale, np.float32),
        )
    ]
    x = RAW_INPUT
    nodes = [
        helper.make_node("Abs", [x], ["abs"]),
        helper.make_node("Add", ["abs", "one"], ["abs_plus_one"]),
        helper.make_node("Log", ["abs_plus_one"], ["log1p_abs"]),
        helper.make_node("Sign", [x], ["sign"]),
        helper.make_node("Mul", ["sign", "log1p_abs"], ["signed_log1p"]),
        helper.make_node("Max", [x, "zero"], ["delay"]),
        helper.make_node("Equal", [x, "minus_two"], ["is_minus_two"]),
        helper.make_node("Cast", ["is_minus_two"], ["status_minus_two"], to=TensorProto.FLOAT),
        helper.make_node("Equal", [x, "minus_one"], ["is_minus_one"]),
        helper.make_node("Cast", ["is_minus_one"], ["status_minus_one"], to=TensorProto.FLOAT),
        helper.make_node(
            "Concat",
            [x, "signed_log1p", "delay", "status_minus_two", "status_minus_one"],
            ["all_transforms"],
            axis=1,
        ),
        helper.make_node("Gather", ["all_transforms", "columns"], ["selected"], axis=1),
        helper.make_node("Sub", ["selected", "mean"], ["centred"]),
    ]
    if substitute:
        init += [
            numpy_helper.from_array(reason_masks(encoding), "reason_masks"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_one"),
            numpy_helper.from_array(np.array([-1, encoding.width], dtype=np.int64), "flat"),
        ]
        nodes += [
            helper.make_node("Div", ["centred", "scale"], ["standardized"]),
            helper.make_node("Unsqueeze", ["standardized", "axis_one"], ["standardized_3d"]),
            helper.make_node("Mul", ["standardized_3d", "reason_masks"], ["substituted"]),
            helper.make_node("Reshape", ["substituted", "flat"], [output]),
        ]
    else:
        nodes.append(helper.make_node("Div", ["centred", "scale"], [output]))
    rows = "batch" if not substitute else "batch_times_substitutions"
    graph = helper.make_graph(
        nodes,
        "encoder",
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [rows, encoding.width])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    onnx.checker.check_model(model, full_check=True)
    return model


def encode(encoding: Encoding, rows: np.ndarray) -> np.ndarray:
    """Encoded rows [n, width] (float32), by running :func:`encoder_graph` in ONNX Runtime."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        encoder_graph(encoding).SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {RAW_INPUT: np.ascontiguousarray(rows, dtype=np.float32)})[0]
