"""Credit decisioning: calibrated PD, scorecard points, policy decision and reason codes.

Plain numpy and the standard library, like ``features.py``: the export pipeline, the gate's
fairness audit, the clients and the tests import it from the project, and ``export.publish``
copies it unchanged into ``model_repository/decision/1/`` for the Triton ``decision`` step
(a test fails when the copy is stale).

- Calibration: Platt scaling on the network's logit, ``pd = sigmoid(a * logit(p) + b)``.
- Points: ``score = offset + factor * ln(odds of good)``, ``factor = pdo / ln 2``,
  ``offset = base_points - factor * ln(base_odds)``, rounded half up to a whole point.
- Decision: ``decline`` below ``decline_below``, ``approve`` from ``approve_from``, else
  ``refer``; the policy's id and version travel with every answer as ``"id@version"``.
- Reason codes: ``contribution_j = pd(x) - pd(x with feature j set to the reference
  applicant's value)``; the (at most) four largest positive contributions, ties broken by
  feature order, named by the catalogue's stable codes; empty strings pad the rest.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DECISIONS = ("approve", "refer", "decline")
PROBABILITY_EPS = 1e-7  # keeps logit(p) finite when a float32 probability rounds to 0 or 1


def logit(p: np.ndarray) -> np.ndarray:
    """Log odds of default, float64, with ``p`` clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(p, dtype=np.float64), PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Inverse of :func:`logit`, float64."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


@dataclass(frozen=True)
class Calibration:
    """Platt scaling of the network's probability: ``pd = sigmoid(a * logit(p) + b)``."""

    a: float = 1.0
    b: float = 0.0

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated PD, float64, same shape as ``p``."""
        return sigmoid(self.a * logit(p) + self.b)

    @classmethod
    def from_json(cls, path: str | Path) -> Calibration:
        """Read ``calibration.json`` (method ``platt``)."""
        spec = json.loads(Path(path).read_text())
        if spec.get("method") != "platt":
            raise ValueError(f"{path}: unsupported calibration method {spec.get('method')!r}")
        return cls(float(spec["a"]), float(spec["b"]))


@dataclass(frozen=True)
class Policy:
    """A versioned decision policy: the points scale and the cut-offs on the score."""

    policy_id: str
    version: str
    pdo: float
    base_points: float
    base_odds: float
    approve_from: int
    decline_below: int

    @classmethod
    def from_json(cls, path: str | Path) -> Policy:
        """Read the policy JSON and check that its cut-offs are ordered."""
        spec = json.loads(Path(path).read_text())
        points, cutoffs = spec["scorecard"], spec["cutoffs"]
        policy = cls(
            policy_id=str(spec["id"]),
            version=str(spec["version"]),
            pdo=float(points["pdo"]),
            base_points=float(points["base_points"]),
            base_odds=float(points["base_odds_good_to_bad"]),
            approve_from=int(cutoffs["approve_from"]),
            decline_below=int(cutoffs["decline_below"]),
        )
        if not (policy.pdo > 0 and policy.base_odds > 0):
            raise ValueError(f"{path}: pdo and base odds must be positive")
        if policy.decline_below > policy.approve_from:
            raise ValueError(f"{path}: decline_below must not exceed approve_from")
        return policy

    @property
    def label(self) -> str:
        """``"id@version"``, returned with every decision."""
        return f"{self.policy_id}@{self.version}"

    @property
    def factor(self) -> float:
        """Points per unit of ln(odds): PDO / ln 2."""
        return self.pdo / math.log(2.0)

    @property
    def offset(self) -> float:
        """Points at odds of 1:1."""
        return self.base_points - self.factor * math.log(self.base_odds)

    def points(self, pd: np.ndarray) -> np.ndarray:
        """Scorecard points (int32) for PDs: offset + factor * ln((1 - pd) / pd), half up."""
        raw = self.offset - self.factor * logit(pd)
        return np.floor(raw + 0.5).astype(np.int32)

    def decide(self, score: np.ndarray) -> np.ndarray:
        """``approve`` / ``refer`` / ``decline`` (object array of str) for integer scores."""
        score = np.asarray(score)
        index = np.where(score >= self.approve_from, 0, np.where(score < self.decline_below, 2, 1))
        return np.asarray(DECISIONS, dtype=object)[index]


@dataclass(frozen=True)
class ReasonCatalogue:
    """Stable code and plain-language text per feature, and the reference applicant."""

    codes: tuple[str, ...]  # in the contract's feature order
    texts: tuple[str, ...]
    reference: np.ndarray  # raw reference applicant [n_features], float64
    count: int  # reason codes returned per applicant

    @classmethod
    def from_json(cls, path: str | Path, feature_names: tuple[str, ...]) -> ReasonCatalogue:
        """Read the catalogue; its features must be the contract's, in the same order."""
        spec = json.loads(Path(path).read_text())
        entries = spec["reasons"]
        names = tuple(e["feature"] for e in entries)
        if names != tuple(feature_names):
            raise ValueError(f"{path}: reasons must list the contract's features in order")
        codes = tuple(e["code"] for e in entries)
        if len(set(codes)) != len(codes) or "" in codes:
            raise ValueError(f"{path}: reason codes must be unique and non-empty")
        reference = spec["reference_applicant"]["values"]
        return cls(
            codes=codes,
            texts=tuple(e["text"] for e in entries),
            reference=np.asarray([reference[n] for n in names], dtype=np.float64),
            count=int(spec["codes_per_applicant"]),
        )

    def text(self, code: str) -> str:
        """Plain-language text of a code ("" for the padding code "")."""
        return self.texts[self.codes.index(code)] if code else ""


