"""Publish the validated artifacts into model_repository/ and write the model card."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import shutil
from importlib import metadata
from pathlib import Path

from export.config import (
    CAPTURE_PY,
    CONTRACT_JSON,
    DECISION_DIR,
    DECISIONING_PY,
    FEATURES_PY,
    MODEL_CARD_JSON,
    MODEL_CARD_MD,
    POLICY_JSON,
    PUBLISHED_CAPTURE_PY,
    PUBLISHED_CONTRACT,
    PUBLISHED_FEATURES_PY,
    REASON_CODES_JSON,
    ROOT,
)

# (project source, published copy): the Triton python steps load the copies, byte-identical.
PUBLISHED_SOURCES: tuple[tuple[Path, Path], ...] = (
    (CONTRACT_JSON, PUBLISHED_CONTRACT),
    (FEATURES_PY, PUBLISHED_FEATURES_PY),
    (CAPTURE_PY, PUBLISHED_CAPTURE_PY),
    (CONTRACT_JSON, DECISION_DIR / CONTRACT_JSON.name),
    (FEATURES_PY, DECISION_DIR / FEATURES_PY.name),
    (DECISIONING_PY, DECISION_DIR / DECISIONING_PY.name),
    (POLICY_JSON, DECISION_DIR / POLICY_JSON.name),
    (REASON_CODES_JSON, DECISION_DIR / REASON_CODES_JSON.name),
)
PACKAGES = ("torch", "onnx", "onnxruntime", "numpy", "scikit-learn", "pandas")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sha256_gzip_content(path: str | Path) -> str:
    """Hex sha256 of a gzip file's decompressed content."""
    with gzip.open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def relative(path: Path) -> str:
    """Path relative to the project root, as the card records it."""
    return Path(path).resolve().relative_to(ROOT).as_posix()


def copy_published_sources() -> list[Path]:
    """Copy every PUBLISHED_SOURCES file into its model folder; return the copies."""
    for source, target in PUBLISHED_SOURCES:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return [target for _, target in PUBLISHED_SOURCES]


def publish_sources() -> dict:
    """Refresh the published source copies and the model card's hashes, without retraining."""
    published = copy_published_sources()
    card = json.loads(MODEL_CARD_JSON.read_text())
    paths = {ROOT / name for name in card.pop("artifacts")} | set(published)
    return write_model_card(card, sorted(paths))


def package_versions() -> dict[str, str]:
    """Versions of the packages that produced the artifacts."""
    versions = {"python": platform.python_version()}
    versions.update({name: metadata.version(name) for name in PACKAGES})
    return versions


# CPU flags that select kernels: ONNX Runtime's MLAS (AVX2 / AVX-512 / VNNI / AMX for U8S8),
# PyTorch's ATen (ATEN_CPU_CAPABILITY) and MKL (MKL_CBWR).
ISA_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8",
)  # fmt: skip
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS")


