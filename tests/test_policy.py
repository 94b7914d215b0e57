"""The decision policy without a server: the credit_policy graph against an independent numpy
oracle (tests/oracle.py), calibration, reason codes a reviewer can recompute, the reference
applicant, monotone risk, age, and the fairness audit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from export.audit import audit_failures, audit_table
from export.calibrate import brier, fit_platt
from export.config import (
    CALIBRATION_JSON,
    ENCODING_JSON,
    POLICY_CARD_JSON,
    POLICY_JSON,
    PUBLISHED_ONNX,
    PUBLISHED_POLICY_ONNX,
    PUBLISHED_REASONS_ONNX,
    REASON_CODES_JSON,
    REFERENCE_FP32,
    GateConfig,
    TrainConfig,
)
from export.data import Dataset
from export.encoding import encode, fit_encoding
from export.pipeline import MONOTONE_FEATURES, load_parts, policy_codes, reference_values
from export.policy import policy_graph
from export.validate import run_gate
from preprocess_ensemble.decisioning import Calibration, Policy, ReasonCatalogue
from preprocess_ensemble.features import FeatureContract
from tests import oracle

POLICY = Policy.from_json(POLICY_JSON)
PROTECTED = ("SEX", "MARRIAGE", "AGE")


@pytest.fixture(scope="module")
def parts() -> tuple[FeatureContract, dict[str, Dataset], dict]:
    return load_parts()


@pytest.fixture(scope="module")
def contract(parts) -> FeatureContract:
    return parts[0]


@pytest.fixture(scope="module")
def catalogue(contract) -> ReasonCatalogue:
    return ReasonCatalogue.from_json(REASON_CODES_JSON, contract.names)


@pytest.fixture(scope="module")
def seen() -> set[str]:
    return {c["feature"] for c in json.loads(ENCODING_JSON.read_text())["columns"]}


def run_policy(model: onnx.ModelProto, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    values = session.run(None, {"probabilities": np.asarray(probabilities, np.float32)})
    return dict(zip([o.name for o in session.get_outputs()], values, strict=True))


def identity_policy(codes: tuple[str, ...] = ("A", "B", "C", "D", "E", "F")) -> onnx.ModelProto:
    """The published policy's scale and cut-offs with pd = probability (a = 1, b = 0)."""
    return policy_graph(POLICY, Calibration(1.0, 0.0), codes, 4)


# --- scorecard points and policy, in the generated graph --------------------------------------


def pd_at_odds(good_to_bad: float) -> float:
    return 1.0 / (1.0 + good_to_bad)


@pytest.mark.parametrize(
    ("odds", "points"),
    [(50, 600), (100, 620), (200, 640), (25, 580), (12.5, 560), (1, 487), (1 / 3, 455)],
)
def test_graph_points_match_the_formula_on_known_odds(odds: float, points: int) -> None:
    # 600 at 50:1, 20 points to double the odds; 1:1 -> 600 - 20 * log2(50) = 487.1
    out = run_policy(identity_policy(), np.array([[pd_at_odds(odds)]]))
    assert out["score"].tolist() == [[points]]
    assert oracle.points(POLICY, np.array([pd_at_odds(odds)]))[0] == points
    factor = 20 / math.log(2)
    assert abs(points - (600 - factor * math.log(50) + factor * math.log(odds))) <= 0.5


def test_graph_points_fall_as_the_pd_rises_and_stay_finite_at_0_and_1() -> None:
    grid = np.linspace(0.001, 0.999, 999, dtype=np.float32)[:, None]
    score = run_policy(identity_policy(), grid)["score"][:, 0]
    assert (np.diff(score) <= 0).all()
    np.testing.assert_array_equal(score, oracle.points(POLICY, grid.astype(np.float64))[:, 0])
    extreme = run_policy(identity_policy(), np.array([[0.0], [1.0]]))["score"][:, 0]
    assert extreme.dtype == np.int32 and extreme[0] > extreme[1]


