"""Decisioning without a server: calibration, points, policy, reason codes, the fairness audit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from export.audit import audit_failures, audit_table
from export.calibrate import brier, fit_platt
from export.config import (
    POLICY_JSON,
    PUBLISHED_CALIBRATION,
    PUBLISHED_ONNX,
    PUBLISHED_SCALER,
    REASON_CODES_JSON,
    REFERENCE_FP32,
    GateConfig,
    TrainConfig,
)
from export.data import Dataset
from export.pipeline import load_parts
from export.train import feature_transforms
from export.validate import run_gate, score, session
from preprocess_ensemble.decisioning import (
    Calibration,
    Policy,
    ReasonCatalogue,
    contributions,
    substitutions,
    top_reasons,
)
from preprocess_ensemble.features import FeatureContract, Standardizer

POLICY = Policy.from_json(POLICY_JSON)


@pytest.fixture(scope="module")
def parts() -> tuple[FeatureContract, dict[str, Dataset], dict]:
    return load_parts()


@pytest.fixture(scope="module")
def contract(parts) -> FeatureContract:
    return parts[0]


# --- scorecard points and policy -------------------------------------------------------------


def pd_at_odds(good_to_bad: float) -> float:
    return 1.0 / (1.0 + good_to_bad)


@pytest.mark.parametrize(
    ("odds", "points"),
    [(50, 600), (100, 620), (200, 640), (25, 580), (12.5, 560), (1, 487), (1 / 3, 455)],
)
def test_points_match_the_formula_on_known_odds(odds: float, points: int) -> None:
    # 600 at 50:1, 20 points to double the odds; 1:1 -> 600 - 20 * log2(50) = 487.1
    assert POLICY.points(np.array([pd_at_odds(odds)]))[0] == points
    factor = 20 / math.log(2)
    exact = 600 - factor * math.log(50) + factor * math.log(odds)
    assert abs(POLICY.points(np.array([pd_at_odds(odds)]))[0] - exact) <= 0.5


def test_points_round_half_up_and_stay_finite() -> None:
    factor, offset = POLICY.factor, POLICY.offset
    pd_half = 1.0 / (1.0 + math.exp((600.5 - offset) / factor))  # exactly 600.5 points
    assert POLICY.points(np.array([pd_half]))[0] in (600, 601)  # float rounding either side
    assert POLICY.points(np.array([1.0 / (1.0 + math.exp((600.49 - offset) / factor))]))[0] == 600
    assert POLICY.points(np.array([1.0 / (1.0 + math.exp((600.51 - offset) / factor))]))[0] == 601
    extreme = POLICY.points(np.array([0.0, 1.0], dtype=np.float32))
    assert extreme.dtype == np.int32 and extreme[0] > extreme[1]


def test_points_fall_as_the_pd_rises() -> None:
    points = POLICY.points(np.linspace(0.001, 0.999, 999))
    assert (np.diff(points) <= 0).all()


def test_policy_cutoffs_route_to_the_right_decision() -> None:
    a, d = POLICY.approve_from, POLICY.decline_below
    scores = np.array([a + 50, a, a - 1, d, d - 1, d - 100])
    assert POLICY.decide(scores).tolist() == [
        "approve",
        "approve",
        "refer",
        "refer",
        "decline",
        "decline",
    ]
    assert POLICY.label == f"{POLICY.policy_id}@{POLICY.version}"


def test_policy_file_is_versioned_and_checked(tmp_path: Path) -> None:
    spec = json.loads(POLICY_JSON.read_text())
    assert spec["id"] and spec["version"]
    assert spec["scorecard"] == {"pdo": 20, "base_points": 600, "base_odds_good_to_bad": 50}
    spec["cutoffs"] = {"approve_from": 480, "decline_below": 500}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="decline_below"):
        Policy.from_json(path)


# --- calibration -----------------------------------------------------------------------------


def test_platt_fit_recovers_known_parameters() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, 200_000)
    p = 1.0 / (1.0 + np.exp(-z))
    y = (rng.random(len(z)) < 1.0 / (1.0 + np.exp(-(0.7 * z - 0.4)))).astype(int)
    fitted = fit_platt(p, y)
    assert fitted.a == pytest.approx(0.7, abs=0.02)
    assert fitted.b == pytest.approx(-0.4, abs=0.02)


def test_calibration_improves_or_keeps_the_holdout_brier(parts) -> None:
    calibration = Calibration.from_json(PUBLISHED_CALIBRATION)
    holdout = parts[1]["holdout"]
    p = score(
        session(PUBLISHED_ONNX),
        Standardizer.from_json(PUBLISHED_SCALER).transform(holdout.features),
    )
    assert brier(holdout.target, calibration.apply(p)) <= brier(holdout.target, p)
    assert calibration.a > 0  # monotone: ranking (AUC, reason codes) unchanged


# --- reason codes ----------------------------------------------------------------------------


def test_reference_applicant_is_the_training_median_of_good_payers(parts, contract) -> None:
    train = parts[1]["train"]
    median = np.percentile(train.features[train.target == 0], 50, axis=0, method="lower")
    catalogue = ReasonCatalogue.from_json(REASON_CODES_JSON, contract.names)
    np.testing.assert_array_equal(catalogue.reference, median)
    contract.validate(catalogue.reference[None, :])
    assert len(set(catalogue.codes)) == contract.n_features and catalogue.count == 4
    assert all(catalogue.texts)


def test_substitutions_change_one_feature_each() -> None:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    rows = substitutions(x, np.array([-1.0, -2.0, -3.0]))
    assert rows.tolist() == [
        [-1, 1, 2],
        [0, -2, 2],
        [0, 1, -3],
        [-1, 4, 5],
        [3, -2, 5],
        [3, 4, -3],
    ]


def test_top_reasons_rank_positive_contributions_and_break_ties_by_order() -> None:
    c = np.array([[0.1, 0.3, 0.1, -0.2, 0.0, 0.3], [0.0, -0.1, 0.0, 0.0, 0.0, 0.02]])
    codes = ("A", "B", "C", "D", "E", "F")
    assert top_reasons(c, codes, 4).tolist() == [["B", "F", "A", "C"], ["F", "", "", ""]]


def test_reason_codes_name_features_whose_substitution_lowers_the_pd(
    reference, holdout, contract
) -> None:
    rows = holdout[:300].astype(np.float64)
    result = reference.decide(rows)
    catalogue = reference.catalogue
    index = {code: j for j, code in enumerate(catalogue.codes)}
    named = 0
    for i, codes in enumerate(result["reason_codes"]):
        listed = [c for c in codes if c]
        assert codes.tolist() == listed + [""] * (4 - len(listed))  # padding at the end
        for code in listed:
            changed = rows[i : i + 1].copy()
            changed[0, index[code]] = catalogue.reference[index[code]]
            contract.validate(changed)
            pd_changed = reference.calibration.apply(reference.score(changed)[:, 0])[0]
            assert pd_changed < result["pd"][i], (i, code)
            named += 1
        contribution = result["contributions"][i]
        if listed:
            unlisted = [j for j in range(len(contribution)) if catalogue.codes[j] not in listed]
            assert contribution[unlisted].max() <= min(contribution[index[c]] for c in listed)
    assert named > 600  # most applicants get four reasons


def test_reason_codes_are_stable_across_batch_compositions(reference, holdout) -> None:
    rows = holdout[:64].astype(np.float64)
    together = reference.decide(rows)
    shuffled = np.random.default_rng(1).permutation(len(holdout))[:200]
    mixed = np.vstack([holdout[shuffled[:100]], rows, holdout[shuffled[100:]]])
    in_mix = reference.decide(mixed)
    for i in range(len(rows)):
        alone = reference.decide(rows[i : i + 1])
        for key in ("reason_codes", "score", "decision"):
            assert np.array_equal(alone[key][0], together[key][i]), (i, key)
            assert np.array_equal(alone[key][0], in_mix[key][100 + i]), (i, key)
        assert alone["pd"][0] == together["pd"][i] == in_mix["pd"][100 + i]


# --- fairness audit and the protected-attribute option ---------------------------------------


def test_audit_table_covers_every_group_and_the_gate_fails_on_a_breached_ratio(
    parts, contract
) -> None:
    holdout = parts[1]["holdout"]
    calibration = Calibration.from_json(PUBLISHED_CALIBRATION)
    scaler = Standardizer.from_json(PUBLISHED_SCALER)
    pd = calibration.apply(score(session(PUBLISHED_ONNX), scaler.transform(holdout.features)))
    approved = POLICY.decide(POLICY.points(pd)) == "approve"
    table = audit_table(contract, holdout.features, holdout.target, pd, approved, 100)
    assert {r["attribute"] for r in table} == {"SEX", "MARRIAGE", "EDUCATION", "AGE"}
    for attribute in ("SEX", "MARRIAGE", "EDUCATION", "AGE"):
        assert sum(r["rows"] for r in table if r["attribute"] == attribute) == len(pd)
        assert max(r["adverse_impact_ratio"] for r in table if r["audited"]) == 1.0
    assert audit_failures(table, 0.8) == []
    strict = audit_failures(table, 0.95)
    assert any("SEX = male" in f for f in strict), strict
    assert all("four-fifths" in f for f in strict)
    assert not any("EDUCATION = other" in f for f in strict)  # 23 rows: reported, not gated

    report = run_gate(
        PUBLISHED_ONNX,
        REFERENCE_FP32,
        scaler,
        contract,
        holdout.features,
        holdout.target,
        GateConfig(min_adverse_impact_ratio=0.95),
        calibration,
        POLICY,
    )
    assert [f for f in report.failures if f.startswith("fairness audit")] == strict
    assert report.audit == table


def test_excluded_features_reach_the_model_as_a_constant(parts, contract) -> None:
    config = TrainConfig(exclude_from_model=("SEX", "MARRIAGE"))
    transforms = feature_transforms(contract, config)
    assert [contract.names[j] for j, t in enumerate(transforms) if t == "drop"] == [
        "SEX",
        "MARRIAGE",
    ]
    train = parts[1]["train"]
    scaler = Standardizer.fit(train.features, contract.names, transforms)
    x = scaler.transform(parts[1]["holdout"].features)
    for name in ("SEX", "MARRIAGE"):
        assert (x[:, contract.names.index(name)] == 0).all()
    assert x[:, contract.names.index("AGE")].std() > 0.5
    with pytest.raises(ValueError, match="unknown features"):
        feature_transforms(contract, TrainConfig(exclude_from_model=("GENDER",)))


def test_contributions_are_pd_minus_substituted_pd() -> None:
    pd = np.array([0.5, 0.2])
    substituted = np.array([0.4, 0.5, 0.6, 0.2, 0.1, 0.3])
    np.testing.assert_allclose(
        contributions(pd, substituted), [[0.1, 0.0, -0.1], [0.0, 0.1, -0.1]], atol=1e-15
    )
