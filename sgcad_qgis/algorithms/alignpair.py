"""sgcad:alignpair — write an optical and a SAR raster onto one common grid."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterExtent,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, verdict


class AlignPair(EngineAlgorithm):
    ALG_ID = "alignpair"
    DISPLAY = "Align optical and SAR rasters"
    GROUP = "preparation"
    HELP = (
        "Resamples the chosen bands of an optical and a SAR raster onto one grid: by default the "
        "SAR's pixel size, in the optical raster's CRS when it is projected (else the UTM zone of "
        "the scene), over the area both rasters cover. A pixel size, a projected CRS and an extent "
        "can be given instead. Imagery is resampled bilinearly; outputs are float32 GeoTIFFs with "
        "NaN as nodata, written window by window. Each output keeps what its source says of its bands "
        "(names such as B04 or VV, tags, colours; the file name as the tag source), so it is read as the "
        "source is read; an alpha band is not copied (its transparent pixels become NaN). Training and "
        "segmentation align on the fly, so this is for inspecting or sharing aligned data and for Modeler "
        "pipelines."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster("OPTICAL", "Optical raster")
        self.add_bands("OPTICAL_BANDS", "OPTICAL", "Optical bands (default: all)")
        self.add_raster("SAR", "SAR raster")
        self.add_bands("SAR_BANDS", "SAR", "SAR bands (default: all)")
        self.addParameter(
            QgsProcessingParameterNumber(
                "RESOLUTION",
                self.tr("Pixel size (0 = the SAR's)"),
                QgsProcessingParameterNumber.Double,
                0.0,
                False,
                0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterCrs("CRS", self.tr("Projected CRS (default: optical's)"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterExtent("EXTENT", self.tr("Restrict to extent"), optional=True)
        )
        self.add_number("BLOCK", "Window size (pixels)", 1024, 64, 65536)
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)
        self.addParameter(
            QgsProcessingParameterRasterDestination("OUTPUT_OPTICAL", self.tr("Aligned optical"))
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_SAR", self.tr("Aligned SAR")))
        self.addOutput(QgsProcessingOutputNumber("WIDTH", self.tr("Grid width (pixels)")))
        self.addOutput(QgsProcessingOutputNumber("HEIGHT", self.tr("Grid height (pixels)")))

    def _target_crs(self, parameters, context) -> QgsCoordinateReferenceSystem:
        crs = self.parameterAsCrs(parameters, "CRS", context)
        if crs.isValid():
            return crs
        for name in ("OPTICAL", "SAR"):
            layer = self.parameterAsRasterLayer(parameters, name, context)
            if layer is not None and layer.crs().isValid() and not layer.crs().isGeographic():
                return layer.crs()
        return QgsCoordinateReferenceSystem()

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        optical = self.parameterAsRasterLayer(parameters, "OPTICAL", context)
        sar = self.parameterAsRasterLayer(parameters, "SAR", context)
        overwrite = self.overwrite(parameters, context)
        crs = self.parameterAsCrs(parameters, "CRS", context)
        optical_out = self.parameterAsOutputLayer(parameters, "OUTPUT_OPTICAL", context)
        sar_out = self.parameterAsOutputLayer(parameters, "OUTPUT_SAR", context)
        messages = [
            _checks.outputs_not_inputs([optical_out, sar_out], {"optical": optical, "SAR": sar}),
            _checks.distinct_outputs({"aligned optical output": optical_out, "aligned SAR output": sar_out}),
            _checks.overlap(optical, sar, "optical raster", "SAR raster"),
            _checks.band_choice(
                optical, self.bands(parameters, "OPTICAL_BANDS", context), None, "optical raster"
            ),
            _checks.band_choice(sar, self.bands(parameters, "SAR_BANDS", context), None, "SAR raster"),
            _checks.output_free(
                self.parameterAsOutputLayer(parameters, "OUTPUT_OPTICAL", context),
                overwrite,
                "aligned optical output",
            ),
            _checks.output_free(
                self.parameterAsOutputLayer(parameters, "OUTPUT_SAR", context),
                overwrite,
                "aligned SAR output",
            ),
        ]
        if crs.isValid() and crs.isGeographic():
            messages.append(f"The CRS {crs.authid()} is geographic; choose a projected CRS (metres).")
        if parameters.get("EXTENT") not in (None, "") and not self._target_crs(parameters, context).isValid():
            messages.append(
                "Both rasters are in geographic coordinates: choose a projected CRS to use an extent."
            )
        elif not (crs.isValid() and crs.isGeographic()):
            resolution = self.parameterAsDouble(parameters, "RESOLUTION", context)
            messages.append(_checks.output_grid(optical, sar, resolution, crs.toWkt() if crs.isValid() else None,
                                                self._bounds(parameters, context)))
        return verdict(messages)

    def _bounds(self, parameters, context):
        """The EXTENT as (left, bottom, right, top) in the target CRS, or None."""
        if parameters.get("EXTENT") in (None, ""):
            return None
        rect = self.parameterAsExtent(parameters, "EXTENT", context, self._target_crs(parameters, context))
        return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.data.raster_ops import align_pair

        bounds = self._bounds(parameters, context)
        crs = self.parameterAsCrs(parameters, "CRS", context)
        optical_out = self.output_path(parameters, "OUTPUT_OPTICAL", context)
        sar_out = self.output_path(parameters, "OUTPUT_SAR", context)
        optical = self.raster_path(parameters, "OPTICAL", context, feedback, "optical raster")
        sar = self.raster_path(parameters, "SAR", context, feedback, "SAR raster")
        with self.stage(feedback, "Alignment") as progress:
            result = align_pair(
                optical,
                sar,
                optical_out,
                sar_out,
                optical_bands=self.bands(parameters, "OPTICAL_BANDS", context) or None,
                sar_bands=self.bands(parameters, "SAR_BANDS", context) or None,
                resolution=self.parameterAsDouble(parameters, "RESOLUTION", context) or None,
                crs=crs.toWkt() if crs.isValid() else None,
                bounds=bounds,
                block=self.parameterAsInt(parameters, "BLOCK", context),
                overwrite=self.overwrite(parameters, context),
                progress=progress,
            )
        grid = f"{result['width']}×{result['height']} pixels of {result['res'][0]:g} ({result['crs']})"
        feedback.pushInfo(f"Common grid: {grid}")
        layers.publish_output(
            context,
            optical_out,
            f"Optical on the common grid ({result['res'][0]:g} m)",
            layers.KIND_PLAIN,
            "OUTPUT_OPTICAL",
        )
        layers.publish_output(
            context,
            sar_out,
            f"SAR on the common grid ({result['res'][0]:g} m)",
            layers.KIND_PLAIN,
            "OUTPUT_SAR",
        )
        return {
            "OUTPUT_OPTICAL": optical_out,
            "OUTPUT_SAR": sar_out,
            "WIDTH": result["width"],
            "HEIGHT": result["height"],
        }
