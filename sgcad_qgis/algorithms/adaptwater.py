"""sgcad:adaptwater — adapt the SAR water expert to one scene without labels."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingParameterFolderDestination,
)

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, verdict


class AdaptWater(EngineAlgorithm):
    ALG_ID = "adaptwater"
    DISPLAY = "Adapt the water expert to a scene (no labels)"
    GROUP = "training"
    HELP = (
        "Adapts the SAR water expert (teacher) to this SAR scene without any drawn polygon, as "
        "operational flood services do: the scene's water / land threshold is found from tiles "
        "whose histogram is clearly bimodal, water is grown from confident seeds, and the pixels "
        "far from the threshold become automatic labels (ambiguous, too dark or isolated pixels are "
        "left out). The teacher is then fine-tuned on them; they load as a layer, so you can see what it "
        "learnt from. A raster with VV and VH is mapped by the VV teacher averaged with its VV + VH "
        "companion; both then adapt and are saved side by side (teacher.safetensors, "
        "teacher_vvvh.safetensors), and maps made with the adapted teacher use both. Use the adapted "
        "teacher for segmentation and as the teacher of a fine-tune. Its accuracy cannot be measured "
        "without labels; docs/finetune.md reports it on labelled real scenes (it gained on some and lost up "
        "to 4 points on others). The run reports how much of the scene changed answer, and loads where as a layer "
        "(orange: water before, land after; red: the reverse): check those places before relying on the "
        "adapted expert. An adaptation that takes a quarter or more of the zero-shot water to land, where no "
        "automatic label said land (wind-roughened water the co-polarised labels cannot see), or 5 % or more "
        "of the water its own automatic labels call water, is not kept: the run warns and the expert stays as "
        "it was."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        from sgcad_qgis.engine.config import FinetuneConfig

        self.add_raster("SAR", "SAR raster")
        self.add_bands("SAR_BANDS", "SAR", "SAR bands (default: the model's, found by band names)")
        self.add_model("TEACHER", "SAR water teacher model")
        self.add_number("TEACHER_STEPS", "Teacher steps", FinetuneConfig.teacher_steps, 1, 100000, advanced=False)
        self.add_pseudo_label_layers()
        self.add_units(optical=False)
        self.add_sar_levels()
        self.add_sar_noise_floor()
        self.add_device_parameter()
        self.add_threads_and_overwrite()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Run folder")))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_TEACHER", self.tr("Adapted teacher")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Report")))
        self.addOutput(QgsProcessingOutputNumber("THRESHOLD_DB", self.tr("Scene water threshold (dB)")))
        self.addOutput(QgsProcessingOutputNumber("WATER_PIXELS", self.tr("Pixels labelled water")))
        self.addOutput(QgsProcessingOutputNumber("NON_WATER_PIXELS", self.tr("Pixels labelled non-water")))
        self.addOutput(QgsProcessingOutputString("METHOD", self.tr("How the threshold was found")))
        self.addOutput(QgsProcessingOutputNumber("SCENE_CUT", self.tr("Water cut taken from this scene "
                                                                      "(relative SAR levels)")))
        self.addOutput(QgsProcessingOutputRasterLayer("PSEUDO_LABELS", self.tr("Pseudo-labels learnt from")))
        self.addOutput(QgsProcessingOutputRasterLayer("WATER_CHANGE", self.tr("Water map: adapted against zero-shot")))
        # without labels the adapted map cannot be scored; how far it moved from the map the user saw can
        self.addOutput(QgsProcessingOutputNumber("WATER_SHARE_ZERO_SHOT", self.tr(
            "Share of the pixels read called water before adapting")))
        self.addOutput(QgsProcessingOutputNumber("WATER_SHARE_ADAPTED", self.tr(
            "Share of the pixels read called water after adapting")))
        self.addOutput(QgsProcessingOutputNumber("CHANGED_SHARE", self.tr(
            "Share of the pixels read whose answer the adaptation changed")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        sar = self.parameterAsRasterLayer(parameters, "SAR", context)
        teacher, problem = _checks.model_file(self.parameterAsFile(parameters, "TEACHER", context), "teacher",
                                              "teacher model")
        bands = _checks.model_bands(teacher, sar, self.bands(parameters, "SAR_BANDS", context), "sar", "SAR raster",
                                    "teacher model")
        return verdict([_checks.georeferenced(sar), problem, bands])

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.config import FinetuneConfig
        from sgcad_qgis.engine.inputs.contract import InputOverrides
        from sgcad_qgis.engine.train.finetune import finetune_from_polygons

        self.set_threads(parameters, context, feedback)
        device = self.log_device(feedback, self.device_value(parameters, context))
        sar = self.raster_path(parameters, "SAR", context, feedback, "SAR raster")
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        units = self.units_values(parameters, context)
        overrides = InputOverrides((), self.bands(parameters, "SAR_BANDS", context), "auto",
                                   units.get("sar_units", "auto"), units.get("sar_calibration", 0.0),
                                   self.sar_levels_value(parameters, context), units.get("sar_backscatter", "auto"),
                                   self.sar_noise_floor_value(parameters, context))
        cfg = FinetuneConfig(teacher_steps=self.parameterAsInt(parameters, "TEACHER_STEPS", context),
                             pseudo_label_layers=self.pseudo_label_layers_value(parameters, context))
        with self.stage(feedback, "Adapting the water expert") as progress:
            result = finetune_from_polygons(
                None, sar, None, "class", None, folder,
                teacher_path=self.parameterAsFile(parameters, "TEACHER", context), cfg=cfg, overrides=overrides,
                device=device, progress=progress, overwrite=self.overwrite(parameters, context),
            )
        pseudo = result.get("pseudo_labels") or {}
        threshold = pseudo.get("threshold", {})
        pixels = pseudo.get("pixels", {})
        change = pseudo.get("change") or {}
        items = (layers.pseudo_label_results(result.get("pseudo_labels_raster") or "")
                 + layers.water_change_results(result.get("water_change_raster") or ""))
        if items:
            from pathlib import Path

            layers.publish_on_completion(context, items, layers.run_group_name("Water adaptation", Path(folder).name))
        return {
            "PSEUDO_LABELS": result.get("pseudo_labels_raster") or "",
            "WATER_CHANGE": result.get("water_change_raster") or "",
            "OUTPUT_FOLDER": folder,
            "OUTPUT_TEACHER": result.get("teacher") or "",
            "REPORT": result["report"],
            "THRESHOLD_DB": threshold.get("threshold_db"),
            "WATER_PIXELS": pixels.get("water"),
            "NON_WATER_PIXELS": pixels.get("non_water"),
            "METHOD": f"{threshold.get('method')}: {threshold.get('note')}",
            "SCENE_CUT": result.get("scene_cut"),
            "WATER_SHARE_ZERO_SHOT": change.get("water_before"),
            "WATER_SHARE_ADAPTED": change.get("water_after"),
            "CHANGED_SHARE": change.get("changed"),
        }
