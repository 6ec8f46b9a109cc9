"""sgcad:normalizeoptical — optical linear scaling and robust 2-98 % normalisation as a raster."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterEnum

from ._common import OPTICAL_UNIT_CHOICES
from .preprocesssar import PreprocessSar


class NormalizeOptical(PreprocessSar):
    ALG_ID = "normalizeoptical"
    DISPLAY = "Normalise optical"
    GROUP = "preparation"
    INPUT, LABEL = "OPTICAL", "optical raster"
    BANDS_LABEL = "Bands (default: bands 1, 2, 3)"
    HELP = (
        "Converts the chosen optical bands to reflectance-like values from their units (detected: "
        "8-bit, reflectance × 10000, reflectance 0–1; or a custom scale and offset) and then, per band, to [0, 1] "
        "between the 2nd and 98th percentiles of a bounded sample of the whole raster, as the "
        "models see 8-bit and other digital numbers (the default models read surface reflectance "
        "in a fixed 0–0.35 range instead). Nodata stays nodata. The percentiles are saved as a "
        "normalisation record (JSON) for reuse."
    )

    def add_chain(self) -> None:
        param = QgsProcessingParameterEnum(
            "OPTICAL_UNITS",
            self.tr("Units of the optical raster"),
            options=[k for k, _ in OPTICAL_UNIT_CHOICES],
            defaultValue="auto",
        )
        param.setUsesStaticStrings(True)
        self.addParameter(param)
        self.add_number("SCALE", "Custom linear scale (used when not 1; replaces the units)", 1.0, -1e12, integer=False)
        self.add_number("OFFSET", "Custom offset (added after scaling)", 0.0, -1e12, integer=False)
        self.add_flag("NORMALIZE", "Scale to [0, 1] between the percentiles", True, advanced=False)

    def config(self, parameters, context):
        from sgcad_qgis.engine.config import OpticalPreprocessConfig

        scale = self.parameterAsDouble(parameters, "SCALE", context)
        offset = self.parameterAsDouble(parameters, "OFFSET", context)
        custom = scale != 1.0 or offset != 0.0
        units = "custom" if custom else self.parameterAsEnumString(parameters, "OPTICAL_UNITS", context) or "auto"
        return OpticalPreprocessConfig(units=units, scale=scale, offset=offset, **self.scaling(parameters, context))

    def default_bands(self, layer) -> tuple:
        return tuple(range(1, min(layer.bandCount(), 3) + 1))

    def chain_problems(self, parameters, context, layer) -> list:
        return []
