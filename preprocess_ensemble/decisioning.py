"""Credit decisioning parameters: Platt calibration, the versioned policy, the reason catalogue.

Served by the ``credit_policy`` ONNX graph, which export/policy.py generates from these (one
implementation; tests/oracle.py re-implements the formulas in numpy only as a test oracle):

- Calibration: Platt scaling on the network's logit, ``pd = sigmoid(a * logit(p) + b)``.
- Points: ``score = offset + factor * ln(odds of good)``, ``factor = pdo / ln 2``,
  ``offset = base_points - factor * ln(base_odds)``, rounded half up to a whole point.
- Decision: ``decline`` below ``decline_below``, ``approve`` from ``approve_from``, else
  ``refer``; the policy's id and version travel with every answer as ``"id@version"``.
- Reason codes: ``contribution_j = pd(x) - pd(x with feature j at the reference applicant)``;
  the (at most) four largest positive contributions, ties broken by feature order, named by the
  catalogue's stable codes; empty strings pad the rest. The catalogue renders each code's text
  for an applicant (:meth:`ReasonCatalogue.text`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DECISIONS = ("approve", "refer", "decline")
# Words for the repayment status codes that are not months of delay (the data's coding).
STATUS_WORDS = {-2: "no credit used", -1: "paid in full on time", 0: "revolving credit, paid"}
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


@dataclass(frozen=True)
class ReasonCatalogue:
    """Stable code, kind and label per feature the network may cite, and the reference."""

    codes: tuple[str, ...]  # per contract feature, in order; "" where it may never be a reason
    kinds: tuple[str, ...]  # amount, status or category ("" where no code)
    labels: tuple[str, ...]
    reference: np.ndarray  # the reference applicant in request units [n_features] (nan: none)
    count: int  # reason codes returned per applicant

    @classmethod
    def from_json(cls, path: str | Path, feature_names: tuple[str, ...]) -> ReasonCatalogue:
        """Read the catalogue; its features must be contract features, in contract order."""
        spec = json.loads(Path(path).read_text())
        entries = {e["feature"]: e for e in spec["reasons"]}
        listed = [e["feature"] for e in spec["reasons"]]
        if listed != [n for n in feature_names if n in entries]:
            raise ValueError(f"{path}: reasons must name contract features, in contract order")
        codes = [e["code"] for e in spec["reasons"]]
        if len(set(codes)) != len(codes) or "" in codes:
            raise ValueError(f"{path}: reason codes must be unique and non-empty")
        values = spec["reference_applicant"]["values"]

        def field(name: str, key: str) -> str:
            return entries[name][key] if name in entries else ""

        return cls(
            codes=tuple(field(n, "code") for n in feature_names),
            kinds=tuple(field(n, "kind") for n in feature_names),
            labels=tuple(field(n, "label") for n in feature_names),
            reference=np.asarray([values.get(n, np.nan) for n in feature_names], np.float64),
            count=int(spec["codes_per_applicant"]),
        )

    def text(self, code: str, value: float) -> str:
        """The applicant-specific text of ``code`` given the feature's ``value`` ("" for "")."""
        if not code:
            return ""
        j = self.codes.index(code)
        label, kind, average = self.labels[j], self.kinds[j], self.reference[j]
        if kind == "status":
            status = STATUS_WORDS.get(int(value)) or (
                f"payment {int(value)} month{'s' if value > 1 else ''} late"
                if value < 9
                else "payment 9 or more months late"
            )
            return f"{label}: {status}, a higher risk than the average applicant's"
        if kind == "amount":
            side = "higher" if value > average else "lower"
            return (
                f"{label} is {side} than the average applicant's "
                f"({value:,.0f} vs {average:,.0f} NT$), which raises the estimated risk"
            )
        return f"{label} (code {int(value)}) carries a higher risk than the average applicant's"
