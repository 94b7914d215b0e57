#!/bin/sh
# Container entrypoint: exec tritonserver with the given flags plus the restricted-API flags.
#
# The model-repository, shared-memory, logging and trace APIs (HTTP and gRPC) answer only requests
# that carry the header `triton-admin-key: $TRITON_ADMIN_KEY`. When TRITON_ADMIN_KEY is unset
# or empty, a random key that nobody knows is used: those APIs are then closed to everyone.
# Health, metadata, inference, model-config and statistics stay open.
#
# exec keeps tritonserver as PID 1, so it receives SIGTERM itself and drains in-flight requests
# for --exit-timeout-secs. TRITONSERVER overrides the binary (tests capture the final argv).
set -eu
key="${TRITON_ADMIN_KEY:-}"
if [ -z "$key" ]; then
  key="$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
fi
restricted="model-repository,shared-memory,logging,trace:triton-admin-key=${key}"
exec "${TRITONSERVER:-tritonserver}" "$@" \
  "--http-restricted-api=${restricted}" \
  "--grpc-restricted-protocol=${restricted}"
