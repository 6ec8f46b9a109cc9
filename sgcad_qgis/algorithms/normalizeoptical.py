"""sgcad:normalizeoptical — optical linear scaling and robust 2-98 % normalisation as a raster."""

from __future__ import annotations

from .preprocesssar import PreprocessSar


class NormalizeOptical(PreprocessSar):
    ALG_ID = "normalizeoptical"
    DISPLAY = "Normalise optical"
    GROUP = "preparation"
    INPUT, LABEL = "OPTICAL", "optical raster"
    BANDS_LABEL = "Bands (default: bands 1, 2, 3)"
    HELP = (
        "Scales the chosen optical bands linearly (value × scale + offset, e.g. a scale of 0.0001 "
        "turns Sentinel-2 L2A digital numbers into reflectance) and then, per band, to [0, 1] "
        "between the 2nd and 98th percentiles of a bounded sample of the whole raster, as the "
        "models see their optical input. Nodata stays nodata. The percentiles are saved as a "
        "normalisation record (JSON) for reuse."
    )

    def add_chain(self) -> None:
        self.add_number("SCALE", "Linear scale", 1.0, -1e12, integer=False, advanced=False)
        self.add_number("OFFSET", "Offset (added after scaling)", 0.0, -1e12, integer=False)
        self.add_flag("NORMALIZE", "Scale to [0, 1] between the percentiles", True, advanced=False)

    def config(self, parameters, context):
        from sgcad_qgis.engine.config import OpticalPreprocessConfig

        return OpticalPreprocessConfig(
            scale=self.parameterAsDouble(parameters, "SCALE", context),
            offset=self.parameterAsDouble(parameters, "OFFSET", context),
            **self.scaling(parameters, context),
        )

    def default_bands(self, layer) -> tuple:
        return tuple(range(1, min(layer.bandCount(), 3) + 1))

    def chain_problems(self, parameters, context, layer) -> list:
        return []
