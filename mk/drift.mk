# Drift monitoring (drift/): the Evidently report job, shift scenarios, the published capture.py.
CURRENT ?= split:holdout
TRITON_URL ?=
DRIFT_ARGS ?=

.PHONY: drift drift-scenarios

drift: $(STAMP) ## Drift report vs the training split: CURRENT=split:holdout|file.csv|capture-dir [TRITON_URL=host:port]; exit 1 = retrain
	$(PY) -m drift report --current "$(CURRENT)" $(if $(TRITON_URL),--triton-url $(TRITON_URL)) $(DRIFT_ARGS)

drift-scenarios: $(STAMP) ## Holdout (no drift) and each generated shift (drift): reports/drift_scenarios/
	$(PY) -m drift scenarios $(if $(TRITON_URL),--triton-url $(TRITON_URL)) $(DRIFT_ARGS)
