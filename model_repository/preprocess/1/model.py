"""Triton python step: validate raw applicants against the contract and pass them on unchanged.

A thin adapter over ``features.py`` and ``capture.py`` (published copies). A dynamic batch is
checked in one vectorized pass; a bad request gets an error naming row, feature and rule while
its batch-mates are scored. ``capture_dir`` set: accepted rows are sampled to files, tagged with
the contract file's id (the networks read raw features; the model card lists the hashes).
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from capture import COUNTS, Capture, CaptureSettings, model_id
from features import FeatureContract


class TritonPythonModel:
    """The ``preprocess`` model of the ``credit_scoring`` ensemble."""

    def initialize(self, args: dict) -> None:
        """Load the contract named by the config's parameters; start capture."""
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = Path(args["model_repository"]) / args["model_version"]
        self.contract = FeatureContract.from_json(folder / params["contract_file"])
        output = pb_utils.get_output_config_by_name(config, "validated_features")
        self.output_dtype = pb_utils.triton_string_to_numpy(output["data_type"])
        self.capture, settings = None, CaptureSettings.from_params(params)
        if settings is not None:
            self.family = pb_utils.MetricFamily(
                name="credit_capture_events_total",
                description="Payload capture of the preprocess step: rows and rejected requests",
                kind=pb_utils.MetricFamily.COUNTER,
            )
            self.counters = {k: self.family.Metric(labels={"event": k}) for k in COUNTS}
            identity = model_id(folder / params["contract_file"])
            self.capture = Capture(
                settings, args["model_version"], identity, pb_utils.Logger.log_warn, self._count
            )

    def execute(self, requests: list) -> list:
        """Check every request of the batch in one pass."""
        batches = [pb_utils.get_input_tensor_by_name(r, "features").as_numpy() for r in requests]
        rows = np.concatenate(batches) if len(batches) > 1 else batches[0]
        invalid = self.contract.invalid_mask(rows)
        bad_rows = invalid.any(axis=1)
        checked = rows.astype(self.output_dtype, copy=False)
        responses, accepted, start = [], [], 0
        for batch in batches:
            stop = start + len(batch)
            if batch.shape[0] == 0:
                error = "the request holds no rows; send at least one applicant"
                responses.append(self._error(error))
            elif bad_rows[start:stop].any():
                message = self.contract.first_violation(batch, invalid[start:stop])
                responses.append(self._error(message))
            else:
                tensor = pb_utils.Tensor("validated_features", checked[start:stop])
                responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
                accepted.append(batch)
            start = stop
        if self.capture is not None:
            self.capture.record(accepted, rejected=len(batches) - len(accepted))
        return responses

    def finalize(self) -> None:
        """Write the captured rows still queued."""
        if self.capture is not None:
            self.capture.close()

    def _count(self, deltas: dict[str, int]) -> None:
        for name, value in deltas.items():
            self.counters[name].increment(value)

    @staticmethod
    def _error(message: str) -> "pb_utils.InferenceResponse":
        error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
        return pb_utils.InferenceResponse(error=error)
