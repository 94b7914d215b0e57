"""Drift monitoring: payload capture in the ensemble, the Evidently report job, shift scenarios."""
