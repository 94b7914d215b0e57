"""Load the UCI data (CSV, Kaggle CSV or UCI .xls), check it against the contract, split it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from export.config import CONTRACT_JSON, DATA_CSV, SPLIT_JSON, SplitConfig
from preprocess_ensemble.features import ContractViolation, FeatureContract

# Header spellings seen in the wild -> the contract's names.
COLUMN_ALIASES = {
    "PAY_1": "PAY_0",
    "default.payment.next.month": "default payment next month",
    "default_payment_next_month": "default payment next month",
    "Y": "default payment next month",
}


class DataError(ValueError):
    """The input table does not match the feature contract; the message says where."""


@dataclass(frozen=True)
class Dataset:
    """Row IDs, raw features [n, 23] as float64, and the target (None when absent)."""

    ids: np.ndarray
    features: np.ndarray
    target: np.ndarray | None

    def take(self, ids: np.ndarray) -> Dataset:
        """Rows with the given IDs, in that order."""
        position = pd.Index(self.ids).get_indexer(ids)
        if (position < 0).any():
            raise DataError(f"{int((position < 0).sum())} split IDs are not in the data")
        target = None if self.target is None else self.target[position]
        return Dataset(self.ids[position], self.features[position], target)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV (optionally gzipped) or the original UCI .xls, normalising header variants.

    The UCI spreadsheet has a first header row X1..X23, Y above the real names; Kaggle's copy
    spells ``PAY_1`` and ``default.payment.next.month``.
    """
    path = Path(path)
    suffixes = "".join(path.suffixes).lower()
    if suffixes.endswith((".xls", ".xlsx")):
        frame = pd.read_excel(path, header=None, dtype=str)
    else:
        frame = pd.read_csv(path, header=None, dtype=str, keep_default_na=False)
    first = [str(v).strip() for v in frame.iloc[0]]
    header_row = 1 if "X1" in first and "LIMIT_BAL" not in first else 0
    columns = [str(v).strip() for v in frame.iloc[header_row]]
    table = frame.iloc[header_row + 1 :].reset_index(drop=True)
    table.columns = [COLUMN_ALIASES.get(c, c) for c in columns]
    return table


def to_dataset(table: pd.DataFrame, contract: FeatureContract, require_target: bool) -> Dataset:
    """Check columns, numbers and the contract; nothing is clamped or dropped."""
    id_column, target = contract.spec["id_column"], contract.spec["target"]
    header = [str(c) for c in table.columns]
    if require_target and target not in header:
        raise DataError(f"the target column {target!r} is missing")
    features = contract.parse_table(header, table.to_numpy(dtype=str).tolist())
    ids = (
        pd.to_numeric(table[id_column]).to_numpy(dtype=np.int64)
        if id_column in header
        else np.arange(1, len(table) + 1, dtype=np.int64)
    )
    y = None
    if target in header:
        y_values = pd.to_numeric(table[target].str.strip(), errors="coerce")
        bad = ~y_values.isin([0, 1]).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"data row {row + 1}: target {target!r} must be 0 or 1")
        y = y_values.to_numpy(dtype=np.int64)
    return Dataset(ids, features, y)


def load_dataset(
    path: str | Path = DATA_CSV,
    contract_path: str | Path = CONTRACT_JSON,
    require_target: bool = True,
) -> Dataset:
    """Read and check a data file against the contract."""
    contract = FeatureContract.from_json(contract_path)
    try:
        return to_dataset(read_table(path), contract, require_target)
    except (DataError, ContractViolation) as error:
        raise DataError(f"{path}: {error}") from None


def make_split(data: Dataset, config: SplitConfig = SplitConfig()) -> dict:
    """Deterministic stratified split into train / validation / holdout row IDs."""
    rng = np.random.default_rng(config.seed)
    parts: dict[str, list[int]] = {"train": [], "validation": [], "holdout": []}
    for label in (0, 1):
        ids = np.sort(data.ids[data.target == label])
        rng.shuffle(ids)
        n_hold = round(len(ids) * config.holdout_fraction)
        n_val = round(len(ids) * config.validation_fraction)
        parts["holdout"] += ids[:n_hold].tolist()
        parts["validation"] += ids[n_hold : n_hold + n_val].tolist()
        parts["train"] += ids[n_hold + n_val :].tolist()
    split = {"seed": config.seed, "stratified_on": "default payment next month"}
    split.update({name: sorted(ids) for name, ids in parts.items()})
    return split


def write_split(split: dict, path: str | Path = SPLIT_JSON) -> None:
    """Save the split as JSON row IDs (one line per part keeps diffs readable)."""
    lines = [f'  "{k}": {json.dumps(v)}' for k, v in split.items()]
    Path(path).write_text("{\n" + ",\n".join(lines) + "\n}\n")


def read_split(path: str | Path = SPLIT_JSON) -> dict:
    """Load the committed split."""
    return json.loads(Path(path).read_text())


def split_datasets(data: Dataset, split: dict) -> dict[str, Dataset]:
    """The train / validation / holdout parts of ``data``."""
    return {name: data.take(np.asarray(split[name])) for name in ("train", "validation", "holdout")}
