#!/usr/bin/env bash
# Render an overlay for release with both images pinned by digest (used by release.yml).
#   deploy/render-release.sh OVERLAY REGISTRY_ID TRITON_DIGEST DRIFT_DIGEST > manifests.yaml
# Writes build/release/<overlay>/kustomization.yaml on top of k8s/overlays/<overlay>.
set -euo pipefail
cd "$(dirname "$0")/.."
overlay="$1" registry="$2" triton_digest="$3" drift_digest="$4"
for digest in "${triton_digest}" "${drift_digest}"; do
  [[ "${digest}" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "not an image digest: ${digest}" >&2; exit 2; }
done
[[ "${registry}" =~ ^[a-z0-9]+$ ]] || { echo "not a registry id: ${registry}" >&2; exit 2; }
[ -d "k8s/overlays/${overlay}" ] || { echo "no overlay k8s/overlays/${overlay}" >&2; exit 2; }
dir="build/release/${overlay}"
mkdir -p "${dir}"
cat > "${dir}/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../k8s/overlays/${overlay}
images:
  - name: cr.yandex/registry-id/credit-scoring-triton
    newName: cr.yandex/${registry}/credit-scoring-triton
    digest: ${triton_digest}
  - name: cr.yandex/registry-id/credit-scoring-drift
    newName: cr.yandex/${registry}/credit-scoring-drift
    digest: ${drift_digest}
YAML
"${KUBECTL:-kubectl}" kustomize "${dir}"
