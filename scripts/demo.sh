#!/usr/bin/env bash
# `make demo`: setup (idempotent), then the main job on the bundled samples (scripts/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s%N)
bash scripts/setup.sh
setup_ms=$(( ($(date +%s%N) - start) / 1000000 ))
exec .venv/bin/python scripts/demo.py --setup-seconds "$((setup_ms / 1000)).$(printf %03d $((setup_ms % 1000)))" "$@"
