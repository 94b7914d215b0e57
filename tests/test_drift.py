"""The drift job: verdicts on the holdout and on each shift, bad input, PSI, the pinned stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from drift.cli import main
from drift.config import CONFIG_TOML, DriftConfig
from drift.report import EXIT_DRIFT, EXIT_ERROR, EXIT_OK, SUMMARY_JSON, psi, psi_band
from drift.scenarios import EXPECTED, SHIFTS
from export.config import CONTRACT_JSON
from preprocess_ensemble.features import FeatureContract

FEATURE_KEYS = {"test", "statistic", "p_value", "threshold", "drifted", "psi", "psi_band"}


@pytest.fixture(scope="module")
def contract() -> FeatureContract:
    return FeatureContract.from_json(CONTRACT_JSON)


def report(current: str | Path, out_dir: Path, *extra: str) -> tuple[int, dict]:
    code = main(["report", "--current", str(current), "--out-dir", str(out_dir), *extra])
    path = out_dir / SUMMARY_JSON
    return code, json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="module")
def holdout_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, dict, Path]:
    out = tmp_path_factory.mktemp("holdout")
    code, summary = report("split:holdout", out)
    return code, summary, out


def test_holdout_shows_no_drift(holdout_run: tuple[int, dict, Path], contract) -> None:
    code, summary, out = holdout_run
    assert code == EXIT_OK
    assert summary["drift_detected"] is False and summary["drifted_features"] == []
    assert list(summary["features"]) == list(contract.names)
    for name, feature in summary["features"].items():
        assert set(feature) >= FEATURE_KEYS, name
        assert feature["psi_band"] == "stable", (name, feature["psi"])
    assert summary["prediction_drift"]["drifted"] is False
    assert summary["prediction_drift"]["scored_by"] == "onnxruntime in-process"
    assert summary["reference"] == {"source": "data/split.json train", "rows": 21000}
    assert summary["current"]["rows"] == 4500
    html = (out / "data_drift_report.html").read_text()
    assert len(html) > 100_000 and "LIMIT_BAL" in html


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SHIFTS)
def test_each_shift_is_detected_and_names_its_features(
    scenario: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / f"{scenario}.csv"
    assert main(["scenario", scenario, "--out", str(csv)]) == EXIT_OK
    code, summary = report(csv, tmp_path)
    assert code == EXIT_DRIFT
    assert summary["drift_detected"] is True
    assert set(EXPECTED[scenario]) <= set(summary["drifted_features"])
    out = capsys.readouterr().out
    assert "retrain recommended" in out and all(name in out for name in EXPECTED[scenario])


@pytest.mark.triton
def test_scoring_through_triton_gives_the_in_process_verdict(
    triton, holdout_run: tuple[int, dict, Path], tmp_path: Path
) -> None:
    code, summary = report("split:holdout", tmp_path, "--triton-url", triton.http_url)
    assert code == holdout_run[0] == EXIT_OK
    local, served = holdout_run[1]["prediction_drift"], summary["prediction_drift"]
    assert served["scored_by"] == f"triton http://{triton.http_url}"
    assert served["statistic"] == pytest.approx(local["statistic"], abs=1e-9)
    assert served["psi"] == local["psi"]


def test_a_capture_directory_is_a_current_source(
    tmp_path: Path, holdout: np.ndarray, contract
) -> None:
    from drift.capture import Capture, CaptureSettings

    capture = Capture(CaptureSettings(tmp_path / "cap", max_bytes=200_000), "1", "abc", print)
    for start in range(0, 4500, 500):
        capture.record([holdout[start : start + 500]])
    capture.close()
    code, summary = report(tmp_path / "cap", tmp_path / "out")
    assert code == EXIT_OK
    assert summary["current"]["kind"] == "capture" and summary["current"]["rows"] == 4500
    assert summary["current"]["model_ids"] == {"abc": 4500}
    assert summary["current"]["files"] > 1


# --- bad input: exit 2 with a message that says what is wrong ---------------------------------


def holdout_frame(holdout: np.ndarray, contract: FeatureContract) -> pd.DataFrame:
    return pd.DataFrame(holdout[:600].astype(np.int64), columns=list(contract.names))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.drop(columns=["AGE", "PAY_3"]), "missing: AGE, PAY_3"),
        (lambda f: f.assign(EXTRA=1), "unexpected: EXTRA"),
        (lambda f: f.astype(object).assign(LIMIT_BAL=["n/a"] + [1000] * 599), "is not a number"),
        (lambda f: f.assign(SEX=[3] + [1] * 599), "SEX (column 1) = 3 is not an allowed code"),
        (lambda f: f.assign(AGE=[17] + [30] * 599), "AGE (column 4) = 17 is outside"),
        (lambda f: f.head(10), "10 rows; the drift tests need at least 500"),
    ],
    ids=["missing-columns", "extra-column", "non-numeric", "bad-code", "out-of-range", "few"],
)
def test_bad_csv_exits_2_with_a_clear_message(
    damage, message: str, tmp_path: Path, holdout: np.ndarray, contract, capsys
) -> None:
    path = tmp_path / "current.csv"
    damage(holdout_frame(holdout, contract)).to_csv(path, index=False)
    code, summary = report(path, tmp_path)
    assert code == EXIT_ERROR and summary == {}
    err = capsys.readouterr().err
    assert "error: " in err and message in err, err


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nothing.csv", "no such file or directory"),
        (lambda p: (p / "empty.csv").write_text("") or p / "empty.csv", "cannot read"),
        (lambda p: (p / "empty_dir").mkdir() or p / "empty_dir", "no captured rows"),
    ],
    ids=["missing-file", "empty-file", "empty-capture-dir"],
)
def test_unusable_paths_exit_2(make, message: str, tmp_path: Path, capsys) -> None:
    assert main(["report", "--current", str(make(tmp_path)), "--out-dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_a_capture_with_an_out_of_contract_row_names_file_and_line(tmp_path: Path, capsys) -> None:
    good = [20000, 2, 2, 1, 24, 2, 2, -1, -1, -2, -2, 3913, 3102, 689, 0, 0, 0, 0, 689, 0, 0, 0, 0]
    lines = [{"ts": "t", "model_version": "1", "model_id": "x", "features": good}] * 3
    lines[2] = {**lines[2], "features": [*good[:4], 101, *good[5:]]}
    path = tmp_path / "capture-v1-x-1-00001.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert main(["report", "--current", str(tmp_path), "--out-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "capture-v1-x-1-00001.jsonl:3: feature AGE (column 4) = 101 is outside" in err


def test_a_bad_config_exits_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text(CONFIG_TOML.read_text().replace("psi_shift = 0.25", "psi_shift = 0.05"))
    assert main(["report", "--config", str(bad), "--out-dir", str(tmp_path)]) == 2
    assert "psi_watch < psi_shift" in capsys.readouterr().err


# --- PSI -------------------------------------------------------------------------------------


def test_psi_matches_a_hand_computed_value_and_its_bands() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(size=20_000)
    assert psi(reference, reference) == pytest.approx(0.0)
    assert psi(reference, rng.normal(size=20_000)) < 0.01
    assert psi(reference, reference + 1.0) > 0.25
    codes = np.array([1.0, 2.0])
    ref, cur = np.array([1.0] * 50 + [2.0] * 50), np.array([1.0] * 80 + [2.0] * 20)
    expected = (0.8 - 0.5) * np.log(0.8 / 0.5) + (0.2 - 0.5) * np.log(0.2 / 0.5)
    assert psi(ref, cur, codes=codes) == pytest.approx(expected)
    config = DriftConfig.load()
    assert [psi_band(v, config) for v in (0.05, 0.1, 0.2, 0.25, 0.26)] == [
        "stable",
        "watch",
        "watch",
        "watch",
        "shift",
    ]


def test_psi_of_zero_inflated_amounts_uses_merged_bins() -> None:
    reference = np.array([0.0] * 600 + list(range(1, 401)))  # 60% zeros: deciles tie at 0
    current = np.array([0.0] * 300 + list(range(1, 701)))
    assert psi(reference, reference) == 0.0
    assert psi(reference, current) > 0.25


# --- the pinned stack ------------------------------------------------------------------------


def test_the_drift_stack_imports_together_in_a_fresh_interpreter() -> None:
    # pyarrow 26 needs numpy >= 2 but does not declare it: this is the import that breaks.
    code = (
        "import numpy, pandas, pyarrow, evidently, onnxruntime, tritonclient.http;"
        "from evidently import Report, Dataset, DataDefinition;"
        "from evidently.presets import DataDriftPreset;"
        "import drift.report, drift.cli;"
        "print(numpy.__version__, pandas.__version__, pyarrow.__version__, evidently.__version__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    numpy_v, _, pyarrow_v, evidently_v = result.stdout.split()
    assert numpy_v.startswith("1.") and int(pyarrow_v.split(".")[0]) < 26
    assert evidently_v.startswith("0.7.")
