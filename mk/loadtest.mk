# Load tests and the serving benchmark (loadtest/). Included by the top-level Makefile.
# Locust, FastAPI and uvicorn come from the `loadtest` extra (in the Makefile's default EXTRAS).

LOCUST_HOST ?=
LOCUST_GRPC_HOST ?=
USERS ?= 8
SPAWN_RATE ?= 4
RUN_TIME ?= 30s
PROTOCOL ?= both
BENCH_ARGS ?=
PA_ARGS ?=

.PHONY: loadtest bench-serving perf-analyzer

loadtest: $(STAMP) ## Locust, headless and bounded (LOCUST_HOST=http://h:8000 or a local Triton; USERS, RUN_TIME)
	$(PY) -m loadtest.run_locust --host "$(LOCUST_HOST)" --grpc-host "$(LOCUST_GRPC_HOST)" \
		--users $(USERS) --spawn-rate $(SPAWN_RATE) --run-time $(RUN_TIME) --protocol $(PROTOCOL)

bench-serving: $(STAMP) ## Triton ensemble vs folded model vs FastAPI+ORT vs in-process ORT -> reports/serving_benchmark.{md,html}
	$(PY) -m loadtest.bench_serving $(BENCH_ARGS)

perf-analyzer: $(STAMP) ## perf_analyzer concurrency sweep (ensemble and credit_model, HTTP and gRPC) -> reports/perf_analyzer/
	$(PY) -m loadtest.perf_analyzer run --install $(PA_ARGS)
