#!/usr/bin/env bash
# Idempotent setup: Debian's QGIS 3.22 stack, then .venv with pinned Python packages.
# A second run checks two stamps and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="qgis python3-qgis python3-gdal python3-rasterio python3-pyqt5 python3-numpy python3-scipy python3-matplotlib python3-venv gdal-bin zip"
VENV=.venv
STAMP="$VENV/.sgcad-setup-stamp"

missing=""
for pkg in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

want="$(cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/python" ]; then
  exit 0
fi
echo "setup: creating $VENV and installing pinned Python packages"
[ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  -c constraints.txt -r requirements-dev.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
# The two stacks must share Debian's GDAL and numpy 1.x (PLATFORM notes).
"$VENV/bin/python" - <<'PY'
import numpy, rasterio, torch
from osgeo import gdal
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__}: must stay < 2"
assert rasterio.__file__.startswith("/usr/lib/python3/"), f"rasterio not Debian's: {rasterio.__file__}"
print(f"setup: torch {torch.__version__}, numpy {numpy.__version__}, GDAL {gdal.__version__}, rasterio {rasterio.__version__}")
PY
echo "$want" > "$STAMP"
