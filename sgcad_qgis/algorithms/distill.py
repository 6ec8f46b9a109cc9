"""sgcad:distill — stage 2: SGCAD fine-tuning of a student with the SAR teacher's gated knowledge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

from qgis.core import QgsProcessingOutputNumber, QgsProcessingOutputRasterLayer

from .. import layers
from . import _checks
from ._common import verdict
from ._training import TrainingAlgorithm


class Distill(TrainingAlgorithm):
    ALG_ID = "distill"
    DISPLAY = "Distil the SAR teacher into the student (stage 2)"
    DEFAULT_EPOCHS = 80
    NEW_NETWORK = False
    HELP = (
        "Continues training a stage-1 student with the stage-1 losses plus a distillation term: "
        "where the SAR water teacher is confident and the labels agree (water probability above "
        "the water threshold on water pixels, below the non-water threshold on other labelled "
        "pixels), the student's water probability is pulled towards the teacher's. Distillation "
        "starts after the warm-up epochs; the learning rate is the stage-1 rate times the factor. "
        "Besides the model, history and report, it writes gates.tif (1 = water gate, 2 = non-water "
        "gate, 0 = labelled but not distilled) over the training area and kd_ratio.tif, a coarse "
        "grid (one cell per patch-sized block) holding the share of pixels inside the gates, so you "
        "can see where the teacher's knowledge was transferred."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_model("STUDENT", "Stage-1 student model")
        self.add_model("TEACHER", "SAR water teacher model")
        self.add_training_data()
        self.add_data_settings()
        self.add_distill_settings()
        self.add_optimisation()
        self.add_training_outputs()
        self.add_distill_outputs()

    def add_distill_settings(self) -> None:
        self.add_number("LAMBDA_KD", "Distillation weight (lambda)", 0.1, 0.0, 1000.0, integer=False)
        self.add_number(
            "WATER_THRESHOLD", "Teacher water gate: probability above", 0.95, 0.0, 1.0, integer=False
        )
        self.add_number(
            "NON_WATER_THRESHOLD", "Teacher non-water gate: probability below", 0.15, 0.0, 1.0, integer=False
        )
        self.add_number("WARMUP_EPOCHS", "Warm-up epochs without distillation", 10, 0, 100000)
        self.add_flag("DENSE", "Dense distillation on every labelled pixel (no gates; for comparison)", False)
        self.add_number("LR_FACTOR", "Learning-rate factor of this stage", 0.1, 0.0, 100.0, integer=False)

    def add_distill_outputs(self) -> None:
        self.addOutput(QgsProcessingOutputRasterLayer("GATES", self.tr("KD gate masks")))
        self.addOutput(QgsProcessingOutputRasterLayer("KD_RATIO", self.tr("KD region ratio grid")))
        self.addOutput(
            QgsProcessingOutputNumber("MEAN_KD_RATIO", self.tr("Mean KD region ratio (per epoch)"))
        )
        self.addOutput(QgsProcessingOutputNumber("KD_RATIO_AREA", self.tr("KD region ratio over the area")))

    # ------------------------------------------------------------------ checks
    def check_models(self, parameters, context):
        """(student metadata, messages) for the student and teacher files and the bands fed to them."""
        student, student_problem = _checks.model_file(
            self.parameterAsFile(parameters, "STUDENT", context), "student", "student model"
        )
        teacher, teacher_problem = _checks.model_file(
            self.parameterAsFile(parameters, "TEACHER", context), "teacher", "teacher model"
        )
        messages = [student_problem, teacher_problem]
        optical = self.parameterAsRasterLayer(parameters, "OPTICAL", context)
        sar = self.parameterAsRasterLayer(parameters, "SAR", context)
        sar_bands = self.bands(parameters, "SAR_BANDS", context)
        messages += [
            _checks.model_bands(
                student,
                optical,
                self.bands(parameters, "OPTICAL_BANDS", context),
                "optical",
                "optical raster",
                "student model",
            ),
            _checks.model_bands(student, sar, sar_bands, "sar", "SAR raster", "student model"),
            _checks.model_bands(
                teacher,
                sar,
                sar_bands or (student.bands.sar_bands if student else ()),
                "sar",
                "SAR raster",
                "teacher model",
            ),
        ]
        low = self.parameterAsDouble(parameters, "NON_WATER_THRESHOLD", context)
        high = self.parameterAsDouble(parameters, "WATER_THRESHOLD", context)
        if not low < high:
            messages.append(f"The non-water threshold ({low}) must be below the water threshold ({high}).")
        return student, messages

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        student, messages = self.check_models(parameters, context)
        schema = student.schema if student is not None else None
        return verdict(messages + self.check_training(parameters, context, schema))

    # ------------------------------------------------------------------ running
    def distill_config(self, parameters, context):
        from sgcad_qgis.engine.config import DistillConfig

        return DistillConfig(
            lambda_kd=self.parameterAsDouble(parameters, "LAMBDA_KD", context),
            water_threshold=self.parameterAsDouble(parameters, "WATER_THRESHOLD", context),
            non_water_threshold=self.parameterAsDouble(parameters, "NON_WATER_THRESHOLD", context),
            warmup_epochs=self.parameterAsInt(parameters, "WARMUP_EPOCHS", context),
            gated=not self.parameterAsBoolean(parameters, "DENSE", context),
        )

    def student_bands(self, inputs, parameters, context, student_path: str) -> None:
        """Bands not chosen by the user are those the student reads from these rasters (its own
        roles, found by band names, else its band numbers), as segmentation would read them."""
        from sgcad_qgis.engine.inputs.bands import model_bands_in
        from sgcad_qgis.engine.models.checkpoint import read_metadata

        stored = read_metadata(student_path).bands
        if not self.bands(parameters, "OPTICAL_BANDS", context):
            inputs.bands.optical_bands, inputs.bands.optical_names = model_bands_in(inputs.optical, stored, "optical")
        if not self.bands(parameters, "SAR_BANDS", context):
            inputs.bands.sar_bands, inputs.bands.sar_names = model_bands_in(inputs.sar, stored, "sar")

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.train.stages import distill

        threads = self.set_threads(parameters, context, feedback)
        device = self.log_device(feedback, self.device_value(parameters, context))
        student = self.parameterAsFile(parameters, "STUDENT", context)
        teacher = self.parameterAsFile(parameters, "TEACHER", context)
        inputs = self.training_inputs(parameters, context, feedback)
        self.student_bands(inputs, parameters, context, student)
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        lr_factor = self.parameterAsDouble(parameters, "LR_FACTOR", context)
        with self.stage(feedback, "Distillation (stage 2)") as progress:
            result = distill(
                inputs,
                folder,
                student,
                teacher,
                self.train_config(parameters, context, device, threads, lr_factor),
                self.loss_config(parameters, context),
                self.distill_config(parameters, context),
                progress=progress,
                **self.run_flags(parameters, context),
            )
        return self.distill_results(result, folder, context, feedback)

    def distill_results(self, result: Dict[str, Any], folder: str, context, feedback) -> Dict[str, Any]:
        """Training outputs plus the styled gate rasters and the KD-region ratios."""
        outputs = self.training_results(result, folder, feedback)
        gates = result.get("gate_rasters") or {}
        outputs["GATES"] = gates.get("gates", "")
        outputs["KD_RATIO"] = gates.get("kd_ratio_grid", "")
        outputs["KD_RATIO_AREA"] = gates.get("kd_ratio")
        outputs["MEAN_KD_RATIO"] = mean_kd_ratio(Path(folder) / "history.json")
        fusion = (result.get("test") or {}).get("fusion")
        if fusion:
            feedback.pushInfo("Water on the test split, student vs teacher: " + json.dumps(fusion))
        if outputs["MEAN_KD_RATIO"] is not None:
            feedback.pushInfo(
                f"Mean KD region ratio over the distillation epochs: {outputs['MEAN_KD_RATIO']:.4f}"
            )
        items = layers.finetune_results(outputs["GATES"], outputs["KD_RATIO"], gates.get("gate_block", ""))
        layers.publish_on_completion(context, items, layers.run_group_name("KD gates", Path(folder).name))
        return outputs


def mean_kd_ratio(history: Path) -> Optional[float]:
    """Mean over the epochs that logged a KD-region ratio (warm-up epochs log none)."""
    if not history.is_file():
        return None
    records = json.loads(history.read_text()).get("epochs", [])
    values = [r["train_kd_ratio"] for r in records if r.get("train_kd_ratio") is not None]
    return float(sum(values) / len(values)) if values else None
