#!/usr/bin/env bash
# Renders every kustomize overlay of deploy/ and validates the output
# against the Kubernetes 1.37 schema, strictly (unknown fields are errors).
# Offline: needs only kubectl and kubernetes-validate (installed by
# deploy/install-tools.sh when missing). The Rust tests in deploy/check do
# the same and more (flags, prometheus.yml, the dashboard); this script is
# for a quick look by hand:  deploy/validate.sh [overlay...]
set -euo pipefail
cd "$(dirname "$0")"
PATH="$(./install-tools.sh):$PATH"
overlays=("$@")
[ "${#overlays[@]}" -gt 0 ] || overlays=(cluster1 cluster2 global)
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for o in "${overlays[@]}"; do
  kubectl kustomize "$o" >"$out/$o.yaml"
  echo "$o: $(grep -c '^kind:' "$out/$o.yaml") objects rendered"
  kubernetes-validate --strict --quiet --kubernetes-version 1.37.0 "$out/$o.yaml"
  echo "$o: valid (Kubernetes 1.37, strict)"
done
