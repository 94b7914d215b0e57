"""A seeded generator of valid, invalid and hostile requests for ``credit_scoring``, and its oracle.

Every case is built from ``numpy.random.default_rng([seed, index])``, so case ``i`` of a seed is
the same request on every run and can be rebuilt alone (``FuzzGenerator(...).case(i)``).

Expectations (what the oracle accepts):

* ``score``: 200 / OK with exactly the in-process ONNX Runtime probabilities (1e-6).
* ``reject``: HTTP 4xx or a gRPC client-error code whose message contains ``words``.
* ``json500``: HTTP 500 whose message names the parse problem; Triton 2.51's HTTP frontend
  answers JSON it cannot parse with 500 (upstream triton-inference-server/server#8762).
* ``truncated``: 200 with the scores of the rows actually sent. Triton 2.51 keeps the batch
  dimension modulo 2**32, so a declared batch of 2**32 * k + n with n rows of data is accepted
  (an upstream defect this suite measures; the scores still belong to the rows sent).
* ``framing``: broken HTTP framing; no answer, a 4xx, or a 500 naming a parse error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tritonclient.grpc import service_pb2

from preprocess_ensemble.features import FeatureContract

from .traffic import INFER_PATH, MODEL, HttpRequest, Outcome, SocketRequest, wrong_scores

Request = HttpRequest | SocketRequest | service_pb2.ModelInferRequest
N_FEATURES = 23
ROW_BYTES = N_FEATURES * 4


@dataclass
class Case:
    """One generated request and what the oracle expects of its answer."""

    index: int
    cls: str
    request: Request
    expect: str  # score | reject | json500 | truncated | framing
    rows: np.ndarray | None = None  # rows whose probabilities are expected
    words: tuple[str, ...] = ()

    @property
    def protocol(self) -> str:
        """``grpc`` or ``http``."""
        return "grpc" if isinstance(self.request, service_pb2.ModelInferRequest) else "http"


@dataclass(frozen=True)
class Verdict:
    """The oracle's reading of one answer: an outcome label, and a reason when it failed."""

    label: str  # scored | rejected | json500 | truncated | closed | FAIL
    wrong: int = 0
    failure: str = ""


# --- request builders ------------------------------------------------------------------------


def http_json(
    tensors: list[dict],
    parameters: dict | None = None,
    outputs: list[str] | None = None,
    path: str = INFER_PATH,
) -> HttpRequest:
    """A JSON-only HTTP request (``data`` inline); NaN/inf are written as NaN/Infinity tokens."""
    document: dict = {"inputs": tensors}
    if parameters:
        document["parameters"] = parameters
    if outputs:
        document["outputs"] = [{"name": name} for name in outputs]
    return HttpRequest(json.dumps(document).encode(), {}, path)


def json_tensor(name: str, shape: list[int], datatype: str, data: list) -> dict:
    """One JSON input tensor."""
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def http_binary(
    tensors: list[tuple[str, list[int], str, bytes]],
    parameters: dict | None = None,
    outputs: list[str] | None = None,
    declared_sizes: list[int] | None = None,
    tensor_parameters: dict | None = None,
    trailing: bytes = b"",
    header_length: int | None = None,
    path: str = INFER_PATH,
) -> HttpRequest:
    """A binary-tensor HTTP request (the tritonclient default), with every size overridable."""
    inputs = []
    for k, (name, shape, datatype, raw) in enumerate(tensors):
        size = declared_sizes[k] if declared_sizes else len(raw)
        tensor = {
            "name": name,
            "shape": shape,
            "datatype": datatype,
            "parameters": {"binary_data_size": size, **(tensor_parameters or {})},
        }
        inputs.append(tensor)
    document: dict = {"inputs": inputs}
    if parameters:
        document["parameters"] = parameters
    if outputs:
        document["outputs"] = [{"name": name} for name in outputs]
    head = json.dumps(document).encode()
    body = head + b"".join(t[3] for t in tensors) + trailing
    length = len(head) if header_length is None else header_length
    return HttpRequest(body, {"Inference-Header-Content-Length": str(length)}, path)


