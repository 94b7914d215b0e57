# syntax=docker/dockerfile:1
# Credit-scoring Triton image. Three stages (deploy/README.md explains the choices):
#   builder  python + the training extras; runs the validation gate on the committed artifacts,
#            or retrains and publishes them first with --build-arg REBUILD_MODEL=true (make model)
#   drift    the builder's environment as a non-root job image for the drift CronJob (--target drift)
#   runtime  (default) the NGC Triton 2.51 image plus model_repository/ from the builder, nothing else
#
#   docker build -t credit-scoring-triton .
#   docker build --build-arg REBUILD_MODEL=true -t credit-scoring-triton .
#   docker build --target drift -t credit-scoring-drift .
FROM python:3.11-slim-bookworm AS builder
# CPU wheels of torch (the constraint torch==2.13.0 matches 2.13.0+cpu); no CUDA libraries.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG EXTRAS=train,drift
ARG REBUILD_MODEL=false
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=${TORCH_INDEX_URL} \
    PYTHONDONTWRITEBYTECODE=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first (cached while only code or artifacts change): make install = .venv + pins.
COPY pyproject.toml Makefile ./
COPY requirements/constraints.txt requirements/
COPY mk/ mk/
COPY export/ export/
COPY preprocess_ensemble/ preprocess_ensemble/
RUN make install PYTHON_BIN=python3.11 EXTRAS="${EXTRAS}"
COPY data/ data/
COPY artifacts/ artifacts/
COPY model_repository/ model_repository/
# make model also republishes drift/capture.py into preprocess/1/ and reads the options table.
COPY drift/ drift/
COPY reports/model_options.json reports/
# The gate decides whether this image can exist: a failing gate fails the build.
RUN if [ "${REBUILD_MODEL}" = "true" ]; then make model; else make validate; fi

FROM builder AS drift
RUN useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin drift \
    && mkdir -p reports && chown drift:drift reports
USER 10001:10001
CMD ["make", "drift"]

# Triton 2.51, the release the local runner uses (nvidia-pytriton 0.7.0). deploy/README.md shows
# how to compose a CPU-only image with only the python and onnxruntime backends instead.
FROM nvcr.io/nvidia/tritonserver:24.10-py3 AS runtime
LABEL org.opencontainers.image.title="credit-scoring-triton" \
      org.opencontainers.image.description="Triton 2.51 serving the credit_scoring ensemble (python preprocess + ONNX INT8)" \
      org.opencontainers.image.licenses="Apache-2.0"
# Only what Triton loads; owned by root and read-only to the server user.
COPY --from=builder /src/model_repository/ /models/
COPY --chmod=0755 deploy/triton-entrypoint.sh /usr/local/bin/triton-entrypoint
# The liveness/readiness probe: one inference through the ensemble (stdlib only, the image's python3).
COPY --chmod=0755 deploy/probe.py /usr/local/bin/triton-probe
# triton-server is the image's non-root user (uid/gid 1000, asserted by NVIDIA's own build).
USER 1000:1000
EXPOSE 8000 8001 8002
# No HEALTHCHECK: Kubernetes ignores it; the Deployment's probes run triton-probe and
# /v2/health/ready (checkov CKV_DOCKER_2 is skipped for this reason in deploy/checkov-skips.tsv).
ENTRYPOINT ["/usr/local/bin/triton-entrypoint"]
# The entrypoint execs tritonserver with these flags. Keep them in step with the container args
# in k8s/base/deployment.yaml (tests/test_deploy.py checks).
CMD ["--model-repository=/models", \
     "--model-control-mode=none", \
     "--strict-readiness=true", \
     "--exit-on-error=false", \
     "--exit-timeout-secs=20", \
     "--disable-auto-complete-config", \
     "--http-port=8000", \
     "--grpc-port=8001", \
     "--metrics-port=8002", \
     "--allow-gpu-metrics=false", \
     "--pinned-memory-pool-byte-size=0", \
     "--log-format=ISO8601"]
