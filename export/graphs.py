"""The served networks: the encoder graph in front of the (INT8 or FP32) network, in one file.

- ``credit_model``: ``features`` [n, 23] -> ``probability`` [n, 1].
- ``credit_model_reasons``: ``features`` [n, 23] -> ``probabilities`` [n, 24]: column 0 is the
  applicant, column 1 + j the applicant with feature j set to the training average (the
  reason-code substitutions), all scored in the same call by the same network weights.

Static INT8 fixes every scale, so column 0 of ``credit_model_reasons`` equals
``credit_model``'s probability exactly (tests/test_pipeline.py checks it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from export.config import ONNX_INPUT, ONNX_OUTPUT
from export.encoding import Encoding, encoder_graph

REASONS_OUTPUT = "probabilities"
ENCODED = "encoded"


def compose(
    encoding: Encoding, network_path: str | Path, path: str | Path, reasons: bool = False
) -> Path:
    """Write encoder + network (``reasons``: with the substitutions) as one ONNX file."""
    network = onnx.load(str(network_path))
    if reasons:
        # The network sees 24 rows per applicant: its symbolic batch dimension must not share
        # the name of the input's (ONNX Runtime may plan buffers by dimension name).
        graph = network.graph
        for value in [*graph.input, *graph.output, *graph.value_info]:
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param:
                    dim.dim_param = "substituted_rows"
    encoder = encoder_graph(encoding, output=ENCODED, substitute=reasons)
    encoder.ir_version = network.ir_version
    versions = {o.domain: o.version for o in network.opset_import}
    del encoder.opset_import[:]
    encoder.opset_import.extend(
        [helper.make_opsetid(domain, version) for domain, version in versions.items()]
    )
    model = onnx.compose.merge_models(encoder, network, io_map=[(ENCODED, ONNX_INPUT)])
    if reasons:
        graph = model.graph
        (probability,) = [o for o in graph.output if o.name == ONNX_OUTPUT]
        width = 1 + len(encoding.feature_names)
        graph.initializer.append(
            numpy_helper.from_array(np.array([-1, width], dtype=np.int64), "reasons_shape")
        )
        graph.node.append(
            helper.make_node("Reshape", [ONNX_OUTPUT, "reasons_shape"], [REASONS_OUTPUT])
        )
        graph.output.remove(probability)
        graph.output.append(
            helper.make_tensor_value_info(REASONS_OUTPUT, onnx.TensorProto.FLOAT, ["batch", width])
        )
    model.graph.name = "credit_model_reasons" if reasons else "credit_model"
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def extract_network(model_path: str | Path, path: str | Path) -> Path:
    """Write the network part of a composed file (encoded rows ``input`` -> ``probability``)."""
    model = onnx.load(str(model_path))
    network = onnx.utils.Extractor(model).extract_model([ENCODED], [ONNX_OUTPUT])
    for value in network.graph.input:
        if value.name == ENCODED:
            value.name = ONNX_INPUT
    for node in network.graph.node:
        node.input[:] = [ONNX_INPUT if name == ENCODED else name for name in node.input]
    used = {node.domain for node in network.graph.node}
    versions = {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import}
    del network.opset_import[:]
    network.opset_import.extend(
        [helper.make_opsetid(d, v) for d, v in versions.items() if d in used or d == ""]
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(network, str(path))
    return path
