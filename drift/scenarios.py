"""Current data for demonstrations: the holdout split unchanged, and realistic shifts of it.

Each scenario returns raw rows that pass the feature contract, drawn from rows the model never
trained on (holdout, or holdout + validation when a population mix is reweighted):

* ``holdout``: the holdout split as it is; expect no drift.
* ``limit_raise``: every credit limit raised 30% (rounded to NT$1,000, within the contract).
* ``older_applicants``: the applicant mix ages: rows drawn with weight exp((AGE - 35) / 8).
* ``delinquency``: more delinquent repayment histories: rows with any PAY_x >= 1 are drawn
  ten times as often as the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from export.data import Dataset
from preprocess_ensemble.features import FeatureContract

SEED = 2024
PAY_COLUMNS = ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")


def _holdout(contract: FeatureContract, splits: dict[str, Dataset]) -> Dataset:
    return splits["holdout"]


def _limit_raise(contract: FeatureContract, splits: dict[str, Dataset]) -> Dataset:
    data = splits["holdout"]
    x = data.features.copy()
    j = contract.names.index("LIMIT_BAL")
    x[:, j] = np.minimum(np.round(x[:, j] * 1.3, -3), contract.upper[j])
    return Dataset(data.ids, x, None)


def _reweighted(
    splits: dict[str, Dataset], weight: Callable[[np.ndarray], np.ndarray], n: int
) -> Dataset:
    """``n`` rows of holdout + validation, drawn without replacement in proportion to weight."""
    pool = Dataset(
        np.concatenate([splits["holdout"].ids, splits["validation"].ids]),
        np.vstack([splits["holdout"].features, splits["validation"].features]),
        None,
    )
    w = weight(pool.features)
    chosen = np.random.default_rng(SEED).choice(len(w), size=n, replace=False, p=w / w.sum())
    return pool.take(pool.ids[np.sort(chosen)])


def _older_applicants(contract: FeatureContract, splits: dict[str, Dataset]) -> Dataset:
    age = contract.names.index("AGE")
    n = len(splits["holdout"].ids)
    return _reweighted(splits, lambda x: np.exp((x[:, age] - 35.0) / 8.0), n)


def _delinquency(contract: FeatureContract, splits: dict[str, Dataset]) -> Dataset:
    pay = [contract.names.index(c) for c in PAY_COLUMNS]
    n = len(splits["holdout"].ids)
    return _reweighted(splits, lambda x: np.where((x[:, pay] >= 1).any(axis=1), 10.0, 1.0), n)


SCENARIOS: dict[str, Callable[[FeatureContract, dict[str, Dataset]], Dataset]] = {
    "holdout": _holdout,
    "limit_raise": _limit_raise,
    "older_applicants": _older_applicants,
    "delinquency": _delinquency,
}
SHIFTS = tuple(name for name in SCENARIOS if name != "holdout")
# The features each shift is built to move: the drift job must name them (tests check this).
EXPECTED = {
    "holdout": (),
    "limit_raise": ("LIMIT_BAL",),
    "older_applicants": ("AGE",),
    "delinquency": ("PAY_0", "PAY_2", "PAY_3"),  # the older months move less
}


def make_scenario(name: str, contract: FeatureContract, splits: dict[str, Dataset]) -> Dataset:
    """The rows of scenario ``name``; they pass the contract."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    data = SCENARIOS[name](contract, splits)
    contract.validate(data.features)
    return data


def write_scenario_csv(data: Dataset, contract: FeatureContract, path: str | Path) -> Path:
    """Write ID + the 23 features as integers, the layout ``load_dataset`` reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(data.features.astype(np.int64), columns=list(contract.names))
    frame.insert(0, contract.spec["id_column"], data.ids)
    frame.to_csv(path, index=False)
    return path
