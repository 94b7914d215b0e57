"""The seed project's serving architecture: FastAPI + ONNX Runtime in one Python process.

A comparator for ``make bench-serving`` only, not a product. It runs the same contract check and
standardizer (``preprocess_ensemble.features``) and the same published INT8 file as the Triton
ensemble, so the benchmark compares serving stacks, not models. Run it with::

    .venv/bin/uvicorn loadtest.baselines.fastapi_ort.app:app --port 8080 --workers 2

``POST /predict`` takes ``{"rows": [[23 raw values], ...]}`` (contract order) and returns
``{"probabilities": [...]}``; a contract violation is a 422 naming row and feature.
"""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from export.config import CONTRACT_JSON, PUBLISHED_ONNX, PUBLISHED_SCALER
from preprocess_ensemble.features import ContractViolation, FeatureContract, Standardizer


class Applicants(BaseModel):
    """Raw applicant rows in the contract's order."""

    rows: list[list[float]]


class Scores(BaseModel):
    """One probability of default per row."""

    probabilities: list[float]


def _session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("BASELINE_THREADS", "1"))
    options.inter_op_num_threads = 1
    path = os.environ.get("BASELINE_ONNX", str(PUBLISHED_ONNX))
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


contract = FeatureContract.from_json(CONTRACT_JSON)
scaler = Standardizer.from_json(os.environ.get("BASELINE_SCALER", str(PUBLISHED_SCALER)))
session = _session()
app = FastAPI(title="credit scoring (FastAPI + ONNX Runtime baseline)")


@app.get("/health")
def health() -> dict[str, str]:
    """Liveness and readiness in one (the model is loaded at import)."""
    return {"status": "ok"}


@app.post("/predict")
def predict(applicants: Applicants) -> Scores:
    """Validate, standardize and score the rows."""
    rows = np.asarray(applicants.rows, dtype=np.float64)
    try:
        contract.validate(rows.reshape(len(rows), -1) if rows.ndim == 1 else rows)
    except ContractViolation as error:
        raise HTTPException(status_code=422, detail=str(error)) from None
    probabilities = session.run(None, {"input": scaler.transform(rows)})[0]
    return Scores(probabilities=probabilities[:, 0].tolist())
