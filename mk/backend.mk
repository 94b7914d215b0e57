# Triton's native onnxruntime backend for the local runner (preprocess_ensemble/onnxruntime_backend.py):
# built from the r24.10 sources into .cache/triton_backends/ and reused while its inputs stay the
# same. `make serve` and `make test` build it on first use through the runner; this target only
# builds it. TRITON_SOURCE_DIR names local checkouts, else CMake fetches the pinned commits.
FORCE ?=

.PHONY: backend

backend: $(STAMP) ## Build (or reuse) Triton's native onnxruntime backend in .cache/triton_backends/ (FORCE=1 rebuilds)
	$(PY) -m preprocess_ensemble.onnxruntime_backend build $(if $(FORCE),--force)
