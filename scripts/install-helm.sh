#!/usr/bin/env bash
# Print the path of a helm v3 binary, building the pinned version first if there is none.
#
# Order: $STREAMPOD_HELM if set; `helm` on PATH if it is v3; else the pinned version built from the
# Go module proxy with `go install` into ${XDG_CACHE_HOME:-~/.cache}/streampod/helm-<version>/bin
# (built once, then reused). The build takes a few minutes on 2 cores; only the binary is kept.
# Progress goes to stderr, the path alone to stdout.
set -euo pipefail

HELM_VERSION="${STREAMPOD_HELM_VERSION:-v3.21.4}"
# The Kubernetes version helm assumes without --kube-version: helm's Makefile stamps the minor of its
# k8s.io/client-go (v0.36 for v3.21.4) plus one major; `go install` alone would leave it at 1.20.
HELM_K8S_VERSION="${STREAMPOD_HELM_K8S_VERSION:-1.36}"

if [ -n "${STREAMPOD_HELM:-}" ]; then
  echo "$STREAMPOD_HELM"
  exit 0
fi
if command -v helm >/dev/null 2>&1 && [[ "$(helm version --template '{{.Version}}' 2>/dev/null)" == v3.* ]]; then
  command -v helm
  exit 0
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/streampod/helm-$HELM_VERSION"
bin="$cache/bin/helm"
if [ ! -x "$bin" ]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "install-helm: no helm v3 on PATH and no Go toolchain to build $HELM_VERSION; install either" >&2
    exit 2
  fi
  echo "install-helm: building helm $HELM_VERSION into $cache (once; a few minutes)" >&2
  build="$cache/build"
  mkdir -p "$build"
  start=$SECONDS
  # -mod=mod: resolve helm's own go.mod, whatever the caller's GOFLAGS say; CGO off gives a static binary.
  # The version is stamped as helm's own Makefile does (go install alone would report "v3.21").
  GOBIN="$cache/bin" GOPATH="$build/gopath" GOCACHE="$build/gocache" GOFLAGS=-mod=mod CGO_ENABLED=0 \
    go install -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=${HELM_K8S_VERSION%%.*} \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${HELM_K8S_VERSION#*.} \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=${HELM_K8S_VERSION%%.*} \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${HELM_K8S_VERSION#*.}" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  # The module cache is written read-only; only the binary is worth keeping.
  chmod -R u+w "$build" && rm -rf "$build"
  echo "install-helm: built $("$bin" version --short) in $((SECONDS - start)) s" >&2
fi
echo "$bin"
