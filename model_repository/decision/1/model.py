"""Triton python step: calibrated PD, scorecard points, policy decision and reason codes.

A thin adapter over ``decisioning.py`` and ``features.py`` (published copies). The reason codes
need each applicant's 23 single-feature substitutions with the reference applicant; they are
scored by ``credit_model`` through BLS, in chunks of at most its max_batch_size rows. The
network's ``probability`` is passed through unchanged (config.pbtxt says why).
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from decisioning import Calibration, Decider, Policy, ReasonCatalogue
from features import FeatureContract, Standardizer

OUTPUTS = ("probability", "pd", "score", "decision", "reason_codes", "policy")


class TritonPythonModel:
    """The ``decision`` model of the ``credit_scoring`` ensemble."""

    def initialize(self, args: dict) -> None:
        """Load policy, calibration, catalogue; standardize the reference applicant once."""
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        contract = FeatureContract.from_json(folder / params["contract_file"])
        scaler = Standardizer.from_json(folder / params["scaler_file"])
        if scaler.names != contract.names:
            raise pb_utils.TritonModelException("scaler.json features differ from the contract")
        catalogue = ReasonCatalogue.from_json(folder / params["reason_codes_file"], scaler.names)
        contract.validate(catalogue.reference[None, :])
        self.decider = Decider(
            calibration=Calibration.from_json(folder / params["calibration_file"]),
            policy=Policy.from_json(folder / params["policy_file"]),
            catalogue=catalogue,
            reference=scaler.transform(catalogue.reference[None, :])[0],
            chunk=max(1, int(params["scoring_max_batch_size"]) // contract.n_features),
        )
        self.model = params["scoring_model"]

    def execute(self, requests: list) -> list:
        """Decide every request of the batch in one pass; one BLS call per chunk."""
        inputs = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            for name in ("standardized_features", "probability")
        ]
        try:
            out = self.decider.decide(*(np.concatenate(i) for i in inputs), self._score)
        except pb_utils.TritonModelException as error:
            failure = pb_utils.TritonError(f"reason codes: {error}")
            return [pb_utils.InferenceResponse(error=failure) for _ in requests]
        responses, start = [], 0
        for batch in inputs[0]:
            rows, start = slice(start, start + len(batch)), start + len(batch)
            tensors = [pb_utils.Tensor(name, out[name][rows]) for name in OUTPUTS]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def _score(self, rows: np.ndarray) -> np.ndarray:
        """``credit_model`` probabilities [n] for standardized rows, through BLS."""
        request = pb_utils.InferenceRequest(
            model_name=self.model,
            requested_output_names=["probability"],
            inputs=[pb_utils.Tensor("input", rows)],
        )
        response = request.exec()
        if response.has_error():
            raise pb_utils.TritonModelException(response.error().message())
        return pb_utils.get_output_tensor_by_name(response, "probability").as_numpy()[:, 0]
