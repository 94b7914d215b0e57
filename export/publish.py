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
    FEATURES_PY,
    MODEL_CARD_JSON,
    PUBLISHED_CAPTURE_PY,
    PUBLISHED_CONTRACT,
    PUBLISHED_FEATURES_PY,
    ROOT,
)

# (project source, published copy): the Triton python step loads the copies, byte-identical.
PUBLISHED_SOURCES: tuple[tuple[Path, Path], ...] = (
    (CONTRACT_JSON, PUBLISHED_CONTRACT),
    (FEATURES_PY, PUBLISHED_FEATURES_PY),
    (CAPTURE_PY, PUBLISHED_CAPTURE_PY),
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
    from export.cards import write_model_card

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
