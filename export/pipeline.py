"""The model pipeline end to end, and the gate on the committed artifacts."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from export.calibrate import calibration_report, fit_platt, write_calibration
from export.config import (
    BUILD_DIR,
    CONTRACT_JSON,
    DATA_CSV,
    MODEL_CARD_JSON,
    POLICY_JSON,
    PUBLISHED_CALIBRATION,
    PUBLISHED_DECISION_SCALER,
    PUBLISHED_ONNX,
    PUBLISHED_SCALER,
    REFERENCE_FP32,
    ROOT,
    SPLIT_JSON,
    GateConfig,
    QuantizeConfig,
    TrainConfig,
    card_tolerance,
)
from export.data import Dataset, load_dataset, read_split, split_datasets
from export.onnx_export import export_onnx, torch_probabilities
from export.publish import (
    PUBLISHED_SOURCES,
    build_environment,
    copy_published_sources,
    package_versions,
    relative,
    sha256_file,
    sha256_gzip_content,
    write_model_card,
)
from export.quantize import quantize
from export.validate import GateReport, run_gate, score, session
from preprocess_ensemble.decisioning import Calibration, Policy
from preprocess_ensemble.features import FeatureContract, Standardizer

MAX_EXPORT_DIFF = 1e-5
# What `python -m export model --exclude-protected` measured; the model card quotes it.
PROTECTED_REPORT = ROOT / "reports" / "exclude_protected.json"


class PipelineError(RuntimeError):
    """A pipeline step failed a check; the message says which and by how much."""


def load_parts() -> tuple[FeatureContract, dict[str, Dataset], dict]:
    """The contract, the committed split's datasets and the split itself."""
    contract = FeatureContract.from_json(CONTRACT_JSON)
    split = read_split(SPLIT_JSON)
    return contract, split_datasets(load_dataset(DATA_CSV, CONTRACT_JSON), split), split


def calibration_rows(
    train: Dataset, standardizer: Standardizer, config: QuantizeConfig
) -> np.ndarray:
    """A fixed random sample of standardized training rows."""
    rng = np.random.default_rng(config.seed)
    chosen = np.sort(rng.choice(len(train.ids), config.calibration_rows, replace=False))
    return standardizer.transform(train.features[chosen])


