#!/usr/bin/env bash
# CI lint beyond `./dev.sh test` (which runs ruff, mypy and the tests): hadolint on every Dockerfile
# and `helm lint --strict` on the chart. Run from the repository root after `./dev.sh test` has
# bootstrapped the venv (STREAMPOD_VENV, default .venv) that holds the pinned hadolint.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${STREAMPOD_VENV:-.venv}"
mapfile -t dockerfiles < <(git ls-files '*Dockerfile')
echo "hadolint: ${dockerfiles[*]}"
"$VENV/bin/hadolint" "${dockerfiles[@]}"
helm="$(bash scripts/install-helm.sh)"
# The chart's defaults leave the topics empty on purpose (the schema asks for them): lint with each
# worked example of helm/streampod/ci/.
for values in helm/streampod/ci/*-values.yaml; do
  "$helm" lint --strict helm/streampod -f "$values" >/dev/null
done
echo "lint: hadolint and helm lint passed"
