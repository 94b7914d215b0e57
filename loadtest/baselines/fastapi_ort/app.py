"""The seed project's serving architecture: FastAPI + ONNX Runtime in one Python process.

A comparator for ``make bench-serving`` only, not a product. It runs the same contract check
(``preprocess_ensemble.features``) and the same published files as the Triton ensembles, through
``InProcessScorer`` (one implementation), so the benchmark compares serving stacks, not models.
Run it with::

    .venv/bin/uvicorn loadtest.baselines.fastapi_ort.app:app --port 8080 --workers 2

``POST /predict`` takes ``{"rows": [[23 raw values], ...]}`` (contract order) and returns
``{"probabilities": [...]}`` (the seed's work: the network only). ``POST /decide`` does
``credit_scoring``'s work (contract check, network with the 23 substitutions, policy) and returns
every output per row. A contract violation is a 422 naming row and feature.
"""

from __future__ import annotations

import os

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from preprocess_ensemble.features import ContractViolation
from preprocess_ensemble.scoring import InProcessScorer


class Applicants(BaseModel):
    """Raw applicant rows in the contract's order."""

    rows: list[list[float]]


class Scores(BaseModel):
    """One probability of default per row."""

    probabilities: list[float]


class Decisions(BaseModel):
    """Every credit_scoring output, one entry per row."""

    probability: list[float]
    pd: list[float]
    score: list[int]
    decision: list[str]
    reason_codes: list[list[str]]
    policy: list[str]


scorer = InProcessScorer.published(threads=int(os.environ.get("BASELINE_THREADS", "1")))
app = FastAPI(title="credit scoring (FastAPI + ONNX Runtime baseline)")


@app.get("/health")
def health() -> dict[str, str]:
    """Liveness and readiness in one (the model is loaded at import)."""
    return {"status": "ok"}


def _checked(applicants: Applicants) -> np.ndarray:
    rows = np.asarray(applicants.rows, dtype=np.float64)
    try:
        return scorer.check(rows.reshape(len(rows), -1) if rows.ndim == 1 else rows)
    except ContractViolation as error:
        raise HTTPException(status_code=422, detail=str(error)) from None


@app.post("/predict")
def predict(applicants: Applicants) -> Scores:
    """Validate and score the rows (the network only, as the seed service did)."""
    probabilities = scorer.model.run(None, {"features": _checked(applicants)})[0]
    return Scores(probabilities=probabilities[:, 0].tolist())


@app.post("/decide")
def decide(applicants: Applicants) -> Decisions:
    """credit_scoring's work in process: check, network with substitutions, policy."""
    probabilities = scorer.reasons.run(None, {"features": _checked(applicants)})[0]
    out = scorer.apply_policy(probabilities)
    return Decisions(
        probability=out["probability"][:, 0].tolist(),
        pd=out["pd"][:, 0].tolist(),
        score=out["score"][:, 0].tolist(),
        decision=out["decision"][:, 0].tolist(),
        reason_codes=out["reason_codes"].tolist(),
        policy=out["policy"][:, 0].tolist(),
    )
