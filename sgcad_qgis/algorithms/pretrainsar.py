"""sgcad:pretrainsar — self-supervised SAR encoder pretraining (DI3CL) on unlabelled SAR layers."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
)

from .. import layers
from ._common import EngineAlgorithm

TARGETS = ("student", "teacher")


class PretrainSar(EngineAlgorithm):
    ALG_ID = "pretrainsar"
    DISPLAY = "Pretrain a SAR encoder (self-supervised)"
    GROUP = "training"
    HELP = (
        "Learns a SAR encoder from your own SAR layers without any label (DI3CL): pairs of augmented "
        "views of the same place are matched against views of other places, with a momentum encoder "
        "and a queue of negatives; regions of the two views' overlap are matched too (Dynamic "
        "Instance), and shallow features learn the contours of the filtered SAR (Contour "
        "Consistency). Layers of any size are read by windows. The encoder takes the shape of the "
        "student's SAR branch or of the teacher (give a model to follow its architecture and input "
        "recipe); pass the written sar_encoder.safetensors to Fine-tune from polygons. A cancelled "
        "run continues from its last saved state when started again on the same folder."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        from sgcad_qgis.engine.config import PretrainConfig

        d = PretrainConfig()
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "SAR_LAYERS", self.tr("SAR layers (no labels needed)"), QgsProcessing.TypeRaster))
        self.add_model("LIKE", "Model whose architecture and input recipe to follow (student or teacher)",
                       optional=True)
        target = QgsProcessingParameterEnum("TARGET", self.tr("Encoder shape (without a model)"),
                                            options=list(TARGETS), defaultValue=d.target)
        target.setUsesStaticStrings(True)
        self.add_advanced(target)
        self.add_advanced(QgsProcessingParameterString(
            "SAR_BANDS", self.tr("SAR bands, comma-separated (default: the model's, or band 1)"), optional=True))
        self.add_number("STEPS", "Steps", d.steps, 1, 1000000, advanced=False)
        self.add_number("BATCH_SIZE", "View pairs per step", d.batch_size, 2, 1024)
        self.add_number("VIEW_SIZE", "View size (pixels, a multiple of 32)", d.view_size, 32, 1024)
        self.add_number("LR", "Learning rate (AdamW)", d.lr, 0.0, 1.0, integer=False)
        self.add_flag("DYNAMIC_INSTANCE", "Dynamic Instance term", True)
        self.add_flag("CONTOUR_CONSISTENCY", "Contour Consistency term", True)
        self.add_flag("RESUME", "Continue an earlier run in the folder", True)
        self.add_number("SEED", "Random seed", d.seed, 0, 2**31 - 1)
        self.add_units(optical=False)
        self.add_device_parameter()
        self.add_threads_and_overwrite()
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Run folder")))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_ENCODER", self.tr("Pretrained SAR encoder")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Pretraining report")))
        self.addOutput(QgsProcessingOutputFile("HISTORY", self.tr("Loss terms per logged step (JSON)")))
        self.addOutput(QgsProcessingOutputNumber("FIRST_LOSS", self.tr("Loss of the first logged steps")))
        self.addOutput(QgsProcessingOutputNumber("LAST_LOSS", self.tr("Loss of the last logged steps")))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", self.tr("Run time (s)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.config import PretrainConfig
        from sgcad_qgis.engine.inputs.contract import InputOverrides
        from sgcad_qgis.engine.models.checkpoint import read_metadata
        from sgcad_qgis.engine.pretrain.trainer import pretrain_sar

        self.set_threads(parameters, context, feedback)
        device = self.log_device(feedback, self.device_value(parameters, context))
        rasters = self.parameterAsLayerList(parameters, "SAR_LAYERS", context)
        if not rasters:
            raise QgsProcessingException("Give at least one SAR layer to pretrain on.")
        paths = [layers.raster_source(layer, f"SAR layer {layer.name()}", feedback) for layer in rasters]
        like = self.parameterAsFile(parameters, "LIKE", context) or None
        target = read_metadata(like).kind if like else (
            self.parameterAsEnumString(parameters, "TARGET", context) or PretrainConfig.target)
        flag = lambda name: self.parameterAsBoolean(parameters, name, context)  # noqa: E731
        cfg = PretrainConfig(
            target=target, steps=self.parameterAsInt(parameters, "STEPS", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            view_size=self.parameterAsInt(parameters, "VIEW_SIZE", context),
            lr=self.parameterAsDouble(parameters, "LR", context),
            di_weight=PretrainConfig.di_weight if flag("DYNAMIC_INSTANCE") else 0.0,
            cc_weight=PretrainConfig.cc_weight if flag("CONTOUR_CONSISTENCY") else 0.0,
            seed=self.parameterAsInt(parameters, "SEED", context), device=device,
        )
        units = self.units_values(parameters, context)
        overrides = InputOverrides((), (), "auto", units.get("sar_units", "auto"), units.get("sar_calibration", 0.0),
                                   sar_backscatter=units.get("sar_backscatter", "auto"))
        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        with self.stage(feedback, "Pretraining the SAR encoder") as progress:
            result = pretrain_sar(paths, folder, cfg, like=like, sar_bands=self._bands(parameters, context),
                                  overrides=overrides, progress=progress, resume=flag("RESUME"),
                                  overwrite=self.overwrite(parameters, context))
        return {
            "OUTPUT_FOLDER": folder,
            "OUTPUT_ENCODER": result["encoder"],
            "REPORT": result["report"],
            "HISTORY": f"{folder}/history.json",
            "FIRST_LOSS": (result["first"] or {}).get("loss"),
            "LAST_LOSS": (result["last"] or {}).get("loss"),
            "SECONDS": result["seconds"],
        }

    def _bands(self, parameters, context):
        text = self.parameterAsString(parameters, "SAR_BANDS", context) or ""
        try:
            return tuple(int(b) for b in text.replace(";", ",").split(",") if b.strip())
        except ValueError:
            raise QgsProcessingException(f"SAR bands: expected band numbers such as 1,2, got {text!r}") from None
