"""The feature contract, the standardizer and the CSV loader: every rule, every message."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from export.config import CONTRACT_JSON, DATA_CSV, ROOT
from export.data import DataError, Dataset, load_dataset
from preprocess_ensemble.features import ContractViolation, FeatureContract

N_SAMPLE = 50


@pytest.fixture(scope="module")
def contract() -> FeatureContract:
    return FeatureContract.from_json(CONTRACT_JSON)


@pytest.fixture(scope="module")
def data() -> Dataset:
    return load_dataset()


@pytest.fixture(scope="module")
def csv_lines() -> list[str]:
    """Header and the first N_SAMPLE data lines of the committed CSV, as text."""
    with gzip.open(DATA_CSV, "rt", newline="") as handle:
        return [next(handle).rstrip("\r\n") for _ in range(N_SAMPLE + 1)]


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def replace_cell(lines: list[str], data_row: int, column: str, value: str) -> list[str]:
    """Copy of ``lines`` with one cell (1-based data row, by header name) replaced."""
    header = lines[0].split(",")
    cells = lines[data_row].split(",")
    cells[header.index(column)] = value
    return [*lines[:data_row], ",".join(cells), *lines[data_row + 1 :]]


def drop_column(lines: list[str], column: str) -> list[str]:
    index = lines[0].split(",").index(column)
    return [",".join(c for i, c in enumerate(line.split(",")) if i != index) for line in lines]


# --- the contract on the data and on single bad values ---------------------------------------


def test_every_dataset_row_satisfies_the_contract(contract: FeatureContract, data: Dataset) -> None:
    assert data.features.shape == (30_000, contract.n_features)
    assert not contract.invalid_mask(data.features).any()
    contract.validate(data.features)  # raises on any violation


def test_contract_matches_the_uci_column_order(contract: FeatureContract) -> None:
    pay = ["PAY_0", *[f"PAY_{i}" for i in range(2, 7)]]
    bills = [f"BILL_AMT{i}" for i in range(1, 7)]
    paid = [f"PAY_AMT{i}" for i in range(1, 7)]
    expected = ["LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", *pay, *bills, *paid]
    assert list(contract.names) == expected


@pytest.mark.parametrize(
    ("feature", "value", "rule"),
    [
        ("LIMIT_BAL", np.nan, "is NaN; every value must be a finite number"),
        ("BILL_AMT3", np.inf, "is inf; every value must be a finite number"),
        ("PAY_AMT2", -np.inf, "is -inf; every value must be a finite number"),
        ("PAY_AMT1", 1.5, "= 1.5 is not a whole number"),
        ("SEX", 3.0, "= 3 is not an allowed code (allowed: 1, 2)"),
        ("AGE", 5.0, "= 5 is outside the allowed range [18, 100]"),
        ("LIMIT_BAL", -1000.0, "= -1000 is outside the allowed range [0, 1e+07]"),
        (
            "PAY_0",
            10.0,
            "= 10 is not an allowed code (allowed: -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9)",
        ),
        ("BILL_AMT1", 10_000_001.0, "= 1e+07 is outside the allowed range [-1e+07, 1e+07]"),
        ("BILL_AMT1", -10_000_001.0, "= -1e+07 is outside the allowed range [-1e+07, 1e+07]"),
    ],
)
def test_each_rule_names_row_feature_and_rule(
    contract: FeatureContract, data: Dataset, feature: str, value: float, rule: str
) -> None:
    batch = data.features[:4].copy()
    col = contract.names.index(feature)
    batch[2, col] = value
    mask = contract.invalid_mask(batch)
    assert np.argwhere(mask).tolist() == [[2, col]]
    with pytest.raises(ContractViolation) as caught:
        contract.validate(batch)
    assert str(caught.value) == f"row 2: feature {feature} (column {col}) {rule}"


def test_the_message_counts_all_bad_values(contract: FeatureContract, data: Dataset) -> None:
    batch = data.features[:5].copy()
    batch[1, contract.names.index("AGE")] = 200
    batch[3, contract.names.index("SEX")] = 0
    batch[3, contract.names.index("PAY_2")] = np.nan
    with pytest.raises(
        ContractViolation, match=r"^row 1: feature AGE .*\(3 invalid values in 2 row"
    ):
        contract.validate(batch)


def test_the_bounds_are_inclusive(contract: FeatureContract, data: Dataset) -> None:
    batch = np.repeat(data.features[:1], 2, axis=0)
    batch[0] = contract.lower
    batch[1] = contract.upper
    contract.validate(batch)


@pytest.mark.parametrize(
    "shape", [(3, 22), (3, 24), (23,), (0, 23)], ids=["22-cols", "24-cols", "1-D", "zero-rows"]
)
def test_wrong_shapes_and_empty_batches_raise(
    contract: FeatureContract, shape: tuple[int, ...]
) -> None:
    with pytest.raises(ContractViolation) as caught:
        contract.validate(np.zeros(shape))
    if shape == (0, 23):
        assert "no rows" in str(caught.value)
    else:
        assert f"got shape {list(shape)}" in str(caught.value)
        assert "LIMIT_BAL, SEX" in str(caught.value)


# --- the CSV loader ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample(data: Dataset) -> Dataset:
    return Dataset(data.ids[:N_SAMPLE], data.features[:N_SAMPLE], data.target[:N_SAMPLE])


def assert_same(loaded: Dataset, expected: Dataset) -> None:
    np.testing.assert_array_equal(loaded.ids, expected.ids)
    np.testing.assert_array_equal(loaded.features, expected.features)
    np.testing.assert_array_equal(loaded.target, expected.target)


def test_kaggle_header_loads_like_the_committed_data(
    tmp_path: Path, csv_lines: list[str], sample: Dataset
) -> None:
    header = csv_lines[0].replace("PAY_0", "PAY_1")
    header = header.replace("default payment next month", "default.payment.next.month")
    assert "PAY_0" not in header and "PAY_1" in header
    path = write_csv(tmp_path / "UCI_Credit_Card.csv", [header, *csv_lines[1:]])
    assert_same(load_dataset(path), sample)


def test_uci_double_header_loads_like_the_committed_data(
    tmp_path: Path, csv_lines: list[str], sample: Dataset
) -> None:
    codes = ",".join(["", *[f"X{i}" for i in range(1, 24)], "Y"])
    path = write_csv(tmp_path / "uci.csv", [codes, *csv_lines])
    assert_same(load_dataset(path), sample)


def test_gzipped_csv_without_id_or_target_loads(
    tmp_path: Path, csv_lines: list[str], sample: Dataset
) -> None:
    lines = drop_column(drop_column(csv_lines, "ID"), "default payment next month")
    path = tmp_path / "features.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    loaded = load_dataset(path, require_target=False)
    np.testing.assert_array_equal(loaded.features, sample.features)
    np.testing.assert_array_equal(loaded.ids, np.arange(1, N_SAMPLE + 1))
    assert loaded.target is None
    with pytest.raises(DataError) as caught:
        load_dataset(path, require_target=True)
    assert "missing" in str(caught.value)
    assert "default payment next month" in str(caught.value)


def test_missing_column_is_named(tmp_path: Path, csv_lines: list[str]) -> None:
    path = write_csv(tmp_path / "missing.csv", drop_column(csv_lines, "BILL_AMT4"))
    with pytest.raises(DataError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert re.search(r"missing\W+BILL_AMT4\b", message), message
    assert "unexpected" not in message


def test_extra_column_is_named(tmp_path: Path, csv_lines: list[str]) -> None:
    lines = [csv_lines[0] + ",INCOME", *[line + ",1" for line in csv_lines[1:]]]
    with pytest.raises(DataError) as caught:
        load_dataset(write_csv(tmp_path / "extra.csv", lines))
    assert re.search(r"unexpected\W+INCOME\b", str(caught.value)), str(caught.value)
    assert "missing" not in str(caught.value)


def test_non_numeric_cell_names_column_and_data_row(tmp_path: Path, csv_lines: list[str]) -> None:
    path = write_csv(tmp_path / "text.csv", replace_cell(csv_lines, 7, "AGE", "forty"))
    with pytest.raises(DataError, match=r"data row 7: column AGE = 'forty' is not a number$"):
        load_dataset(path)


def test_empty_cell_is_not_read_as_zero(tmp_path: Path, csv_lines: list[str]) -> None:
    path = write_csv(tmp_path / "empty.csv", replace_cell(csv_lines, 3, "PAY_AMT5", ""))
    with pytest.raises(DataError, match=r"data row 3: column PAY_AMT5 = '' is not a number"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("column", "value", "rule"),
    [
        ("AGE", "5", r"feature AGE \(column 4\) = 5 is outside the allowed range \[18, 100\]"),
        ("SEX", "3", r"feature SEX \(column 1\) = 3 is not an allowed code"),
        ("LIMIT_BAL", "1.5", r"feature LIMIT_BAL \(column 0\) = 1\.5 is not a whole number"),
        ("PAY_0", "10", r"feature PAY_0 \(column 5\) = 10 is not an allowed code"),
    ],
)
def test_out_of_contract_value_names_column_and_data_row(
    tmp_path: Path, csv_lines: list[str], column: str, value: str, rule: str
) -> None:
    path = write_csv(tmp_path / "bad.csv", replace_cell(csv_lines, 12, column, value))
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: data row 12: {rule}"):
        load_dataset(path)


def test_target_must_be_binary(tmp_path: Path, csv_lines: list[str]) -> None:
    path = write_csv(
        tmp_path / "y.csv", replace_cell(csv_lines, 5, "default payment next month", "2")
    )
    with pytest.raises(DataError, match="must be 0 or 1"):
        load_dataset(path)


def test_check_csv_cli_exits_2_with_the_message(tmp_path: Path, csv_lines: list[str]) -> None:
    path = write_csv(tmp_path / "BAD.csv", replace_cell(csv_lines, 4, "AGE", "5"))
    result = subprocess.run(
        [sys.executable, "-m", "export", "check-csv", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith(f"error: {path}: data row 4: feature AGE (column 4) = 5")


def test_check_csv_cli_accepts_good_file(tmp_path: Path, csv_lines: list[str]) -> None:
    path = write_csv(tmp_path / "GOOD.csv", csv_lines)
    result = subprocess.run(
        [sys.executable, "-m", "export", "check-csv", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"{N_SAMPLE} rows satisfy the feature contract" in result.stdout