def build_environment() -> dict:
    """Where the artifacts were built: CPU model, the ISA flags that select kernels, settings."""
    cpu_model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            cpu_model = value.strip()
        elif key.strip() == "flags":
            flags = set(value.split())
            break  # the first CPU's block is enough
    environment = {
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "isa_flags": [f for f in ISA_FLAGS if f in flags],
        "kernel_settings": {k: os.environ.get(k) for k in KERNEL_ENV},
        "os": platform.platform(),
    }
    try:
        import torch  # the training extra; absent where only the sources are republished

        environment["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        pass
    return environment


def write_model_card(card: dict, published: list[Path]) -> dict:
    """Add artifact hashes to ``card`` and write the JSON and Markdown model cards."""
    card = {**card, "artifacts": {relative(p): sha256_file(p) for p in sorted(published)}}
    MODEL_CARD_JSON.write_text(json.dumps(card, indent=2) + "\n")
    MODEL_CARD_MD.write_text(render_markdown(card))
    return card


def render_markdown(card: dict) -> str:
    """The readable model card."""
    m, data, split = card["metrics"], card["data"], card["split"]
    lines = [
        f"# Model card: {card['model']} (version {card['version']})",
        "",
        card["intended_use"],
        "",
        "## Data",
        f"{data['title']} ({data['citation']}), {data['license']}, DOI {data['doi']}.",
        f"{data['rows']} rows, {data['defaults']} defaults. File `{data['file']}`, sha256 of the "
        f"decompressed CSV `{data['sha256_csv']}`.",
        f"Split (`{split['file']}`, seed {split['seed']}, stratified): train {split['train']}, "
        f"validation {split['validation']}, holdout {split['holdout']} rows.",
        "",
        "## Model",
        card["architecture"],
        "",
        f"Quantization: {card['quantization']['description']}",
        "",
        "## Holdout metrics",
        "| metric | value |",
        "| --- | --- |",
    ]
    lines += [f"| {k} | {v:.6g} |" for k, v in m.items()]
    lines += [
        "",
        "## Reliability (INT8, holdout)",
        "| predicted PD bin | rows | mean predicted | observed default rate |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['bin']} | {r['rows']} | {r['mean_predicted']:.3f} "
        f"| {r['observed_default_rate']:.3f} |"
        for r in card["reliability"]
    ]
    lines += decisioning_markdown(card)
    lines += ["", "## Limitations", *[f"- {item}" for item in card["limitations"]]]
    lines += ["", "## Artifacts (sha256)", "| file | sha256 |", "| --- | --- |"]
    lines += [f"| `{k}` | `{v}` |" for k, v in card["artifacts"].items()]
    lines += ["", "## Training configuration", "```json", json.dumps(card["training"], indent=2)]
    lines += ["```", "", "## Package versions", "```json", json.dumps(card["packages"], indent=2)]
    lines += ["```", ""]
    if "build_environment" in card:
        env = card["build_environment"]
        lines += [
            "## Build environment",
            f"Built on {env['cpu_model']} ({env['machine']}, {env['cpu_count']} CPUs), ISA flags "
            f"{', '.join(env['isa_flags'])}; PyTorch kernels "
            f"`{env.get('torch_cpu_capability', '?')}`; settings "
            + ", ".join(f"{k}={v}" for k, v in env["kernel_settings"].items())
            + ". Another CPU reproduces the metrics within the tolerances in "
            "`export/config.py` (RETRAIN_TOLERANCES), not byte for byte.",
            "",
        ]
    return "\n".join(lines)


def decisioning_markdown(card: dict) -> list[str]:
    """Calibration, decision policy, fairness audit and the protected-attribute choice."""
    lines: list[str] = []
    if "calibration" in card:
        c, h = card["calibration"], card["calibration"]["holdout"]
        lines += [
            "",
            "## Calibration (served as `pd`)",
            f"{c['method'].capitalize()} scaling, pd = sigmoid(a * logit(p) + b) with "
            f"a = {c['a']:.6f}, b = {c['b']:.6f}, fitted on the {c['fitted_on']} "
            "(`decision/1/calibration.json`).",
            "",
            "| holdout | before | after |",
            "| --- | --- | --- |",
            f"| Brier score | {h['brier_before']:.5f} | {h['brier_after']:.5f} |",
            f"| expected calibration error (10 bins) | {h['ece_before']:.4f} "
            f"| {h['ece_after']:.4f} |",
        ]
    if "decision_policy" in card:
        p = card["decision_policy"]
        s, cut = p["scorecard"], p["cutoffs"]
        lines += [
            "",
            f"## Decision policy `{p['id']}@{p['version']}`",
            f"score = offset + factor * ln(odds of good), factor = {s['pdo']} / ln 2, "
            f"{s['base_points']} points at {s['base_odds_good_to_bad']}:1; approve from "
            f"{cut['approve_from']}, decline below {cut['decline_below']}, refer in between "
            f"(`preprocess_ensemble/decision_policy.json`). Holdout approval rate "
            f"{card['metrics']['approval_rate']:.3f}.",
        ]
    if "fairness_audit" in card:
        gate = card["gate"]
        lines += [
            "",
            "## Fairness audit (holdout, calibrated PD, policy above)",
            f"Adverse impact ratio (AIR) = a group's approval rate / the highest approval rate of "
            f"its attribute. The gate fails below {gate['min_adverse_impact_ratio']} (four-fifths "
            f"rule) for groups of at least {gate['min_audit_group_rows']} holdout rows; smaller "
            "groups are reported, not gated.",
            "",
            "| attribute | group | rows | AUC | mean PD | default rate | approval rate | AIR |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in card["fairness_audit"]:
            auc = "-" if r["auc"] is None else f"{r['auc']:.3f}"
            air = f"{r['adverse_impact_ratio']:.3f}" + ("" if r["audited"] else " (not gated)")
            lines.append(
                f"| {r['attribute']} | {r['group']} | {r['rows']} | {auc} | {r['mean_pd']:.3f} "
                f"| {r['default_rate']:.3f} | {r['approval_rate']:.3f} | {air} |"
            )
    if "protected_attributes" in card:
        pa = card["protected_attributes"]
        lines += ["", "## SEX and MARRIAGE as model inputs", pa["choice"]]
        alt = pa.get("alternative")
        if alt:
            lines += [
                "",
                f"Measured with `{alt['command']}`: holdout AUC (INT8) "
                f"{alt['auc_holdout_int8']:.4f} without {', '.join(alt['excluded_from_model'])}, "
                f"{card['metrics']['auc_holdout_int8']:.4f} with them (AUC with minus without: "
                f"{alt['auc_cost_of_excluding']:+.4f}); approval rate {alt['approval_rate']:.3f}, "
                f"min AIR {alt['min_adverse_impact_ratio']:.3f}.",
            ]
    return lines
