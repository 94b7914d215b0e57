"""The validation gate on the served files.

Accuracy, INT8 vs FP32 agreement, calibration, batch invariance, CPU independence, monotone
risk, features that must not count, and the fairness audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.metrics import brier_score_loss, roc_auc_score

from export.audit import audit_failures, audit_table
from export.calibrate import brier, expected_calibration_error
from export.config import GateConfig
from export.quantize import MAX_ADJACENT_WEIGHT_PAIR, max_adjacent_weight_pair
from preprocess_ensemble.features import FeatureContract
from preprocess_ensemble.scoring import RAW_INPUT, InProcessScorer


@dataclass
class GateReport:
    """Metrics, the reliability and fairness audit tables, and one message per failed check."""

    metrics: dict[str, float]
    reliability: list[dict]
    failures: list[str] = field(default_factory=list)
    audit: list[dict] = field(default_factory=list)
    score_bands: list[dict] = field(default_factory=list)

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


def score(sess: ort.InferenceSession, raw: np.ndarray) -> np.ndarray:
    """Probabilities [n] of a raw-input model (``features`` [n, 23])."""
    return sess.run(None, {RAW_INPUT: np.ascontiguousarray(raw, dtype=np.float32)})[0][:, 0]


def extreme_rows(contract: FeatureContract) -> np.ndarray:
    """Valid but extreme raw applicants: all features at the lower bounds, the upper, mixed."""
    lo, hi = contract.lower, contract.upper
    mixed = np.where(np.arange(contract.n_features) % 2 == 0, lo, hi)
    return np.vstack([lo, hi, mixed, np.where(mixed == lo, hi, lo)]).astype(np.float32)


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


def monotone_violations(
    sess: ort.InferenceSession, contract: FeatureContract, rows: np.ndarray, features: list[str]
) -> tuple[int, int]:
    """(violations, steps): p at delay v + 1 below p at v, v = 1..8, for every row and feature.

    Everything else stays equal; -2, -1 and 0 are status codes, not an order, and are not
    compared.
    """
    delays = np.arange(1, 10, dtype=np.float32)
    violations = steps = 0
    for name in features:
        j = contract.names.index(name)
        grid = np.repeat(rows, len(delays), axis=0)
        grid[:, j] = np.tile(delays, len(rows))
        p = score(sess, grid).reshape(len(rows), len(delays))
        violations += int((np.diff(p, axis=1) < 0).sum())
        steps += p.shape[0] * (p.shape[1] - 1)
    return violations, steps


def synthetic_grid(contract: FeatureContract, rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` applicants with each feature drawn independently from ``rows``' values."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(rows), size=(n, contract.n_features))
    return rows[picks, np.arange(contract.n_features)].astype(np.float32)


def unseen_feature_effect(
    sess: ort.InferenceSession, contract: FeatureContract, rows: np.ndarray, names: list[str]
) -> float:
    """Max |p change| when a feature the network must not see moves across its whole domain."""
    base = score(sess, rows)
    worst = 0.0
    for name in names:
        j = contract.names.index(name)
        values = contract.allowed.get(j)
        if values is None:
            values = np.arange(contract.lower[j], contract.upper[j] + 1)
        for value in values:
            moved = rows.copy()
            moved[:, j] = value
            worst = max(worst, float(np.abs(score(sess, moved) - base).max()))
    return worst


def elderly_violations(
    sess: ort.InferenceSession, contract: FeatureContract, rows: np.ndarray
) -> int:
    """Applicants whose PD at some age >= 62 exceeds their lowest PD at any age under 62.

    Regulation B 1002.2(v): an elderly applicant may not be given a less favourable value than
    the most favoured age under 62. Every age of the contract is tried.
    """
    j = contract.names.index("AGE")
    ages = np.arange(contract.lower[j], contract.upper[j] + 1)
    p = np.empty((len(rows), len(ages)))
    for k, age in enumerate(ages):
        moved = rows.copy()
        moved[:, j] = age
        p[:, k] = score(sess, moved)
    young, old = p[:, ages < 62], p[:, ages >= 62]
    return int((old.max(axis=1) > young.min(axis=1)).sum())


def discrimination(y: np.ndarray, p: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    """ROC AUC, Gini and KS of ``p`` with percentile bootstrap 95% intervals (rows resampled)."""

    def ks(yy: np.ndarray, pp: np.ndarray) -> float:
        order = np.argsort(pp, kind="stable")
        yy = yy[order]
        bad = np.cumsum(yy) / yy.sum()
        good = np.cumsum(1 - yy) / (len(yy) - yy.sum())
        return float(np.abs(bad - good).max())

    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(resamples):
        k = rng.integers(0, len(y), len(y))
        auc = roc_auc_score(y[k], p[k])
        samples.append((auc, 2 * auc - 1, ks(y[k], p[k])))
    low, high = np.percentile(np.array(samples), [2.5, 97.5], axis=0)
    auc = float(roc_auc_score(y, p))
    out = {"auc_holdout_int8": auc, "gini_holdout_int8": 2 * auc - 1, "ks_holdout_int8": ks(y, p)}
    for i, name in enumerate(list(out)):
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = float(low[i]), float(high[i])
    return out


def score_bands(y: np.ndarray, points: np.ndarray, decision: np.ndarray, width: int) -> list[dict]:
    """Applicants, bad rate and decision per ``width``-point band of the score."""
    low = (np.floor(points / width) * width).astype(int)
    table = []
    for band in np.unique(low):
        mask = low == band
        decisions, counts = np.unique(decision[mask], return_counts=True)
        table.append(
            {
                "band": f"{band}-{band + width - 1}",
                "applicants": int(mask.sum()),
                "bad_rate": float(y[mask].mean()),
                "decisions": {str(d): int(c) for d, c in zip(decisions, counts, strict=True)},
            }
        )
    return table


def run_gate(
    scorer: InProcessScorer,
    fp32_path: str | Path,
    holdout_features: np.ndarray,
    holdout_target: np.ndarray,
    config: GateConfig = GateConfig(),
    unseen_features: tuple[str, ...] = (),
    monotone_features: tuple[str, ...] = (),
) -> GateReport:
    """Score the holdout with the served files and the FP32 reference; check every gate rule.

    ``scorer`` holds the files under test (``credit_model``, ``credit_model_reasons``,
    ``credit_policy``); ``unseen_features`` must not move the PD; ``monotone_features`` are the
    payment delays the PD may never fall in.
    """
    contract = scorer.contract
    x = np.asarray(holdout_features, dtype=np.float32)
    int8, fp32 = scorer.model, session(fp32_path)
    p8, p32 = score(int8, x), score(fp32, x)
    diff = np.abs(p8 - p32)
    invariance = batch_invariance(int8, x, extreme_rows(contract), config.invariance_batch_size)
    probabilities = scorer.probabilities(x)
    served = scorer.apply_policy(probabilities)
    pd = served["pd"][:, 0].astype(np.float64)
    approved = served["decision"][:, 0] == "approve"
    grid = synthetic_grid(contract, x, config.monotone_grid_rows, seed=0)
    monotone = [monotone_violations(int8, contract, r, list(monotone_features)) for r in (x, grid)]
    metrics = {
        "auc_holdout_fp32": float(roc_auc_score(holdout_target, p32)),
        "auc_holdout_int8": float(roc_auc_score(holdout_target, p8)),
        "max_abs_diff_int8_vs_fp32": float(diff.max()),
        "mean_abs_diff_int8_vs_fp32": float(diff.mean()),
        "batch_invariance_max_diff": max(invariance.values()),
        **{f"batch_invariance_{k}": v for k, v in invariance.items()},
        "reasons_vs_model_max_diff": float(np.abs(probabilities[:, 0] - p8).max()),
        "brier_fp32": float(brier_score_loss(holdout_target, p32)),
        "brier_int8": float(brier_score_loss(holdout_target, p8)),
        "holdout_rows": len(x),
        "max_adjacent_weight_pair": max_adjacent_weight_pair(scorer.paths["model"]),
        "monotone_violations_holdout": monotone[0][0],
        "monotone_steps_holdout": monotone[0][1],
        "monotone_violations_grid": monotone[1][0],
        "monotone_steps_grid": monotone[1][1],
        "unseen_feature_max_effect": unseen_feature_effect(
            int8, contract, x[: config.unseen_check_rows], list(unseen_features)
        ),
        "elderly_violations": elderly_violations(int8, contract, x),
    }
    metrics["auc_delta_int8_vs_fp32"] = metrics["auc_holdout_int8"] - metrics["auc_holdout_fp32"]
    metrics |= {
        "brier_calibrated": brier(holdout_target, pd),
        "ece_int8": expected_calibration_error(holdout_target, p8),
        "ece_calibrated": expected_calibration_error(holdout_target, pd),
        "approval_rate": float(approved.mean()),
        "refer_rate": float((served["decision"][:, 0] == "refer").mean()),
        "decline_rate": float((served["decision"][:, 0] == "decline").mean()),
    }
    metrics |= discrimination(holdout_target, p8, config.bootstrap_resamples, seed=0)
    audit = audit_table(contract, x, holdout_target, pd, approved, config.min_audit_group_rows)
    metrics["min_adverse_impact_ratio"] = min(
        r["adverse_impact_ratio"] for r in audit if r["audited"]
    )
    report = GateReport(
        metrics,
        reliability_table(holdout_target, p8),
        audit=audit,
        score_bands=score_bands(
            holdout_target, served["score"][:, 0], served["decision"][:, 0], config.score_band
        ),
    )
    report.failures += gate_failures(metrics, invariance, config)
    report.failures += audit_failures(audit, config.min_adverse_impact_ratio)
    return report


def gate_failures(metrics: dict, invariance: dict[str, float], config: GateConfig) -> list[str]:
    """One message per failed rule of the model gate."""
    failures = []
    brier_change = metrics["brier_calibrated"] - metrics["brier_int8"]
    if brier_change > config.max_calibration_brier_increase + 1e-7:  # pd is served as float32
        failures.append(
            f"calibration worsens the holdout Brier score by {brier_change:.3g} "
            f"(limit {config.max_calibration_brier_increase:g})"
        )
    if metrics["auc_holdout_int8"] < config.min_auc:
        failures.append(
            f"holdout AUC (INT8) {metrics['auc_holdout_int8']:.4f} is below the gate "
            f"{config.min_auc} by {config.min_auc - metrics['auc_holdout_int8']:.4f}"
        )
    auc_change = abs(metrics["auc_delta_int8_vs_fp32"])
    if auc_change > config.max_auc_drop:
        failures.append(
            f"|AUC INT8 - AUC FP32| = {auc_change:.4f} exceeds {config.max_auc_drop} "
            f"by {auc_change - config.max_auc_drop:.4f}"
        )
    if metrics["max_adjacent_weight_pair"] > MAX_ADJACENT_WEIGHT_PAIR:
        failures.append(
            f"INT8 weights: an adjacent pair sums to |w0|+|w1| = "
            f"{metrics['max_adjacent_weight_pair']}, above {MAX_ADJACENT_WEIGHT_PAIR}: the int16 "
            "sums of AVX2 kernels (VPMADDUBSW) can saturate, so scores would depend on the CPU "
            "(quantize with reduce_range)"
        )
    for name, value in invariance.items():
        if value > config.max_batch_variation:
            failures.append(
                f"batch invariance ({name.replace('_', ' ')}): a row's INT8 probability changed by "
                f"{value:.3g} with its batch-mates, limit {config.max_batch_variation:g} "
                "(dynamic quantization does this; use static INT8)"
            )
    if metrics["reasons_vs_model_max_diff"] > 0:
        failures.append(
            "credit_model_reasons' column 0 differs from credit_model's probability by "
            f"{metrics['reasons_vs_model_max_diff']:.3g}; they must be the same network"
        )
    for where in ("holdout", "grid"):
        count = metrics[f"monotone_violations_{where}"]
        if count:
            failures.append(
                f"monotonicity: on the {where} a longer payment delay lowered the PD in {count} "
                f"of {metrics[f'monotone_steps_{where}']} steps (allowed: none)"
            )
    if metrics["unseen_feature_max_effect"] > 0:
        failures.append(
            "a feature the network must not see moves the probability by "
            f"{metrics['unseen_feature_max_effect']:.3g}"
        )
    if metrics["elderly_violations"]:
        failures.append(
            f"{metrics['elderly_violations']} applicants aged 62+ get a higher PD than at their "
            "most favoured age under 62 (Regulation B 1002.2(v))"
        )
    return failures


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
        f"AUC / Gini / KS (95% CI)     {_ci(m, 'auc')} / {_ci(m, 'gini')} / {_ci(m, 'ks')}",
        f"decisions                    approve {m['approval_rate']:.3f}, refer "
        f"{m['refer_rate']:.3f}, decline {m['decline_rate']:.3f}",
        f"monotone in payment delays   {m['monotone_violations_holdout']} violations in "
        f"{m['monotone_steps_holdout']:,} holdout steps, {m['monotone_violations_grid']} in "
        f"{m['monotone_steps_grid']:,} grid steps",
        f"unseen features / elderly    max |dp| {m['unseen_feature_max_effect']:.3g}; "
        f"{m['elderly_violations']} applicants worse off at 62+",
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


def _ci(m: dict, name: str) -> str:
    key = f"{name}_holdout_int8"
    return f"{m[key]:.4f} [{m[key + '_ci_low']:.4f}, {m[key + '_ci_high']:.4f}]"


def _auc_text(auc: float | None) -> str:
    return "  -  " if auc is None else f"{auc:.3f}"
