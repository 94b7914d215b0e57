"""Platt calibration of the INT8 network, fitted on the validation split at export time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from preprocess_ensemble.decisioning import Calibration, logit, sigmoid

ECE_BINS = 10


def fit_platt(p: np.ndarray, y: np.ndarray, iterations: int = 50) -> Calibration:
    """Maximum-likelihood ``a, b`` of ``sigmoid(a * logit(p) + b)`` (Newton's method, float64)."""
    z, y = logit(p), np.asarray(y, dtype=np.float64)
    design = np.column_stack([z, np.ones_like(z)])
    theta = np.array([1.0, 0.0])
    for _ in range(iterations):
        q = sigmoid(design @ theta)
        gradient = design.T @ (q - y)
        hessian = design.T @ (design * (q * (1.0 - q))[:, None])
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.abs(step).max() < 1e-12:
            break
    return Calibration(float(theta[0]), float(theta[1]))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probabilities."""
    return float(np.mean((np.asarray(p, dtype=np.float64) - y) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Row-weighted mean |mean predicted - observed rate| over equal-width probability bins."""
    p = np.asarray(p, dtype=np.float64)
    index = np.clip(np.digitize(p, np.linspace(0.0, 1.0, bins + 1)[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() * abs(p[mask].mean() - y[mask].mean())
    return float(total / len(p))


def calibration_report(
    calibration: Calibration, p_holdout: np.ndarray, y_holdout: np.ndarray
) -> dict[str, float]:
    """Brier score and ECE on the holdout before and after calibration."""
    pd = calibration.apply(p_holdout)
    return {
        "brier_before": brier(y_holdout, p_holdout),
        "brier_after": brier(y_holdout, pd),
        "ece_before": expected_calibration_error(y_holdout, p_holdout),
        "ece_after": expected_calibration_error(y_holdout, pd),
    }


def write_calibration(calibration: Calibration, rows: int, path: str | Path) -> Path:
    """Save the Platt parameters as JSON (read by ``Calibration.from_json``)."""
    payload = {
        "method": "platt",
        "formula": "pd = 1 / (1 + exp(-(a * logit(p) + b))), p = credit_model probability",
        "fitted_on": f"validation split, {rows} rows, INT8 probabilities",
        "a": calibration.a,
        "b": calibration.b,
    }
    Path(path).write_text(json.dumps(payload, indent=2) + "\n")
    return Path(path)
