#!/usr/bin/env bash
# Print the folder holding the pinned npm packages that check custom resources offline: the
# KEDA and prometheus-operator models (@kubernetes-models: JSON-schema validation of each object)
# and TypeScript (the models' types reject unknown fields, which the schema check lets through).
# Installed once into ${XDG_CACHE_HOME:-~/.cache}/streampod/crd-validators-<hash>; needs node and npm.
set -euo pipefail

PACKAGES=(
  "@kubernetes-models/keda@2.0.0"
  "@kubernetes-models/prometheus-operator@6.0.0"
  "typescript@5.9.3"
)

if ! command -v npm >/dev/null 2>&1; then
  echo "install-crd-validators: npm (Node.js) is needed to check the KEDA and ServiceMonitor resources" >&2
  exit 2
fi
hash="$(printf '%s\n' "${PACKAGES[@]}" | sha256sum | cut -c1-12)"
dir="${XDG_CACHE_HOME:-$HOME/.cache}/streampod/crd-validators-$hash"
if [ ! -f "$dir/.installed" ]; then
  echo "install-crd-validators: npm install ${PACKAGES[*]} into $dir" >&2
  mkdir -p "$dir"
  # --ignore-scripts: nothing of these packages needs to run at install time.
  npm install --prefix "$dir" --no-audit --no-fund --ignore-scripts --loglevel=error "${PACKAGES[@]}" >&2
  touch "$dir/.installed"
fi
echo "$dir"
