"""sgcad:stackbands — rasters that come one band per file stacked into one raster, each band named."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, verdict


class StackBands(EngineAlgorithm):
    ALG_ID = "stackbands"
    DISPLAY = "Stack bands into one raster"
    GROUP = "preparation"
    HELP = (
        "Writes every band of the chosen rasters, in the order listed, into one float32 GeoTIFF on one "
        "grid (the finest input's, or the grid raster's), each band named as its source names it (VV, B04), "
        "else after its file (…_B04_b1, …_VV_b1; …_band4 for band 4 of a multi-band file); nodata is NaN. "
        "Products that come one band per file (Sentinel-2 band files, VV and VH "
        "files from ASF or SNAP) thus become the one optical or SAR raster the models read, and the names "
        "let them find red, green and blue, or VV and VH, by role: list them in any order."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUTS", self.tr("Rasters to stack (every band of each, in this order)"), QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterRasterLayer(
            "GRID", self.tr("Raster whose grid to use (default: the finest input's)"), optional=True))
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", self.tr("Stacked raster")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        inputs = self.parameterAsLayerList(parameters, "INPUTS", context)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        grid = self.parameterAsRasterLayer(parameters, "GRID", context)
        messages = [_checks.georeferenced(layer) for layer in inputs + ([grid] if grid else [])]
        messages.append(_checks.outputs_not_inputs([output], {layer.name(): layer for layer in inputs}))
        messages.append(_checks.output_free(output, self.overwrite(parameters, context), "output"))
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.raster.grid import grid_of
        from sgcad_qgis.engine.raster.stack import stack_bands

        sources = []
        for layer in self.parameterAsLayerList(parameters, "INPUTS", context):
            path = layers.raster_source(layer, "raster to stack", feedback)
            sources += [(path, band) for band in range(1, layer.bandCount() + 1)]
        grid_layer = self.parameterAsRasterLayer(parameters, "GRID", context)
        grid = grid_of(layers.raster_source(grid_layer, "grid raster", feedback)) if grid_layer else None
        out = self.output_path(parameters, "OUTPUT", context)
        with self.stage(feedback, f"Stacking {len(sources)} band(s)") as progress:
            result = stack_bands(sources, out, grid, overwrite=self.overwrite(parameters, context), progress=progress)
        feedback.pushInfo(f"bands: {', '.join(result['bands'])}")
        layers.publish_output(context, out, "Stacked bands", layers.KIND_PLAIN, "OUTPUT")
        return {"OUTPUT": out}
