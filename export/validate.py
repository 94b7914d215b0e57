"""The validation gate: accuracy, INT8 vs FP32 agreement, calibration and batch invariance."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.metrics import brier_score_loss, roc_auc_score

from export.audit import audit_failures, audit_table
from export.calibrate import brier, expected_calibration_error
from export.config import ONNX_INPUT, POLICY_JSON, GateConfig
from export.quantize import MAX_ADJACENT_WEIGHT_PAIR, max_adjacent_weight_pair
from preprocess_ensemble.decisioning import Calibration, Policy
from preprocess_ensemble.features import FeatureContract, Standardizer


@dataclass
class GateReport:
    """Metrics, the reliability and fairness audit tables, and one message per failed check."""

    metrics: dict[str, float]
    reliability: list[dict]
    failures: list[str] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return not self.failures


def session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU ONNX Runtime session with a fixed thread count."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def score(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """Probabilities [n] for standardized float32 rows."""
    return sess.run(None, {ONNX_INPUT: np.ascontiguousarray(x, dtype=np.float32)})[0][:, 0]


def extreme_rows(contract: FeatureContract) -> np.ndarray:
    """Valid but extreme raw applicants: all features at the lower bounds, the upper, mixed."""
    lo, hi = contract.lower, contract.upper
    mixed = np.where(np.arange(contract.n_features) % 2 == 0, lo, hi)
    return np.vstack([lo, hi, mixed, np.where(mixed == lo, hi, lo)])


def batch_invariance(
    sess: ort.InferenceSession, x: np.ndarray, outliers: np.ndarray, batch_size: int
) -> dict[str, float]:
    """Max |p| difference of each row scored alone vs in a full batch vs beside extreme outliers."""
    alone = np.array([score(sess, x[i : i + 1])[0] for i in range(len(x))])
    in_batch = np.concatenate(
        [score(sess, x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
    )
    room = batch_size - len(outliers)
    with_outliers = np.concatenate(
        [
            score(sess, np.vstack([x[i : i + room], outliers]))[: len(x[i : i + room])]
            for i in range(0, len(x), room)
        ]
    )
    return {
        "alone_vs_batch": float(np.abs(alone - in_batch).max()),
        "alone_vs_outlier_batch": float(np.abs(alone - with_outliers).max()),
    }


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted vs observed default rate in equal-width probability bins."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            table.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "rows": int(mask.sum()),
                    "mean_predicted": round(float(p[mask].mean()), 4),
                    "observed_default_rate": round(float(y[mask].mean()), 4),
                }
            )
    return table


def run_gate(
    int8_path: str | Path,
    fp32_path: str | Path,
    standardizer: Standardizer,
    contract: FeatureContract,
    holdout_features: np.ndarray,
    holdout_target: np.ndarray,
    config: GateConfig = GateConfig(),
    calibration: Calibration | None = None,
    policy: Policy | None = None,
) -> GateReport:
    """Score the holdout with both models and check every gate rule.

    ``calibration`` (default: none, PD = probability) and ``policy`` (default: the project's)
    turn the INT8 probabilities into decisions for the calibration check and the fairness audit.
    """
    policy = policy or Policy.from_json(POLICY_JSON)
    x = standardizer.transform(holdout_features)
    int8, fp32 = session(int8_path), session(fp32_path)
    p8, p32 = score(int8, x), score(fp32, x)
    diff = np.abs(p8 - p32)
    invariance = batch_invariance(
        int8, x, standardizer.transform(extreme_rows(contract)), config.invariance_batch_size
    )
    metrics = {
        "auc_holdout_fp32": float(roc_auc_score(holdout_target, p32)),
        "auc_holdout_int8": float(roc_auc_score(holdout_target, p8)),
        "max_abs_diff_int8_vs_fp32": float(diff.max()),
        "mean_abs_diff_int8_vs_fp32": float(diff.mean()),
        "batch_invariance_max_diff": max(invariance.values()),
        **{f"batch_invariance_{k}": v for k, v in invariance.items()},
        "brier_fp32": float(brier_score_loss(holdout_target, p32)),
        "brier_int8": float(brier_score_loss(holdout_target, p8)),
        "holdout_rows": len(x),
        "max_adjacent_weight_pair": max_adjacent_weight_pair(int8_path),
    }
    metrics["auc_delta_int8_vs_fp32"] = metrics["auc_holdout_int8"] - metrics["auc_holdout_fp32"]
    pd = p8.astype(np.float64) if calibration is None else calibration.apply(p8)
    approved = policy.decide(policy.points(pd)) == "approve"
    metrics |= {
        "brier_calibrated": brier(holdout_target, pd),
        "ece_int8": expected_calibration_error(holdout_target, p8),
        "ece_calibrated": expected_calibration_error(holdout_target, pd),
        "approval_rate": float(approved.mean()),
    }
    audit = audit_table(
        contract, holdout_features, holdout_target, pd, approved, config.min_audit_group_rows
    )
    metrics["min_adverse_impact_ratio"] = min(
        r["adverse_impact_ratio"] for r in audit if r["audited"]
    )
    report = GateReport(metrics, reliability_table(holdout_target, p8), audit=audit)
    brier_change = metrics["brier_calibrated"] - brier(holdout_target, p8)  # both in float64
    if brier_change > config.max_calibration_brier_increase:
        report.failures.append(
            f"calibration worsens the holdout Brier score by {brier_change:.3g} "
            f"(limit {config.max_calibration_brier_increase:g})"
        )
    report.failures += audit_failures(audit, config.min_adverse_impact_ratio)
    if metrics["auc_holdout_int8"] < config.min_auc:
        report.failures.append(
            f"holdout AUC (INT8) {metrics['auc_holdout_int8']:.4f} is below the gate "
            f"{config.min_auc} by {config.min_auc - metrics['auc_holdout_int8']:.4f}"
        )
    auc_change = abs(metrics["auc_delta_int8_vs_fp32"])
    if auc_change > config.max_auc_drop:
        report.failures.append(
            f"|AUC INT8 - AUC FP32| = {auc_change:.4f} exceeds {config.max_auc_drop} "
            f"by {auc_change - config.max_auc_drop:.4f}"
        )
    if metrics["max_adjacent_weight_pair"] > MAX_ADJACENT_WEIGHT_PAIR:
        report.failures.append(
            f"INT8 weights: an adjacent pair sums to |w0|+|w1| = "
            f"{metrics['max_adjacent_weight_pair']}, above {MAX_ADJACENT_WEIGHT_PAIR}: the int16 "
            "sums of AVX2 kernels (VPMADDUBSW) can saturate, so scores would depend on the CPU "
            "(quantize with reduce_range)"
        )
    for name, value in invariance.items():
        if value > config.max_batch_variation:
            report.failures.append(
                f"batch invariance ({name.replace('_', ' ')}): a row's INT8 probability changed by "
                f"{value:.3g} with its batch-mates, limit {config.max_batch_variation:g} "
                "(dynamic quantization does this; use static INT8)"
            )
    return report


def format_report(report: GateReport) -> str:
    """Human-readable gate summary."""
    m = report.metrics
    lines = [
        f"holdout rows                 {m['holdout_rows']}",
        f"AUC FP32 / INT8              {m['auc_holdout_fp32']:.4f} / {m['auc_holdout_int8']:.4f}"
        f"  (delta {m['auc_delta_int8_vs_fp32']:+.4f})",
        f"|p INT8 - p FP32| max / mean {m['max_abs_diff_int8_vs_fp32']:.4f} / "
        f"{m['mean_abs_diff_int8_vs_fp32']:.4f}",
        f"Brier FP32 / INT8            {m['brier_fp32']:.4f} / {m['brier_int8']:.4f}",
        f"calibrated Brier / ECE       {m['brier_calibrated']:.5f} / {m['ece_calibrated']:.4f}"
        f"  (uncalibrated ECE {m['ece_int8']:.4f})",
        f"approval rate / min AIR      {m['approval_rate']:.3f} / "
        f"{m['min_adverse_impact_ratio']:.3f}",
        f"INT8 adjacent weight pair    max |w0|+|w1| = {m['max_adjacent_weight_pair']} "
        f"(limit {MAX_ADJACENT_WEIGHT_PAIR}: no int16 saturation on AVX2)",
        f"batch invariance (max diff)  alone vs batch {m['batch_invariance_alone_vs_batch']:.3g}, "
        f"alone vs batch with outliers {m['batch_invariance_alone_vs_outlier_batch']:.3g}",
        "reliability (INT8):  bin      rows  mean_p  observed",
    ]
    lines += [
        f"                     {r['bin']}  {r['rows']:5d}  {r['mean_predicted']:.3f}   "
        f"{r['observed_default_rate']:.3f}"
        for r in report.reliability
    ]
    lines.append("fairness audit:      attribute  group               rows  AUC    approval  AIR")
    lines += [
        f"                     {r['attribute']:<10} {r['group']:<18} {r['rows']:5d}  "
        f"{_auc_text(r['auc'])}  {r['approval_rate']:.3f}     "
        f"{r['adverse_impact_ratio']:.3f}{'' if r['audited'] else ' (not gated)'}"
        for r in report.audit
    ]
    lines.append(
        "GATE PASSED" if report.passed else "GATE FAILED:\n  - " + "\n  - ".join(report.failures)
    )
    return "\n".join(lines)


def _auc_text(auc: float | None) -> str:
    return "  -  " if auc is None else f"{auc:.3f}"
