#!/usr/bin/env bash
# Package helm/streampod and push it to ACR as an OCI artifact: oci://$ACR_LOGIN_SERVER/helm/streampod.
#   CHART_VERSION   the chart version to publish (e.g. 0.1.0-build.1234)
#   APP_VERSION     the chart's appVersion: the image tag the chart uses by default (e.g. the build id)
#   ACR_LOGIN_SERVER  e.g. myregistry.azurecr.io
# helm must already be logged in to the registry (ci/scripts/helm-registry-login.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${CHART_VERSION:?CHART_VERSION is needed}" "${APP_VERSION:?APP_VERSION is needed}"
: "${ACR_LOGIN_SERVER:?ACR_LOGIN_SERVER is needed}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
helm package helm/streampod --version "$CHART_VERSION" --app-version "$APP_VERSION" --destination "$out"
helm push "$out/streampod-$CHART_VERSION.tgz" "oci://$ACR_LOGIN_SERVER/helm"