def build_model(
    train_config: TrainConfig = TrainConfig(),
    quantize_config: QuantizeConfig = QuantizeConfig(),
    gate_config: GateConfig = GateConfig(),
    build_dir: Path = BUILD_DIR,
    publish: bool = True,
) -> tuple[GateReport, dict]:
    """Train, export, check ONNX parity, quantize, gate and (if it passes) publish."""
    from export.train import train  # torch is a training-only dependency

    contract, parts, split = load_parts()
    result = train(parts["train"], parts["validation"], contract, train_config)
    fp32_path = export_onnx(result.model, contract.n_features, build_dir / "model_fp32.onnx")
    x_holdout = result.standardizer.transform(parts["holdout"].features)
    export_diff = float(
        np.abs(
            torch_probabilities(result.model, x_holdout) - score(session(fp32_path), x_holdout)
        ).max()
    )
    if export_diff > MAX_EXPORT_DIFF:
        raise PipelineError(
            f"ONNX FP32 differs from PyTorch by {export_diff:.3g} on the holdout "
            f"(limit {MAX_EXPORT_DIFF:g})"
        )
    int8_path = quantize(
        fp32_path,
        build_dir / f"model_int8_{quantize_config.mode}.onnx",
        calibration_rows(parts["train"], result.standardizer, quantize_config),
        quantize_config.mode,
    )
    scaler_path = build_dir / "scaler.json"
    result.standardizer.to_json(scaler_path)
    int8 = session(int8_path)
    validation = parts["validation"]
    calibration = fit_platt(
        score(int8, result.standardizer.transform(validation.features)), validation.target
    )
    calibration_path = write_calibration(
        calibration, len(validation.ids), build_dir / "calibration.json"
    )
    report = run_gate(
        int8_path,
        fp32_path,
        result.standardizer,
        contract,
        parts["holdout"].features,
        parts["holdout"].target,
        gate_config,
        calibration,
    )
    report.metrics["max_abs_diff_fp32_vs_torch"] = export_diff
    calibrated = {
        "method": "platt",
        "a": calibration.a,
        "b": calibration.b,
        "fitted_on": f"validation split ({len(validation.ids)} rows), INT8 probabilities",
        "holdout": calibration_report(
            calibration,
            score(int8, result.standardizer.transform(parts["holdout"].features)),
            parts["holdout"].target,
        ),
    }
    if train_config.exclude_from_model:
        write_protected_report(report, train_config, result.validation_auc)
    card = {}
    if report.passed and publish:
        for source, target in (
            (int8_path, PUBLISHED_ONNX),
            (fp32_path, REFERENCE_FP32),
            (scaler_path, PUBLISHED_SCALER),
            (scaler_path, PUBLISHED_DECISION_SCALER),
            (calibration_path, PUBLISHED_CALIBRATION),
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        published = [
            PUBLISHED_ONNX,
            REFERENCE_FP32,
            PUBLISHED_SCALER,
            PUBLISHED_DECISION_SCALER,
            PUBLISHED_CALIBRATION,
            *copy_published_sources(),
        ]
        card = model_card(report, split, result, train_config, quantize_config, gate_config)
        card = write_model_card({**card, "calibration": calibrated}, published)
    return report, card


def write_protected_report(report: GateReport, train_config: TrainConfig, val_auc: float) -> None:
    """Record the holdout figures of a model trained without ``exclude_from_model``."""
    payload = {
        "command": "python -m export model --exclude-protected --no-publish",
        "excluded_from_model": list(train_config.exclude_from_model),
        "validation_auc_ensemble": val_auc,
        **{
            k: report.metrics[k]
            for k in ("auc_holdout_int8", "auc_holdout_fp32", "approval_rate")
            if k in report.metrics
        },
        "min_adverse_impact_ratio": report.metrics["min_adverse_impact_ratio"],
        "gate_passed": report.passed,
    }
    PROTECTED_REPORT.parent.mkdir(parents=True, exist_ok=True)
    PROTECTED_REPORT.write_text(json.dumps(payload, indent=2) + "\n")


def protected_attributes(report: GateReport, train_config: TrainConfig) -> dict:
    """The explicit choice about SEX and MARRIAGE as model inputs, with its measured AUC cost."""
    excluded = list(train_config.exclude_from_model)
    section: dict = {"excluded_from_model": excluded}
    if PROTECTED_REPORT.exists() and not excluded:
        alternative = json.loads(PROTECTED_REPORT.read_text())
        cost = report.metrics["auc_holdout_int8"] - alternative["auc_holdout_int8"]
        section["alternative"] = {**alternative, "auc_cost_of_excluding": cost}
    section["choice"] = (
        (
            f"{', '.join(excluded)} are kept in the request contract (validated, captured for "
            "drift, audited) but the model sees a constant for them."
        )
        if excluded
        else (
            "SEX and MARRIAGE are model inputs. Under ECOA/Regulation B they may not be used "
            "to decide credit, and they must never be given as adverse-action reasons: a "
            "lender would publish the model trained with --exclude-protected (measured in "
            "'alternative'). This reference keeps them so that its network stays the one "
            "published before decisioning was added; the fairness audit reports both."
        )
    )
    return section


def model_card(report, split, result, train_config, quantize_config, gate_config) -> dict:
    """Everything a reviewer needs to trust and reproduce the published model."""
    hidden = " -> ".join(str(h) for h in train_config.hidden)
    return {
        "model": "credit_model",
        "version": 1,
        "intended_use": (
            "Probability that a credit card client defaults on next month's payment, from the 23 "
            "raw features of the UCI data. A research and engineering reference: not validated "
            "for lending decisions on any other population."
        ),
        "architecture": (
            f"Mean of {train_config.ensemble_size} MLPs (23 -> {hidden} -> 1, ReLU, dropout "
            f"{train_config.dropout}, sigmoid), trained with seeds {train_config.seed}.."
            f"{train_config.seed + train_config.ensemble_size - 1}. Inputs: the contract's 23 "
            f"features, {train_config.amount_transform} on amounts, standardized with the "
            "training split's mean and scale (preprocess/1/scaler.json)."
        ),
        "data": {
            "file": relative(DATA_CSV),
            "title": "Default of Credit Card Clients, UCI Machine Learning Repository",
            "citation": "Yeh, I-Cheng (2009)",
            "doi": "10.24432/C55S3H",
            "license": "CC BY 4.0",
            "rows": int(sum(len(split[k]) for k in ("train", "validation", "holdout"))),
            "defaults": int(load_dataset().target.sum()),
            "sha256_file": sha256_file(DATA_CSV),
            "sha256_csv": sha256_gzip_content(DATA_CSV),
        },
        "split": {
            "file": relative(SPLIT_JSON),
            "sha256": sha256_file(SPLIT_JSON),
            "seed": split["seed"],
            **{k: len(split[k]) for k in ("train", "validation", "holdout")},
        },
        "training": {
            **train_config.to_dict(),
            "validation_auc_ensemble": result.validation_auc,
            "members": [{k: v for k, v in m.items() if k != "history"} for m in result.members],
        },
        "quantization": {
            **asdict(quantize_config),
            "description": (
                f"static INT8 ({quantize_config.mode}), calibrated (MinMax) on "
                f"{quantize_config.calibration_rows} training rows, per-channel INT8 weights, "
                "UINT8 activations: scales are fixed, so a row's score never depends on its "
                "batch-mates. Weights are 7-bit (reduce_range): every adjacent pair along the "
                "reduction axis has |w0|+|w1| <= 128, so AVX2's saturating int16 sums are exact "
                "and the file scores the same on every x86-64 CPU."
            ),
        },
        "gate": {**asdict(gate_config), "passed": report.passed},
        "metrics": report.metrics,
        "reliability": report.reliability,
        "decision_policy": json.loads(POLICY_JSON.read_text()),
        "fairness_audit": report.audit,
        "protected_attributes": protected_attributes(report, train_config),
        "limitations": [
            "Trained on Taiwanese card clients in 2005; expect drift on any other population.",
            "AGE and EDUCATION are model inputs, and SEX and MARRIAGE unless trained with "
            "--exclude-protected; review fair-lending rules before use.",
            "The approval rates and adverse impact ratios depend on the policy cut-offs: "
            "re-run the audit (python -m export validate) for every policy version.",
            "While SEX and MARRIAGE are model inputs their reason codes (R02, R04) rank among "
            "an applicant's top four often; they are prohibited bases under ECOA/Regulation B "
            "and must not reach an adverse-action notice (publish the --exclude-protected model).",
        ],
        "packages": package_versions(),
        "build_environment": build_environment(),
    }


def validate_published(gate_config: GateConfig = GateConfig()) -> GateReport:
    """Run the gate on the committed artifacts and check the model card against them."""
    contract, parts, _ = load_parts()
    standardizer = Standardizer.from_json(PUBLISHED_SCALER)
    report = run_gate(
        PUBLISHED_ONNX,
        REFERENCE_FP32,
        standardizer,
        contract,
        parts["holdout"].features,
        parts["holdout"].target,
        gate_config,
        Calibration.from_json(PUBLISHED_CALIBRATION),
        Policy.from_json(POLICY_JSON),
    )
    card = json.loads(MODEL_CARD_JSON.read_text())
    for name, expected in card["artifacts"].items():
        actual = sha256_file(ROOT / name)
        if actual != expected:
            report.failures.append(
                f"{name}: sha256 {actual} differs from the model card's {expected}"
            )
    for name, value in report.metrics.items():
        limit = card_tolerance(name)
        if name in card["metrics"] and abs(card["metrics"][name] - value) > limit:
            report.failures.append(
                f"metric {name}: measured {value:.6g}, model card says "
                f"{card['metrics'][name]:.6g} (tolerance {limit:g})"
            )
    copies = [target for _, target in PUBLISHED_SOURCES]
    for copy in [*copies, PUBLISHED_DECISION_SCALER, PUBLISHED_CALIBRATION]:
        if relative(copy) not in card["artifacts"]:
            report.failures.append(f"{relative(copy)} is missing from the model card")
    return report
