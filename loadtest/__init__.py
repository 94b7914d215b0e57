"""Load tests (Locust), perf_analyzer and the serving benchmark of the credit_scoring ensemble."""
