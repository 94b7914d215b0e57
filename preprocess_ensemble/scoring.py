"""In-process scoring with the served artifacts: what Triton's ensembles compute, without Triton.

The same ONNX files Triton runs (``credit_model``, ``credit_model_reasons``, ``credit_policy``)
in ONNX Runtime, after the same contract check as the ``preprocess`` step. The gate, the fairness
audit, the drift job's prediction drift, offline scoring and the benchmarks' comparators use
this, so there is one implementation of every step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from preprocess_ensemble.features import FeatureContract

ROOT = Path(__file__).resolve().parents[1]
MODEL_REPOSITORY = ROOT / "model_repository"
CONTRACT_JSON = Path(__file__).resolve().parent / "feature_contract.json"
RAW_INPUT = "features"
POLICY_INPUT = "probabilities"
# credit_scoring's outputs; credit_pd returns the same without reason_codes.
OUTPUTS = ("probability", "pd", "score", "decision", "reason_codes", "policy")
PD_OUTPUTS = tuple(o for o in OUTPUTS if o != "reason_codes")


def _session(path: str | Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class InProcessScorer:
    """The ensembles' steps in ONNX Runtime: contract check, network(s), policy."""

    def __init__(
        self,
        model: str | Path,
        reasons: str | Path,
        policy: str | Path,
        contract: str | Path = CONTRACT_JSON,
        threads: int = 1,
    ) -> None:
        self.contract = FeatureContract.from_json(contract)
        self.paths = {"model": Path(model), "reasons": Path(reasons), "policy": Path(policy)}
        self.model = _session(model, threads)
        self.reasons = _session(reasons, threads)
        self.policy = _session(policy, threads)
        self._policy_outputs = [o.name for o in self.policy.get_outputs()]

    @classmethod
    def published(cls, repository: str | Path = MODEL_REPOSITORY, threads: int = 1):
        """The files of ``model_repository/`` (version 1 of each model)."""
        repository = Path(repository)
        return cls(
            *(repository / name / "1" / "model.onnx" for name in _MODELS),
            contract=repository / "preprocess" / "1" / "feature_contract.json",
            threads=threads,
        )

    def check(self, raw: np.ndarray) -> np.ndarray:
        """The ``preprocess`` step: raise ContractViolation naming row, feature and rule."""
        rows = np.asarray(raw, dtype=np.float32)
        self.contract.validate(rows)
        return np.ascontiguousarray(rows)

    def probability(self, raw: np.ndarray) -> np.ndarray:
        """``credit_model``: probabilities [n, 1] for checked raw rows [n, 23]."""
        return self.model.run(None, {RAW_INPUT: self.check(raw)})[0]

    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """``credit_model_reasons``: [n, 24], the applicant then its 23 substitutions."""
        return self.reasons.run(None, {RAW_INPUT: self.check(raw)})[0]

    def apply_policy(self, probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """``credit_policy`` on network probabilities [n, C]; strings come back as ``str``."""
        values = self.policy.run(None, {POLICY_INPUT: probabilities})
        return dict(zip(self._policy_outputs, values, strict=True))

    def decide(self, raw: np.ndarray, reasons: bool = True) -> dict[str, np.ndarray]:
        """``credit_scoring`` (``reasons``) or ``credit_pd``: every output, Triton's shapes."""
        out = self.apply_policy(self.probabilities(raw) if reasons else self.probability(raw))
        return {k: out[k] for k in (OUTPUTS if reasons else PD_OUTPUTS)}


_MODELS = ("credit_model", "credit_model_reasons", "credit_policy")
