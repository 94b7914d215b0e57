"""Shared fixtures: the holdout rows, the in-process reference scorer, and a real local Triton.

Markers live in pyproject.toml (``--strict-markers``). Figures that tests measure
(information, never thresholds) are printed in the terminal summary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest

from export.config import CALIBRATION_JSON, MODEL_REPOSITORY, POLICY_JSON, REASON_CODES_JSON
from export.data import load_dataset, read_split
from preprocess_ensemble import decisioning as dec
from preprocess_ensemble.scoring import InProcessScorer
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
    """The published artifacts in process (InProcessScorer): what Triton must return."""

    def __init__(self, scorer: InProcessScorer | None = None) -> None:
        self.scorer = scorer or InProcessScorer.published()
        names = self.scorer.contract.names
        self.calibration = dec.Calibration.from_json(CALIBRATION_JSON)
        self.policy = dec.Policy.from_json(POLICY_JSON)
        self.catalogue = dec.ReasonCatalogue.from_json(REASON_CODES_JSON, names)

    def score(self, raw: np.ndarray) -> np.ndarray:
        """credit_model's probabilities [n, 1] for raw rows [n, 23]."""
        return self.scorer.probability(raw)

    def decide(self, raw: np.ndarray, reasons: bool = True) -> dict[str, np.ndarray]:
        """credit_scoring's (or credit_pd's) outputs, 1-D where a row has one value."""
        out = self.scorer.decide(raw, reasons=reasons)
        return {k: (v[:, 0] if v.shape[1] == 1 else v) for k, v in out.items()}


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
