"""The Graphical Modeler model of the whole pipeline, built from code and shipped as ``.model3``.

align -> train teacher -> train student -> distil -> segment -> evaluate.

Every step reads the same aligned optical and SAR rasters and the same units choice (one
model input, "auto" by default), and each resolves them through the engine's input contract,
so the networks see the same values in every step (speckle filter, dB and scaling are part of
each model's own chain, never applied upstream). Building the model in code keeps it in step
with the algorithms' parameter names; ``resources/modeler/sgcad_pipeline.model3`` is this model saved by
:func:`save_pipeline_model` (a test checks that the two agree and runs the file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from qgis.core import (
    QgsApplication,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QPointF

from ._common import OPTICAL_UNIT_CHOICES, SAR_BACKSCATTER_CHOICES, SAR_UNIT_CHOICES

# not resolve(): in the assembled plugin folder, resources/ sits beside this package
MODEL_FILE = Path(__file__).parent.parent / "resources" / "modeler" / "sgcad_pipeline.model3"

Source = QgsProcessingModelChildParameterSource


def _param(name: str) -> Source:
    return Source.fromModelParameter(name)


def _child(child_id: str, output: str) -> Source:
    return Source.fromChildOutput(child_id, output)


def _static(value) -> Source:
    return Source.fromStaticValue(value)


def _add_inputs(model: QgsProcessingModelAlgorithm) -> None:
    definitions = [
        QgsProcessingParameterRasterLayer("optical", "Optical raster"),
        QgsProcessingParameterRasterLayer("sar", "SAR raster (linear, dB, amplitude: detected)"),
        QgsProcessingParameterRasterLayer("labels", "Label raster (class ids, 255 = unlabelled)"),
        QgsProcessingParameterNumber("epochs", "Epochs of each training stage", defaultValue=30, minValue=1),
        QgsProcessingParameterNumber("warmup_epochs", "Stage-2 warm-up epochs", defaultValue=5, minValue=0),
        QgsProcessingParameterNumber("patch_size", "Patch size (pixels)", defaultValue=256, minValue=16),
        QgsProcessingParameterNumber("tile_size", "Split tile size (pixels)", defaultValue=4096, minValue=16),
        QgsProcessingParameterNumber("batch_size", "Patches per batch", defaultValue=16, minValue=1),
        QgsProcessingParameterNumber("max_batches", "Batches per epoch (0 = whole split)", defaultValue=0, minValue=0),
        QgsProcessingParameterNumber("threads", "CPU threads for torch (0 = all cores)", defaultValue=0, minValue=0),
        QgsProcessingParameterString("teacher_network", "Teacher network settings (JSON)", "", optional=True),
        QgsProcessingParameterString("student_network", "Student network settings (JSON)", "", optional=True),
    ]
    for name, label, choices in (
        ("optical_units", "Units of the optical raster", OPTICAL_UNIT_CHOICES),
        ("sar_units", "Units of the SAR raster", SAR_UNIT_CHOICES),
        ("sar_backscatter", "Backscatter of the SAR raster", SAR_BACKSCATTER_CHOICES),
    ):
        units = QgsProcessingParameterEnum(name, label, options=[k for k, _ in choices], defaultValue="auto")
        units.setUsesStaticStrings(True)
        definitions.append(units)
    for i, definition in enumerate(definitions):
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(120, 80 + 70 * i))
        model.addModelParameter(definition, component)


def _defaults(alg_id: str) -> Dict[str, Source]:
    """Static sources holding the defaults of every input parameter, as the Modeler itself sets."""
    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    if alg is None:
        raise ValueError(f"{alg_id} is not registered; load the SGCAD provider first")
    return {
        d.name(): _static(d.defaultValue())
        for d in alg.parameterDefinitions()
        if not d.isDestination() and d.defaultValue() is not None
    }


def _add(
    model: QgsProcessingModelAlgorithm,
    child_id: str,
    alg_id: str,
    description: str,
    sources: Dict[str, Source],
    outputs: Optional[Dict[str, str]] = None,
    row: int = 0,
) -> None:
    child = QgsProcessingModelChildAlgorithm(alg_id)
    child.setChildId(child_id)
    child.setDescription(description)
    child.setPosition(QPointF(460, 80 + 120 * row))
    for name, source in {**_defaults(alg_id), **sources}.items():
        child.addParameterSources(name, [source])
    model_outputs = {}
    for child_output, label in (outputs or {}).items():
        output = QgsProcessingModelOutput(label, label)
        output.setChildId(child_id)
        output.setChildOutputName(child_output)
        output.setPosition(QPointF(800, 80 + 120 * row))
        model_outputs[label] = output
    child.setModelOutputs(model_outputs)
    model.addChildAlgorithm(child)


def build_pipeline_model() -> QgsProcessingModelAlgorithm:
    """The whole SGCAD pipeline as a Modeler model (model inputs set sizes, epochs, networks)."""
    model = QgsProcessingModelAlgorithm("SGCAD pipeline", "SGCAD")
    model.setHelpContent(
        {
            "ALG_DESC": "Aligns an optical + SAR pair, trains the SAR water teacher and the student, "
            "distils the teacher into the student, segments the scene and evaluates the class map "
            "against the labels. Every step reads the same aligned rasters in the same units.",
        }
    )
    _add_inputs(model)
    units = {"OPTICAL_UNITS": _param("optical_units"), "SAR_UNITS": _param("sar_units"),
             "SAR_BACKSCATTER": _param("sar_backscatter")}
    training = {
        "OPTICAL": _child("align", "OUTPUT_OPTICAL"),
        "SAR": _child("align", "OUTPUT_SAR"),
        "LABELS": _param("labels"),
        "EPOCHS": _param("epochs"),
        "PATCH_SIZE": _param("patch_size"),
        "TILE_SIZE": _param("tile_size"),
        "BATCH_SIZE": _param("batch_size"),
        "MAX_BATCHES": _param("max_batches"),
        "THREADS": _param("threads"),
        **units,
    }
    _add(
        model,
        "align",
        "sgcad:alignpair",
        "Align optical and SAR",
        {"OPTICAL": _param("optical"), "SAR": _param("sar")},
        row=0,
    )
    _add(
        model,
        "teacher",
        "sgcad:trainteacher",
        "Train SAR water teacher",
        {**training, "MODEL_CONFIG": _param("teacher_network")},
        {"OUTPUT_FOLDER": "Teacher run"},
        row=1,
    )
    _add(
        model,
        "student",
        "sgcad:trainstudent",
        "Train student (stage 1)",
        {**training, "MODEL_CONFIG": _param("student_network")},
        {"OUTPUT_FOLDER": "Student run"},
        row=2,
    )
    _add(
        model,
        "distill",
        "sgcad:distill",
        "Distil teacher into student (stage 2)",
        {
            **training,
            "STUDENT": _child("student", "OUTPUT_MODEL"),
            "TEACHER": _child("teacher", "OUTPUT_MODEL"),
            "WARMUP_EPOCHS": _param("warmup_epochs"),
        },
        {"OUTPUT_FOLDER": "Distilled run"},
        row=3,
    )
    _add(
        model,
        "segment",
        "sgcad:segment",
        "Segment the scene",
        {
            "OPTICAL": _child("align", "OUTPUT_OPTICAL"),
            "SAR": _child("align", "OUTPUT_SAR"),
            "MODEL": _child("distill", "OUTPUT_MODEL"),
            "TEACHER": _child("teacher", "OUTPUT_MODEL"),
            "TILE_SIZE": _param("patch_size"),
            "OVERLAP": _static(16),
            "THREADS": _param("threads"),
            **units,
        },
        {"OUTPUT_FOLDER": "Land cover"},
        row=4,
    )
    _add(
        model,
        "evaluate",
        "sgcad:evaluate",
        "Evaluate the class map",
        {
            "PREDICTION": _child("segment", "CLASSES"),
            "REFERENCE_RASTER": _param("labels"),
            "MODEL": _child("distill", "OUTPUT_MODEL"),
        },
        {"OUTPUT_HTML": "Accuracy report"},
        row=5,
    )
    model.updateDestinationParameters()
    return model


def save_pipeline_model(path: Path = MODEL_FILE) -> Path:
    """Write the model as a ``.model3`` file (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.part.model3")
    if not build_pipeline_model().toFile(str(tmp)):
        raise OSError(f"could not write {tmp}")
    tmp.replace(path)
    return path
