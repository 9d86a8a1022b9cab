#!/usr/bin/env bash
# Validates every manifest here against the Kubernetes API schemas (PyPI's kubernetes-validate,
# which ships them), strictly: an unknown or misspelt field fails. Then, when a Go toolchain is
# there to build kustomize from its module, validates the rendered kustomization as well.
# Tools are cached under ~/.cache/replistream/tools; nothing is written into the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tools="${REPLISTREAM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/replistream}/tools"
KV_VERSION=1.37.0
KUSTOMIZE_VERSION=v5.7.1
K8S_VERSION="${K8S_VERSION:-1.30.0}"

venv="$tools/venv"
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KV_VERSION"; then
  if python3 -m venv "$venv" 2>/dev/null; then
    "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
  else
    # no venv module (Debian without python3-venv): a per-user install, same pinned version
    rm -rf "$venv"
    python3 -m pip install -q --user --disable-pip-version-check --break-system-packages "kubernetes-validate==$KV_VERSION" 2>/dev/null ||
      python3 -m pip install -q --user --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
    mkdir -p "$venv/bin"
    ln -sf "$(python3 -m site --user-base)/bin/kubernetes-validate" "$venv/bin/kubernetes-validate"
  fi
fi
kv=("$venv/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION")

manifests=()
for f in "$here"/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
"${kv[@]}" "${manifests[@]}"
echo "kubernetes: ${#manifests[@]} manifest files valid against Kubernetes $K8S_VERSION"

kustomize="$tools/bin/kustomize"
if [ ! -x "$kustomize" ] && command -v go >/dev/null; then
  GOBIN="$tools/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
fi
if [ -x "$kustomize" ]; then
  rendered="$(mktemp --suffix=.yaml)"
  trap 'rm -f "$rendered"' EXIT
  "$kustomize" build "$here" >"$rendered"
  "${kv[@]}" "$rendered"
  echo "kubernetes: kustomize build renders $(grep -c '^kind:' "$rendered") valid resources"
else
  echo "kubernetes: no Go toolchain to build kustomize; the rendered kustomization was not checked"
fi
