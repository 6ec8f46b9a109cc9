"""sgcad:segment — land-cover map of an optical + SAR scene with a trained student."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, shown_as, verdict

GRIDS = (("sar", "SAR raster's grid"), ("optical", "Optical raster's grid"))
BACKENDS = (("auto", "Automatic"), ("torch", "PyTorch"), ("onnx", "ONNX Runtime"))
OUTPUT_FILES = {
    "CLASSES": "classes",
    "CONFIDENCE": "confidence",
    "WATER_PROBABILITY": "water",
    "GATES": "gates",
}


class Segment(EngineAlgorithm):
    ALG_ID = "segment"
    DISPLAY = "Segment land cover (optical + SAR)"
    GROUP = "segmentation"
    HELP = (
        "Maps the land-cover classes of a trained SGCAD student model over an optical + SAR scene "
        "of any size, tile by tile with blended overlaps. The bands, preprocessing and class names "
        "are read from the model file; choose bands only if this scene stores them in another "
        "order. With the SAR water teacher, the water probability and the teacher's confidence "
        "gates are written too, and pixels without optical data still get water / non-water from "
        "the SAR. On a SAR raster with VV and VH (and no SAR band chosen), the teacher's part comes from "
        "the VV + VH water expert, as in the water map. A SAR-only model (trained with `engine train-sar`) "
        "needs no optical raster: leave it "
        "empty; with the teacher it may take its water class from the teacher (advanced: more flood water "
        "found, more false water on dry land). Outputs (in the output folder): classes.tif, confidence.tif "
        "and, with a teacher, water_probability.tif and gates.tif."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster("OPTICAL", "Optical raster (empty for a SAR-only model)", optional=True)
        self.add_bands("OPTICAL_BANDS", "OPTICAL", "Optical bands (default: the model's, found by band names)")
        self.add_raster("SAR", "SAR raster")
        self.add_bands("SAR_BANDS", "SAR", "SAR bands (default: the model's, found by band names)")
        self.add_model("MODEL", "Student model")
        self.add_model("TEACHER", "SAR water teacher model", optional=True)
        self.add_aoi()
        self.add_device_parameter()
        self.add_number("TILE_SIZE", "Tile size (pixels)", 512, 64, 8192)
        self.add_number("OVERLAP", "Tile overlap (pixels)", 64, 0, 2048)
        self.add_number("BATCH_SIZE", "Tiles per batch", 4, 1, 256)
        self.add_advanced(
            QgsProcessingParameterEnum(
                "GRID", self.tr("Output grid"), options=[t for _, t in GRIDS], defaultValue=0
            )
        )
        self.add_advanced(
            QgsProcessingParameterNumber(
                "RESOLUTION",
                self.tr("Output pixel size (0 = the chosen grid's own)"),
                QgsProcessingParameterNumber.Double,
                0.0,
                False,
                0.0,
            )
        )
        self.add_advanced(
            QgsProcessingParameterRasterLayer(
                "CLOUD_MASK", self.tr("Cloud mask (0/1, or a cloud probability or percentage: cloud from 50 %)"),
                optional=True
            )
        )
        self.add_advanced(
            QgsProcessingParameterEnum(
                "BACKEND", self.tr("Inference backend"), options=[t for _, t in BACKENDS], defaultValue=0
            )
        )
        self.add_units()
        self.add_sar_levels()
        self.add_sar_noise_floor()
        self.add_flip_average()
        self.add_flag("WATER_FROM_EXPERT", "SAR-only model: water class from the water teacher (more flood "
                      "water found, more false water on dry land)", False)
        from sgcad_qgis.engine.config import InferenceConfig

        self.add_number("WATER_MAX_NIR", "Most NIR reflectance of open water: above it water needs the water "
                        "teacher, under it the teacher's water joins the map (0 = NIR not read)",
                        InferenceConfig.water_max_nir, 0.0, 1.0, integer=False)
        self.add_threads_and_overwrite()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer("CLASSES", self.tr("Class map")))
        self.addOutput(QgsProcessingOutputRasterLayer("CONFIDENCE", self.tr("Confidence")))
        self.addOutput(QgsProcessingOutputRasterLayer("WATER_PROBABILITY", self.tr("Water probability")))
        self.addOutput(QgsProcessingOutputRasterLayer("GATES", self.tr("Teacher confidence gates")))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", self.tr("Run time (s)")))
        self.addOutput(QgsProcessingOutputNumber("TILES", self.tr("Tiles processed")))
        self.addOutput(QgsProcessingOutputString("DEVICE_USED", self.tr("Device used")))
        self.addOutput(QgsProcessingOutputString("INPUT_UNITS", self.tr("Units read (optical, SAR)")))
        self.addOutput(QgsProcessingOutputString("WARNINGS", self.tr("Input warnings (one per line)")))
        self.addOutput(QgsProcessingOutputString("EXPLANATION", self.tr("Why the map looks as it does (text)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        optical = self.parameterAsRasterLayer(parameters, "OPTICAL", context)
        sar = self.parameterAsRasterLayer(parameters, "SAR", context)
        meta, model_problem = _checks.model_file(
            self.parameterAsFile(parameters, "MODEL", context), "student"
        )
        teacher_path = self.parameterAsFile(parameters, "TEACHER", context)
        teacher, teacher_problem = _checks.model_file(teacher_path, "teacher", "teacher model")
        sar_bands = self.bands(parameters, "SAR_BANDS", context)
        messages = [
            _checks.overlap(optical, sar, "optical raster", "SAR raster"),
            model_problem,
            _checks.optical_needed(meta, optical),
            _checks.model_bands(
                meta, optical, self.bands(parameters, "OPTICAL_BANDS", context), "optical", "optical raster"
            ),
            _checks.model_bands(meta, sar, sar_bands, "sar", "SAR raster"),
            teacher_problem,
        ]
        if meta is not None and teacher is not None and teacher.bands.sar_channels != meta.bands.sar_channels:
            messages.append(
                f"The teacher model takes {teacher.bands.sar_channels} SAR band(s) but the student "
                f"takes {meta.bands.sar_channels}; both are fed the same SAR bands."
            )
        if parameters.get("AOI_LAYER") not in (None, ""):
            source = self.parameterAsSource(parameters, "AOI_LAYER", context)
            messages.append(_checks.overlap(sar, source, "SAR raster", "area of interest"))
            # a file given by path is read as the engine will (polygons, pixels covered), naming that file
            messages.append(_checks.area_of_interest(shown_as(parameters.get("AOI_LAYER")), sar))
        elif parameters.get("AOI_EXTENT") not in (None, "") and sar is not None:
            messages.append(_checks.area_of_interest(self.aoi_value(parameters, context, None, sar.crs()), sar))
        aoi_given = parameters.get("AOI_LAYER") not in (None, "") or parameters.get("AOI_EXTENT") not in (None, "")
        if parameters.get("RESOLUTION") not in (None, "") and not aoi_given:  # with an AOI the engine checks its area
            resolution = self.parameterAsDouble(parameters, "RESOLUTION", context)
            messages.append(_checks.output_grid(optical, sar, resolution))
        messages.append(
            _checks.tiling_of(parameters)
            if "TILE_SIZE" in parameters or "OVERLAP" in parameters
            else None
        )
        folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        if folder and not folder.startswith(("TEMPORARY", "memory:")):
            # outputs vs inputs and the folder's run lock: EngineAlgorithm.checkParameterValues
            for name in ("classes.tif", "confidence.tif"):
                messages.append(
                    _checks.output_free(
                        str(Path(folder) / name), self.overwrite(parameters, context), "output"
                    )
                )
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.config import InferenceConfig
        from sgcad_qgis.engine.inference.pipeline import segment_scene
        from sgcad_qgis.engine.models.checkpoint import read_metadata

        threads = self.set_threads(parameters, context, feedback)
        sar_layer = self.parameterAsRasterLayer(parameters, "SAR", context)
        aoi = self.aoi_value(parameters, context, feedback, sar_layer.crs() if sar_layer else None)
        # layers that are not plain files are exported over the AOI plus one tile overlap of context
        margin = self.parameterAsInt(parameters, "OVERLAP", context) * sar_layer.rasterUnitsPerPixelX()
        window = self.aoi_window(parameters, context, sar_layer.crs(), margin)
        crs = sar_layer.crs()
        optical = None  # a SAR-only model reads no optical image
        if parameters.get("OPTICAL") not in (None, ""):
            optical = self.raster_path(parameters, "OPTICAL", context, feedback, "optical raster", window, crs)
        sar = self.raster_path(parameters, "SAR", context, feedback, "SAR raster", window, crs)
        cloud = None
        if parameters.get("CLOUD_MASK") not in (None, ""):
            cloud = self.raster_path(parameters, "CLOUD_MASK", context, feedback, "cloud mask")
        model = self.parameterAsFile(parameters, "MODEL", context)
        teacher = self.parameterAsFile(parameters, "TEACHER", context) or None
        device = self.log_device(feedback, self.device_value(parameters, context))
        cfg = InferenceConfig(
            tile_size=self.parameterAsInt(parameters, "TILE_SIZE", context),
            overlap=self.parameterAsInt(parameters, "OVERLAP", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            device=device,
            backend=BACKENDS[self.parameterAsEnum(parameters, "BACKEND", context)][0],
            threads=threads,
            flip_average=self.flip_average_value(parameters, context),
            water_from_expert=bool(parameters.get("WATER_FROM_EXPERT"))
            and self.parameterAsBoolean(parameters, "WATER_FROM_EXPERT", context),
            water_max_nir=self.parameterAsDouble(parameters, "WATER_MAX_NIR", context)
            if parameters.get("WATER_MAX_NIR") is not None else InferenceConfig.water_max_nir,
        )
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        with self.stage(feedback, "Segmentation") as progress:
            result = segment_scene(
                optical,
                sar,
                model,
                folder,
                teacher_path=teacher,
                cfg=cfg,
                aoi=aoi,
                progress=progress,
                overwrite=self.overwrite(parameters, context),
                optical_bands=self.bands(parameters, "OPTICAL_BANDS", context) or None,
                sar_bands=self.bands(parameters, "SAR_BANDS", context) or None,
                cloud_mask=cloud,
                grid=GRIDS[self.parameterAsEnum(parameters, "GRID", context)][0],
                resolution=self.parameterAsDouble(parameters, "RESOLUTION", context) or None,
                sar_levels=self.sar_levels_value(parameters, context),
                sar_noise_floor=self.sar_noise_floor_value(parameters, context),
                **self.units_values(parameters, context),
            )
        timings = result.get("timings", {})
        feedback.pushInfo(
            f"{result['tiles']} tiles on {result['device']} in {result['seconds']:.1f} s "
            f"({result['pixels_per_second']:.0f} pixels/s; reading {timings.get('read_s', 0):.1f} s, "
            f"network {timings.get('network_s', 0):.1f} s, writing {timings.get('blend_write_s', 0):.1f} s)"
        )
        schema = read_metadata(model).schema
        self._publish(context, result["outputs"], Path(model).stem, schema)
        outputs = {key: result["outputs"].get(engine_key, "") for key, engine_key in OUTPUT_FILES.items()}
        outputs.update(
            OUTPUT_FOLDER=folder,
            SECONDS=result["seconds"],
            TILES=result["tiles"],
            DEVICE_USED=result["device"],
            INPUT_UNITS=f"optical {result['inputs'].get('optical_units')}, SAR {result['inputs']['sar_units']}",
            WARNINGS="\n".join(result["inputs"]["warnings"]),
            EXPLANATION=self._explain(folder, feedback),
        )
        return outputs

    @staticmethod
    def _explain(folder: str, feedback) -> str:
        """The run's explanation (``engine.explain``, also written into the run's report);
        a failure there never fails the segmentation."""
        from sgcad_qgis.engine.explain import explain_run

        try:
            text = explain_run(folder, write=True, overwrite=True)["text"]
        except (ValueError, OSError) as exc:
            feedback.pushWarning(f"No explanation of this map: {exc}")
            return ""
        feedback.pushInfo(f"Why this map: {text}")
        return text

    @staticmethod
    def _publish(context, paths, model_name: str, schema) -> None:
        """Styled layers in one group, as the dock shows them (``layers.publish_results``)."""
        items = layers.segmentation_results(paths, model_name)
        layers.publish_on_completion(context, items, layers.run_group_name("Segmentation", model_name), schema)
