"""sgcad:evaluate — accuracy of a class map against a label raster or labelled polygons."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from . import _checks
from ._common import EngineAlgorithm, verdict

NUMBERS = {
    "OA": ("oa", "Overall accuracy"),
    "KAPPA": ("kappa", "Cohen's Kappa"),
    "MIOU": ("miou", "Mean IoU"),
    "WATER_IOU": ("water_iou", "Water IoU"),
}


class Evaluate(EngineAlgorithm):
    ALG_ID = "evaluate"
    DISPLAY = "Evaluate a class map"
    GROUP = "evaluation"
    HELP = (
        "Compares a class map (e.g. the output of Segment) with reference labels: a label raster "
        "(255 = unlabelled) or polygons with a class field holding class ids or names. Reports "
        "overall accuracy, Cohen's Kappa, per-class IoU, mean IoU, water IoU, user's and "
        "producer's accuracy and F1 as an HTML report with the confusion matrix, as JSON, and as "
        "numbers that Modeler models can use. The class names come from the model file when one "
        "is given, else the six default classes. Both inputs are read window by window."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", self.tr("Class map to evaluate")))
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                "REFERENCE_RASTER", self.tr("Reference label raster"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "REFERENCE_VECTOR",
                self.tr("…or reference polygons"),
                [QgsProcessing.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "CLASS_FIELD",
                self.tr("Class field of the polygons (ids or names)"),
                "class",  # the engine's default (engine.raster.labels.DEFAULT_CLASS_FIELD), as fine-tuning's
                "REFERENCE_VECTOR",
                optional=True,
            )
        )
        self.add_model(
            "MODEL", "Model whose classes the map uses (default: the six default classes)", optional=True
        )
        self.add_number("BLOCK", "Window size (pixels)", 1024, 16, 65536)
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_HTML", self.tr("Accuracy report"), self.tr("HTML files (*.html)")
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_JSON",
                self.tr("Metrics as JSON"),
                self.tr("JSON files (*.json)"),
                optional=True,
                createByDefault=False,
            )
        )
        for key, (_, label) in NUMBERS.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))
        self.addOutput(QgsProcessingOutputString("PER_CLASS_IOU", self.tr("Per-class IoU (JSON)")))

    def _schema(self, parameters, context):
        from sgcad_qgis.engine.config import ClassSchema
        from sgcad_qgis.engine.models.checkpoint import read_metadata

        model = self.parameterAsFile(parameters, "MODEL", context)
        return read_metadata(model).schema if model else ClassSchema()

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        prediction = self.parameterAsRasterLayer(parameters, "PREDICTION", context)
        has_raster = parameters.get("REFERENCE_RASTER") not in (None, "")
        has_vector = parameters.get("REFERENCE_VECTOR") not in (None, "")
        if has_raster == has_vector:
            return False, "Give exactly one reference: a label raster or polygons with a class field."
        meta, problem = _checks.model_file(self.parameterAsFile(parameters, "MODEL", context), "student")
        problem = problem or (_checks.vector_layer_choice(parameters.get("REFERENCE_VECTOR")) if has_vector else None)
        if problem:
            return False, problem
        schema = meta.schema if meta is not None else self._schema(parameters, context)
        targets = {n: self.parameterAsFileOutput(parameters, n, context) for n in ("OUTPUT_HTML", "OUTPUT_JSON")}
        reference_value = parameters.get("REFERENCE_VECTOR") if has_vector else None
        inputs = {
            "class map": prediction,
            "reference": self.parameterAsRasterLayer(parameters, "REFERENCE_RASTER", context)
            if has_raster
            else (reference_value if isinstance(reference_value, str) else None),
            "model": self.parameterAsFile(parameters, "MODEL", context),
        }
        messages = [
            _checks.outputs_not_inputs(targets.values(), inputs),
            _checks.distinct_outputs(
                {"accuracy report": targets["OUTPUT_HTML"], "metrics JSON": targets["OUTPUT_JSON"]}
            ),
            _checks.band_choice(prediction, [], 1, "class map"),
        ]
        if has_raster:
            reference = self.parameterAsRasterLayer(parameters, "REFERENCE_RASTER", context)
            messages.append(_checks.overlap(prediction, reference, "class map", "reference raster"))
        else:
            source = self.parameterAsSource(parameters, "REFERENCE_VECTOR", context)
            field = self.parameterAsString(parameters, "CLASS_FIELD", context)
            if not field:
                return False, "Choose the class field of the reference polygons (CLASS_FIELD)."
            messages += [
                _checks.overlap(prediction, source, "class map", "reference polygons"),
                _checks.label_field(source, field, schema, "reference polygons"),
            ]
        overwrite = self.overwrite(parameters, context)
        for name in ("OUTPUT_HTML", "OUTPUT_JSON"):
            target = self.parameterAsFileOutput(parameters, name, context)
            messages.append(_checks.output_free(target, overwrite, "output"))
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.files import atomic_write_bytes
        from sgcad_qgis.engine.train.evaluate import evaluate_rasters
        from sgcad_qgis.engine.train.report import metrics_table, plot_confusion, write_html_report

        schema = self._schema(parameters, context)
        prediction = self.raster_path(parameters, "PREDICTION", context, feedback, "class map")
        class_field, layer_name = None, None
        if parameters.get("REFERENCE_RASTER") not in (None, ""):
            reference = self.raster_path(
                parameters, "REFERENCE_RASTER", context, feedback, "reference raster"
            )
        else:
            reference, layer_name = self.vector_path(parameters, "REFERENCE_VECTOR", context, feedback)
            class_field = self.parameterAsString(parameters, "CLASS_FIELD", context)
        with self.stage(feedback, "Evaluation") as progress:
            result = evaluate_rasters(
                prediction,
                reference,
                schema,
                class_field,
                layer_name,
                self.parameterAsInt(parameters, "BLOCK", context),
                progress,
            )
        overwrite = self.overwrite(parameters, context)
        html_path = self.parameterAsFileOutput(parameters, "OUTPUT_HTML", context)
        json_path = self.parameterAsFileOutput(parameters, "OUTPUT_JSON", context)
        outputs = {"OUTPUT_HTML": html_path}
        with tempfile.TemporaryDirectory() as tmp:
            names = result["class_names"]  # a water map is scored as not water / water, not in the schema
            figure = plot_confusion(
                result["matrix"],
                names,
                Path(tmp) / "confusion.png",
                "class map (columns) vs reference (rows)",
            )
            facts = {
                "class map": result["prediction"],
                "reference": result["reference"],
                "labelled pixels evaluated": result["pixels"],
                "labelled pixels without prediction": result["unpredicted_pixels"],
                "scored as": result["scored_as"],
                **({"notes": "; ".join(result["notes"])} if result["notes"] else {}),
            }
            sections = [{"title": "Accuracy", "html": metrics_table(result, names)}]
            Path(html_path).parent.mkdir(parents=True, exist_ok=True)
            write_html_report(
                Path(html_path),
                "SGCAD accuracy assessment",
                sections,
                {"Confusion matrix (row-normalised)": figure},
                facts,
            )
        if json_path:
            atomic_write_bytes(json_path, json.dumps(result, indent=2).encode("utf-8"), overwrite=overwrite)
            outputs["OUTPUT_JSON"] = json_path
        feedback.pushInfo(
            "OA {} · Kappa {} · mIoU {} · water IoU {}".format(
                *(_fmt(result[key]) for key, _ in NUMBERS.values())
            )
        )
        for key, (engine_key, _) in NUMBERS.items():
            outputs[key] = result[engine_key]
        outputs["PER_CLASS_IOU"] = json.dumps(dict(zip(result["class_names"], result["iou"])))
        return outputs


def _fmt(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"
