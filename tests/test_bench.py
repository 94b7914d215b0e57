"""The model benchmark (make bench): same model in every engine, and its smoke path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from export.bench import MAX_TORCH_DIFF, run_bench, torch_from_onnx
from export.config import CONTRACT_JSON, ENCODING_JSON, MODEL_CARD_JSON, REFERENCE_FP32
from export.encoding import Encoding, encode
from export.graphs import extract_network
from export.validate import score, session
from preprocess_ensemble.features import FeatureContract


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(MODEL_CARD_JSON.read_text())


@pytest.fixture(scope="module")
def encoding() -> Encoding:
    return Encoding.from_json(ENCODING_JSON, FeatureContract.from_json(CONTRACT_JSON).names)


def test_torch_rebuild_reproduces_the_fp32_onnx(
    card: dict, holdout: np.ndarray, encoding: Encoding, tmp_path: Path
) -> None:
    network = extract_network(REFERENCE_FP32, tmp_path / "network.onnx")
    model = torch_from_onnx(network, card, encoding)
    x = encode(encoding, holdout)
    with torch.inference_mode():
        p_torch = model(torch.from_numpy(x)).numpy()[:, 0]
    assert np.abs(p_torch - score(session(REFERENCE_FP32), holdout)).max() <= MAX_TORCH_DIFF


def test_bench_refuses_a_model_that_differs(
    monkeypatch: pytest.MonkeyPatch, card: dict, tmp_path: Path
) -> None:
    def perturbed(path: Path, card: dict, encoding: Encoding) -> torch.nn.Module:
        model = torch_from_onnx(path, card, encoding)
        with torch.no_grad():
            model.members[0].free[0].bias += 0.05
        return model

    monkeypatch.setattr("export.bench.torch_from_onnx", perturbed)
    with pytest.raises(RuntimeError, match="refusing to time a different model"):
        run_bench(repeats=1, max_rows=64, report_dir=tmp_path, progress=False)
    assert not (tmp_path / "benchmark.md").exists()


def test_bench_smoke(tmp_path: Path, card: dict) -> None:
    threads_before = torch.get_num_threads()
    text = run_bench(
        repeats=1,
        max_rows=64,
        batch_sizes=(1, 8),
        target_seconds=0.002,
        report_dir=tmp_path,
        progress=False,
    )
    assert torch.get_num_threads() == threads_before
    published = f"ORT INT8 {card['quantization']['mode']} (published)"
    engines = ["PyTorch eager", "ORT FP32", "ORT INT8 static-qoperator", "ORT INT8 static-qdq"]
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["engine", "threads", "batch"]
    table = lines[2 : lines.index("")]
    threads = {line.split()[-6] for line in table}
    assert "1" in threads
    assert len(table) == len(engines) * 2 * len(threads)
    for engine in engines:
        assert sum(line.startswith(engine) for line in table) == 2 * len(threads), engine
    assert sum(published in line for line in table) == 2 * len(threads)
    assert "scores every row identically" in text and "bytes" in text
    for line in table:
        if line.startswith("PyTorch"):
            assert line.split()[-2] == "1.00x"
    markdown = (tmp_path / "benchmark.md").read_text(encoding="utf-8")
    page = (tmp_path / "benchmark.html").read_text(encoding="utf-8")
    for engine in engines:
        assert engine in markdown and engine in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
