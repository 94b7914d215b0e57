"""Independent numpy oracle of the ``credit_policy`` graph (export/policy.py), for tests only.

The product runs the ONNX graph; this re-derives every output from the network probabilities
with the formulas of preprocess_ensemble/decisioning.py's docstring, so a wrong node in the
generated graph cannot agree with it by construction.
"""

from __future__ import annotations

import numpy as np

from preprocess_ensemble.decisioning import DECISIONS, Calibration, Policy, logit


def points(policy: Policy, pd: np.ndarray) -> np.ndarray:
    """Scorecard points (int32): offset + factor * ln((1 - pd) / pd), rounded half up."""
    return np.floor(policy.offset - policy.factor * logit(pd) + 0.5).astype(np.int32)


def decisions(policy: Policy, score: np.ndarray) -> np.ndarray:
    """approve from ``approve_from``, decline below ``decline_below``, refer in between."""
    score = np.asarray(score)
    index = np.where(score >= policy.approve_from, 0, np.where(score < policy.decline_below, 2, 1))
    return np.asarray(DECISIONS, dtype=object)[index]


def top_reasons(contribution: np.ndarray, codes: tuple[str, ...], count: int) -> np.ndarray:
    """[n, count] codes of the largest positive contributions, ties broken by feature order."""
    order = np.argsort(-contribution, axis=1, kind="stable")[:, :count]
    positive = np.take_along_axis(contribution, order, axis=1) > 0
    names = np.asarray(codes, dtype=object)[order]
    return np.where(positive, names, "").astype(object)


def policy_outputs(
    probabilities: np.ndarray,
    calibration: Calibration,
    policy: Policy,
    codes: tuple[str, ...],
    count: int,
) -> dict[str, np.ndarray]:
    """What credit_policy returns for network probabilities [n, C] (C = 1 or 1 + features)."""
    p = np.asarray(probabilities, dtype=np.float32)
    pd_all = calibration.apply(p.astype(np.float64))
    pd = pd_all[:, :1]
    score = points(policy, pd)
    contribution = pd - pd_all[:, 1:]
    padded = np.concatenate([contribution, np.zeros((len(p), count))], axis=1)
    table = (*codes, *[""] * count)[: padded.shape[1]]
    return {
        "probability": p[:, :1],
        "pd": pd.astype(np.float32),
        "score": score,
        "decision": decisions(policy, score),
        "reason_codes": top_reasons(padded, table, count),
        "policy": np.full((len(p), 1), policy.label, dtype=object),
    }
