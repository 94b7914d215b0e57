"""Pre-encoded request bodies and cheap response checks for KServe v2 (HTTP binary and gRPC).

Load generators encode every request once, up front, so the client spends its CPU on sending
and receiving, not on building JSON. Every response is still checked: one probability in
[0, 1] per row, else the request counts as failed.
"""

from __future__ import annotations

import json

import numpy as np

INPUT_NAME = "features"
OUTPUT_NAME = "probability"
HEADER_LENGTH = "Inference-Header-Content-Length"


class BadResponse(ValueError):
    """A response that does not hold one probability in [0, 1] per row."""


def http_binary_body(rows: np.ndarray, input_name: str = INPUT_NAME) -> tuple[bytes, int]:
    """Return (body, json header length) of a binary-tensor KServe v2 infer request."""
    data = np.ascontiguousarray(rows, dtype=np.float32).tobytes()
    header = {
        "inputs": [
            {
                "name": input_name,
                "shape": list(rows.shape),
                "datatype": "FP32",
                "parameters": {"binary_data_size": len(data)},
            }
        ],
        "outputs": [{"name": OUTPUT_NAME, "parameters": {"binary_data": True}}],
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return encoded + data, len(encoded)


def check_probabilities(values: np.ndarray, n_rows: int) -> np.ndarray:
    """Raise :class:`BadResponse` unless ``values`` are ``n_rows`` finite numbers in [0, 1]."""
    values = np.asarray(values).reshape(-1)
    if values.size != n_rows:
        raise BadResponse(f"expected {n_rows} probabilities, got {values.size}")
    if not (np.all(values >= 0.0) and np.all(values <= 1.0)):  # NaN fails both
        raise BadResponse(f"probability outside [0, 1]: {values[~((values >= 0) & (values <= 1))]}")
    return values


def parse_http_binary(body: bytes, header_length: int | None, n_rows: int) -> np.ndarray:
    """Probabilities from a KServe v2 HTTP response (binary output, or JSON as a fallback)."""
    if header_length is None:  # the server answered in JSON
        outputs = json.loads(body)["outputs"]
        values = np.asarray(outputs[0]["data"], dtype=np.float32)
    else:
        values = np.frombuffer(body, dtype=np.float32, offset=header_length)
    return check_probabilities(values, n_rows)