def test_graph_cutoffs_route_to_the_right_decision() -> None:
    a, d = POLICY.approve_from, POLICY.decline_below
    scores = np.array([a + 50, a, a - 1, d, d - 1, d - 100])
    # the PD whose points are exactly s (mid-point of the rounding interval)
    pd = 1.0 / (1.0 + np.exp((scores - POLICY.offset) / POLICY.factor))
    out = run_policy(identity_policy(), pd[:, None])
    assert out["score"][:, 0].tolist() == scores.tolist()
    expected = ["approve", "approve", "refer", "refer", "decline", "decline"]
    assert out["decision"][:, 0].tolist() == expected
    assert oracle.decisions(POLICY, scores).tolist() == expected
    assert set(out["policy"][:, 0]) == {POLICY.label} == {f"{POLICY.policy_id}@{POLICY.version}"}


def test_graph_reasons_rank_positive_contributions_and_break_ties_by_order() -> None:
    # pd = 0.5 for the applicant; substitutions give contributions 0.1, 0.3, 0.1, -0.2, 0, 0.3
    row = [0.5, 0.4, 0.2, 0.4, 0.7, 0.5, 0.2]
    only_one = [0.5, 0.5, 0.6, 0.5, 0.5, 0.5, 0.48]
    out = run_policy(identity_policy(), np.array([row, only_one]))
    assert out["reason_codes"].tolist() == [["B", "F", "A", "C"], ["F", "", "", ""]]
    single = run_policy(identity_policy(), np.array([[0.5]]))  # credit_pd: no substitutions
    assert single["reason_codes"].tolist() == [["", "", "", ""]]


def test_policy_file_is_versioned_and_checked(tmp_path: Path) -> None:
    spec = json.loads(POLICY_JSON.read_text())
    assert spec["id"] and spec["version"] and spec["rationale"]
    assert spec["scorecard"] == {"pdo": 20, "base_points": 600, "base_odds_good_to_bad": 50}
    spec["cutoffs"] = {"approve_from": 480, "decline_below": 500}
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="decline_below"):
        Policy.from_json(path)


def test_published_policy_graph_is_current(contract, catalogue, seen) -> None:
    """credit_policy/1/model.onnx is what make policy builds from the committed inputs."""
    rebuilt = policy_graph(
        POLICY,
        Calibration.from_json(CALIBRATION_JSON),
        policy_codes(catalogue, contract.names, seen),
        catalogue.count,
    )
    assert rebuilt.SerializeToString() == onnx.load(str(PUBLISHED_POLICY_ONNX)).SerializeToString()


def test_served_policy_equals_the_oracle_on_the_holdout(reference, holdout, contract, seen):
    probabilities = reference.scorer.probabilities(holdout)
    served = reference.scorer.apply_policy(probabilities)
    codes = tuple(
        c if n in seen else ""
        for n, c in zip(contract.names, reference.catalogue.codes, strict=True)
    )
    expected = oracle.policy_outputs(
        probabilities, reference.calibration, POLICY, codes, reference.catalogue.count
    )
    for name in ("probability", "score", "decision", "reason_codes", "policy"):
        np.testing.assert_array_equal(served[name], expected[name], err_msg=name)
    np.testing.assert_allclose(served["pd"], expected["pd"], rtol=2e-7, atol=0)


# --- calibration -----------------------------------------------------------------------------


def test_platt_fit_recovers_known_parameters() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, 200_000)
    p = 1.0 / (1.0 + np.exp(-z))
    y = (rng.random(len(z)) < 1.0 / (1.0 + np.exp(-(0.7 * z - 0.4)))).astype(int)
    fitted = fit_platt(p, y)
    assert fitted.a == pytest.approx(0.7, abs=0.02)
    assert fitted.b == pytest.approx(-0.4, abs=0.02)


def test_calibration_improves_or_keeps_the_holdout_brier(parts, reference) -> None:
    holdout = parts[1]["holdout"]
    out = reference.decide(holdout.features)
    assert brier(holdout.target, out["pd"]) <= brier(holdout.target, out["probability"])
    assert reference.calibration.a > 0  # monotone: ranking (AUC, reason codes) unchanged


# --- reason codes (Regulation B 9(b)(2)) -----------------------------------------------------


def test_reference_applicant_is_the_average_of_all_training_applicants(parts, contract) -> None:
    """Comment 9(b)(2)-5: the average of all applicants (here: the training split)."""
    train = parts[1]["train"]
    encoding = fit_encoding(contract, TrainConfig(), train.features)
    assert np.abs(encode(encoding, train.features).astype(np.float64).mean(axis=0)).max() < 1e-5
    spec = json.loads(REASON_CODES_JSON.read_text())
    assert spec["reference_applicant"]["values"] == reference_values(encoding)
    assert "9(b)(2)-5" in spec["reference_applicant"]["method"]


