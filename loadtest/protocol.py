"""Pre-encoded request bodies and cheap response checks for KServe v2 (HTTP binary and gRPC).

Load generators encode every request once, up front, so the client spends its CPU on sending
and receiving, not on building JSON. Every response is still checked: one probability in
[0, 1] per row (and, when the decisioning outputs are requested, a PD in [0, 1], a score, a
known decision, four reason-code slots and the policy per row), else the request counts as
failed.
"""

from __future__ import annotations

import json

import numpy as np

INPUT_NAME = "features"
OUTPUT_NAME = "probability"
DECISION_OUTPUTS = ("probability", "pd", "score", "decision", "reason_codes", "policy")
DECISIONS = {b"approve", b"refer", b"decline"}
HEADER_LENGTH = "Inference-Header-Content-Length"
_DTYPES = {"FP32": np.float32, "INT32": np.int32}


class BadResponse(ValueError):
    """A response that does not hold one probability in [0, 1] per row."""


def http_binary_body(
    rows: np.ndarray, input_name: str = INPUT_NAME, outputs: tuple[str, ...] = (OUTPUT_NAME,)
) -> tuple[bytes, int]:
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
        "outputs": [{"name": name, "parameters": {"binary_data": True}} for name in outputs],
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


def _bytes_elements(raw: bytes) -> list[bytes]:
    """Decode a binary BYTES tensor: each element is a 4-byte little-endian length + bytes."""
    items, offset = [], 0
    while offset < len(raw):
        size = int.from_bytes(raw[offset : offset + 4], "little")
        items.append(raw[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


def parse_http_outputs(body: bytes, header_length: int) -> dict[str, np.ndarray]:
    """Every binary output of a KServe v2 HTTP response, by name (BYTES as object arrays)."""
    header = json.loads(body[:header_length])
    arrays, offset = {}, header_length
    for output in header["outputs"]:
        size = output["parameters"]["binary_data_size"]
        raw = body[offset : offset + size]
        offset += size
        if output["datatype"] == "BYTES":
            values = np.array(_bytes_elements(raw), dtype=object)
        else:
            values = np.frombuffer(raw, dtype=_DTYPES[output["datatype"]])
        arrays[output["name"]] = values.reshape(output["shape"])
    return arrays


def check_decisions(arrays: dict[str, np.ndarray], n_rows: int) -> None:
    """Raise :class:`BadResponse` unless every decisioning output is well-formed for n_rows."""
    missing = [name for name in DECISION_OUTPUTS if arrays.get(name) is None]
    if missing:
        raise BadResponse(f"missing outputs {missing}")
    check_probabilities(arrays["probability"], n_rows)
    check_probabilities(arrays["pd"], n_rows)
    shapes = {name: tuple(np.shape(arrays[name])) for name in DECISION_OUTPUTS}
    expected = {name: (n_rows, 4 if name == "reason_codes" else 1) for name in DECISION_OUTPUTS}
    if shapes != expected:
        raise BadResponse(f"output shapes {shapes}, expected {expected}")
    if arrays["score"].dtype != np.int32:
        raise BadResponse(f"score has dtype {arrays['score'].dtype}, expected int32")
    decisions = {bytes(v) for v in arrays["decision"].ravel()}
    if not decisions <= DECISIONS:
        raise BadResponse(f"unknown decisions {sorted(decisions - DECISIONS)}")
    if any(not bytes(v) for v in arrays["policy"].ravel()):
        raise BadResponse("a row has no policy id@version")
