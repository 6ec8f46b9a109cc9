"""sgcad:finetune — fine-tune the student and its SAR teacher on a few drawn polygons."""

from __future__ import annotations

from typing import Any, Dict

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFolderDestination,
)

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, verdict

KD_CHOICES = ("unlabelled", "labelled", "none")
FIGURES = {
    "HELD_OUT_MIOU": ("student", "miou", "Held-out mIoU of the fine-tuned student (empty: unmeasured)"),
    "HELD_OUT_WATER_IOU": ("student", "water_iou", "Held-out water IoU of the fine-tuned student"),
    "BASELINE_MIOU": ("student_baseline", "miou", "Held-out mIoU of the linear baseline (same polygons)"),
    "BASELINE_WATER_IOU": ("student_baseline", "water_iou", "Held-out water IoU of the linear baseline"),
    "TEACHER_WATER_IOU": ("teacher", "water_iou", "Held-out water IoU of the fine-tuned teacher"),
    "TEACHER_BASELINE_WATER_IOU": ("teacher_baseline", "water_iou", "Held-out water IoU of the SAR linear baseline"),
}


class FineTune(EngineAlgorithm):
    ALG_ID = "finetune"
    DISPLAY = "Fine-tune from polygons"
    GROUP = "training"
    HELP = (
        "Improves the student and its SAR water teacher where you drew polygons (a class id or name "
        "of the model's classes in a field). Whole groups of nearby polygons are held out for an "
        "honest accuracy, shown next to a per-pixel linear classifier fitted on the same training "
        "polygons, so you can see whether the network earned its keep; with polygons in one place "
        "only, the accuracy is reported as unmeasured. The teacher is fine-tuned first (water vs "
        "the rest), then the student, with the teacher's confident water knowledge distilled on "
        "the labelled pixels and, by default, on the unlabelled pixels of the area. Leave the "
        "optical raster empty to fine-tune only the teacher on SAR, or with a SAR-only student "
        "(trained by `engine train-sar`), which reads no optical image. Writes the fine-tuned models, "
        "a report, the gate masks and the KD-region-ratio grid."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        from sgcad_qgis.engine.config import FinetuneConfig

        d = FinetuneConfig()
        self.add_raster("OPTICAL", "Optical raster (empty: the teacher on SAR only, or a SAR-only student)",
                        optional=True)
        self.add_bands("OPTICAL_BANDS", "OPTICAL", "Optical bands (default: the model's, found by band names)")
        self.add_raster("SAR", "SAR raster")
        self.add_bands("SAR_BANDS", "SAR", "SAR bands (default: the model's, found by band names)")
        self.add_model("STUDENT", "Student model to fine-tune", optional=True)
        self.add_model("TEACHER", "SAR water teacher model", optional=True)
        self.add_model("SAR_ENCODER", "Pretrained SAR encoder (sgcad:pretrainsar) to start from", optional=True)
        self.add_number("PRETRAIN_STEPS", "Pretrain the student's SAR encoder on this SAR layer first (steps; "
                        "0 = no)", 0, 0, 1000000)
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "LABEL_POLYGONS", self.tr("Label polygons"), [QgsProcessing.TypeVectorPolygon]
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "CLASS_FIELD", self.tr("Class field (ids or names)"), "class", "LABEL_POLYGONS"
            )
        )
        self.add_aoi()
        self.add_number("STEPS", "Student steps", d.steps, 1, 100000, advanced=False)
        self.add_number("TEACHER_STEPS", "Teacher steps", d.teacher_steps, 1, 100000)
        self.add_flag("UPDATE_TEACHER", "Fine-tune the teacher on the polygons first", d.update_teacher)
        self.add_pseudo_label_layers()
        kd = QgsProcessingParameterEnum(
            "KD", self.tr("Distillation from the teacher"), options=list(KD_CHOICES), defaultValue=d.kd
        )
        kd.setUsesStaticStrings(True)
        kd.setHelp(self.tr("unlabelled: the teacher's confident pixels of the whole area; labelled: the "
                           "paper's gates on labelled pixels only; none"))
        self.add_advanced(kd)
        self.add_number("LAMBDA_KD", "Distillation weight", d.lambda_kd, 0.0, 100.0, integer=False)
        self.add_number("KEEP_UNDRAWN", "Weight keeping the starting map's classes that no polygon holds (0 = off)",
                        d.keep_undrawn, 0.0, 100.0, integer=False)
        self.add_number("TEACHER_KEEP", "Weight keeping the starting water expert's sure answers where nothing "
                        "was drawn (0 = off)", d.teacher_keep, 0.0, 100.0, integer=False, advanced=True)
        self.add_number("TEACHER_CONTRADICTION", "Withhold the water expert's water from the student when it calls "
                        "more than this share of the drawn non-water polygons water (1 = never)",
                        d.teacher_contradiction, 0.0, 1.0, integer=False, advanced=True)
        self.add_number("CROP_SIZE", "Training crop size (pixels)", d.crop_size, 32, 1024)
        self.add_number("BATCH_SIZE", "Crops per step", d.batch_size, 1, 256)
        self.add_flag("TRAIN_ENCODERS", "Let the student's encoders learn too (slower)", d.train_encoders,
                      advanced=True)
        self.add_number("LR", "Learning rate (AdamW)", d.lr, 0.0, 1.0, integer=False)
        self.add_number("VAL_FRACTION", "Share of each class's polygons held out", d.val_fraction, 0.0, 0.9,
                        integer=False)
        self.add_number("SEED", "Random seed", d.seed, 0, 2**31 - 1)
        self.add_units()
        self.add_sar_levels()
        self.add_sar_noise_floor()
        self.add_device_parameter()
        self.add_threads_and_overwrite()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Run folder")))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_MODEL", self.tr("Fine-tuned student")))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_TEACHER", self.tr("Fine-tuned teacher")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Fine-tuning report")))
        self.addOutput(QgsProcessingOutputFile("METRICS", self.tr("Figures (JSON)")))
        self.addOutput(
            QgsProcessingOutputFile("HISTORY", self.tr("Losses and KD-region ratios per validation step (JSON)"))
        )
        self.addOutput(QgsProcessingOutputNumber("MEASURED", self.tr("Accuracy measured on held-out polygons (1/0)")))
        for key, (_, _, label) in FIGURES.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))
        self.addOutput(QgsProcessingOutputRasterLayer("GATES", self.tr("KD gate masks")))
        self.addOutput(QgsProcessingOutputRasterLayer("KD_RATIO", self.tr("KD region ratio grid")))
        self.addOutput(QgsProcessingOutputRasterLayer("PSEUDO_LABELS", self.tr(
            "Pseudo-labels the water expert learnt from (polygons without water)")))
        self.addOutput(QgsProcessingOutputNumber("KD_RATIO_AREA", self.tr("KD region ratio over the area")))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", self.tr("Run time (s)")))
        self.addOutput(QgsProcessingOutputString("WARNINGS", self.tr("Warnings (one per line)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        optical = self.parameterAsRasterLayer(parameters, "OPTICAL", context)
        sar = self.parameterAsRasterLayer(parameters, "SAR", context)
        source = self.parameterAsSource(parameters, "LABEL_POLYGONS", context)
        student_path = self.parameterAsFile(parameters, "STUDENT", context)
        teacher_path = self.parameterAsFile(parameters, "TEACHER", context)
        student, student_problem = _checks.model_file(student_path, "student", "student model")
        teacher, teacher_problem = _checks.model_file(teacher_path, "teacher", "teacher model")
        messages = [teacher_problem]
        sar_only = student is not None and student.bands.optical_channels == 0  # reads no optical image
        if sar_only:
            messages.append(student_problem)
        elif optical is not None:
            messages += [
                student_problem,
                _checks.overlap(optical, sar, "optical raster", "SAR raster"),
                _checks.model_bands(student, optical, self.bands(parameters, "OPTICAL_BANDS", context), "optical",
                                    "optical raster", "student model"),
            ]
        elif not teacher_path:
            messages.append("Give an optical raster and a student, a SAR-only student, or a teacher to fine-tune "
                            "on the SAR alone.")
        sar_bands = self.bands(parameters, "SAR_BANDS", context)
        fed = student if (optical is not None or sar_only) else None
        for meta, label in ((fed, "student model"), (teacher, "teacher model")):
            messages.append(_checks.model_bands(meta, sar, sar_bands, "sar", "SAR raster", label))
        if source is not None and source.featureCount() == 0:
            messages.append("The label layer holds no polygon yet; draw at least one.")
        else:
            messages.append(_checks.overlap(sar, source, "SAR raster", "label polygons"))
        schema = (student or teacher).schema if (student or teacher) is not None else None
        if schema is not None:
            field = self.parameterAsString(parameters, "CLASS_FIELD", context)
            messages.append(_checks.label_field(source, field, schema, "label polygons"))
        from sgcad_qgis.engine.validate import check_learning_rate

        messages.append(_checks.engine_check(check_learning_rate, self.parameterAsDouble(parameters, "LR", context),
                                             "LR"))
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.commands.finetune import summary
        from sgcad_qgis.engine.config import FinetuneConfig
        from sgcad_qgis.engine.inputs.contract import InputOverrides
        from sgcad_qgis.engine.train.finetune import finetune_from_polygons

        self.set_threads(parameters, context, feedback)
        device = self.log_device(feedback, self.device_value(parameters, context))
        optical = None
        if parameters.get("OPTICAL") not in (None, ""):
            optical = self.raster_path(parameters, "OPTICAL", context, feedback, "optical raster")
        sar = self.raster_path(parameters, "SAR", context, feedback, "SAR raster")
        polygons, layer_name = self.vector_path(parameters, "LABEL_POLYGONS", context, feedback)
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        number = lambda name: self.parameterAsDouble(parameters, name, context)  # noqa: E731
        count = lambda name: self.parameterAsInt(parameters, name, context)  # noqa: E731
        cfg = FinetuneConfig(
            steps=count("STEPS"), teacher_steps=count("TEACHER_STEPS"),
            update_teacher=self.parameterAsBoolean(parameters, "UPDATE_TEACHER", context),
            kd=self.parameterAsEnumString(parameters, "KD", context) or FinetuneConfig.kd,
            lambda_kd=number("LAMBDA_KD"), keep_undrawn=number("KEEP_UNDRAWN"), teacher_keep=number("TEACHER_KEEP"),
            teacher_contradiction=number("TEACHER_CONTRADICTION"),
            crop_size=count("CROP_SIZE"),
            batch_size=count("BATCH_SIZE"),
            lr=number("LR"), val_fraction=number("VAL_FRACTION"), seed=count("SEED"),
            train_encoders=self.parameterAsBoolean(parameters, "TRAIN_ENCODERS", context),
            pseudo_label_layers=self.pseudo_label_layers_value(parameters, context),
        )
        units = self.units_values(parameters, context)
        overrides = InputOverrides(
            self.bands(parameters, "OPTICAL_BANDS", context), self.bands(parameters, "SAR_BANDS", context),
            units.get("optical_units", "auto"), units.get("sar_units", "auto"), units.get("sar_calibration", 0.0),
            self.sar_levels_value(parameters, context), units.get("sar_backscatter", "auto"),
            self.sar_noise_floor_value(parameters, context),
        )
        area = self._area(parameters, context, feedback, sar)
        sar_encoder = self.parameterAsFile(parameters, "SAR_ENCODER", context) or None
        if self.parameterAsInt(parameters, "PRETRAIN_STEPS", context) > 0 and not sar_encoder:
            sar_encoder = self._pretrain(parameters, context, feedback, sar, folder, device)
        with self.stage(feedback, "Fine-tuning from polygons") as progress:
            result = finetune_from_polygons(
                optical, sar, polygons, self.parameterAsString(parameters, "CLASS_FIELD", context),
                self.parameterAsFile(parameters, "STUDENT", context) or None, folder,
                teacher_path=self.parameterAsFile(parameters, "TEACHER", context) or None, cfg=cfg,
                overrides=overrides, layer=layer_name, area=area, device=device, progress=progress,
                overwrite=self.overwrite(parameters, context), sar_encoder=sar_encoder,
            )
        return self._outputs(result, folder, context, feedback, summary(result))

    def _pretrain(self, parameters, context, feedback, sar, folder, device) -> str:
        """Run sgcad:pretrainsar on the SAR layer, shaped like the student, into ``folder/pretrain``."""
        import processing

        student = self.parameterAsFile(parameters, "STUDENT", context)
        if not student:
            raise QgsProcessingException("Pretraining on the SAR layer first needs the student model to follow.")
        result = processing.run("sgcad:pretrainsar", {
            "SAR_LAYERS": [sar], "LIKE": student, "STEPS": self.parameterAsInt(parameters, "PRETRAIN_STEPS", context),
            "DEVICE": self.parameterAsEnum(parameters, "DEVICE", context),
            "THREADS": self.parameterAsInt(parameters, "THREADS", context), "OVERWRITE": True,
            "OUTPUT_FOLDER": f"{folder}/pretrain",
        }, context=context, feedback=feedback, is_child_algorithm=True)
        return result["OUTPUT_ENCODER"]

    def _area(self, parameters, context, feedback, sar_path):
        """The AOI as a pixel box of the SAR grid (unlabelled context is drawn from it), or None."""
        aoi = self.aoi_value(parameters, context, feedback)
        if aoi is None:
            return None
        from sgcad_qgis.engine.inference.aoi import load_aoi
        from sgcad_qgis.engine.raster.grid import grid_of

        x0, y0, x1, y1 = load_aoi(aoi, grid_of(sar_path)).pixel_window()
        return (x0, y0, x1, y1)

    def _outputs(self, result: Dict[str, Any], folder, context, feedback, figures) -> Dict[str, Any]:
        def pct(v):
            return "n/a" if v is None else f"{100 * v:.1f} %"

        if not figures["measured"]:
            feedback.pushWarning("Accuracy unmeasured: no polygon group could be held out (draw polygons in two "
                                 "or more separate places for an honest figure).")
        for net, base in (("student", "student_baseline"), ("teacher", "teacher_baseline")):
            if figures[net]:
                key = "miou" if net == "student" else "water_iou"
                water = pct(figures[net]["water_iou"]) if figures[net]["water_iou"] is not None else (
                    "not measured (no held-out water polygon)")
                feedback.pushInfo(
                    f"Held-out {net}: {key} {pct(figures[net][key])}, water IoU {water}; "
                    f"linear baseline on the same polygons: {key} {pct((figures[base] or {}).get(key))}"
                )
        outputs = {
            "OUTPUT_FOLDER": folder,
            "OUTPUT_MODEL": result.get("model") or "",
            "OUTPUT_TEACHER": result.get("teacher") or "",
            "REPORT": result["report"],
            "METRICS": f"{folder}/metrics.json",
            "HISTORY": f"{folder}/history.json",
            "MEASURED": int(bool(figures["measured"])),
            "GATES": result.get("gates_raster") or "",
            "KD_RATIO": result.get("kd_ratio_raster") or "",
            "PSEUDO_LABELS": result.get("pseudo_labels_raster") or "",
            "KD_RATIO_AREA": (result.get("gates") or {}).get("kd_ratio"),
            "SECONDS": result["seconds"],
            "WARNINGS": "\n".join(result.get("warnings", [])),
        }
        for key, (net, name, _) in FIGURES.items():
            outputs[key] = (figures[net] or {}).get(name)
        if outputs["GATES"]:
            from pathlib import Path

            items = layers.finetune_results(outputs["GATES"], outputs["KD_RATIO"], result["crop_size"])
            items += layers.pseudo_label_results(outputs["PSEUDO_LABELS"])
            layers.publish_on_completion(context, items, layers.run_group_name("KD gates", Path(folder).name))
        return outputs
