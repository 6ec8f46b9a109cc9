"""sgcad:floodmap — flood extent, likelihood, exclusion and a report from two SAR dates."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBand,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .. import layers
from . import _checks
from ._common import SAR_BACKSCATTER_CHOICES, SAR_UNIT_CHOICES, EngineAlgorithm, shown_as, verdict

METHODS = (("teacher", "SAR water expert (teacher network)"), ("threshold", "Scene-adaptive threshold (no network)"))
OUTPUT_NAMES = ("flood_extent.tif", "flood_likelihood.tif", "exclusion.tif", "water_after.tif", "water_before.tif",
                "flood_report.json", "flood_report.html")
RASTERS = {
    "FLOOD_EXTENT": "flood",
    "FLOOD_LIKELIHOOD": "likelihood",
    "EXCLUSION": "exclusion",
    "WATER_AFTER": "water_after",
    "WATER_BEFORE": "water_before",
}
DATES = (("AFTER", "after"), ("BEFORE", "before"))


class FloodMap(EngineAlgorithm):
    ALG_ID = "floodmap"
    DISPLAY = "Flood map from two SAR dates (before / after)"
    GROUP = "segmentation"
    HELP = (
        "Maps a flood from a SAR image before and a SAR image after the event. Water is found on each "
        "date by the SAR water expert (or, without any network, by a scene-adaptive threshold; or by the "
        "student model for a date whose optical image is given). Outputs, on the after image's grid "
        "(the before image may have another grid and other units): the observed flood extent (water "
        "after and not before, red), permanent water (both dates, blue), receded water, a flood "
        "likelihood p_after x (1 - p_before), an exclusion layer where SAR cannot see water (no data, "
        "radar shadow and layover from a local-incidence raster or a DEM with the look direction, and "
        "very low backscatter on both dates, e.g. dry sand or tarmac), and a report with the flooded "
        "area in km² per polygon of an area-of-interest layer. Optionally the flood as polygons."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster("AFTER", "SAR raster after the event")
        self.add_raster("BEFORE", "SAR raster before the event")
        self.add_choice("METHOD", "Water on each date", METHODS, "teacher", advanced=False)
        self.add_model("TEACHER", "SAR water teacher model", optional=True)
        self.addParameter(QgsProcessingParameterFeatureSource(
            "AOI_LAYER", self.tr("Areas to report (polygons; maps are cut to their extent)"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterField(
            "AOI_NAME_FIELD", self.tr("Field naming the areas"), None, "AOI_LAYER",
            QgsProcessingParameterField.Any, optional=True))
        self.add_flag("VECTORIZE", "Also write the flood as polygons", False, advanced=False)
        self.add_raster("AFTER_OPTICAL", "Optical image of the after date (uses the student model)", optional=True)
        self.add_raster("BEFORE_OPTICAL", "Optical image of the before date (uses the student model)", optional=True)
        self.add_model("STUDENT", "Student model (for dates with an optical image)", optional=True)
        for key, date in DATES:
            self.add_advanced(QgsProcessingParameterBand(
                f"{key}_BAND", self.tr(f"Band of the {date} SAR (default: by band names; VV and VH named: both, "
                                  "read by the VV + VH water expert)"), None, key, optional=True))
            self.add_choice(f"{key}_UNITS", f"Units of the {date} SAR", SAR_UNIT_CHOICES, "auto")
            self.add_choice(f"{key}_BACKSCATTER", f"Backscatter of the {date} SAR", SAR_BACKSCATTER_CHOICES, "auto")
            self.add_advanced(QgsProcessingParameterRasterLayer(
                f"{key}_LOCAL_INCIDENCE", self.tr(f"Local incidence angle of the {date} date (degrees)"),
                optional=True))
            self.add_advanced(QgsProcessingParameterNumber(
                f"{key}_LOOK_AZIMUTH", self.tr(f"Look direction of the {date} date with a DEM (degrees from north)"),
                QgsProcessingParameterNumber.Double, None, True, 0.0, 360.0))
            self.add_number(f"{key}_INCIDENCE", f"Incidence angle of the {date} date with a DEM (degrees)", 39.0,
                            0.0, 90.0, integer=False)
        self.add_sar_levels()
        self.add_sar_noise_floor()
        self.add_advanced(QgsProcessingParameterRasterLayer("DEM", self.tr("DEM (metres) for shadow/layover"),
                                                            optional=True))
        self.add_number("WATER_THRESHOLD", "Water probability threshold", 0.5, 0.01, 0.99, integer=False)
        self.add_number("LOW_DB", "Exclusion: both dates darker than (dB, speckle-filtered)", -23.0, -60.0, 10.0,
                        integer=False)
        self.add_number("MIN_CHANGE_DB", "A flood needs the backscatter to fall by at least (dB)", 3.0, 0.0, 30.0,
                        integer=False)
        self.add_number("MIN_AREA", "Flood polygons: minimum area (m²)", 0.0, 0.0, integer=False)
        self.add_device_parameter()
        self.add_number("TILE_SIZE", "Tile size (pixels)", 512, 64, 8192)
        self.add_number("OVERLAP", "Tile overlap (pixels)", 64, 0, 2048)
        self.add_number("BATCH_SIZE", "Tiles per batch", 4, 1, 256)
        self.add_flip_average()
        self.add_threads_and_overwrite()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer("FLOOD_EXTENT", self.tr("Flood extent")))
        self.addOutput(QgsProcessingOutputRasterLayer("FLOOD_LIKELIHOOD", self.tr("Flood likelihood")))
        self.addOutput(QgsProcessingOutputRasterLayer("EXCLUSION", self.tr("Exclusion (SAR cannot see water)")))
        self.addOutput(QgsProcessingOutputRasterLayer("WATER_AFTER", self.tr("Water probability after")))
        self.addOutput(QgsProcessingOutputRasterLayer("WATER_BEFORE", self.tr("Water probability before")))
        self.addOutput(QgsProcessingOutputVectorLayer("POLYGONS", self.tr("Flood polygons")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Flood report")))
        self.addOutput(QgsProcessingOutputFile("REPORT_JSON", self.tr("Flood report (JSON)")))
        self.addOutput(QgsProcessingOutputNumber("FLOOD_KM2", self.tr("Observed flood (km²)")))
        self.addOutput(QgsProcessingOutputNumber("PERMANENT_WATER_KM2", self.tr("Permanent water (km²)")))
        self.addOutput(QgsProcessingOutputNumber("EXCLUDED_KM2", self.tr("Excluded (km²)")))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", self.tr("Run time (s)")))
        self.addOutput(QgsProcessingOutputString("WARNINGS", self.tr("Warnings (one per line)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        after = self.parameterAsRasterLayer(parameters, "AFTER", context)
        before = self.parameterAsRasterLayer(parameters, "BEFORE", context)
        method = self.parameterAsEnumString(parameters, "METHOD", context) or "teacher"
        teacher_path = self.parameterAsFile(parameters, "TEACHER", context)
        messages = [_checks.overlap(after, before, "after SAR raster", "before SAR raster")]
        optical = {key: self.parameterAsRasterLayer(parameters, f"{key}_OPTICAL", context) for key, _ in DATES}
        student_path = self.parameterAsFile(parameters, "STUDENT", context)
        if any(optical.values()):
            _, problem = _checks.model_file(student_path, "student", "student model")
            messages.append(problem if student_path else
                            "An optical image was given: choose the student model that maps it (STUDENT).")
        if method == "teacher" and not all(optical.values()):
            if not teacher_path:
                messages.append("The 'teacher' method needs the SAR water teacher model (TEACHER); or choose "
                                "the 'threshold' method.")
            else:
                messages.append(_checks.model_file(teacher_path, "teacher", "teacher model")[1])
        for key, date in DATES:
            if parameters.get(f"{key}_LOOK_AZIMUTH") not in (None, "") and parameters.get("DEM") in (None, ""):
                messages.append(f"A look direction was given for the {date} date but no DEM to apply it to.")
        if parameters.get("AOI_LAYER") not in (None, ""):
            source = self.parameterAsSource(parameters, "AOI_LAYER", context)
            messages.append(_checks.overlap(after, source, "after SAR raster", "areas to report"))
        if "TILE_SIZE" in parameters or "OVERLAP" in parameters:
            messages.append(_checks.tiling_of(parameters))
        folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        if folder and not folder.startswith(("TEMPORARY", "memory:")):
            written = [str(Path(folder) / n) for n in OUTPUT_NAMES]
            inputs = {"after SAR": after, "before SAR": before, "teacher": teacher_path, **{
                f"{d} optical": optical[k] for k, d in DATES}}
            messages.append(_checks.outputs_not_inputs(written, inputs))
            messages.append(_checks.folder_free(folder))
            for name in OUTPUT_NAMES[:3]:
                messages.append(_checks.output_free(str(Path(folder) / name), self.overwrite(parameters, context),
                                                    "output"))
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.config import InferenceConfig
        from sgcad_qgis.engine.flood.mapping import FloodConfig, FloodDate, map_flood
        from sgcad_qgis.engine.flood.terrain import Geometry

        threads = self.set_threads(parameters, context, feedback)
        method = self.parameterAsEnumString(parameters, "METHOD", context) or "teacher"

        def optional_raster(name: str, label: str):
            if parameters.get(name) in (None, ""):
                return None
            return self.raster_path(parameters, name, context, feedback, label)

        dates = {}
        for key, date in DATES:
            azimuth = parameters.get(f"{key}_LOOK_AZIMUTH")
            dates[key] = FloodDate(
                sar=self.raster_path(parameters, key, context, feedback, f"{date} SAR raster"),
                bands=tuple(self.bands(parameters, f"{key}_BAND", context))[:1],
                units=self.parameterAsEnumString(parameters, f"{key}_UNITS", context) or "auto",
                backscatter=self.parameterAsEnumString(parameters, f"{key}_BACKSCATTER", context) or "auto",
                levels=self.sar_levels_value(parameters, context),
                noise_floor=self.sar_noise_floor_value(parameters, context),
                optical=optional_raster(f"{key}_OPTICAL", f"{date} optical image"),
                geometry=Geometry(
                    optional_raster(f"{key}_LOCAL_INCIDENCE", f"{date} local incidence raster"),
                    None if azimuth in (None, "") else self.parameterAsDouble(parameters, f"{key}_LOOK_AZIMUTH",
                                                                              context),
                    self.parameterAsDouble(parameters, f"{key}_INCIDENCE", context),
                ),
            )
        any_optical = any(d.optical for d in dates.values())
        teacher = self.parameterAsFile(parameters, "TEACHER", context) or None
        student = (self.parameterAsFile(parameters, "STUDENT", context) or None) if any_optical else None
        aoi, name_field = None, None
        if parameters.get("AOI_LAYER") not in (None, ""):
            source = self.parameterAsSource(parameters, "AOI_LAYER", context)
            aoi = layers.features_to_file(source, "areas to report", context, feedback,
                                          shown=shown_as(parameters.get("AOI_LAYER")))
            name_field = self.parameterAsString(parameters, "AOI_NAME_FIELD", context) or None
        device = self.log_device(feedback, self.device_value(parameters, context)) if method == "teacher" or \
            any_optical else "cpu"
        cfg = FloodConfig(
            method=method,
            water_threshold=self.parameterAsDouble(parameters, "WATER_THRESHOLD", context),
            low_db=self.parameterAsDouble(parameters, "LOW_DB", context),
            min_change_db=self.parameterAsDouble(parameters, "MIN_CHANGE_DB", context),
        )
        inference = InferenceConfig(
            tile_size=self.parameterAsInt(parameters, "TILE_SIZE", context),
            overlap=self.parameterAsInt(parameters, "OVERLAP", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            device=device,
            threads=threads,
            flip_average=self.flip_average_value(parameters, context),
        )
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        vectorize = self.parameterAsBoolean(parameters, "VECTORIZE", context)
        with self.stage(feedback, "Flood map") as progress:
            result = map_flood(
                dates["AFTER"], dates["BEFORE"], folder, cfg, teacher_path=teacher, student_path=student,
                inference=inference, aoi=aoi, aoi_name_field=name_field,
                dem=optional_raster("DEM", "DEM"), vectorize=vectorize,
                vector_min_area=self.parameterAsDouble(parameters, "MIN_AREA", context),
                overwrite=self.overwrite(parameters, context), progress=progress,
            )
        totals = result["totals"]
        feedback.pushInfo(
            f"observed flood {totals['flood_km2']:.3f} km², permanent water {totals['permanent_water_km2']:.3f} km², "
            f"excluded {totals['excluded_km2']:.3f} km² ({result['method']}, {result['seconds']:.1f} s)"
        )
        for area in result["areas"]:
            feedback.pushInfo(f"  {area['name']}: flood {area['flood_km2']:.3f} km²")
        out = result["outputs"]
        self._publish(context, out, result["method"])
        outputs = {key: out.get(engine_key, "") for key, engine_key in RASTERS.items()}
        outputs.update(
            OUTPUT_FOLDER=folder,
            POLYGONS=out.get("polygons", ""),
            REPORT=out["report_html"],
            REPORT_JSON=out["report_json"],
            FLOOD_KM2=totals["flood_km2"],
            PERMANENT_WATER_KM2=totals["permanent_water_km2"],
            EXCLUDED_KM2=totals["excluded_km2"],
            SECONDS=result["seconds"],
            WARNINGS="\n".join(result["warnings"]),
        )
        return outputs

    @staticmethod
    def _publish(context, paths, method: str) -> None:
        """Styled layers in one group (flood red, permanent water blue, exclusion grey, likelihood hidden)."""
        items = layers.flood_results(paths, method.split(" ")[0])
        group = layers.run_group_name("Flood map", method.split(" ")[0])
        layers.publish_on_completion(context, items, group)
        if paths.get("polygons"):
            flood = [c for c in layers.FLOOD_EXTENT_CLASSES if c[0] == 1]
            layers.publish_polygons(context, paths["polygons"], "flood", "Flood polygons", flood, "POLYGONS",
                                    add_to_load=True)
