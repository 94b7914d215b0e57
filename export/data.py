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
    expected = set(contract.names) | {target}
    present = set(table.columns)
    missing = [c for c in contract.names if c not in present]
    if require_target and target not in present:
        missing.append(target)
    extra = sorted(present - expected - {id_column})
    if missing or extra:
        raise DataError(f"columns do not match the contract: missing {missing}, unexpected {extra}")
    numeric = {}
    for column in [*contract.names, *([target] if target in present else [])]:
        values = pd.to_numeric(table[column].str.strip(), errors="coerce")
        bad = values.isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"data row {row + 1}: column {column} = {table[column].iloc[row]!r} is not a number"
            )
        numeric[column] = values.to_numpy(dtype=np.float64)
    features = np.column_stack([numeric[c] for c in contract.names])
    invalid = contract.invalid_mask(features)
    if invalid.any():
        rows, cols = np.nonzero(invalid)
        r, c = int(rows[0]), int(cols[0])
        message = contract.describe(f"data row {r + 1}", c, float(features[r, c]))
        raise DataError(f"{message} ({len(rows)} invalid values in all)")
    ids = (
        pd.to_numeric(table[id_column]).to_numpy(dtype=np.int64)
        if id_column in present
        else np.arange(1, len(table) + 1, dtype=np.int64)
    )
    y = None
    if target in numeric:
        y = numeric[target].astype(np.int64)
        if not np.isin(y, (0, 1)).all():
            raise DataError(f"target {target!r} must be 0 or 1")
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
