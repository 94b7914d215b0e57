"""The model card and the policy card: JSON for tools, Markdown for the reviewer who signs them."""

from __future__ import annotations

import json
from pathlib import Path

from export.config import (
    MODEL_CARD_JSON,
    MODEL_CARD_MD,
    POLICY_CARD_JSON,
    POLICY_CARD_MD,
    RETRAIN_TOLERANCES,
)
from export.publish import relative, sha256_file

# Holdout figures of the model card, in reading order: (metric key, label, format).
METRIC_ROWS = (
    ("auc_holdout_int8", "ROC AUC (served INT8)", ".4f"),
    ("gini_holdout_int8", "Gini (2 AUC - 1)", ".4f"),
    ("ks_holdout_int8", "Kolmogorov-Smirnov statistic", ".4f"),
    ("auc_holdout_fp32", "ROC AUC (FP32 reference)", ".4f"),
    ("brier_int8", "Brier score of the probability", ".5f"),
    ("brier_calibrated", "Brier score of the calibrated PD", ".5f"),
    ("ece_int8", "Expected calibration error, probability (10 bins)", ".4f"),
    ("ece_calibrated", "Expected calibration error, calibrated PD", ".4f"),
    ("max_abs_diff_int8_vs_fp32", "Largest |p INT8 - p FP32| of a holdout applicant", ".4f"),
    ("batch_invariance_max_diff", "Largest change of a score with its batch-mates", ".3g"),
    ("max_adjacent_weight_pair", "Largest adjacent INT8 weight pair |w0|+|w1| (limit 128)", "d"),
    ("monotone_violations_holdout", "Payment-delay steps that lowered the PD, holdout", "d"),
    ("monotone_violations_grid", "Payment-delay steps that lowered the PD, grid", "d"),
    ("unseen_feature_max_effect", "Largest PD change from SEX, MARRIAGE or AGE", ".3g"),
    ("elderly_violations", "Applicants aged 62+ given a worse PD for their age", "d"),
)
LABELS = {key: label for key, label, _ in METRIC_ROWS} | {
    "approval_rate": "approval rate",
    "min_adverse_impact_ratio": "lowest adverse impact ratio",
}


def _value(m: dict, key: str, fmt: str) -> str:
    value = f"{m[key]:{fmt}}" if fmt != "d" else f"{int(m[key]):,}"
    low, high = m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    return value + (f" (95% CI {low:{fmt}} to {high:{fmt}})" if low is not None else "")


def write_model_card(card: dict, published: list[Path]) -> dict:
    """Add artifact hashes to ``card`` and write the JSON and Markdown model cards."""
    card = {**card, "artifacts": {relative(p): sha256_file(p) for p in sorted(published)}}
    MODEL_CARD_JSON.write_text(json.dumps(card, indent=2) + "\n")
    MODEL_CARD_MD.write_text(render_model_card(card))
    return card


def write_policy_card(card: dict, published: list[Path]) -> dict:
    """Add artifact hashes to ``card`` and write the JSON and Markdown policy cards."""
    card = {**card, "artifacts": {relative(p): sha256_file(p) for p in sorted(published)}}
    POLICY_CARD_JSON.write_text(json.dumps(card, indent=2) + "\n")
    POLICY_CARD_MD.write_text(render_policy_card(card))
    return card


