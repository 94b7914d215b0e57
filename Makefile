# The user's entry point. Every target creates or reuses .venv and installs what it needs.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON_BIN ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= serve,train,drift,loadtest,dev

HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=

.PHONY: help install test model policy options validate publish-sources bench lint format serve split lock clean

# Feature areas (deployment, infrastructure, drift, load tests) add their targets in mk/*.mk.
-include mk/*.mk

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the pinned dependencies

test: $(STAMP) ## Run the whole test suite (starts a real local Triton on free ports)
	$(PY) -m pytest $(PYTEST_ARGS)

model: $(STAMP) ## Retrain -> ONNX -> static INT8 -> validation gate -> publish into model_repository/
	$(PY) -m export model

policy: $(STAMP) ## Rebuild credit_policy from decision_policy.json, gate it on the published network, publish
	$(PY) -m export policy

options: $(STAMP) ## Train every input/constraint option (nothing published) -> reports/model_options.json
	$(PY) -m export options

validate: $(STAMP) ## Run the validation gate on the committed artifacts
	$(PY) -m export validate

publish-sources: $(STAMP) ## Copy contract, features.py, capture.py into model_repository/; refresh card hashes
	$(PY) -m export publish-sources

bench: $(STAMP) ## PyTorch eager vs ONNX Runtime FP32 vs INT8 latency, one table
	$(PY) -m export bench

serve: $(STAMP) ## Serve model_repository/ on a local Triton (HTTP_PORT, GRPC_PORT, METRICS_PORT)
	$(PY) -m preprocess_ensemble.serve --model-repository model_repository \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

split: $(STAMP) ## Check that data/split.json is what the split code makes
	$(PY) -m export split --check

lint: $(STAMP) ## ruff check and format check
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

lock: $(STAMP) ## Rewrite requirements/constraints.txt from the current .venv
	{ echo "# Exact versions for pip install -c (Python 3.11, Linux x86_64). Regenerate: make lock"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -E '^(pip|setuptools)==' | sed 's/+cpu//'; \
	} > requirements/constraints.txt

clean: ## Remove build outputs and caches (keeps .venv and the committed artifacts)
	rm -rf build .cache .pytest_cache .ruff_cache
