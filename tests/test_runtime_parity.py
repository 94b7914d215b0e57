"""Production runtime parity: the published files score the same in NGC 24.10's ONNX Runtime.

NGC's tritonserver 24.10 image runs ONNX Runtime 1.19.2; the gate and the local server run the
version pinned in requirements/constraints.txt. This installs 1.19.2 (pinned in
requirements/onnxruntime-ngc.txt) into its own environment under .cache on first use and scores
the 4,500 holdout applicants and their reason-code substitutions in both.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from export.config import MODEL_REPOSITORY, ROOT

NGC_REQUIREMENTS = ROOT / "requirements" / "onnxruntime-ngc.txt"
NGC_VENV = ROOT / ".cache" / "onnxruntime-1.19.2"
NGC_VERSION = "1.19.2"
MAX_PROBABILITY_DIFF = 1e-6

# Runs inside the 1.19.2 environment: the three published graphs on the raw holdout rows, as
# credit_scoring (reasons network -> policy) and credit_pd (network -> policy) chain them.
SCORE_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
def session(path):
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
model, reasons, policy = (session(p) for p in sys.argv[1:4])
rows = np.load(sys.argv[4])["holdout"]
names = [o.name for o in policy.get_outputs()]
out = {"probability": model.run(None, {"features": rows})[0]}
out["probabilities"] = reasons.run(None, {"features": rows})[0]
for prefix, p in (("full", out["probabilities"]), ("pd", out["probability"])):
    for name, value in zip(names, policy.run(None, {"probabilities": p})):
        out[prefix + "_" + name] = value.astype(str) if value.dtype == object else value
np.savez(sys.argv[5], **out)
print(ort.__version__)
"""
MODELS = ("credit_model", "credit_model_reasons", "credit_policy")


def _ngc_python() -> Path:
    """The 1.19.2 environment's python, (re)installed when the requirements file changed."""
    python = NGC_VENV / "bin" / "python"
    stamp = NGC_VENV / ".requirements.sha256"
    digest = hashlib.sha256(NGC_REQUIREMENTS.read_bytes()).hexdigest()
    if not python.exists() or not stamp.exists() or stamp.read_text() != digest:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(NGC_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-r", str(NGC_REQUIREMENTS)],
            check=True,
        )
        stamp.write_text(digest)
    return python


@pytest.mark.slow
def test_ngc_onnxruntime_scores_the_holdout_like_the_local_runtime(
    holdout: np.ndarray, reference, tmp_path: Path, figures: dict[str, str]
) -> None:
    np.savez(tmp_path / "rows.npz", holdout=holdout.astype(np.float32))
    paths = [str(MODEL_REPOSITORY / name / "1" / "model.onnx") for name in MODELS]
    result = subprocess.run(
        [str(_ngc_python()), "-c", SCORE_SCRIPT, *paths]
        + [str(tmp_path / "rows.npz"), str(tmp_path / "ngc.npz")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == NGC_VERSION
    ngc = np.load(tmp_path / "ngc.npz")
    scorer = reference.scorer
    local = {
        "probability": scorer.probability(holdout),
        "probabilities": scorer.probabilities(holdout),
    }
    diffs = {k: float(np.abs(ngc[k] - v).max()) for k, v in local.items()}
    assert max(diffs.values()) <= MAX_PROBABILITY_DIFF, diffs
    for prefix, reasons in (("full", True), ("pd", False)):
        mine = scorer.decide(holdout, reasons=reasons)
        for name, value in mine.items():
            theirs = ngc[f"{prefix}_{name}"]
            if value.dtype == object:
                value = value.astype(str)
            np.testing.assert_array_equal(theirs, value, err_msg=f"{prefix} {name}")
    figures[f"ONNX Runtime {NGC_VERSION} (NGC 24.10) vs {ort.__version__} (local)"] = (
        f"max |dp| {diffs['probability']:.2g} on 4,500 holdout rows, "
        f"{diffs['probabilities']:.2g} on {local['probabilities'].size:,} probabilities with "
        "substitutions; every credit_scoring and credit_pd output identical"
    )
