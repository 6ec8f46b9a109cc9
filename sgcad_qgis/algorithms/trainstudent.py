"""sgcad:trainstudent — stage 1: train the LightMCANet optical + SAR student."""

from __future__ import annotations

from ._common import verdict
from ._training import TrainingAlgorithm


class TrainStudent(TrainingAlgorithm):
    ALG_ID = "trainstudent"
    DISPLAY = "Train student (stage 1)"
    HELP = (
        "Trains LightMCANet, the light optical + SAR segmentation network, on all classes of the "
        "labels: weighted cross-entropy plus Dice and Lovász losses, AdamW with a polynomial "
        "learning-rate decay, early stopping on validation Kappa and OA + mIoU. Labels are a label "
        "raster or polygons with a class field (ids or names of the six default classes). The scene "
        "is split into tiles for training, validation and test before patches are cut; rare classes "
        "get extra training windows. The run folder receives best.safetensors (weights, classes, "
        "bands and preprocessing), the per-epoch history, plots and report.html. Distil it with the "
        "SAR teacher afterwards (stage 2)."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_training_data()
        self.add_data_settings()
        self.add_optimisation()
        self.add_training_outputs()

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        return (ok, message) if not ok else verdict(self.check_training(parameters, context))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.train.stages import train_student

        threads = self.set_threads(parameters, context, feedback)
        device = self.log_device(feedback, self.device_value(parameters, context))
        inputs = self.training_inputs(parameters, context, feedback)
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        with self.stage(feedback, "Student training (stage 1)") as progress:
            result = train_student(
                inputs,
                folder,
                self.model_config(parameters, context),
                self.train_config(parameters, context, device, threads),
                self.loss_config(parameters, context),
                progress=progress,
                **self.run_flags(parameters, context),
            )
        return self.training_results(result, folder, feedback)