def grpc_infer(
    tensors: list[tuple[str, list[int], str, bytes | None, list[float] | None]],
    parameters: dict | None = None,
    outputs: list[str] | None = None,
    model: str = MODEL,
) -> service_pb2.ModelInferRequest:
    """A gRPC request; each tensor carries raw bytes or typed ``fp32_contents``."""
    request = service_pb2.ModelInferRequest(model_name=model)
    for name, shape, datatype, raw, contents in tensors:
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = name, datatype
        tensor.shape.extend(shape)
        if contents is not None:
            tensor.contents.fp32_contents.extend(contents)
        if raw is not None:
            request.raw_input_contents.append(raw)
    for key, value in (parameters or {}).items():
        if isinstance(value, bool):
            request.parameters[key].bool_param = value
        elif isinstance(value, int):
            request.parameters[key].int64_param = value
        else:
            request.parameters[key].string_param = str(value)
    for name in outputs or []:
        request.outputs.add().name = name
    return request


def as_json_numbers(rows: np.ndarray) -> list[float]:
    """Flat float values (exact float32 values as doubles) for a JSON ``data`` field."""
    return [float(v) for v in np.asarray(rows, dtype=np.float32).ravel()]


# --- the generator ---------------------------------------------------------------------------


class FuzzGenerator:
    """Builds case ``i`` of a seed; classes are drawn by weight (see ``CLASSES``)."""

    def __init__(self, contract: FeatureContract, holdout: np.ndarray, seed: int) -> None:
        self.contract = contract
        self.holdout = np.asarray(holdout, dtype=np.float32)
        self.seed = seed
        self.range_columns = [j for j in range(N_FEATURES) if j not in contract.allowed]
        self.code_columns = sorted(contract.allowed)
        builders: dict[str, tuple[float, Callable[[np.random.Generator, int], Case]]] = {
            "valid: holdout rows": (24, self._valid_holdout),
            "valid: rows at the contract's bounds and codes": (8, self._valid_bounds),
            "valid: full batch of 1024 rows": (2, self._valid_full_batch),
            "valid: unknown request/tensor parameters": (4, self._valid_unknown_parameters),
            "contract: value just outside a range or code list": (10, self._outside),
            "contract: fractional value": (5, self._fractional),
            "contract: NaN or +-inf": (6, self._non_finite),
            "shape: wrong column count or rank": (6, self._wrong_shape),
            "datatype: not FP32": (6, self._wrong_datatype),
            "declared shape != payload length (binary, gRPC)": (5, self._shape_mismatch),
            "truncated or overlong binary tensor": (5, self._truncated_binary),
            "batch over max_batch_size 1024": (2, self._over_batch),
            "empty batch or empty body": (2, self._empty),
            "unknown/extra/duplicate/missing input, unknown output or model": (
                5,
                self._unknown_names,
            ),
            "reserved parameter of the wrong type": (2, self._reserved_parameters),
            "oversized body (2-70 MB)": (0.4, self._oversized),
            "unparseable JSON (upstream: 500)": (5, self._unparseable_json),
            "declared batch >= 2**32 (upstream: truncated, 200)": (1.6, self._batch_wraps),
            "hostile HTTP framing": (1, self._framing),
        }
        self.classes = list(builders)
        weights = np.array([w for w, _ in builders.values()], dtype=np.float64)
        self.probabilities = weights / weights.sum()
        self.builders = [b for _, b in builders.values()]

    def case(self, index: int) -> Case:
        """The ``index``-th case of this seed."""
        rng = np.random.default_rng([self.seed, index])
        k = int(rng.choice(len(self.builders), p=self.probabilities))
        case = self.builders[k](rng, index)
        case.cls = self.classes[k]
        return case

    # helpers

    def _rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.holdout[rng.integers(0, len(self.holdout), n)].copy()

    def _batch_size(self, rng: np.random.Generator) -> int:
        draw = rng.random()
        return 1 if draw < 0.5 else int(rng.integers(2, 33 if draw < 0.9 else 257))

    def _expected_message(self, rows: np.ndarray) -> str:
        return self.contract.first_violation(rows, self.contract.invalid_mask(rows))

    def _encode_valid(self, rng: np.random.Generator, rows: np.ndarray, index: int) -> Case:
        """Send valid ``rows`` in one of six encodings and expect their exact scores."""
        shape = list(rows.shape)
        raw = rows.astype(np.float32).tobytes()
        choice = int(rng.integers(0, 6 if len(rows) == 1 else 5))
        if choice == 0:
            request: Request = http_json(
                [json_tensor("features", shape, "FP32", as_json_numbers(rows))]
            )
        elif choice == 1:  # nested JSON data, allowed by the protocol
            nested = [[float(v) for v in row] for row in rows]
            request = http_json([json_tensor("features", shape, "FP32", nested)])
        elif choice == 2:
            request = http_binary([("features", shape, "FP32", raw)])
        elif choice == 3:
            request = grpc_infer([("features", shape, "FP32", raw, None)])
        elif choice == 4:
            request = grpc_infer([("features", shape, "FP32", None, as_json_numbers(rows))])
        else:  # the raw binary body extension: one tensor, no JSON header at all
            request = HttpRequest(raw, {"Inference-Header-Content-Length": "0"})
        return Case(index, "", request, "score", rows=rows)

    def _encode_invalid(
        self, rng: np.random.Generator, rows: np.ndarray, index: int, words: tuple[str, ...]
    ) -> Case:
        """Send contract-breaking ``rows`` (correct shape and type) and expect a named 4xx."""
        shape = list(rows.shape)
        choice = int(rng.integers(0, 4))
        if choice == 0:
            request: Request = http_json(
                [json_tensor("features", shape, "FP32", as_json_numbers(rows))]
            )
        elif choice == 1:
            request = http_binary([("features", shape, "FP32", rows.tobytes())])
        elif choice == 2:
            request = grpc_infer([("features", shape, "FP32", rows.tobytes(), None)])
        else:
            request = grpc_infer([("features", shape, "FP32", None, as_json_numbers(rows))])
        return Case(index, "", request, "reject", words=words)

    # valid classes

    def _valid_holdout(self, rng: np.random.Generator, index: int) -> Case:
        return self._encode_valid(rng, self._rows(rng, self._batch_size(rng)), index)

    def _valid_bounds(self, rng: np.random.Generator, index: int) -> Case:
        c = self.contract
        rows = self._rows(rng, int(rng.integers(1, 9)))
        for row in rows:
            for j in range(N_FEATURES):
                if rng.random() < 0.5:
                    continue
                if j in c.allowed:
                    row[j] = rng.choice(c.allowed[j])
                else:
                    row[j] = rng.choice([c.lower[j], c.upper[j], c.lower[j] + 1, c.upper[j] - 1])
            if rng.random() < 0.2:  # -0.0 is a whole number inside [0, max] and code 0
                zero_cols = np.nonzero(row == 0)[0]
                row[zero_cols] = -0.0
        return self._encode_valid(rng, rows, index)

    def _valid_full_batch(self, rng: np.random.Generator, index: int) -> Case:
        return self._encode_valid(rng, self._rows(rng, 1024), index)

    def _valid_unknown_parameters(self, rng: np.random.Generator, index: int) -> Case:
        rows = self._rows(rng, self._batch_size(rng))
        key = f"x_{int(rng.integers(0, 10**6))}"
        value = [int(rng.integers(-(10**9), 10**9)), "zz" * int(rng.integers(0, 50)), True][
            int(rng.integers(0, 3))
        ]
        raw = rows.tobytes()
        choice = int(rng.integers(0, 3))
        if choice == 0:
            request: Request = http_binary(
                [("features", list(rows.shape), "FP32", raw)], parameters={key: value}
            )
        elif choice == 1:
            request = http_binary(
                [("features", list(rows.shape), "FP32", raw)], tensor_parameters={key: value}
            )
        else:
            request = grpc_infer(
                [("features", list(rows.shape), "FP32", raw, None)], parameters={key: value}
            )
        return Case(index, "", request, "score", rows=rows)

    # contract classes: the expected message is the contract's own first violation

    def _corrupt(self, rng: np.random.Generator, values: Callable[[int], float]) -> np.ndarray:
        rows = self._rows(rng, int(rng.integers(1, 9)))
        for _ in range(int(rng.integers(1, 4))):
            i, j = int(rng.integers(0, len(rows))), int(rng.integers(0, N_FEATURES))
            rows[i, j] = values(j)
        return rows

    def _outside(self, rng: np.random.Generator, index: int) -> Case:
        c = self.contract

        def value(j: int) -> float:
            if j in c.allowed:
                lo, hi = float(c.allowed[j][0]), float(c.allowed[j][-1])
                return float(rng.choice([lo - 1, hi + 1, lo - 100, hi + 1000]))
            lo, hi = float(c.lower[j]), float(c.upper[j])
            return float(rng.choice([lo - 1, hi + 1, lo - 1e6, hi * 4, -3e38]))

        rows = self._corrupt(rng, value)
        if not self.contract.invalid_mask(rows).any():  # every draw breaks a rule; be sure
            rows[0, 1] = 3
        return self._encode_invalid(rng, rows, index, (self._expected_message(rows),))

    def _fractional(self, rng: np.random.Generator, index: int) -> Case:
        def value(j: int) -> float:
            base = np.float32(self.holdout[int(rng.integers(0, len(self.holdout))), j])
            if rng.random() < 0.5:
                return float(base) + 0.5
            return float(np.nextafter(base, np.float32(np.inf)))  # the next float32 up

        rows = self._corrupt(rng, value)
        if not self.contract.invalid_mask(rows).any():
            rows[0, 4] = 30.5
        return self._encode_invalid(rng, rows, index, (self._expected_message(rows),))

    def _non_finite(self, rng: np.random.Generator, index: int) -> Case:
        rows = self._corrupt(rng, lambda j: float(rng.choice([np.nan, np.inf, -np.inf])))
        return self._encode_invalid(rng, rows, index, (self._expected_message(rows),))

    # protocol classes

    def _wrong_shape(self, rng: np.random.Generator, index: int) -> Case:
        n = int(rng.integers(1, 5))
        shape = [
            [n, 22],
            [n, 24],
            [N_FEATURES],
            [1, 1, N_FEATURES],
            [n, N_FEATURES, 1],
            [n, 0],
            [n, int(rng.integers(25, 200))],
        ][int(rng.integers(0, 7))]
        count = int(np.prod(shape))
        values = self.holdout.ravel()[:count].astype(np.float32)
        choice = int(rng.integers(0, 3))
        if choice == 0:
            request: Request = http_json(
                [json_tensor("features", shape, "FP32", [float(v) for v in values])]
            )
        elif choice == 1:
            request = http_binary([("features", shape, "FP32", values.tobytes())])
        else:
            request = grpc_infer([("features", shape, "FP32", values.tobytes(), None)])
        words = ("unexpected shape for input 'features'", "Expected [-1,23]")
        return Case(index, "", request, "reject", words=words)

    def _wrong_datatype(self, rng: np.random.Generator, index: int) -> Case:
        rows = self._rows(rng, int(rng.integers(1, 5)))
        shape = list(rows.shape)
        numpy_types = {
            "FP64": np.float64,
            "FP16": np.float16,
            "INT32": np.int32,
            "INT64": np.int64,
            "UINT8": np.uint8,
            "INT8": np.int8,
            "BOOL": np.bool_,
        }
        names = [*numpy_types, "BYTES", "FP33", "float32"]
        datatype = names[int(rng.integers(0, len(names)))]
        shown = datatype if datatype in {*numpy_types, "BYTES"} else "<invalid>"
        words = (f"data-type is '{shown}'", "expects 'FP32'")
        dtype = numpy_types.get(datatype, np.float32)
        choice = int(rng.integers(0, 3))
        if choice == 0:  # JSON: values of the declared type
            if datatype == "BYTES":
                data: list = [str(v) for v in rows.ravel()]
            elif datatype == "BOOL":
                data = [bool(v) for v in rows.ravel()]
            elif datatype.startswith(("INT", "UINT")):
                data = [int(v) % 100 for v in rows.ravel()]
            else:
                data = as_json_numbers(rows)
            request: Request = http_json([json_tensor("features", shape, datatype, data)])
            if shown == "<invalid>":
                words = ("invalid datatype for input features",)
            elif datatype == "FP16":
                words = ("receiving FP16 data via JSON is not supported",)
        else:
            values = rows if datatype.startswith("FP") else rows.astype(np.int64) % 100
            with np.errstate(over="ignore"):  # FP16 overflows to inf: still the wrong type
                raw = values.astype(dtype).tobytes() if datatype != "BYTES" else rows.tobytes()
            if choice == 1:
                request = http_binary([("features", shape, datatype, raw)])
            else:
                request = grpc_infer([("features", shape, datatype, raw, None)])
        return Case(index, "", request, "reject", words=words)

    def _shape_mismatch(self, rng: np.random.Generator, index: int) -> Case:
        sent = int(rng.integers(1, 9))
        declared = int(rng.integers(1, 1025))
        while declared == sent:
            declared = int(rng.integers(1, 1025))
        rows = self._rows(rng, sent)
        shape = [declared, N_FEATURES]
        choice = int(rng.integers(0, 3))
        if choice == 0:
            request: Request = http_binary([("features", shape, "FP32", rows.tobytes())])
        elif choice == 1:
            request = grpc_infer([("features", shape, "FP32", rows.tobytes(), None)])
        else:
            request = grpc_infer([("features", shape, "FP32", None, as_json_numbers(rows))])
        words = ("input byte size mismatch for input 'features'",)
        return Case(index, "", request, "reject", words=words)

    def _truncated_binary(self, rng: np.random.Generator, index: int) -> Case:
        n = int(rng.integers(1, 9))
        raw = self._rows(rng, n).tobytes()
        shape = [n, N_FEATURES]
        cut = int(rng.integers(1, len(raw)))  # bytes missing or extra
        variant = int(rng.integers(0, 5))
        if variant == 0:  # the body ends before the declared tensor does
            request: Request = http_binary(
                [("features", shape, "FP32", raw[:-cut])], declared_sizes=[len(raw)]
            )
            words: tuple[str, ...] = ("unexpected size for input 'features'",)
        elif variant == 1:  # the tensor claims fewer bytes than the body holds
            request = http_binary(
                [("features", shape, "FP32", raw)], declared_sizes=[len(raw) - cut]
            )
            words = ("unexpected additional input data",)
        elif variant == 2:  # trailing garbage after the last tensor
            request = http_binary([("features", shape, "FP32", raw)], trailing=b"\x00" * cut)
            words = ("unexpected additional input data",)
        elif variant == 3:  # Inference-Header-Content-Length beyond the body
            request = http_binary([("features", shape, "FP32", raw)], header_length=10**6 + cut)
            words = ("inference header size should be in range",)
        else:  # gRPC raw contents cut short
            request = grpc_infer([("features", shape, "FP32", raw[:-cut], None)])
            words = ("input byte size mismatch for input 'features'",)
        return Case(index, "", request, "reject", words=words)

    def _over_batch(self, rng: np.random.Generator, index: int) -> Case:
        rows = self._rows(rng, int(rng.integers(1025, 4097)))
        choice = int(rng.integers(0, 3))
        shape = list(rows.shape)
        if choice == 0:
            request: Request = http_json(
                [json_tensor("features", shape, "FP32", as_json_numbers(rows))]
            )
        elif choice == 1:
            request = http_binary([("features", shape, "FP32", rows.tobytes())])
        else:
            request = grpc_infer([("features", shape, "FP32", rows.tobytes(), None)])
        return Case(index, "", request, "reject", words=("batch-size must be <= 1024",))

    def _empty(self, rng: np.random.Generator, index: int) -> Case:
        variant = int(rng.integers(0, 4))
        if variant == 0:
            request: Request = http_json([json_tensor("features", [0, N_FEATURES], "FP32", [])])
        elif variant == 1:
            request = http_binary([("features", [0, N_FEATURES], "FP32", b"")])
        elif variant == 2:
            request = grpc_infer([("features", [0, N_FEATURES], "FP32", b"", None)])
        else:  # an empty body is read as an empty raw binary tensor
            request = HttpRequest(b"", {})
        return Case(index, "", request, "reject", words=("byte size mismatch",))

    def _unknown_names(self, rng: np.random.Generator, index: int) -> Case:
        rows = self._rows(rng, int(rng.integers(1, 5)))
        shape, raw = list(rows.shape), rows.tobytes()
        other = f"feature_{int(rng.integers(0, 1000))}"
        grpc = rng.random() < 0.5
        variant = int(rng.integers(0, 6))
        path = INFER_PATH
        if variant == 0:
            tensors = [(other, shape, "FP32", raw)]
            words: tuple[str, ...] = (f"unexpected inference input '{other}'",)
        elif variant == 1:
            tensors = [("features", shape, "FP32", raw), (other, shape, "FP32", raw)]
            words = ("expected 1 inputs but got 2",)
        elif variant == 2:
            tensors = [("features", shape, "FP32", raw)] * 2
            words = ("input 'features' already exists",)
        elif variant == 3:
            tensors = []
            words = ("missing required input",)
        elif variant == 4:
            tensors = [("features", shape, "FP32", raw)]
            words = (f"unexpected inference output '{other}'",)
        else:
            tensors = [("features", shape, "FP32", raw)]
            words = (f"unknown model: '{other}'",)
            path = f"/v2/models/{other}/infer"
        outputs = [other] if variant == 4 else None
        if grpc:
            request: Request = grpc_infer(
                [(*t, None) for t in tensors],
                outputs=outputs,
                model=other if variant == 5 else MODEL,
            )
        elif variant == 3:
            request = http_json([], outputs=outputs, path=path)
        else:
            request = http_binary(tensors, outputs=outputs, path=path)
        return Case(index, "", request, "reject", words=words)

    def _reserved_parameters(self, rng: np.random.Generator, index: int) -> Case:
        rows = self._rows(rng, 1)
        key = ["priority", "timeout"][int(rng.integers(0, 2))]
        if rng.random() < 0.5:
            request: Request = grpc_infer(
                [("features", [1, N_FEATURES], "FP32", rows.tobytes(), None)], {key: "soon"}
            )
            words: tuple[str, ...] = (f"invalid value type for '{key}' parameter",)
            return Case(index, "", request, "reject", words=words)
        value = ["soon", -5, 1.5][int(rng.integers(0, 3))]
        request = http_binary([("features", [1, N_FEATURES], "FP32", rows.tobytes())], {key: value})
        return Case(index, "", request, "json500", words=("parse", key))

    def _oversized(self, rng: np.random.Generator, index: int) -> Case:
        n = int(rng.integers(2, 71) * 2**20 // ROW_BYTES)  # 2-70 MB of rows
        rows = np.resize(self._rows(rng, 64), (n, N_FEATURES))
        variant = int(rng.integers(0, 3))
        if variant == 0:
            request: Request = http_binary([("features", [n, N_FEATURES], "FP32", rows.tobytes())])
        elif variant == 1:
            request = grpc_infer([("features", [n, N_FEATURES], "FP32", rows.tobytes(), None)])
        else:  # JSON is parsed value by value: keep it to ~4 MB
            rows = rows[:40_000]
            request = http_json(
                [json_tensor("features", list(rows.shape), "FP32", as_json_numbers(rows))]
            )
        return Case(index, "", request, "reject", words=("batch-size must be <= 1024",))

    def _unparseable_json(self, rng: np.random.Generator, index: int) -> Case:
        rows = self._rows(rng, int(rng.integers(1, 5)))
        good = json_tensor("features", list(rows.shape), "FP32", as_json_numbers(rows))
        body = json.dumps({"inputs": [good]})
        variant = int(rng.integers(0, 8))
        if variant == 0:  # cut anywhere
            body = body[: int(rng.integers(1, len(body) - 1))]
        elif variant == 1:  # a string where a number belongs
            data = list(good["data"])
            data[int(rng.integers(0, len(data)))] = "12"
            body = json.dumps({"inputs": [{**good, "data": data}]})
        elif variant == 2:  # a declared shape that does not match the JSON data (<= 4096 rows)
            declared = [int(rng.integers(1, 4097)), N_FEATURES]
            if declared[0] == len(rows):
                declared[0] += 1
            body = json.dumps({"inputs": [{**good, "shape": declared}]})
        elif variant == 3:  # a negative dimension
            body = json.dumps({"inputs": [{**good, "shape": [-1, N_FEATURES]}]})
        elif variant == 4:  # a required member missing
            missing = ["shape", "datatype", "name"][int(rng.integers(0, 3))]
            body = json.dumps({"inputs": [{k: v for k, v in good.items() if k != missing}]})
        elif variant == 5:  # wrong JSON types
            body = ['{"inputs": 5}', "{}", "null", "[]"][int(rng.integers(0, 4))]
        elif variant == 6:  # random bytes
            body = rng.bytes(int(rng.integers(1, 512))).decode("latin-1")
        else:  # booleans where numbers belong
            body = json.dumps({"inputs": [{**good, "data": [True] * len(good["data"])}]})
        return Case(index, "", HttpRequest(body.encode("latin-1")), "json500", words=("parse",))

    def _batch_wraps(self, rng: np.random.Generator, index: int) -> Case:
        n = int(rng.integers(1, 9))
        rows = self._rows(rng, n)
        shape = [2**32 * int(rng.integers(1, 1000)) + n, N_FEATURES]
        if rng.random() < 0.5:
            request: Request = http_binary([("features", shape, "FP32", rows.tobytes())])
        else:
            request = grpc_infer([("features", shape, "FP32", rows.tobytes(), None)])
        return Case(index, "", request, "truncated", rows=rows)

    def _framing(self, rng: np.random.Generator, index: int) -> Case:
        body = json.dumps({"inputs": [json_tensor("features", [1, 23], "FP32", [0.0] * 23)]})
        head = f"POST {INFER_PATH} HTTP/1.1\r\nHost: fuzz\r\nContent-Type: application/json\r\n"
        variant = int(rng.integers(0, 4))
        if variant == 0:  # the client hangs up halfway through the body
            data = f"{head}Content-Length: {len(body)}\r\n\r\n{body[: len(body) // 2]}"
            return Case(index, "", SocketRequest(data.encode(), hang_up=True), "framing")
        if variant == 1:  # Content-Length shorter than the body
            data = f"{head}Content-Length: {int(rng.integers(1, len(body)))}\r\n\r\n{body}"
        elif variant == 2:  # garbage instead of a request line
            data = rng.bytes(int(rng.integers(1, 300))).decode("latin-1") + "\r\n\r\n"
        else:  # an absurd Content-Length with a short body, then hang up
            data = f"{head}Content-Length: 99999999999\r\n\r\n{body}"
            return Case(index, "", SocketRequest(data.encode("latin-1"), hang_up=True), "framing")
        return Case(index, "", SocketRequest(data.encode("latin-1")), "framing")


# --- the oracle ------------------------------------------------------------------------------


def judge(case: Case, outcome: Outcome, reference: Callable[[np.ndarray], np.ndarray]) -> Verdict:
    """Check ``outcome`` against what ``case`` expects."""
    if case.expect in ("score", "truncated"):
        if not outcome.scored:
            return Verdict("FAIL", failure=f"not scored: {outcome.status} {outcome.message}")
        assert case.rows is not None
        wrong = wrong_scores(outcome, reference(case.rows))
        if wrong:
            return Verdict("FAIL", wrong, f"{wrong} wrong probabilities")
        return Verdict("scored" if case.expect == "score" else "truncated")
    if outcome.scored:
        return Verdict("FAIL", failure="an invalid request was scored")
    if case.expect == "framing":
        if outcome.status == "closed" or outcome.client_error:
            return Verdict("closed" if outcome.status == "closed" else "rejected")
        if outcome.status == 500 and "parse" in outcome.message:
            return Verdict("json500")
        return Verdict("FAIL", failure=f"framing answered {outcome.status} {outcome.message}")
    missing = [w for w in case.words if w not in outcome.message]
    if case.expect == "json500":
        if outcome.status == 500 and not missing:
            return Verdict("json500")
        return Verdict("FAIL", failure=f"{outcome.status} {outcome.message!r} lacks {missing}")
    if outcome.client_error and not missing:
        return Verdict("rejected")
    return Verdict("FAIL", failure=f"{outcome.status} {outcome.message!r} lacks {missing}")
