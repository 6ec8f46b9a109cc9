"""sgcad:trainteacher — train the SAR-only HRNet water expert."""

from __future__ import annotations

from ._common import verdict
from ._training import TrainingAlgorithm


class TrainTeacher(TrainingAlgorithm):
    ALG_ID = "trainteacher"
    DISPLAY = "Train SAR water teacher"
    MODEL_KIND = "teacher"
    HELP = (
        "Trains the water expert: an HRNet that sees only the SAR bands and learns water versus "
        "non-water from the labels (cross-entropy with inverse-frequency weights plus an edge loss "
        "that stresses water boundaries where the SAR changes sharply). The optical raster is optional: "
        "when given, it is read only to build the shared training grid and patches. The scene is split into tiles for "
        "training, validation and test before patches are cut, so no patch of one split overlaps "
        "another. The run folder receives best.safetensors (the model of the best validation mIoU, "
        "with its preprocessing and band mapping), the per-epoch history, plots and report.html."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_training_data()
        self.add_data_settings()
        self.add_optimisation()
        self.add_number("EDGE_WEIGHT", "Weight of the edge-aware loss", 0.3, 0.0, 100.0, integer=False)
        self.add_number(
            "EDGE_BETA", "Emphasis of SAR edges in the edge loss (beta)", 0.5, 0.0, 100.0, integer=False
        )
        self.add_training_outputs()

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        return (ok, message) if not ok else verdict(self.check_training(parameters, context))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.train.stages import train_teacher

        threads = self.set_threads(parameters, context, feedback)
        device = self.log_device(feedback, self.device_value(parameters, context))
        inputs = self.training_inputs(parameters, context, feedback)
        loss = self.loss_config(parameters, context)
        loss.teacher_edge_weight = self.parameterAsDouble(parameters, "EDGE_WEIGHT", context)
        loss.teacher_edge_beta = self.parameterAsDouble(parameters, "EDGE_BETA", context)
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        with self.stage(feedback, "Teacher training") as progress:
            result = train_teacher(
                inputs,
                folder,
                self.model_config(parameters, context),
                self.train_config(parameters, context, device, threads),
                loss,
                progress=progress,
                **self.run_flags(parameters, context),
            )
        return self.training_results(result, folder, feedback)
