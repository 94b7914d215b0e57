"""The drift job: the training reference vs current rows, an Evidently report and a verdict.

Reference: the ``reference_split`` part of ``data/split.json`` (the training rows). Current: a
split (``split:holdout``), a CSV with the contract's columns, or a capture directory written by
the preprocess step. Both are checked against the feature contract by the project's loaders.
Per feature: Evidently's test (config.toml) and the Population Stability Index; plus drift of
the predicted probability. Writes ``data_drift_report.html`` and ``data_drift_summary.json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from drift.capture import CaptureFormatError, model_id, read_capture
from drift.config import DriftConfig
from export.config import CONTRACT_JSON, PUBLISHED_CONTRACT, ROOT
from export.data import DataError, Dataset, load_dataset, read_split, split_datasets
from preprocess_ensemble.features import FeatureContract

os.environ.setdefault("DO_NOT_TRACK", "1")  # Evidently's usage telemetry: off unless asked for

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2
REPORTS_DIR = ROOT / "reports"
REPORT_HTML, SUMMARY_JSON = "data_drift_report.html", "data_drift_summary.json"
PREDICTION = "probability"
SPLITS = ("train", "validation", "holdout")
# Evidently tests whose score is a p-value (drift when below the threshold); others are distances.
P_VALUE_TESTS = frozenset(
    {"ks", "chisquare", "z", "t_test", "anderson", "fisher_exact", "cramer_von_mises"}
    | {"g_test", "mannw", "epps_singleton", "empirical_mmd"}
)


class DriftInputError(ValueError):
    """The current data (or the config) cannot be compared; the message says why (exit 2)."""


@dataclass
class Current:
    """The rows to compare with the reference, and where they came from."""

    features: np.ndarray
    source: str
    kind: str  # split, csv or capture
    details: dict = field(default_factory=dict)


def load_splits(contract_path: Path = CONTRACT_JSON) -> dict[str, Dataset]:
    """The committed split's train / validation / holdout datasets."""
    return split_datasets(load_dataset(contract_path=contract_path), read_split())


def load_current(spec: str, contract: FeatureContract, splits: dict[str, Dataset]) -> Current:
    """``split:NAME``, a CSV file or a capture directory, checked against the contract."""
    if spec.startswith("split:"):
        name = spec.removeprefix("split:")
        if name not in SPLITS:
            raise DriftInputError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
        return Current(splits[name].features, f"data/split.json {name}", "split")
    path = Path(spec)
    if path.is_dir():
        return _load_capture(path, contract)
    if not path.is_file():
        raise DriftInputError(f"{spec}: no such file or directory (give a CSV or a capture dir)")
    try:
        data = load_dataset(path, CONTRACT_JSON, require_target=False)
    except DataError as error:
        raise DriftInputError(str(error)) from None
    except (OSError, ValueError, IndexError) as error:  # unreadable, empty or not a table
        raise DriftInputError(f"{path}: cannot read a CSV table ({error})") from None
    return Current(data.features, str(path), "csv")


def _load_capture(path: Path, contract: FeatureContract) -> Current:
    try:
        captured = read_capture(path, contract.n_features)
    except (CaptureFormatError, OSError) as error:
        raise DriftInputError(f"{path}: {error}") from None
    if not captured.labels:
        raise DriftInputError(f"{path}: no captured rows (no capture-*.jsonl lines)")
    invalid = contract.invalid_mask(captured.features)
    if invalid.any():
        message = contract.first_violation(captured.features, invalid, captured.labels.__getitem__)
        raise DriftInputError(f"{path}: {message}")
    details = {
        "files": len(captured.files),
        "torn_lines_skipped": captured.torn_lines,
        "first_ts": min(captured.timestamps),
        "last_ts": max(captured.timestamps),
        "model_versions": dict(Counter(captured.model_versions)),
        "model_ids": dict(Counter(captured.model_ids)),
        "served_model_id": model_id(PUBLISHED_CONTRACT),
    }
    return Current(captured.features, str(path), "capture", details)


def score_in_process(rows: np.ndarray) -> np.ndarray:
    """Probabilities [n] from the published artifacts in ONNX Runtime: credit_pd without Triton."""
    from preprocess_ensemble.scoring import InProcessScorer

    probability = InProcessScorer.published().decide(rows, reasons=False)["probability"]
    return probability[:, 0].astype(np.float64)


