"""Fairness audit on the holdout: AUC, calibration and approval rate by group, adverse impact.

Groups: SEX, MARRIAGE, EDUCATION (codes as in the contract) and AGE bands. The adverse impact
ratio (AIR) of a group is its approval rate over the highest approval rate among the audited
groups of the same attribute (four-fifths rule: flag below 0.8). Groups smaller than
``min_group_rows`` are reported but neither set the reference rate nor are gated.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from preprocess_ensemble.features import FeatureContract

CODE_LABELS = {
    "SEX": {1: "male", 2: "female"},
    "MARRIAGE": {0: "unknown (0)", 1: "married", 2: "single", 3: "other"},
    "EDUCATION": {
        0: "unknown (0)",
        1: "graduate school",
        2: "university",
        3: "high school",
        4: "other",
        5: "unknown (5)",
        6: "unknown (6)",
    },
}
AGE_BANDS = ((18, 24), (25, 34), (35, 44), (45, 54), (55, 100))


def group_masks(contract: FeatureContract, raw: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    """Attribute -> group label -> boolean row mask."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    for name, labels in CODE_LABELS.items():
        column = raw[:, contract.names.index(name)]
        groups[name] = {label: column == code for code, label in labels.items()}
    age = raw[:, contract.names.index("AGE")]
    groups["AGE"] = {
        (f"{lo}-{hi}" if hi < 100 else f"{lo}+"): (age >= lo) & (age <= hi) for lo, hi in AGE_BANDS
    }
    return groups


def audit_table(
    contract: FeatureContract,
    raw: np.ndarray,
    y: np.ndarray,
    pd: np.ndarray,
    approved: np.ndarray,
    min_group_rows: int,
) -> list[dict]:
    """One row per group: size, AUC, mean PD vs observed default rate, approval rate, AIR."""
    table = []
    for attribute, masks in group_masks(contract, raw).items():
        rows = []
        for label, mask in masks.items():
            n = int(mask.sum())
            if n == 0:
                continue
            both = 0 < y[mask].sum() < n
            rows.append(
                {
                    "attribute": attribute,
                    "group": label,
                    "rows": n,
                    "audited": n >= min_group_rows,
                    "auc": float(roc_auc_score(y[mask], pd[mask])) if both else None,
                    "mean_pd": float(pd[mask].mean()),
                    "default_rate": float(y[mask].mean()),
                    "approval_rate": float(approved[mask].mean()),
                }
            )
        best = max((r["approval_rate"] for r in rows if r["audited"]), default=0.0)
        for r in rows:
            r["adverse_impact_ratio"] = r["approval_rate"] / best if best > 0 else None
        table += rows
    return table


def audit_failures(table: list[dict], min_ratio: float) -> list[str]:
    """One message per audited group whose adverse impact ratio is below ``min_ratio``."""
    return [
        f"fairness audit: {r['attribute']} = {r['group']} approval rate "
        f"{r['approval_rate']:.3f} is {r['adverse_impact_ratio']:.3f} of the highest group's, "
        f"below the four-fifths limit {min_ratio}"
        for r in table
        if r["audited"]
        and r["adverse_impact_ratio"] is not None
        and r["adverse_impact_ratio"] < min_ratio
    ]