def test_catalogue_has_codes_only_for_features_the_network_sees(contract, catalogue, seen):
    assert seen == set(contract.names) - set(PROTECTED)
    for name, code, label in zip(contract.names, catalogue.codes, catalogue.labels, strict=True):
        assert bool(code) == (name in seen), name
        assert bool(label) == (name in seen), name
    assert catalogue.count == 4
    texts = json.dumps(json.loads(REASON_CODES_JSON.read_text())["reasons"])
    assert "2005" not in texts and "September" not in texts  # months relative to the application


def test_reason_texts_are_specific_and_give_the_direction(catalogue, contract) -> None:
    j = contract.names.index("PAY_0")
    text = catalogue.text(catalogue.codes[j], 2)
    assert "most recent month" in text and "2 months late" in text, text
    k = contract.names.index("LIMIT_BAL")
    low = catalogue.text(catalogue.codes[k], 10_000)
    assert "lower than the average applicant" in low, low
    assert catalogue.text("", 0) == ""


def test_every_reason_is_a_factor_actually_scored(reference, holdout, contract, seen) -> None:
    """Each returned code has a positive contribution recomputed from the served networks'
    probabilities, codes come in decreasing contribution, and no larger one is left out."""
    rows = holdout[:1000]
    probabilities = reference.scorer.probabilities(rows)
    codes = reference.decide(rows)["reason_codes"]
    pd_all = reference.calibration.apply(probabilities.astype(np.float64))
    contribution = pd_all[:, :1] - pd_all[:, 1:]
    index = {code: j for j, code in enumerate(reference.catalogue.codes) if code}
    unseen = [contract.names.index(n) for n in PROTECTED]
    np.testing.assert_array_equal(contribution[:, unseen], 0.0)  # SEX/MARRIAGE/AGE: no effect
    named = 0
    for i, row_codes in enumerate(codes):
        listed = [c for c in row_codes if c]
        assert row_codes.tolist() == listed + [""] * (4 - len(listed))  # padding at the end
        values = [contribution[i, index[c]] for c in listed]
        assert all(v > 0 for v in values) and values == sorted(values, reverse=True), i
        rest = [j for j in range(contract.n_features) if reference.catalogue.codes[j] not in listed]
        if len(listed) == 4:
            assert contribution[i, rest].max() <= values[-1], i
        else:
            assert contribution[i, rest].max() <= 0, i
        named += len(listed)
    assert named > 2000  # most applicants get four reasons


def test_substituting_the_reference_value_reproduces_the_reasons_column(reference, holdout):
    """For a one-column feature (amounts), the substitution the reasons network scores is the
    applicant with that feature at the reference value in request units (up to INT8 rounding)."""
    rows = holdout[:200].astype(np.float64)
    probabilities = reference.scorer.probabilities(rows)
    catalogue, names = reference.catalogue, reference.scorer.contract.names
    for feature in ("LIMIT_BAL", "BILL_AMT1", "PAY_AMT1"):
        j = names.index(feature)
        changed = rows.copy()
        changed[:, j] = catalogue.reference[j]
        p = reference.scorer.model.run(None, {"features": changed.astype(np.float32)})[0][:, 0]
        assert np.abs(p - probabilities[:, 1 + j]).max() < 5e-3, feature


def test_reason_codes_are_stable_across_batch_compositions(reference, holdout) -> None:
    rows = holdout[:64].astype(np.float64)
    together = reference.decide(rows)
    shuffled = np.random.default_rng(1).permutation(len(holdout))[:200]
    mixed = np.vstack([holdout[shuffled[:100]], rows, holdout[shuffled[100:]]])
    in_mix = reference.decide(mixed)
    for i in range(len(rows)):
        alone = reference.decide(rows[i : i + 1])
        for key in ("reason_codes", "score", "decision", "pd"):
            assert np.array_equal(alone[key][0], together[key][i]), (i, key)
            assert np.array_equal(alone[key][0], in_mix[key][100 + i]), (i, key)


# --- monotone risk and age, on the served INT8 artifacts --------------------------------------


