"""SGCAD engine: optical+SAR land-cover segmentation with SAR-guided, confidence-gated distillation.

Pure Python (torch, numpy, rasterio, GDAL). Never imports QGIS or Qt, so it runs headless
from ``python -m engine`` and inside the QGIS plugin alike. Modules import each other
relatively, so the package works both as top-level ``engine`` and vendored inside the plugin.
"""

import os as _os

# OpenMP threads that spin while waiting made torch 10-20x slower whenever another process
# (QGIS itself, a second task) used a core; set before torch is imported, users may override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
