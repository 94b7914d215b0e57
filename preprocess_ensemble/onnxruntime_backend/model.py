"""Python-based Triton backend named ``onnxruntime``, built on the onnxruntime Python package.

Installed as ``<backend-directory>/onnxruntime/model.py`` it serves models whose config.pbtxt
says ``backend: "onnxruntime"`` on a Triton without the native C++ onnxruntime backend (the
nvidia-pytriton wheel). The stock NGC image uses its native backend for the same config, so one
model repository runs unchanged in both places.

Honoured config: ``default_model_filename`` (default ``model.onnx``), the ``input``/``output``
names and data types (checked against the ONNX graph at load), ``max_batch_size``, the native
backend's ``intra_op_thread_count`` / ``inter_op_thread_count`` string parameters and
``optimization { graph { level } }`` (-1 basic, 1 extended, 2 disabled, otherwise all).
Execution is CPU only. With dynamic batching, ``execute`` concatenates all requests along the
batch axis, runs the session once and slices the outputs back, one response per request.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# Triton config data type -> ONNX Runtime type string (string tensors are not supported).
_ORT_TYPES = {
    "TYPE_BOOL": "tensor(bool)",
    "TYPE_UINT8": "tensor(uint8)",
    "TYPE_UINT16": "tensor(uint16)",
    "TYPE_UINT32": "tensor(uint32)",
    "TYPE_UINT64": "tensor(uint64)",
    "TYPE_INT8": "tensor(int8)",
    "TYPE_INT16": "tensor(int16)",
    "TYPE_INT32": "tensor(int32)",
    "TYPE_INT64": "tensor(int64)",
    "TYPE_FP16": "tensor(float16)",
    "TYPE_FP32": "tensor(float)",
    "TYPE_FP64": "tensor(double)",
}
_GRAPH_LEVELS = {
    -1: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    1: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    2: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


def _int_parameter(config: dict[str, Any], key: str) -> int | None:
    """Read an integer ``parameters { key: ... value { string_value: ... } }`` entry."""
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"parameter {key!r} must be an integer, got {value!r}") from None


def _check_tensors(kind: str, declared: list[dict[str, Any]], graph: list[Any]) -> None:
    """Raise if a configured tensor is missing from the ONNX graph or has another data type."""
    graph_types = {node.name: node.type for node in graph}
    for tensor in declared:
        name, data_type = tensor["name"], tensor["data_type"]
        if data_type not in _ORT_TYPES:
            raise ValueError(f"{kind} {name!r}: data type {data_type} is not supported")
        if name not in graph_types:
            raise ValueError(
                f"{kind} {name!r} from config.pbtxt is not in the ONNX graph "
                f"(graph {kind}s: {sorted(graph_types)})"
            )
        if graph_types[name] != _ORT_TYPES[data_type]:
            raise ValueError(
                f"{kind} {name!r}: config says {data_type}, ONNX graph says {graph_types[name]}"
            )


def _triton_error(exc: Exception) -> pb_utils.TritonError:
    """Map an inference exception to a Triton error (bad input -> INVALID_ARG)."""
    invalid = isinstance(exc, ValueError) or type(exc).__name__ == "InvalidArgument"
    code = pb_utils.TritonError.INVALID_ARG if invalid else pb_utils.TritonError.INTERNAL
    return pb_utils.TritonError(f"onnxruntime: {exc}", code)


class TritonPythonModel:
    """One ONNX Runtime CPU session per model instance."""

    def initialize(self, args: dict[str, str]) -> None:
        """Create the session; any problem raises so the model fails to load (not ready)."""
        config = json.loads(args["model_config"])
        name = config.get("default_model_filename") or "model.onnx"
        path = Path(args["model_repository"]) / args["model_version"] / name
        if path.is_dir():  # the native backend also accepts a directory holding model.onnx
            path = path / "model.onnx"
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model file not found: {path}")

        options = ort.SessionOptions()
        intra = _int_parameter(config, "intra_op_thread_count")
        inter = _int_parameter(config, "inter_op_thread_count")
        if intra is not None:
            options.intra_op_num_threads = intra
        if inter is not None:
            options.inter_op_num_threads = inter
        level = config.get("optimization", {}).get("graph", {}).get("level")
        options.graph_optimization_level = _GRAPH_LEVELS.get(
            int(level or 0), ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # corrupt or unsupported file: report the path
            raise RuntimeError(f"cannot load ONNX model {path}: {exc}") from exc

        _check_tensors("input", config.get("input", []), self.session.get_inputs())
        _check_tensors("output", config.get("output", []), self.session.get_outputs())
        self.inputs = {
            t["name"]: pb_utils.triton_string_to_numpy(t["data_type"]) for t in config["input"]
        }
        self.outputs = [t["name"] for t in config["output"]]
        self.batching = int(config.get("max_batch_size", 0)) > 0

    def _run(self, requests: list[Any]) -> list[dict[str, np.ndarray]]:
        """Run one session call for ``requests`` and return each request's outputs."""
        feeds: dict[str, list[np.ndarray]] = {name: [] for name in self.inputs}
        for request in requests:
            for name, dtype in self.inputs.items():
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                if tensor is None:
                    raise ValueError(f"missing input {name!r}")
                feeds[name].append(tensor.as_numpy().astype(dtype, copy=False))
        if len(requests) == 1:
            batch = {name: arrays[0] for name, arrays in feeds.items()}
        else:
            batch = {name: np.concatenate(arrays, axis=0) for name, arrays in feeds.items()}
        results = self.session.run(self.outputs, batch)
        if len(requests) == 1:
            return [dict(zip(self.outputs, results, strict=True))]
        sizes = [len(array) for array in next(iter(feeds.values()))]
        bounds = np.cumsum([0, *sizes])
        return [
            {name: result[start:stop] for name, result in zip(self.outputs, results, strict=True)}
            for start, stop in itertools.pairwise(bounds)
        ]

    def execute(self, requests: list[Any]) -> list[Any]:
        """Serve a (dynamic) batch of requests with a single session run when possible."""
        if self.batching and len(requests) > 1:
            try:
                return [self._response(outputs) for outputs in self._run(requests)]
            except Exception as exc:  # noqa: BLE001 - one bad request must not fail the batch
                pb_utils.Logger.log_warn(f"batched run failed ({exc}); retrying one by one")
        responses = []
        for request in requests:
            try:
                responses.append(self._response(self._run([request])[0]))
            except Exception as exc:  # noqa: BLE001 - reported to that request's client
                responses.append(pb_utils.InferenceResponse(error=_triton_error(exc)))
        return responses

    @staticmethod
    def _response(outputs: dict[str, np.ndarray]) -> Any:
        """Build an inference response from named output arrays."""
        tensors = [pb_utils.Tensor(n, np.ascontiguousarray(a)) for n, a in outputs.items()]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        """Release the session."""
        self.session = None
