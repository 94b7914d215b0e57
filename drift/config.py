"""Thresholds of the drift job, read from ``drift/config.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

CONFIG_TOML = Path(__file__).resolve().parent / "config.toml"


@dataclass(frozen=True)
class DriftConfig:
    """What counts as drift; every field is documented in config.toml."""

    reference_split: str
    min_rows: int
    numerical_test: str
    numerical_threshold: float
    categorical_test: str
    categorical_threshold: float
    psi_bins: int
    psi_epsilon: float
    psi_watch: float
    psi_shift: float
    prediction_test: str
    prediction_threshold: float
    min_drifted_features: int

    @classmethod
    def load(cls, path: str | Path = CONFIG_TOML) -> DriftConfig:
        """Read and check the TOML file; unknown or missing keys raise ValueError."""
        values = tomllib.loads(Path(path).read_text())
        names = {f.name for f in fields(cls)}
        unknown, missing = set(values) - names, names - set(values)
        if unknown or missing:
            raise ValueError(
                f"{path}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}"
            )
        config = cls(**values)
        if config.reference_split not in ("train", "validation", "holdout"):
            raise ValueError(f"{path}: reference_split must be train, validation or holdout")
        if not 0 < config.psi_watch < config.psi_shift:
            raise ValueError(f"{path}: need 0 < psi_watch < psi_shift")
        if config.psi_bins < 2 or config.min_rows < 1 or config.min_drifted_features < 1:
            raise ValueError(f"{path}: psi_bins >= 2, min_rows >= 1, min_drifted_features >= 1")
        return config

    def to_dict(self) -> dict:
        """Plain dict for the JSON summary."""
        return asdict(self)