def score_triton(rows: np.ndarray, url: str, protocol: str) -> np.ndarray:
    """Probabilities [n] from the ``credit_scoring`` ensemble, with a progress bar."""
    from tqdm import tqdm

    from preprocess_ensemble.client import CreditScoringClient, ScoringError

    try:
        with (
            CreditScoringClient(url, protocol, concurrency=4) as client,
            tqdm(total=len(rows), desc=f"scoring via Triton {url}", unit="row") as bar,
        ):
            return client.score(rows, on_batch=bar.update).astype(np.float64)
    except ScoringError as error:
        raise DriftInputError(f"scoring through Triton failed: {error}") from None


def psi(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    bins: int = 10,
    epsilon: float = 1e-4,
    codes: np.ndarray | None = None,
) -> float:
    """Population Stability Index sum((c - r) * ln(c / r)) over bins of the reference.

    Numbers: the reference's quantile edges (ties merge bins); categoricals: one bin per code.
    Empty bins count as ``epsilon``.
    """
    if codes is not None:
        edges = (np.asarray(codes, dtype=np.float64)[1:] + codes[:-1]) / 2
    else:
        edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    shares = [
        np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) / len(x)
        for x in (reference, current)
    ]
    r, c = (np.where(s == 0, epsilon, s) for s in shares)
    return float(np.sum((c - r) * np.log(c / r)))


def psi_band(value: float, config: DriftConfig) -> str:
    """The PSI band: stable (< watch), watch (watch..shift) or shift (> shift)."""
    if value > config.psi_shift:
        return "shift"
    return "watch" if value >= config.psi_watch else "stable"


def _test_name(method: str, categorical: bool) -> str:
    from evidently.legacy.calculations.stattests.registry import get_registered_stattest
    from evidently.legacy.core import ColumnType

    kind = ColumnType.Categorical if categorical else ColumnType.Numerical
    try:
        return get_registered_stattest(method, kind).display_name
    except ValueError as error:
        raise DriftInputError(f"drift config: test {method!r}: {error}") from None