def substitutions(x: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rows [n * d, d]: for each applicant, d copies with feature j set to ``reference[j]``."""
    n, d = x.shape
    rows = np.repeat(np.asarray(x, dtype=np.float32), d, axis=0).reshape(n, d, d)
    rows[:, np.arange(d), np.arange(d)] = np.asarray(reference, dtype=np.float32)
    return rows.reshape(n * d, d)


def contributions(pd: np.ndarray, pd_substituted: np.ndarray) -> np.ndarray:
    """[n, d]: how much each feature raised the PD over the reference value (float64)."""
    pd = np.asarray(pd, dtype=np.float64).reshape(-1, 1)
    return pd - np.asarray(pd_substituted, dtype=np.float64).reshape(len(pd), -1)


def top_reasons(contribution: np.ndarray, codes: tuple[str, ...], count: int) -> np.ndarray:
    """[n, count] object array of codes: largest positive contributions first, ties by order."""
    order = np.argsort(-contribution, axis=1, kind="stable")[:, :count]
    positive = np.take_along_axis(contribution, order, axis=1) > 0
    names = np.asarray(codes, dtype=object)[order]
    return np.where(positive, names, "").astype(object)


@dataclass(frozen=True)
class Decider:
    """Everything the ``decision`` step returns, for a batch of standardized applicants."""

    calibration: Calibration
    policy: Policy
    catalogue: ReasonCatalogue
    reference: np.ndarray  # the reference applicant, standardized [n_features] float32
    chunk: int  # applicants per scoring call: max rows per call // n_features

    def decide(
        self, x: np.ndarray, p: np.ndarray, score: Callable[[np.ndarray], np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Outputs [n, 1] (``reason_codes`` [n, 4]) for rows ``x`` and their probabilities ``p``.

        ``score`` returns the network's probabilities [m] for standardized rows [m, d]; it gets
        the substitution rows of at most ``chunk`` applicants per call.
        """
        p = np.asarray(p, dtype=np.float32).reshape(-1)
        p_sub = np.concatenate(
            [
                score(substitutions(x[i : i + self.chunk], self.reference))
                for i in range(0, len(x), self.chunk)
            ]
        )
        pd = self.calibration.apply(p)
        points = self.policy.points(pd)
        contribution = contributions(pd, self.calibration.apply(p_sub))
        reasons = top_reasons(contribution, self.catalogue.codes, self.catalogue.count)
        return {
            "probability": p[:, None],
            "pd": pd.astype(np.float32)[:, None],
            "score": points[:, None],
            "decision": self.policy.decide(points)[:, None],
            "reason_codes": reasons,
            "policy": np.full((len(p), 1), self.policy.label, dtype=object),
            "contributions": contribution,
        }