def test_a_longer_delay_never_lowers_the_pd_on_any_holdout_row(reference, holdout, contract):
    """PAY_x at values >= 1 (months late): one month more never lowers the served PD."""
    pd = {}
    for feature in MONOTONE_FEATURES:
        j = contract.names.index(feature)
        for value in range(1, 10):
            rows = holdout.copy()
            rows[:, j] = value
            pd[feature, value] = reference.decide(rows, reasons=False)["pd"]
    steps = violations = 0
    for feature in MONOTONE_FEATURES:
        for value in range(1, 9):
            steps += len(holdout)
            violations += int((pd[feature, value + 1] < pd[feature, value]).sum())
    assert (steps, violations) == (len(MONOTONE_FEATURES) * 8 * len(holdout), 0)


def test_no_elderly_applicant_gets_a_higher_pd_for_age(reference, holdout, contract) -> None:
    """Regulation B 1002.2(v): for applicants aged 62+, the PD at their age is never above the
    lowest PD the same applicant gets at any age under 62; AGE is never a reason."""
    j = contract.names.index("AGE")
    elderly = holdout[holdout[:, j] >= 62]
    assert len(elderly) > 0
    own = reference.decide(elderly)
    lowest = np.full(len(elderly), np.inf)
    for age in range(21, 62):
        rows = elderly.copy()
        rows[:, j] = age
        lowest = np.minimum(lowest, reference.decide(rows, reasons=False)["pd"])
    assert (own["pd"] <= lowest).all()
    assert reference.catalogue.codes[j] == ""  # AGE has no code: never a reason


# --- fairness audit --------------------------------------------------------------------------


def test_audit_table_covers_every_group_and_the_gate_fails_on_a_breached_ratio(
    parts, contract, reference
) -> None:
    holdout = parts[1]["holdout"]
    out = reference.decide(holdout.features)
    approved = out["decision"] == "approve"
    pd = out["pd"].astype(np.float64)  # as the gate reads the served float32 PD
    table = audit_table(contract, holdout.features, holdout.target, pd, approved, 100)
    assert {r["attribute"] for r in table} == {"SEX", "MARRIAGE", "EDUCATION", "AGE"}
    for attribute in ("SEX", "MARRIAGE", "EDUCATION", "AGE"):
        assert sum(r["rows"] for r in table if r["attribute"] == attribute) == len(holdout.ids)
        assert max(r["adverse_impact_ratio"] for r in table if r["audited"]) == 1.0
    assert audit_failures(table, 0.8) == []
    strict = audit_failures(table, 0.99)
    assert strict and all("four-fifths" in f for f in strict)
    report = run_gate(
        reference.scorer,
        REFERENCE_FP32,
        holdout.features,
        holdout.target,
        GateConfig(min_adverse_impact_ratio=0.99, bootstrap_resamples=10),
    )
    assert [f for f in report.failures if f.startswith("fairness audit")] == strict
    assert report.audit == table


# --- the policy's own life cycle (make policy) -------------------------------------------------


def test_make_policy_gates_a_new_policy_version_without_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import export.pipeline as pipeline

    spec = json.loads(POLICY_JSON.read_text())
    published = json.loads(POLICY_CARD_JSON.read_text())
    spec |= {"version": "9.9.9", "cutoffs": {"approve_from": 560, "decline_below": 490}}
    stricter = tmp_path / "decision_policy.json"
    stricter.write_text(json.dumps(spec))
    monkeypatch.setattr(pipeline, "POLICY_JSON", stricter)
    monkeypatch.setattr(pipeline, "BUILD_DIR", tmp_path)
    networks = {p: p.read_bytes() for p in (PUBLISHED_ONNX, PUBLISHED_REASONS_ONNX)}
    report = pipeline.build_policy(publish=False)
    assert {p: p.read_bytes() for p in networks} == networks
    rates = report.metrics
    assert rates["approval_rate"] < published["metrics"]["approval_rate"] - 0.05
    card = pipeline.policy_card(report)
    assert (
        card["policy"] == f"{spec['id']}@9.9.9" and card["spec"]["cutoffs"]["approve_from"] == 560
    )
    served = run_policy(onnx.load(str(tmp_path / "policy.onnx")), np.array([[0.05]]))
    assert served["policy"].tolist() == [[f"{spec['id']}@9.9.9"]]
