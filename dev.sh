#!/usr/bin/env bash
# The README's commands. Everything is installed by this script into .venv (pip's cache and the
# Kafka jars' cache live in the user's cache directory, so a second run fetches nothing).
#   ./dev.sh demo     run one pipeline stage on a local Kafka broker the script starts itself
#   ./dev.sh test     lint (ruff, mypy) and run the whole test suite against a real broker
#   ./dev.sh run ...  any other `streampod` command inside the project's environment
set -euo pipefail
cd "$(dirname "$0")"
VENV="${STREAMPOD_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

bootstrap() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "streampod needs Python 3.11 or newer as '$PYTHON' (set PYTHON=...)" >&2
    exit 2
  fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local stamp
  stamp="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
    touch "$stamp"
  fi
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    bootstrap
    exec "$VENV/bin/streampod" run "$@"
    ;;
  test)
    bootstrap
    # helm for the chart's tests: PATH's, or the pinned one built once (minutes) before the timed tests.
    bash scripts/install-helm.sh >/dev/null
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  run)
    bootstrap
    exec "$VENV/bin/streampod" "$@"
    ;;
  *)
    sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
