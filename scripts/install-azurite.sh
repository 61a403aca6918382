#!/usr/bin/env bash
# Print the path of Azurite's blob server (the Azure Storage emulator), installing the pinned version first.
#
# Installed once with npm into ${XDG_CACHE_HOME:-~/.cache}/streampod/azurite-<version>/ and reused after.
# 3.35.0 is the newest release that runs on Node 20 (3.36 wants Node 21+). Progress goes to stderr,
# the path alone to stdout. The Event Hubs checkpoint-store tests start it (streampod.pytest_azurite).
set -euo pipefail

AZURITE_VERSION="${STREAMPOD_AZURITE_VERSION:-3.35.0}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/streampod/azurite-$AZURITE_VERSION"
bin="$cache/node_modules/.bin/azurite-blob"

if [ ! -x "$bin" ] || [ ! -f "$cache/complete" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-azurite: npm (Node.js) is needed to install Azurite $AZURITE_VERSION" >&2
    exit 2
  fi
  mkdir -p "$cache"
  exec 9>"$cache/.lock"
  flock 9
  if [ ! -f "$cache/complete" ]; then
    echo "install-azurite: installing azurite@$AZURITE_VERSION into $cache (once)" >&2
    npm install --prefix "$cache" --no-audit --no-fund --no-save --loglevel=error "azurite@$AZURITE_VERSION" >&2
    touch "$cache/complete"
  fi
fi
echo "$bin"
