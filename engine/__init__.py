"""SGCAD engine: optical+SAR land-cover segmentation with SAR-guided, confidence-gated distillation.

Pure Python (torch, numpy, rasterio, GDAL). Never imports QGIS or Qt, so it runs headless
from ``python -m engine`` and inside the QGIS plugin alike. Modules import each other
relatively, so the package works both as top-level ``engine`` and vendored inside the plugin.
"""

__version__ = "0.1.0"