def render_model_card(card: dict) -> str:
    """The readable model card."""
    m, data, split = card["metrics"], card["data"], card["split"]
    approval = card["approval"]
    lines = [
        f"# Model card: {card['model']} {card['version']} ({card['date']})",
        "",
        "| | |",
        "| --- | --- |",
        f"| Owner | {card['owner']} |",
        f"| Status | {card['status']} |",
        f"| Approved by | {approval['approved_by'] or '(not yet approved)'} |",
        f"| Approved on | {approval['approved_on'] or '-'} |",
        f"| Validation report | {approval['validation_report'] or '-'} |",
        "",
        "## Intended use",
        card["intended_use"],
        "",
        "## What default means",
        card["default_definition"],
        "",
        "## Data",
        f"{data['title']} ({data['citation']}), {data['license']}, DOI {data['doi']}: "
        f"{data['rows']:,} applicants, {data['defaults']:,} defaults. File `{data['file']}`, "
        f"sha256 of the decompressed CSV `{data['sha256_csv']}`. Split (`{split['file']}`, "
        f"seed {split['seed']}, stratified at random): train {split['train']:,}, validation "
        f"{split['validation']:,}, holdout {split['holdout']:,}.",
        "",
        "What the data can and cannot show:",
        *[f"- {item}" for item in data["limits"]],
        "",
        "## Model",
        card["architecture"],
        "",
        f"Quantization: {card['quantization']['description']}",
        "",
        "## Features the model does not see",
        card["features_not_seen"]["choice"],
    ]
    options = card["features_not_seen"].get("options")
    if options:
        lines += [
            "",
            "Every option measured on the same holdout (`python -m export options`):",
            "",
            "| option | holdout AUC (INT8) | approval rate | lowest AIR | delay steps lowering "
            "the PD | applicants 62+ worse off | gate |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for o in options:
            failed = len(o["gate_failures"])
            verdict = "passes" if not failed else f"fails {failed} check{'s' * (failed > 1)}"
            lines.append(
                f"| {o['option']} | {o['auc_holdout_int8']:.4f} | {o['approval_rate']:.3f} "
                f"| {o['min_adverse_impact_ratio']:.3f} | {o['monotone_violations_holdout']:,} "
                f"| {o['elderly_violations']:,} | {verdict} |"
            )
    lines += [
        "",
        "## Holdout performance (4,500 applicants)",
        "| measure | value |",
        "| --- | --- |",
    ]
    lines += [f"| {label} | {_value(m, key, fmt)} |" for key, label, fmt in METRIC_ROWS if key in m]
    lines += [
        "",
        "Intervals: percentile bootstrap over holdout applicants "
        f"({card['gate']['bootstrap_resamples']} resamples). Another CPU reproduces these within "
        "the stated tolerances ("
        + ", ".join(f"{LABELS.get(k, k)} ± {v}" for k, v in RETRAIN_TOLERANCES.items())
        + "), not byte for byte.",
        "",
        "## Calibration (served as `pd`)",
    ]
    c, h = card["calibration"], card["calibration"]["holdout"]
    lines += [
        f"Platt scaling, pd = sigmoid(a × logit(p) + b) with a = {c['a']:.6f}, b = {c['b']:.6f}, "
        f"fitted on the {c['fitted_on']}. Holdout Brier {h['brier_before']:.5f} → "
        f"{h['brier_after']:.5f}, expected calibration error {h['ece_before']:.4f} → "
        f"{h['ece_after']:.4f}.",
        "",
        "| predicted probability | applicants | mean predicted | observed default rate |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['bin']} | {r['rows']:,} | {r['mean_predicted']:.3f} "
        f"| {r['observed_default_rate']:.3f} |"
        for r in card["reliability"]
    ]
    lines += policy_sections(card["decision_policy"], card["score_bands"], card["fairness_audit"])
    ref = card["reason_codes"]
    lines += [
        "",
        "## Adverse-action reason codes",
        f"Reference applicant: {ref['method']}. {ref['definition']} A reason is a feature whose "
        "move to the reference lowers the applicant's calibrated PD (positive contribution); at "
        "most four, largest first. Values of the reference in request units:",
        "",
        ", ".join(f"{k} {v:,.2f}" for k, v in ref["values"].items()) + ".",
        "",
        "## Limitations",
        *[f"- {item}" for item in card["limitations"]],
        "",
        "## Changelog",
        *[f"- {c['version']} ({c['date']}): {c['changes']}" for c in card["changelog"]],
        "",
        "## Reproducing this model",
        "`make model` retrains, gates and publishes; `make validate` re-scores the committed files "
        "and compares every figure here within a stated tolerance.",
    ]
    env = card["build_environment"]
    lines += [
        "",
        f"Built on {env['cpu_model']} ({env['machine']}, {env['cpu_count']} CPUs), ISA flags "
        f"{', '.join(env['isa_flags'])}; PyTorch kernels `{env.get('torch_cpu_capability', '?')}`; "
        + ", ".join(f"{k}={v}" for k, v in env["kernel_settings"].items())
        + ". Packages: "
        + ", ".join(f"{k} {v}" for k, v in card["packages"].items())
        + ".",
        "",
        "## Artifacts (sha256)",
        "| file | sha256 |",
        "| --- | --- |",
        *[f"| `{k}` | `{v}` |" for k, v in card["artifacts"].items()],
        "",
        "## Training configuration",
        "```json",
        json.dumps(card["training"], indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)


def policy_sections(policy: dict, bands: list[dict], audit: list[dict]) -> list[str]:
    """The policy, its score-band table and the fairness audit, as Markdown sections."""
    s, cut = policy["scorecard"], policy["cutoffs"]
    lines = [
        "",
        f"## Decision policy `{policy['id']}@{policy['version']}`",
        f"Points: score = offset + factor × ln(odds of good), factor = {s['pdo']} / ln 2 "
        f"({s['pdo']} points double the odds), {s['base_points']} points at odds "
        f"{s['base_odds_good_to_bad']}:1. Approve from {cut['approve_from']}, decline below "
        f"{cut['decline_below']}, refer in between.",
    ]
    if "rationale" in policy:
        lines += ["", f"Why these cut-offs: {policy['rationale']}"]
    lines += [
        "",
        "Score bands on the holdout (20 points each):",
        "",
        "| score band | applicants | bad rate | approve | refer | decline |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for b in bands:
        d = b["decisions"]
        lines.append(
            f"| {b['band']} | {b['applicants']:,} | {b['bad_rate']:.3f} | {d.get('approve', 0):,} "
            f"| {d.get('refer', 0):,} | {d.get('decline', 0):,} |"
        )
    lines += [
        "",
        "## Fairness audit (holdout, calibrated PD, the policy above)",
        "Adverse impact ratio (AIR) = a group's approval rate / the highest approval rate among "
        "its attribute's audited groups; `refer` counts as not approved (the stricter reading: "
        "a referred applicant has not been offered credit). The gate fails below 0.8 "
        "(four-fifths rule) for groups of at least 100 holdout applicants; smaller groups are "
        "reported, not gated.",
        "",
        "| attribute | group | applicants | AUC | mean PD | default rate | approval rate | AIR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in audit:
        auc = "-" if r["auc"] is None else f"{r['auc']:.3f}"
        air = f"{r['adverse_impact_ratio']:.3f}" + ("" if r["audited"] else " (not gated)")
        lines.append(
            f"| {r['attribute']} | {r['group']} | {r['rows']:,} | {auc} | {r['mean_pd']:.3f} "
            f"| {r['default_rate']:.3f} | {r['approval_rate']:.3f} | {air} |"
        )
    return lines


def render_policy_card(card: dict) -> str:
    """The readable policy card."""
    m = card["metrics"]
    lines = [
        f"# Policy card: {card['policy']}",
        "",
        card["spec"]["description"],
        "",
        f"Holdout decisions: approve {m['approval_rate']:.3f}, refer {m['refer_rate']:.3f}, "
        f"decline {m['decline_rate']:.3f}; lowest adverse impact ratio "
        f"{m['min_adverse_impact_ratio']:.3f}. Gate: "
        + (
            "passed."
            if card["gate"]["passed"]
            else "FAILED: " + "; ".join(card["gate"]["failures"])
        ),
        "",
        f"Calibration (from `artifacts/calibration.json`): a = {card['calibration']['a']:.6f}, "
        f"b = {card['calibration']['b']:.6f}. Change the policy in "
        "`preprocess_ensemble/decision_policy.json`, bump its version and run `make policy`.",
    ]
    lines += policy_sections(card["spec"], card["score_bands"], card["fairness_audit"])
    lines += ["", "## Artifacts (sha256)", "| file | sha256 |", "| --- | --- |"]
    lines += [f"| `{k}` | `{v}` |" for k, v in card["artifacts"].items()]
    return "\n".join(lines) + "\n"
