"""Publish the validated artifacts into model_repository/ and write the model card."""

from __future__ import annotations

import gzip
import hashlib
import json
import platform
import shutil
from importlib import metadata
from pathlib import Path

from export.config import (
    CAPTURE_PY,
    CONTRACT_JSON,
    FEATURES_PY,
    MODEL_CARD_JSON,
    MODEL_CARD_MD,
    PUBLISHED_CAPTURE_PY,
    PUBLISHED_CONTRACT,
    PUBLISHED_FEATURES_PY,
    ROOT,
)

PUBLISHED_SOURCES = {
    CONTRACT_JSON: PUBLISHED_CONTRACT,
    FEATURES_PY: PUBLISHED_FEATURES_PY,
    CAPTURE_PY: PUBLISHED_CAPTURE_PY,
}
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
    """Copy the contract, features.py and capture.py into the preprocess model folder."""
    PUBLISHED_CONTRACT.parent.mkdir(parents=True, exist_ok=True)
    for source, target in PUBLISHED_SOURCES.items():
        shutil.copyfile(source, target)
    return list(PUBLISHED_SOURCES.values())


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
    lines += ["", "## Limitations", *[f"- {item}" for item in card["limitations"]]]
    lines += ["", "## Artifacts (sha256)", "| file | sha256 |", "| --- | --- |"]
    lines += [f"| `{k}` | `{v}` |" for k, v in card["artifacts"].items()]
    lines += ["", "## Training configuration", "```json", json.dumps(card["training"], indent=2)]
    lines += ["```", "", "## Package versions", "```json", json.dumps(card["packages"], indent=2)]
    lines += ["```", ""]
    return "\n".join(lines)
