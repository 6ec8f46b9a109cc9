"""sgcad:watermap — water on one SAR date with the water expert, before any label is drawn."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingParameterFolderDestination,
)

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, verdict

OUTPUT_NAMES = ("water_probability.tif", "water.tif", "water_report.json")


class WaterMap(EngineAlgorithm):
    ALG_ID = "watermap"
    DISPLAY = "Water map from one SAR date"
    GROUP = "segmentation"
    HELP = (
        "Maps open water on one SAR image with the SAR water expert, without any drawn polygon and without "
        "a before date (for the flood itself, use the flood map from two dates). A raster whose bands are "
        "named VV and VH (Sentinel-1), or whose two unnamed bands' levels say which is which, is mapped by the "
        "VV + VH water expert, which also sees water that wind makes bright in VV; it reads VH with the image's "
        "own thermal-noise floor taken off (some products keep it, and calm water then sits at the floor; the log "
        "names a floor it finds; Noise floor of the SAR's VH band = off keeps it). One band chosen, or a "
        "single-band raster, is mapped by the VV teacher. Outputs: "
        "the water probability, a water layer (probability at or above the threshold) and a report with the "
        "model that mapped the image, the water share and area in km², and any warning about the input."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster("SAR", "SAR raster")
        self.add_bands("SAR_BANDS", "SAR", "SAR bands (default: by band names; VV and VH: the VV + VH expert)",
                       advanced=True)
        self.add_model("TEACHER", "SAR water teacher model", optional=True)  # optional: its default applies
        self.add_number("WATER_THRESHOLD", "Water probability threshold", 0.5, 0.01, 0.99, integer=False)
        self.add_units(optical=False)
        self.add_sar_levels()
        self.add_sar_noise_floor()
        self.add_device_parameter()
        self.add_number("TILE_SIZE", "Tile size (pixels)", 512, 64, 8192)
        self.add_number("OVERLAP", "Tile overlap (pixels)", 64, 0, 2048)
        self.add_flip_average()
        self.add_threads_and_overwrite()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer("WATER", self.tr("Water")))
        self.addOutput(QgsProcessingOutputRasterLayer("WATER_PROBABILITY", self.tr("Water probability")))
        self.addOutput(QgsProcessingOutputFile("REPORT_JSON", self.tr("Water report (JSON)")))
        self.addOutput(QgsProcessingOutputNumber("WATER_KM2", self.tr("Water (km²)")))
        self.addOutput(QgsProcessingOutputNumber("WATER_SHARE", self.tr("Share of the SAR footprint that is water")))
        self.addOutput(QgsProcessingOutputString("MODEL_USED", self.tr("Water expert that mapped the image")))
        self.addOutput(QgsProcessingOutputString("WARNINGS", self.tr("Warnings (one per line)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        sar = self.parameterAsRasterLayer(parameters, "SAR", context)
        teacher_path = self.parameterAsFile(parameters, "TEACHER", context)
        messages = [_checks.georeferenced(sar),
                    _checks.model_file(teacher_path, "teacher", "teacher model")[1] if teacher_path else
                    "The water map needs the SAR water teacher model (TEACHER)."]
        if len(self.bands(parameters, "SAR_BANDS", context)) > 2:
            messages.append("Choose one SAR band (VV or HH) or two (VV, then VH), or none to go by band names.")
        if "TILE_SIZE" in parameters or "OVERLAP" in parameters:
            messages.append(_checks.tiling_of(parameters))
        folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        if folder and not folder.startswith(("TEMPORARY", "memory:")):
            written = [str(Path(folder) / n) for n in OUTPUT_NAMES]
            messages.append(_checks.outputs_not_inputs(written, {"SAR": sar, "teacher": teacher_path}))
            messages.append(_checks.folder_free(folder))
            for name in OUTPUT_NAMES:
                messages.append(_checks.output_free(str(Path(folder) / name), self.overwrite(parameters, context),
                                                    "output"))
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.config import InferenceConfig
        from sgcad_qgis.engine.water.date_map import map_water_date

        threads = self.set_threads(parameters, context, feedback)
        device = self.log_device(feedback, self.device_value(parameters, context))
        units = self.units_values(parameters, context)
        inference = InferenceConfig(
            tile_size=self.parameterAsInt(parameters, "TILE_SIZE", context),
            overlap=self.parameterAsInt(parameters, "OVERLAP", context),
            device=device, threads=threads, flip_average=self.flip_average_value(parameters, context),
        )
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        with self.stage(feedback, "Water map") as progress:
            result = map_water_date(
                self.raster_path(parameters, "SAR", context, feedback, "SAR raster"), folder,
                self.parameterAsFile(parameters, "TEACHER", context), inference,
                sar_bands=self.bands(parameters, "SAR_BANDS", context), sar_units=units.get("sar_units", "auto"),
                sar_calibration=units.get("sar_calibration", 0.0),
                sar_levels=self.sar_levels_value(parameters, context),
                sar_backscatter=units.get("sar_backscatter", "auto"),
                sar_noise_floor=self.sar_noise_floor_value(parameters, context),
                water_threshold=self.parameterAsDouble(parameters, "WATER_THRESHOLD", context),
                overwrite=self.overwrite(parameters, context), progress=progress,
            )
        paths = result["paths"]
        items = layers.water_date_results(paths["water.tif"], paths["water_probability.tif"])
        layers.publish_on_completion(context, items, layers.run_group_name("Water map", result["teacher"]))
        return {
            "OUTPUT_FOLDER": folder,
            "WATER": paths["water.tif"],
            "WATER_PROBABILITY": paths["water_probability.tif"],
            "REPORT_JSON": paths["water_report.json"],
            "WATER_KM2": result["water_km2"],
            "WATER_SHARE": result["water_share"],
            "MODEL_USED": result["teacher"],
            "WARNINGS": "\n".join(result["warnings"]),
        }
