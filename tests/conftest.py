"""Shared fixtures: the holdout rows, the in-process reference scorer, and a real local Triton.

Markers live in pyproject.toml (``--strict-markers``). Figures that tests measure
(information, never thresholds) are printed in the terminal summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export.config import (
    CONTRACT_JSON,
    DECISION_DIR,
    MODEL_REPOSITORY,
    PUBLISHED_CALIBRATION,
    PUBLISHED_ONNX,
    PUBLISHED_SCALER,
)
from export.data import load_dataset, read_split
from preprocess_ensemble import decisioning as dec
from preprocess_ensemble.features import FeatureContract, Standardizer
from preprocess_ensemble.triton_server import TritonServer, TritonServerError

FIGURES = pytest.StashKey[dict[str, str]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--keep-triton-log",
        action="store_true",
        help="print the tritonserver log tail after the session",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[FIGURES] = {}


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures = terminalreporter.config.stash.get(FIGURES, {})
    if figures:
        terminalreporter.section("figures (measured, not asserted)")
        for name, value in figures.items():
            terminalreporter.write_line(f"{name}: {value}")


class Reference:
    """In-process scoring with the published scaler and INT8 model: what Triton must return."""

    def __init__(self, onnx_path: Path = PUBLISHED_ONNX, scaler_path: Path = PUBLISHED_SCALER):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.scaler = Standardizer.from_json(scaler_path)

        names = FeatureContract.from_json(CONTRACT_JSON).names
        self.calibration = dec.Calibration.from_json(PUBLISHED_CALIBRATION)
        self.policy = dec.Policy.from_json(DECISION_DIR / "decision_policy.json")
        self.catalogue = dec.ReasonCatalogue.from_json(DECISION_DIR / "reason_codes.json", names)

    def score(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities [n, 1] for raw rows [n, 23]."""
        return self.session.run(None, {"input": self.scaler.transform(raw)})[0]

    def decider(self) -> dec.Decider:
        """The decision step's logic with the published calibration, policy and reasons."""
        return dec.Decider(
            self.calibration,
            self.policy,
            self.catalogue,
            self.scaler.transform(self.catalogue.reference[None, :])[0],
            chunk=1024 // len(self.catalogue.codes),
        )

    def decide(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """What the ensemble's decision step must return for raw rows [n, 23] (1-D per row)."""
        x = self.scaler.transform(raw)
        out = self.decider().decide(x, self.score(raw), self.score_standardized)
        return {k: (v[:, 0] if v.shape[1] == 1 else v) for k, v in out.items()}

    def score_standardized(self, x: np.ndarray) -> np.ndarray:
        """Probabilities [n] for standardized rows."""
        return self.session.run(None, {"input": x})[0][:, 0]


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, str]:
    """Figures a test measured, printed in the terminal summary (information, not thresholds)."""
    return request.config.stash[FIGURES]


@pytest.fixture(scope="session")
def holdout() -> np.ndarray:
    """Raw holdout rows [4500, 23] as float32, in the contract's order."""
    data = load_dataset()
    return data.take(np.asarray(read_split()["holdout"])).features.astype(np.float32)


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference()


@pytest.fixture(scope="session")
def triton(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """The real local Triton serving model_repository/ on free ports, for the whole session."""
    log = tmp_path_factory.mktemp("triton") / "tritonserver.log"
    try:
        server = TritonServer(MODEL_REPOSITORY, log_path=log)
    except TritonServerError as error:
        if os.environ.get("CI"):
            raise  # CI installs nvidia-pytriton: a missing binary is a failure there
        pytest.skip(f"no tritonserver binary: {error}")
    with server:
        yield server
    if request.config.getoption("--keep-triton-log"):
        print(server.log_tail(80))