def run_evidently(
    reference: pd.DataFrame, current: pd.DataFrame, categorical: list[str], config: DriftConfig
) -> tuple[object, dict[str, dict]]:
    """Run ``DataDriftPreset`` on every column; return the snapshot and per-column results."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numerical = [c for c in reference.columns if c not in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    preset = DataDriftPreset(
        num_method=config.numerical_test,
        num_threshold=config.numerical_threshold,
        cat_method=config.categorical_test,
        cat_threshold=config.categorical_threshold,
        per_column_method={PREDICTION: config.prediction_test},
        per_column_threshold={PREDICTION: config.prediction_threshold},
    )
    snapshot = Report([preset], include_tests=True).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    result = snapshot.dict()
    verdicts = {
        t["metric_config"]["params"]["column"]: t["status"] == "FAIL"
        for t in result["tests"]
        if t["id"] == "drift"
    }
    columns: dict[str, dict] = {}
    for metric in result["metrics"]:
        params = metric["config"]
        if not params["type"].endswith(":ValueDrift"):
            continue
        name, method = params["column"], params["method"]
        is_p_value = method in P_VALUE_TESTS
        columns[name] = {
            "kind": "categorical" if name in categorical else "numerical",
            "test": method,
            "test_name": _test_name(method, name in categorical),
            "statistic": None if is_p_value else float(metric["value"]),
            "p_value": float(metric["value"]) if is_p_value else None,
            "threshold": float(params["threshold"]),
            "test_drifted": verdicts[name],
        }
    return snapshot, columns


def build_summary(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, dict],
    contract: FeatureContract,
    config: DriftConfig,
) -> dict:
    """The machine-readable verdict: per-feature tests and PSI, prediction drift, retrain."""
    features = {}
    for j, name in enumerate(contract.names):
        codes = contract.allowed.get(j)
        value = psi(
            reference[name].to_numpy(),
            current[name].to_numpy(),
            bins=config.psi_bins,
            epsilon=config.psi_epsilon,
            codes=codes,
        )
        entry = {**columns[name], "psi": round(value, 6), "psi_band": psi_band(value, config)}
        entry["drifted"] = entry["test_drifted"] or entry["psi_band"] == "shift"
        entry["reference_mean"] = float(reference[name].mean())
        entry["current_mean"] = float(current[name].mean())
        features[name] = entry
    ref_p, cur_p = reference[PREDICTION].to_numpy(), current[PREDICTION].to_numpy()
    value = psi(ref_p, cur_p, bins=config.psi_bins, epsilon=config.psi_epsilon)
    prediction = {
        **columns[PREDICTION],
        "psi": round(value, 6),
        "psi_band": psi_band(value, config),
    }
    prediction["drifted"] = prediction["test_drifted"] or prediction["psi_band"] == "shift"
    prediction.update(reference_mean=float(ref_p.mean()), current_mean=float(cur_p.mean()))
    drifted = [n for n, f in features.items() if f["drifted"]]
    watch = [n for n, f in features.items() if f["psi_band"] == "watch" and not f["drifted"]]
    detected = len(drifted) >= config.min_drifted_features or prediction["drifted"]
    return {
        "drift_detected": detected,
        "retrain_recommended": detected,
        "drifted_features": drifted,
        "watch_features": watch,
        "prediction_drift": prediction,
        "features": features,
    }


def verdict_message(summary: dict) -> str:
    """One line: the verdict and the features that drove it."""
    if not summary["drift_detected"]:
        watch = summary["watch_features"]
        return "no drift" + (f" (PSI watch band: {', '.join(watch)})" if watch else "")
    named = list(summary["drifted_features"])
    if summary["prediction_drift"]["drifted"]:
        named.append(f"predicted {PREDICTION}")
    return f"drift: retrain recommended; drifted: {', '.join(named)}"


def run_report(
    current_spec: str,
    *,
    triton_url: str | None = None,
    protocol: str = "http",
    out_dir: Path = REPORTS_DIR,
    config: DriftConfig | None = None,
) -> dict:
    """Compare, write the HTML report and the JSON summary, and return the summary.

    Raises DriftInputError (exit 2) for unusable input; the summary's ``drift_detected`` is
    the verdict (exit 1 when True, else 0).
    """
    config = config or DriftConfig.load()
    contract = FeatureContract.from_json(CONTRACT_JSON)
    _log("loading the reference split and the current rows")
    splits = load_splits()
    current = load_current(current_spec, contract, splits)
    if len(current.features) < config.min_rows:
        raise DriftInputError(
            f"{current.source}: {len(current.features)} rows; the drift tests need at least "
            f"{config.min_rows} (min_rows in drift/config.toml)"
        )
    ref_rows = splits[config.reference_split].features
    _log(f"scoring {len(ref_rows)} reference and {len(current.features)} current rows")
    scored_by = f"triton {protocol}://{triton_url}" if triton_url else "onnxruntime in-process"
    ref_p = score_in_process(ref_rows)
    if triton_url:
        cur_p = score_triton(current.features, triton_url, protocol)
    else:
        cur_p = score_in_process(current.features)
    reference = pd.DataFrame(ref_rows, columns=list(contract.names)).assign(probability=ref_p)
    current_df = pd.DataFrame(current.features, columns=list(contract.names))
    current_df = current_df.assign(probability=cur_p)
    categorical = [
        n for n, k in zip(contract.names, contract.kinds, strict=True) if k == "categorical"
    ]
    _log("running the Evidently data drift preset")
    snapshot, columns = run_evidently(reference, current_df, categorical, config)
    summary = build_summary(reference, current_df, columns, contract, config)
    summary["prediction_drift"]["scored_by"] = scored_by
    summary["message"] = verdict_message(summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    html, summary_path = out_dir / REPORT_HTML, out_dir / SUMMARY_JSON
    snapshot.save_html(str(html))
    summary.update(
        reference={"source": f"data/split.json {config.reference_split}", "rows": len(ref_rows)},
        current={"source": current.source, "kind": current.kind, "rows": len(current.features)}
        | current.details,
        config=config.to_dict(),
        evidently_version=_evidently_version(),
        report_html=str(html),
    )
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    summary["summary_json"] = str(summary_path)
    return summary


def _evidently_version() -> str:
    from importlib.metadata import version

    return version("evidently")


def _log(message: str) -> None:
    print(f"drift: {message}", file=sys.stderr, flush=True)
