#!/usr/bin/env bash
# CI: the project's tests, with streampod installed from its checkout (the first argument).
set -euo pipefail
streampod_src="${1:?the streampod checkout}"
python -m pip install --quiet "${streampod_src}[app]" -r requirements.txt
if [ -f requirements-train.txt ]; then python -m pip install --quiet -r requirements-train.txt; fi
python -m pytest
