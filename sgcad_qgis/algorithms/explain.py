"""sgcad:explain — a short text explaining a segmentation from its measured numbers."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingOutputFile,
    QgsProcessingOutputHtml,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from . import _checks
from ._common import EngineAlgorithm, verdict

FILES = ("classes.tif", "confidence.tif")


class Explain(EngineAlgorithm):
    ALG_ID = "explain"
    DISPLAY = "Explain a segmentation"
    GROUP = "evaluation"
    HELP = (
        "Writes a short text that explains a segmentation from quantities measured on its outputs (the "
        "folder 'Segment land cover' wrote: classes.tif, confidence.tif and, with a water expert, "
        "water_probability.tif and gates.tif): the share of each class, the mean confidence of each class, "
        "where the model is least sure (a compass sector of the area, and whether along class edges), the "
        "share of pixels answered from SAR alone (optical missing or masked as cloud), how much of the area "
        "the water expert is confident about and where it disagrees with the model, and, with reference "
        "labels, the accuracy and the most confused classes; it ends with what to do next, e.g. where to draw "
        "polygons for fine-tuning. The same outputs always give the same text; no language model is used. "
        "Explain the whole run, an area of interest, or one pixel window (a tile). The text and every number "
        "it used are written to explanation.json in the run folder and as a section of its report.html."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFile(
                "RUN_FOLDER", self.tr("Segmentation output folder (classes.tif, confidence.tif, …)"),
                QgsProcessingParameterFile.Folder,
            )
        )
        self.add_raster("REFERENCE_RASTER", "Reference label raster (optional)", optional=True)
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "REFERENCE_VECTOR", self.tr("…or reference polygons (optional)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                "CLASS_FIELD", self.tr("Class field of the polygons (ids or names)"), "class", "REFERENCE_VECTOR",
                optional=True,
            )
        )
        self.add_aoi()
        self.add_advanced(
            QgsProcessingParameterString(
                "WINDOW", self.tr("…or a pixel window of the run: column,row,width,height (e.g. a tile)"),
                optional=True,
            )
        )
        self.add_number("LOW_CONFIDENCE", "Confidence below which a pixel counts as uncertain", 0.6, 0.01, 0.99,
                        integer=False)
        self.add_flag("OVERWRITE", "Overwrite an earlier explanation", False)
        self.addOutput(QgsProcessingOutputString("TEXT", self.tr("Explanation")))
        self.addOutput(QgsProcessingOutputFile("OUTPUT_JSON", self.tr("Explanation and its numbers (JSON)")))
        self.addOutput(QgsProcessingOutputHtml("REPORT", self.tr("Report with the explanation")))
        self.addOutput(QgsProcessingOutputNumber("SAR_ONLY_SHARE", self.tr("Share of pixels answered from SAR only")))
        self.addOutput(QgsProcessingOutputNumber("AGREEMENT", self.tr("Water expert / model agreement")))

    def _window(self, parameters, context):
        text = self.parameterAsString(parameters, "WINDOW", context) if "WINDOW" in parameters else ""
        if not text or not text.strip():
            return None
        try:
            values = [int(v) for v in text.replace(" ", "").split(",") if v]
        except ValueError:
            values = []
        if len(values) != 4 or values[2] < 1 or values[3] < 1:
            raise ValueError(f"WINDOW must be four integers column,row,width,height (width, height >= 1); got {text!r}")
        return values

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        folder = Path(self.parameterAsFile(parameters, "RUN_FOLDER", context))
        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            return False, (f"{folder} holds no {' and no '.join(missing)}: choose the output folder of "
                           "'Segment land cover'.")
        has_raster = parameters.get("REFERENCE_RASTER") not in (None, "")
        has_vector = parameters.get("REFERENCE_VECTOR") not in (None, "")
        if has_raster and has_vector:
            return False, "Give at most one reference: a label raster or polygons with a class field."
        if has_vector and not self.parameterAsString(parameters, "CLASS_FIELD", context):
            return False, "Choose the class field of the reference polygons (CLASS_FIELD)."
        try:
            window = self._window(parameters, context)
        except ValueError as exc:
            return False, str(exc)
        area = parameters.get("AOI_LAYER") not in (None, "") or parameters.get("AOI_EXTENT") not in (None, "")
        if window is not None and area:
            return False, "Give an area of interest or a pixel window (WINDOW), not both."
        messages = [_checks.vector_layer_choice(parameters.get("REFERENCE_VECTOR")) if has_vector else None]
        overwrite = self.overwrite(parameters, context)
        suffix = "" if window is None and not area else ("_window" if window is not None else "_aoi")
        messages.append(_checks.output_free(str(folder / f"explanation{suffix}.json"), overwrite, "explanation"))
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.explain import explain_run

        folder = self.parameterAsFile(parameters, "RUN_FOLDER", context)
        labels, class_field, layer = None, None, None
        if parameters.get("REFERENCE_RASTER") not in (None, ""):
            labels = self.raster_path(parameters, "REFERENCE_RASTER", context, feedback, "reference raster")
        elif parameters.get("REFERENCE_VECTOR") not in (None, ""):
            labels, layer = self.vector_path(parameters, "REFERENCE_VECTOR", context, feedback)
            class_field = self.parameterAsString(parameters, "CLASS_FIELD", context)
        window = self._window(parameters, context)
        aoi = None if window is not None else self.aoi_value(parameters, context, feedback)
        with self.stage(feedback, "Explanation") as progress:
            result = explain_run(
                folder,
                labels=labels,
                class_field=class_field,
                layer=layer,
                aoi=aoi,
                window=window,
                low_confidence=self.parameterAsDouble(parameters, "LOW_CONFIDENCE", context),
                overwrite=self.overwrite(parameters, context),
                progress=progress,
            )
        feedback.pushInfo(result["text"])
        teacher = result["numbers"].get("teacher") or {}
        return {
            "TEXT": result["text"],
            "OUTPUT_JSON": result["json"],
            "REPORT": result["report"],
            "SAR_ONLY_SHARE": result["numbers"]["sar_only"]["share"],
            "AGREEMENT": teacher.get("agreement"),
        }
