"""Realistic applicants for load tests: the holdout rows, raw, in the contract's order.

Only numpy, the standard library and the project's CSV reader (no pandas), so Locust users and
the benchmark's load generator read them in the slim serving environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from preprocess_ensemble.client import load_contract, read_csv

ROOT = Path(__file__).resolve().parents[1]
DATA_CSV = ROOT / "data" / "default_of_credit_card_clients.csv.gz"
SPLIT_JSON = ROOT / "data" / "split.json"


def holdout_rows(
    data_csv: str | Path = DATA_CSV, split_json: str | Path = SPLIT_JSON
) -> np.ndarray:
    """Return the holdout applicants as float32 ``[n, 23]`` (file order, contract order)."""
    contract = load_contract()
    table = read_csv(data_csv, contract)
    id_index = table.header.index(contract.spec["id_column"])
    ids = np.array([int(record[id_index]) for record in table.rows])
    holdout = np.asarray(json.loads(Path(split_json).read_text())["holdout"])
    return np.ascontiguousarray(table.features[np.isin(ids, holdout)], dtype=np.float32)


def load_rows(path: str | Path | None = None) -> np.ndarray:
    """Rows from a ``.npy`` file or a CSV with the contract's header; the holdout by default."""
    if path is None:
        return holdout_rows()
    path = Path(path)
    rows = np.load(path) if path.suffix == ".npy" else read_csv(path, load_contract()).features
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != load_contract().n_features or len(rows) == 0:
        raise ValueError(f"{path}: expected rows [n, 23], got {list(rows.shape)}")
    return rows
