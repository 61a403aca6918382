#!/usr/bin/env bash
# CI: train the model the Dockerfile bakes in (model templates); nothing to do for the plain template.
set -euo pipefail
if [ ! -f train.py ]; then echo "no train.py: no model to train"; exit 0; fi
python -m pip install --quiet -r requirements.txt
if [ -f requirements-train.txt ]; then python -m pip install --quiet -r requirements-train.txt; fi
python train.py
