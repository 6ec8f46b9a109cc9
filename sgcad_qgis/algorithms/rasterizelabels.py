"""sgcad:rasterizelabels — label polygons with a class field onto a raster's grid."""

from __future__ import annotations

import json

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterRasterDestination,
)

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, verdict


class RasterizeLabels(EngineAlgorithm):
    ALG_ID = "rasterizelabels"
    DISPLAY = "Rasterise label polygons"
    GROUP = "preparation"
    HELP = (
        "Burns polygons onto the grid of a reference raster (e.g. the SAR or an aligned raster) as "
        "class ids: the class field may hold ids or names of the classes (the six default classes, "
        "or those of a model file). Pixels whose centre no polygon covers are 255 (unlabelled); "
        "where polygons of different classes overlap the pixels are 255 too, so conflicting labels "
        "never train a model. Invalid geometries are repaired where possible; what was skipped is "
        "reported in the log. Written window by window as a paletted GeoTIFF."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource("INPUT", self.tr("Label polygons"), [QgsProcessing.TypeVectorPolygon])
        )
        self.addParameter(
            QgsProcessingParameterField("CLASS_FIELD", self.tr("Class field (ids or names)"), None, "INPUT")
        )
        self.add_raster("REFERENCE", "Raster whose grid the labels take")
        self.add_model("MODEL", "Model whose classes to use (default: the six default classes)", optional=True)
        self.add_number("BLOCK", "Window size (pixels)", 2048, 64, 65536)
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", self.tr("Label raster")))
        self.addOutput(QgsProcessingOutputNumber("LABELLED_PIXELS", self.tr("Labelled pixels")))
        self.addOutput(QgsProcessingOutputNumber("CONFLICT_PIXELS", self.tr("Pixels left unlabelled by conflicts")))
        self.addOutput(QgsProcessingOutputString("REPORT", self.tr("Rasterisation report (JSON)")))

    def _schema(self, parameters, context):
        from sgcad_qgis.engine.config import ClassSchema
        from sgcad_qgis.engine.models.checkpoint import read_metadata

        model = self.parameterAsFile(parameters, "MODEL", context)
        return read_metadata(model).schema if model else ClassSchema()

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        meta, problem = _checks.model_file(self.parameterAsFile(parameters, "MODEL", context), "student")
        problem = problem or _checks.vector_layer_choice(parameters.get("INPUT"))
        if problem:
            return False, problem
        schema = meta.schema if meta is not None else self._schema(parameters, context)
        source = self.parameterAsSource(parameters, "INPUT", context)
        reference = self.parameterAsRasterLayer(parameters, "REFERENCE", context)
        field = self.parameterAsString(parameters, "CLASS_FIELD", context)
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        inputs = {
            "label polygons": parameters.get("INPUT") if isinstance(parameters.get("INPUT"), str) else None,
            "reference raster": reference,
            "model": self.parameterAsFile(parameters, "MODEL", context),
        }
        return verdict(
            [
                _checks.outputs_not_inputs([output], inputs),
                _checks.overlap(reference, source, "reference raster", "label polygons"),
                _checks.label_field(source, field, schema, "label polygons"),
                _checks.output_free(
                    self.parameterAsOutputLayer(parameters, "OUTPUT", context),
                    self.overwrite(parameters, context),
                    "label raster",
                ),
            ]
        )

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.raster.grid import grid_of
        from sgcad_qgis.engine.raster.labels import rasterize_labels_to_file

        schema = self._schema(parameters, context)
        vector, layer_name = self.vector_path(parameters, "INPUT", context, feedback)
        reference = self.raster_path(parameters, "REFERENCE", context, feedback, "reference raster")
        out = self.output_path(parameters, "OUTPUT", context)
        with self.stage(feedback, "Rasterising the labels") as progress:
            report = rasterize_labels_to_file(
                vector,
                self.parameterAsString(parameters, "CLASS_FIELD", context),
                grid_of(reference),
                schema,
                out,
                layer=layer_name,
                block=self.parameterAsInt(parameters, "BLOCK", context),
                overwrite=self.overwrite(parameters, context),
                progress=progress,
            )
        feedback.pushInfo("Report: " + json.dumps(report, default=str))
        layers.publish_output(context, out, "Labels (class ids)", layers.KIND_CLASSES, "OUTPUT", schema)
        return {
            "OUTPUT": out,
            "LABELLED_PIXELS": report["labelled_pixels"],
            "CONFLICT_PIXELS": report["conflict_pixels"],
            "REPORT": json.dumps(report, default=str),
        }
