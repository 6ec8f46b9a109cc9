"""sgcad:finetune — fine-tune an existing student on patches around user polygons, teacher-gated."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
)

from . import _checks
from ._common import verdict
from .distill import Distill


class FineTune(Distill):
    ALG_ID = "finetune"
    DISPLAY = "Fine-tune a student from polygons"
    DEFAULT_EPOCHS = 20
    HELP = (
        "Improves an existing student model where you drew polygons: each polygon carries a class "
        "(id or name of the model's classes) in a field. Training patches are cut only around the "
        "polygons (pixels outside them are unlabelled) and split into training and validation so "
        "that overlapping patches stay together. Training is stage-2 style: the segmentation losses "
        "at a reduced learning rate plus the SAR teacher's confidence-gated water distillation after "
        "a short warm-up. Writes the fine-tuned model, history, report, the gate masks over the "
        "training area and the KD-region-ratio grid (share of gated pixels per patch-sized block)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster("OPTICAL", "Optical raster")
        self.add_bands("OPTICAL_BANDS", "OPTICAL", "Optical bands (default: the model's)")
        self.add_raster("SAR", "SAR raster")
        self.add_bands("SAR_BANDS", "SAR", "SAR bands (default: the model's)")
        self.add_model("STUDENT", "Student model to fine-tune")
        self.add_model("TEACHER", "SAR water teacher model")
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
        self.add_number("EPOCHS", "Epochs", self.DEFAULT_EPOCHS, 1, 100000, advanced=False)
        self.add_number("PATCH_SIZE", "Patch size (pixels)", 256, 16, 8192)
        self.add_number(
            "VAL_FRACTION", "Share of patches held out for validation", 0.2, 0.0, 0.9, integer=False
        )
        self.add_number("BATCH_SIZE", "Patches per batch", 8, 1, 4096)
        self.add_number("LR", "Learning rate of stage 1 (AdamW)", 1e-3, 0.0, 10.0, integer=False)
        self.add_distill_settings()
        self.add_number("WEIGHT_DECAY", "Weight decay (AdamW)", 1e-4, 0.0, 10.0, integer=False)
        self.add_number("PATIENCE", "Early-stopping patience in epochs (0 = off)", 0, 0, 100000)
        self.add_number("MAX_BATCHES", "Batches per epoch (0 = all patches)", 0, 0, 1 << 30)
        self.add_number("SEED", "Random seed", 42, 0, 2**31 - 1)
        self.add_flag("AUGMENT", "Augment training patches (flips, rotations)", True)
        self.add_flag("CLASS_WEIGHTS", "Inverse-frequency class weights", True)
        self.add_units()
        self.add_device_parameter()
        self.add_threads_and_overwrite()
        self.add_training_outputs()
        self.add_distill_outputs()
        self.addOutput(QgsProcessingOutputNumber("PATCHES", self.tr("Training and validation patches")))
        self.parameterDefinition("WARMUP_EPOCHS").setDefaultValue(2)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super(Distill, self).checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        student, messages = self.check_models(parameters, context)
        sar = self.parameterAsRasterLayer(parameters, "SAR", context)
        optical = self.parameterAsRasterLayer(parameters, "OPTICAL", context)
        source = self.parameterAsSource(parameters, "LABEL_POLYGONS", context)
        messages.append(_checks.overlap(optical, sar, "optical raster", "SAR raster"))
        if source is not None and source.featureCount() == 0:
            messages.append("The label layer holds no polygon yet; draw at least one.")
        else:
            messages.append(_checks.overlap(sar, source, "SAR raster", "label polygons"))
        if student is not None:
            field = self.parameterAsString(parameters, "CLASS_FIELD", context)
            messages.append(_checks.label_field(source, field, student.schema, "label polygons"))
        messages.append(self._run_folder_problem(dict(parameters, RESUME=False), context))
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.models.checkpoint import read_metadata
        from sgcad_qgis.engine.raster.grid import grid_of
        from sgcad_qgis.engine.train.data import TrainingInputs
        from sgcad_qgis.engine.train.polygon_patches import write_polygon_patch_set
        from sgcad_qgis.engine.train.stages import distill

        threads = self.set_threads(parameters, context, feedback)
        device = self.log_device(feedback, self.device_value(parameters, context))
        model = self.parameterAsFile(parameters, "STUDENT", context)
        teacher = self.parameterAsFile(parameters, "TEACHER", context)
        meta = read_metadata(model)
        optical = self.raster_path(parameters, "OPTICAL", context, feedback, "optical raster")
        sar = self.raster_path(parameters, "SAR", context, feedback, "SAR raster")
        polygons, layer_name = self.vector_path(parameters, "LABEL_POLYGONS", context, feedback)
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        patch = self.parameterAsInt(parameters, "PATCH_SIZE", context)
        overwrite = self.overwrite(parameters, context)
        with self.stage(feedback, "Patches around the polygons") as progress:
            patches = write_polygon_patch_set(
                polygons,
                self.parameterAsString(parameters, "CLASS_FIELD", context),
                optical,
                sar,
                grid_of(sar),
                meta.schema,
                Path(folder) / "patches",
                patch,
                layer_name,
                self.parameterAsDouble(parameters, "VAL_FRACTION", context),
                self.parameterAsInt(parameters, "SEED", context),
                overwrite=overwrite,
                progress=progress,
            )
        feedback.pushInfo(
            f"{len(patches['windows'])} patches of {patches['patch_size']} pixels; labelled pixels: "
            + ", ".join(f"{k} {v}" for k, v in patches["class_pixels"].items() if v)
        )
        if patches["shared_validation"]:
            feedback.pushWarning(
                "All polygons lie in one group of overlapping patches: validation reuses the "
                "training patches, so the reported accuracy is optimistic."
            )
        bands = dataclasses.replace(meta.bands)  # the student's bands unless others are chosen
        for name in ("OPTICAL_BANDS", "SAR_BANDS"):
            chosen = self.bands(parameters, name, context)
            if chosen:
                setattr(bands, name.lower(), chosen)
        inputs = TrainingInputs(
            patch_set=str(Path(folder) / "patches"), bands=bands, **self.units_values(parameters, context)
        )
        inputs.patch.patch_size = patches["patch_size"]
        lr_factor = self.parameterAsDouble(parameters, "LR_FACTOR", context)
        with self.stage(feedback, "Fine-tuning") as progress:
            result = distill(
                inputs,
                folder,
                model,
                teacher,
                self.train_config(parameters, context, device, threads, lr_factor),
                self.loss_config(parameters, context),
                self.distill_config(parameters, context),
                progress=progress,
                overwrite=overwrite,
            )
        outputs = self.distill_results(result, folder, context, feedback)
        outputs["PATCHES"] = len(patches["windows"])
        return outputs
