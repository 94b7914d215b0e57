"""The network's input encoding (export/encoding.py): an ONNX graph fitted on the training rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from export.config import CONTRACT_JSON, ENCODING_JSON, TrainConfig
from export.data import Dataset, load_dataset, read_split
from export.encoding import Encoding, columns_for, encode, fit_encoding
from preprocess_ensemble.features import FeatureContract

CONTRACT = FeatureContract.from_json(CONTRACT_JSON)


@pytest.fixture(scope="module")
def train() -> Dataset:
    return load_dataset().take(np.asarray(read_split()["train"]))


def test_columns_leave_out_protected_features_and_split_repayment_status() -> None:
    columns = columns_for(CONTRACT, TrainConfig())
    seen = {CONTRACT.names[j] for _, j in columns}
    assert seen == set(CONTRACT.names) - {"SEX", "MARRIAGE", "AGE"}
    j = CONTRACT.names.index("PAY_0")
    assert [t for t, k in columns if k == j] == ["delay", "status_-2", "status_-1"]
    k = CONTRACT.names.index("BILL_AMT1")
    assert [t for t, m in columns if m == k] == ["signed_log1p"]
    everything = columns_for(CONTRACT, TrainConfig(exclude_from_model=()))
    assert {CONTRACT.names[j] for _, j in everything} == set(CONTRACT.names)
    with pytest.raises(ValueError, match="unknown features"):
        columns_for(CONTRACT, TrainConfig(exclude_from_model=("GENDER",)))


def test_the_training_average_encodes_to_zero_and_the_json_round_trips(
    train: Dataset, tmp_path: Path
) -> None:
    encoding = fit_encoding(CONTRACT, TrainConfig(), train.features)
    z = encode(encoding, train.features).astype(np.float64)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-4)
    path = encoding.to_json(tmp_path / "encoding.json")
    loaded = Encoding.from_json(path, CONTRACT.names)
    assert loaded.columns == encoding.columns
    np.testing.assert_array_equal(loaded.mean, encoding.mean)
    np.testing.assert_array_equal(loaded.scale, encoding.scale)
    committed = Encoding.from_json(ENCODING_JSON, CONTRACT.names)
    assert committed.columns == encoding.columns
    np.testing.assert_allclose(committed.mean, encoding.mean, rtol=0, atol=0)
    assert json.loads(ENCODING_JSON.read_text())["description"]


def unit(encoding: Encoding) -> Encoding:
    """The same columns without standardization (mean 0, scale 1)."""
    return replace(encoding, mean=np.zeros(encoding.width), scale=np.ones(encoding.width))


def test_transforms_in_the_graph(train: Dataset) -> None:
    encoding = unit(fit_encoding(CONTRACT, TrainConfig(), train.features[:100]))
    rows = np.repeat(train.features[:1].astype(np.float32), 5, axis=0)
    j, k = CONTRACT.names.index("PAY_0"), CONTRACT.names.index("BILL_AMT1")
    rows[:, j] = [-2, -1, 0, 1, 8]
    rows[:, k] = [-1_000_000, -1, 0, 1, 1_000_000]
    z = encode(encoding, rows).astype(np.float64)
    delay, minus_two, minus_one = encoding.columns_of(j)
    np.testing.assert_array_equal(z[:, delay], [0, 0, 0, 1, 8])
    np.testing.assert_array_equal(z[:, minus_two], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(z[:, minus_one], [0, 1, 0, 0, 0])
    (logged,) = encoding.columns_of(k)
    expected = np.sign(rows[:, k]) * np.log1p(np.abs(rows[:, k].astype(np.float64)))
    np.testing.assert_allclose(z[:, logged], expected, rtol=1e-6)
    assert z[0, logged] == -z[4, logged] and z[2, logged] == 0.0  # odd, finite


def test_constant_columns_keep_scale_one(train: Dataset) -> None:
    rows = train.features[:50].copy()
    rows[:, CONTRACT.names.index("EDUCATION")] = 2
    encoding = fit_encoding(CONTRACT, TrainConfig(), rows)
    (column,) = encoding.columns_of(CONTRACT.names.index("EDUCATION"))
    assert encoding.scale[column] == 1.0
    assert np.isfinite(encode(encoding, rows)).all()
