# Reliability suite (issue 9): fuzzed and hostile traffic, process faults and soak against a real
# local Triton. `make test` runs its short mode; this target runs the full one and writes
# reports/reliability.md. MODE=long soaks for 30 minutes and fuzzes 50,000 requests.
RELIABILITY_REPORT ?= reports/reliability.md

.PHONY: reliability

reliability: $(STAMP) ## Fuzz, process faults, soak on a local Triton -> reports/reliability.md (MODE=long)
	RELIABILITY_MODE=$(if $(MODE),$(MODE),full) RELIABILITY_REPORT=$(RELIABILITY_REPORT) \
		$(PY) -m pytest tests/reliability -s -p no:cacheprovider $(PYTEST_ARGS)
	@echo "figures written to $(RELIABILITY_REPORT)"
