"""Benchmark model repositories: a copy of the product with a variant's scheduling settings.

The copy lives in a cache folder (``.cache/bench_repository/<variant>/``), never under
``model_repository/`` (that is the product). A :class:`Variant` may override the dynamic
batching delay, the preferred batch sizes and the instance count of every batching model in the
copy, so the benchmark can measure settings before anyone changes the product's configs.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.config import MODEL_REPOSITORY, ROOT

CACHE = ROOT / ".cache" / "bench_repository"
# The comparison "network alone": credit_model on raw features (the encoder is in its graph),
# without the python contract check; it returns only a probability and validates nothing.
NETWORK = "credit_model"
BATCHING_MODELS = ("preprocess", "credit_model", "credit_model_reasons", "credit_policy")


@dataclass(frozen=True)
class Variant:
    """Overrides of the product's scheduling settings (None keeps the product's value)."""

    name: str = "product"
    delay_us: int | None = None
    preprocess_delay_us: int | None = None  # overrides delay_us for the python step
    model_delay_us: int | None = None  # overrides delay_us for the native (onnxruntime) models
    instances: int | None = None
    preferred: tuple[int, ...] | None = None
    features: Path | None = None  # a proposed features.py for the preprocess step
    models: tuple[str, ...] = field(default=BATCHING_MODELS)

    @classmethod
    def parse(cls, text: str) -> Variant:
        """Parse ``[LABEL:]delay=0,instances=2,preferred=8+32,features=PATH`` (or ``product``).

        ``pre_delay`` and ``model_delay`` set the delay (µs) of the python step or of the
        network alone.

        ``features=PATH`` replaces the preprocess step's ``features.py`` in the copy, to measure
        a proposed change of the contract checks before it is published.
        """
        label, sep, settings = text.partition(":")
        if not sep:
            label, settings = text, text
        if settings in ("", "product"):
            return cls(name=label or "product")
        values: dict[str, object] = {}
        for item in settings.split(","):
            key, _, value = item.partition("=")
            if key == "delay":
                values["delay_us"] = int(value)
            elif key == "pre_delay":
                values["preprocess_delay_us"] = int(value)
            elif key == "model_delay":
                values["model_delay_us"] = int(value)
            elif key == "instances":
                values["instances"] = int(value)
            elif key == "features":
                values["features"] = Path(value)
            elif key == "preferred":
                values["preferred"] = tuple(int(v) for v in value.split("+") if v)
            else:
                raise ValueError(f"unknown variant setting {key!r} in {text!r}")
        return cls(name=label, **values)  # type: ignore[arg-type]

    def apply(self, config: model_config_pb2.ModelConfig) -> None:
        """Change ``config`` in place."""
        if config.name not in self.models:
            return
        delay = self.preprocess_delay_us if config.name == "preprocess" else self.model_delay_us
        delay = self.delay_us if delay is None else delay
        if delay is not None:
            config.dynamic_batching.max_queue_delay_microseconds = delay
        if self.preferred is not None:
            del config.dynamic_batching.preferred_batch_size[:]
            config.dynamic_batching.preferred_batch_size.extend(self.preferred)
        if self.instances is not None:
            for group in config.instance_group:
                group.count = self.instances


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    """Parse a config.pbtxt."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def write_config(config: model_config_pb2.ModelConfig, path: Path) -> None:
    """Write a config.pbtxt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text_format.MessageToString(config))


def build_repository(
    variant: Variant = Variant(), dest: Path | None = None, source: Path = MODEL_REPOSITORY
) -> Path:
    """Copy the product repository, apply ``variant``; return the folder."""
    dest = dest or CACHE / "".join(c if c.isalnum() else "_" for c in variant.name)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(
        source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.md", "*.json.bak")
    )
    if variant.features is not None:
        shutil.copy2(variant.features, dest / "preprocess" / "1" / "features.py")
    for name in BATCHING_MODELS:
        path = dest / name / "config.pbtxt"
        config = read_config(path)
        before = text_format.MessageToString(config)
        variant.apply(config)
        if text_format.MessageToString(config) != before:
            write_config(config, path)
    return dest


def scheduling(repository: Path, name: str) -> str:
    """One line describing a model's batching and instances, for the report."""
    config = read_config(repository / name / "config.pbtxt")
    batching = config.dynamic_batching
    parts = [f"max_queue_delay {batching.max_queue_delay_microseconds} µs"]
    if batching.preferred_batch_size:
        parts.append("preferred " + "/".join(str(v) for v in batching.preferred_batch_size))
    parts.append(f"{sum(g.count or 1 for g in config.instance_group) or 1} instance(s)")
    threads = config.parameters.get("intra_op_thread_count")
    if threads is not None:
        parts.append(f"intra_op {threads.string_value}")
    return f"{name}: " + ", ".join(parts)
