#!/usr/bin/env bash
# The main job. Until segmentation lands this shows what is real: the provider in qgis_process.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== SGCAD algorithms available to qgis_process =="
scripts/qgis_process list | sed -n '/^SGCAD/,/^$/p'
scripts/qgis_process run sgcad:checkenvironment 2>/dev/null | sed -n '/^DEVICE/,$p'
