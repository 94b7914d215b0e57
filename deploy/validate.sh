#!/usr/bin/env bash
# Offline validation of the deployment (make validate-deploy). Every check runs; the summary
# lists the failures and the exit code is 1 if there was any.
#   1. kubectl kustomize renders every overlay    -> build/k8s/<overlay>.yaml
#   2. kubernetes-validate --strict, Kubernetes 1.32 (built-in kinds; CRDs such as
#      ServiceMonitor have no bundled schema and are reported as skipped)
#   3. checkov on the rendered manifests and the Dockerfile (skips: deploy/checkov-skips.tsv)
#   4. yamllint on k8s/ and .github/workflows/   5. hadolint on the Dockerfile
#   6. actionlint on .github/workflows/
# Tools come from the venv made by mk/deploy.mk (DEPLOY_TOOLS=<venv>/bin).
set -uo pipefail
cd "$(dirname "$0")/.."

TOOLS="${DEPLOY_TOOLS:-.cache/venvs/deploy-tools/bin}"
KUBECTL="${KUBECTL:-kubectl}"
K8S_VERSION="${K8S_VERSION:-1.32.0}"
OUT="${OUT:-build/k8s}"
SKIPS=deploy/checkov-skips.tsv
export BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false
failed=()

run() { # run NAME CMD...: run one check, remember a failure
  local name="$1"
  shift
  echo "== ${name}"
  if "$@"; then
    echo "ok: ${name}"
  else
    echo "FAILED: ${name}" >&2
    failed+=("${name}")
  fi
}

skips_for() { # skips_for SCOPE...: comma-separated check ids of those scopes
  awk -F'\t' -v scopes=" $* " '!/^#/ && NF >= 3 && index(scopes, " " $2 " ") { printf "%s%s", sep, $1; sep="," }' "${SKIPS}"
}

for tool in checkov kubernetes-validate yamllint hadolint actionlint; do
  if [ ! -x "${TOOLS}/${tool}" ]; then
    echo "${TOOLS}/${tool} missing: run 'make deploy-tools' (make validate-deploy does)" >&2
    exit 2
  fi
done
if ! command -v "${KUBECTL}" > /dev/null; then
  echo "kubectl not found (needed for 'kubectl kustomize'): install it, e.g. 'apt-get install kubectl'" \
    "from the Kubernetes apt repository, or pass KUBECTL=/path/to/kubectl" >&2
  exit 2
fi

mkdir -p "${OUT}"
overlays=()
for dir in k8s/overlays/*/; do
  overlays+=("$(basename "${dir}")")
done

for overlay in "${overlays[@]}"; do
  run "kustomize ${overlay}" \
    bash -c "'${KUBECTL}' kustomize 'k8s/overlays/${overlay}' > '${OUT}/${overlay}.yaml'"
done

for overlay in "${overlays[@]}"; do
  [ -s "${OUT}/${overlay}.yaml" ] || continue
  run "kubernetes-validate ${overlay} (k8s ${K8S_VERSION}, strict)" \
    "${TOOLS}/kubernetes-validate" --strict --kubernetes-version "${K8S_VERSION}" --no-warn \
    "${OUT}/${overlay}.yaml"
done

for overlay in "${overlays[@]}"; do
  [ -s "${OUT}/${overlay}.yaml" ] || continue
  run "checkov ${overlay}" \
    "${TOOLS}/checkov" --quiet --compact --framework kubernetes \
    --skip-check "$(skips_for k8s "${overlay}")" -f "${OUT}/${overlay}.yaml"
done
run "checkov Dockerfile" \
  "${TOOLS}/checkov" --quiet --compact --framework dockerfile \
  --skip-check "$(skips_for dockerfile)" -f Dockerfile

run "yamllint" "${TOOLS}/yamllint" --strict -c deploy/yamllint.yaml k8s .github/workflows
run "hadolint Dockerfile" "${TOOLS}/hadolint" Dockerfile
run "actionlint" "${TOOLS}/actionlint" -shellcheck= -pyflakes= .github/workflows/*.yml

echo
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'validate-deploy: %d check(s) failed:\n' "${#failed[@]}" >&2
  printf '  - %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "validate-deploy: all checks passed (overlays: ${overlays[*]}; rendered into ${OUT}/)"
