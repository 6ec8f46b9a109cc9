"""Parameters, checks and outputs shared by the training algorithms.

Training data are an optical + SAR pair with labels (a label raster, or polygons with a class
field), or a patch set exported by ``sgcad:exportpatches``. Optimisation settings map onto
the engine's ``TrainConfig``; advanced settings are flagged advanced so the dialog stays
short. Every run writes into its own folder (model, logs, plots, HTML report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterString,
)

from . import _checks
from ._common import EngineAlgorithm

#: FUSION choices of a new student (``StudentConfig.fusion``), in the order of the enum.
FUSIONS = (
    ("lightmcam", "LightMCAM: optical attends to pooled SAR at the deepest stage (default)"),
    ("claire", "CLAIRE: optical and SAR attend to each other at stages 1-3, gated mix"),
    ("concat", "Concatenation, no attention"),
)
#: LOSS choices (``LossConfig.kind``).
LOSSES = (
    ("sgcad", "Weighted CE + Dice + Lovász (teacher: CE + edge BCE)"),
    ("rift", "RIFT: class-weighted focal + Tversky (teacher: + edge BCE)"),
)

METRICS = {
    "OA": ("oa", "Overall accuracy"),
    "KAPPA": ("kappa", "Cohen's Kappa"),
    "MIOU": ("miou", "Mean IoU"),
    "WATER_IOU": ("water_iou", "Water IoU"),
}


class TrainingAlgorithm(EngineAlgorithm):
    """Base of ``trainteacher``, ``trainstudent``, ``distill`` and ``finetune``."""

    GROUP = "training"
    DEFAULT_EPOCHS = 150
    MODEL_KIND = "student"  # which configuration MODEL_CONFIG overrides
    NEW_NETWORK = True  # False: the algorithm continues training an existing model

    # ------------------------------------------------------------------ parameters
    def add_training_data(self) -> None:
        self.add_raster("OPTICAL", "Optical raster", optional=True)
        self.add_bands("OPTICAL_BANDS", "OPTICAL",
                       "Optical bands (default: red, green, blue by band names, else 1, 2, 3)")
        self.add_raster("SAR", "SAR raster", optional=True)
        self.add_bands("SAR_BANDS", "SAR", "SAR bands (default: VV or HH by band names, else 1)")
        self.add_raster("LABELS", "Label raster (class ids, 255 = unlabelled)", optional=True)
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "LABEL_POLYGONS",
                self.tr("…or label polygons"),
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "CLASS_FIELD",
                self.tr("Class field of the polygons (ids or names)"),
                "class",  # the engine's default (engine.raster.labels.DEFAULT_CLASS_FIELD), as fine-tuning's
                "LABEL_POLYGONS",
                optional=True,
            )
        )
        self.add_advanced(
            QgsProcessingParameterFile(
                "PATCH_SET",
                self.tr("…or an exported patch set (folder with manifest.json)"),
                QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )

    def add_data_settings(self) -> None:
        self.add_number("TILE_SIZE", "Split tile size (pixels)", 4096, 16, 1 << 20)
        self.add_number("PATCH_SIZE", "Patch size (pixels)", 256, 16, 8192)
        self.add_number("RESOLUTION", "Grid pixel size for label polygons (0 = the SAR's)", 0.0, 0.0, integer=False)
        self.add_flag("LEE", "Lee speckle filter", True)
        self.add_number("LEE_WINDOW", "Lee filter window (pixels)", 7, 3, 51)
        self.add_units()

    def add_optimisation(self, lr: float = 1e-3) -> None:
        self.add_number("EPOCHS", "Epochs", self.DEFAULT_EPOCHS, 1, 100000, advanced=False)
        self.add_number("BATCH_SIZE", "Patches per batch", 16, 1, 4096)
        self.add_number("LR", "Learning rate (AdamW)", lr, 0.0, 10.0, integer=False)
        self.add_number("WEIGHT_DECAY", "Weight decay (AdamW)", 1e-4, 0.0, 10.0, integer=False)
        self.add_number("PATIENCE", "Early-stopping patience in epochs (0 = off)", 20, 0, 100000)
        self.add_number("MAX_BATCHES", "Batches per epoch (0 = the whole split)", 0, 0, 1 << 30)
        self.add_number("SEED", "Random seed", 42, 0, 2**31 - 1)
        self.add_flag("AUGMENT", "Augment training patches (flips, rotations)", True)
        self.add_flag("CLASS_WEIGHTS", "Inverse-frequency class weights", True)
        self.add_advanced(QgsProcessingParameterEnum(
            "LOSS", self.tr("Loss"), options=[label for _, label in LOSSES], defaultValue=0))
        self.add_number("FOCAL_GAMMA", "RIFT focal exponent gamma", 2.0, 0.0, 10.0, integer=False)
        self.add_number("TVERSKY_ALPHA", "RIFT Tversky weight of false positives (alpha)", 0.3, 0.0, 10.0,
                        integer=False)
        self.add_number("TVERSKY_BETA", "RIFT Tversky weight of false negatives (beta)", 0.7, 0.0, 10.0, integer=False)
        if self.NEW_NETWORK and self.MODEL_KIND == "student":
            self.add_advanced(QgsProcessingParameterEnum(
                "FUSION", self.tr("Fusion of optical and SAR features"), options=[label for _, label in FUSIONS],
                defaultValue=0))
        if self.NEW_NETWORK:
            example = '{"widths": [16, 32, 64, 128]}'
            label = f"{self.MODEL_KIND.capitalize()} network settings (JSON, e.g. {example})"
            self.add_advanced(QgsProcessingParameterString("MODEL_CONFIG", self.tr(label), optional=True))
            self.add_advanced(
                QgsProcessingParameterFile(
                    "INIT_MODEL",
                    self.tr(f"Continue from this {self.MODEL_KIND} model (its network and weights; optional)"),
                    QgsProcessingParameterFile.File,
                    fileFilter="SGCAD model (*.safetensors)",
                    optional=True,
                )
            )
        self.add_device_parameter()
        self.add_threads_and_overwrite()
        self.add_flag("RESUME", "Resume the run already in the output folder", False)

    def add_training_outputs(self) -> None:
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Run folder")))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_MODEL", self.tr("Trained model (.safetensors)")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Training report")))
        self.addOutput(QgsProcessingOutputFile("HISTORY", self.tr("Per-epoch history (JSON; history.csv beside it)")))
        for key, (_, label) in METRICS.items():
            description = f"{label} (best model; test split, else validation)"
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(description)))
        self.addOutput(QgsProcessingOutputNumber("BEST_EPOCH", self.tr("Best epoch")))

    # ------------------------------------------------------------------ checks
    def check_training(self, parameters, context, schema=None) -> List[Optional[str]]:
        """Messages for data, bands, labels, network settings and the run folder."""
        from sgcad_qgis.engine.config import ClassSchema

        schema = schema or ClassSchema()
        given = {
            n: parameters.get(n) not in (None, "") for n in ("OPTICAL", "SAR", "LABELS", "LABEL_POLYGONS", "PATCH_SET")
        }
        if given["PATCH_SET"]:
            folder = self.parameterAsFile(parameters, "PATCH_SET", context)
            if not (Path(folder) / "manifest.json").is_file():
                return [f"{folder} is not a patch set: it holds no manifest.json (see Export patches)."]
            messages: List[Optional[str]] = []
        else:
            optical_needed = self.MODEL_KIND != "teacher"  # the water teacher reads SAR only
            if not ((given["OPTICAL"] or not optical_needed) and given["SAR"]) or \
                    given["LABELS"] == given["LABEL_POLYGONS"]:
                what = "an optical raster, a SAR raster" if optical_needed else "a SAR raster (optical: optional)"
                return [f"Give {what} and either a label raster or label polygons with a class field (or an "
                        "exported patch set)."]
            optical = self.parameterAsRasterLayer(parameters, "OPTICAL", context) if given["OPTICAL"] else None
            sar = self.parameterAsRasterLayer(parameters, "SAR", context)
            messages = [_checks.overlap(optical, sar, "optical raster", "SAR raster")] if optical else []
            if given["LABELS"]:
                labels = self.parameterAsRasterLayer(parameters, "LABELS", context)
                messages += [
                    _checks.overlap(sar, labels, "SAR raster", "label raster"),
                    _checks.band_choice(labels, [], 1, "label raster"),
                ]
            else:
                source = self.parameterAsSource(parameters, "LABEL_POLYGONS", context)
                field = self.parameterAsString(parameters, "CLASS_FIELD", context)
                if not field:
                    return ["Choose the class field of the label polygons (CLASS_FIELD)."]
                messages += [
                    _checks.overlap(sar, source, "SAR raster", "label polygons"),
                    _checks.label_field(source, field, schema, "label polygons"),
                ]
            for name, label in (("OPTICAL", "optical raster"), ("SAR", "SAR raster")):
                if not given[name]:
                    continue
                layer = self.parameterAsRasterLayer(parameters, name, context)
                messages.append(
                    _checks.band_choice(layer, self.bands(parameters, f"{name}_BANDS", context), None, label)
                )
        messages.append(self._config_problem(parameters, context))
        messages.append(self._run_folder_problem(parameters, context))
        return messages

    def _config_problem(self, parameters, context) -> Optional[str]:
        try:
            self.model_config(parameters, context)
        except ValueError as exc:
            return f"Network settings (MODEL_CONFIG): {exc}"
        return None

    def _run_folder_problem(self, parameters, context) -> Optional[str]:
        folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        if not folder or folder.startswith("TEMPORARY") or not (Path(folder) / "best.safetensors").exists():
            return None
        if self.overwrite(parameters, context) or self.parameterAsBoolean(parameters, "RESUME", context):
            return None
        return (
            f"The run folder {folder} already holds a trained model; tick 'Resume' (RESUME=true) to "
            "continue that run or 'Overwrite' (OVERWRITE=true) to replace it, or choose another folder."
        )

    # ------------------------------------------------------------------ values
    def model_config(self, parameters, context):
        """The network configuration: defaults with the MODEL_CONFIG JSON applied."""
        from sgcad_qgis.engine.config import StudentConfig, TeacherConfig, from_dict, to_dict

        cls = TeacherConfig if self.MODEL_KIND == "teacher" else StudentConfig
        text = self.parameterAsString(parameters, "MODEL_CONFIG", context) if "MODEL_CONFIG" in parameters else ""
        base = to_dict(cls())
        if cls is StudentConfig and parameters.get("FUSION") not in (None, ""):  # the JSON below still wins
            base["fusion"] = FUSIONS[self.parameterAsEnum(parameters, "FUSION", context)][0]
        overrides = {}
        if text and text.strip():
            try:
                overrides = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
        return from_dict(cls, {**base, **overrides})

    def training_inputs(self, parameters, context, feedback):
        """The engine's ``TrainingInputs`` from the data parameters (layers exported if needed)."""
        from sgcad_qgis.engine.config import OpticalPreprocessConfig, PatchConfig, SarPreprocessConfig
        from sgcad_qgis.engine.inputs.bands import training_bands
        from sgcad_qgis.engine.train.data import TrainingInputs

        patch = self.parameterAsInt(parameters, "PATCH_SIZE", context)
        given = self.bands(parameters, "OPTICAL_BANDS", context), self.bands(parameters, "SAR_BANDS", context)
        inputs = TrainingInputs(
            bands=training_bands(None, None, *given),
            patch=PatchConfig(
                tile_size=self.parameterAsInt(parameters, "TILE_SIZE", context),
                patch_size=patch,
                seed=self.parameterAsInt(parameters, "SEED", context),
                rare_window=patch,
                rare_stride=max(patch // 2, 1),
            ),
            sar_preprocess=SarPreprocessConfig(
                lee_filter=self.parameterAsBoolean(parameters, "LEE", context),
                lee_window=self.parameterAsInt(parameters, "LEE_WINDOW", context),
            ),
            optical_preprocess=OpticalPreprocessConfig(),
            resolution=self.parameterAsDouble(parameters, "RESOLUTION", context) or None,
            **self.units_values(parameters, context),
        )
        if parameters.get("PATCH_SET") not in (None, ""):
            inputs.patch_set = self.parameterAsFile(parameters, "PATCH_SET", context)
            return inputs
        inputs.optical = (self.raster_path(parameters, "OPTICAL", context, feedback, "optical raster")
                          if parameters.get("OPTICAL") not in (None, "") else None)  # the teacher's is optional
        inputs.sar = self.raster_path(parameters, "SAR", context, feedback, "SAR raster")
        inputs.bands = training_bands(inputs.optical, inputs.sar, *given)  # by role where the rasters say
        if parameters.get("LABELS") not in (None, ""):
            inputs.labels = self.raster_path(parameters, "LABELS", context, feedback, "label raster")
        else:
            inputs.labels, inputs.layer = self.vector_path(parameters, "LABEL_POLYGONS", context, feedback)
            inputs.class_field = self.parameterAsString(parameters, "CLASS_FIELD", context)
        return inputs

    def train_config(self, parameters, context, device: str, threads: int, lr_factor: float = 0.1):
        from sgcad_qgis.engine.config import TrainConfig

        value = lambda name: self.parameterAsDouble(parameters, name, context)  # noqa: E731
        count = lambda name: self.parameterAsInt(parameters, name, context)  # noqa: E731
        return TrainConfig(
            epochs=count("EPOCHS"),
            batch_size=count("BATCH_SIZE"),
            lr=value("LR"),
            weight_decay=value("WEIGHT_DECAY"),
            early_stopping_patience=count("PATIENCE"),
            seed=count("SEED"),
            device=device,
            num_workers=0,
            threads=threads,
            augment=self.parameterAsBoolean(parameters, "AUGMENT", context),
            max_batches_per_epoch=count("MAX_BATCHES"),
            stage2_lr_factor=lr_factor,
        )

    def loss_config(self, parameters, context):
        from sgcad_qgis.engine.config import LossConfig
        from sgcad_qgis.engine.losses.rift import check_loss_config

        cfg = LossConfig(inverse_frequency_weights=self.parameterAsBoolean(parameters, "CLASS_WEIGHTS", context))
        if parameters.get("LOSS") not in (None, ""):
            cfg.kind = LOSSES[self.parameterAsEnum(parameters, "LOSS", context)][0]
        for name, field in (("FOCAL_GAMMA", "focal_gamma"), ("TVERSKY_ALPHA", "tversky_alpha"),
                            ("TVERSKY_BETA", "tversky_beta")):
            if parameters.get(name) not in (None, ""):
                setattr(cfg, field, self.parameterAsDouble(parameters, name, context))
        check_loss_config(cfg)
        return cfg

    def run_flags(self, parameters, context) -> Dict[str, Any]:
        flags: Dict[str, Any] = {
            "resume": self.parameterAsBoolean(parameters, "RESUME", context),
            "overwrite": self.overwrite(parameters, context),
        }
        if self.NEW_NETWORK and parameters.get("INIT_MODEL") not in (None, ""):
            flags["init_from"] = self.parameterAsFile(parameters, "INIT_MODEL", context)
        return flags

    # ------------------------------------------------------------------ results
    def training_results(self, result: Dict[str, Any], folder: str, feedback) -> Dict[str, Any]:
        """Processing outputs of a training run: files and the test (else validation) metrics."""
        metrics = result.get("test") or result.get("validation") or {}
        split = "test" if result.get("test") else "validation"
        outputs: Dict[str, Any] = {
            "OUTPUT_FOLDER": folder,
            "OUTPUT_MODEL": result["model"],
            "REPORT": result.get("report", ""),
            "HISTORY": _history_json(result.get("history", "")),
            "BEST_EPOCH": result.get("best_epoch"),
        }
        for key, (engine_key, _) in METRICS.items():
            outputs[key] = metrics.get(engine_key)
        shown = " · ".join(f"{label} {_pct(metrics.get(k))}" for k, label in METRICS.values())
        feedback.pushInfo(
            f"Best epoch {result.get('best_epoch')} of {result.get('epochs_run')}; {split} split: {shown}"
        )
        feedback.pushInfo(f"Model: {result['model']}")
        return outputs


def _history_json(csv_path: str) -> str:
    """The run's history.json (nested values intact), written beside history.csv."""
    path = Path(csv_path).with_suffix(".json") if csv_path else None
    return str(path) if path is not None and path.is_file() else csv_path


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"
