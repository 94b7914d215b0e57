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

from export.config import PUBLISHED_ONNX, ROOT

NGC_REQUIREMENTS = ROOT / "requirements" / "onnxruntime-ngc.txt"
NGC_VENV = ROOT / ".cache" / "onnxruntime-1.19.2"
NGC_VERSION = "1.19.2"
MAX_PROBABILITY_DIFF = 1e-6

# Runs inside the 1.19.2 environment: score every array of an .npz with one session.
SCORE_SCRIPT = """
import sys
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
rows = np.load(sys.argv[2])
out = {k: session.run(None, {"input": rows[k]})[0][:, 0] for k in rows.files}
np.savez(sys.argv[3], **out)
print(ort.__version__)
"""


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
    from preprocess_ensemble.decisioning import substitutions

    x = reference.scaler.transform(holdout)
    substituted_reference = reference.scaler.transform(reference.catalogue.reference[None, :])[0]
    rows = {"holdout": x, "substituted": substitutions(x, substituted_reference)}
    np.savez(tmp_path / "rows.npz", **rows)
    result = subprocess.run(
        [str(_ngc_python()), "-c", SCORE_SCRIPT, str(PUBLISHED_ONNX)]
        + [str(tmp_path / "rows.npz"), str(tmp_path / "ngc.npz")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == NGC_VERSION
    ngc = np.load(tmp_path / "ngc.npz")
    local = {k: reference.score_standardized(v) for k, v in rows.items()}
    diffs = {k: float(np.abs(ngc[k] - local[k]).max()) for k in rows}
    assert max(diffs.values()) <= MAX_PROBABILITY_DIFF, diffs

    decider = reference.decider()
    per_call = decider.chunk * x.shape[1]  # substitution rows the Decider scores per call

    def decisions(p: np.ndarray, p_sub: np.ndarray) -> dict[str, np.ndarray]:
        calls = iter(np.split(p_sub, range(per_call, len(p_sub), per_call)))
        return decider.decide(x, p, lambda _rows: next(calls))

    mine = decisions(local["holdout"], local["substituted"])
    theirs = decisions(ngc["holdout"], ngc["substituted"])
    for name in ("decision", "reason_codes", "score"):
        np.testing.assert_array_equal(theirs[name], mine[name], err_msg=name)
    figures[f"ONNX Runtime {NGC_VERSION} (NGC 24.10) vs {ort.__version__} (local)"] = (
        f"max |dp| {diffs['holdout']:.2g} on 4,500 holdout rows, "
        f"{diffs['substituted']:.2g} on {len(rows['substituted']):,} substitution rows; "
        "decisions, points and reason codes identical"
    )
