"""sgcad:vectorize — a class map as GeoPackage polygons with attributes, merged across tiles."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .. import layers
from . import _checks
from ._common import EngineAlgorithm, verdict


class Vectorize(EngineAlgorithm):
    ALG_ID = "vectorize"
    DISPLAY = "Vectorise a class map (polygons with attributes)"
    GROUP = "segmentation"
    HELP = (
        "Turns a class map (e.g. the class map of 'Segment land cover', a flood extent, any raster of "
        "class ids) into polygons in a GeoPackage: one polygon per connected area of one class, merged "
        "across tiles so that no seam follows the tile borders, with the class id and name, the pixel "
        "count, the area and perimeter (map units, and m²/m on the ground, also on a geographic CRS) and, with the "
        "confidence raster, the mean confidence and the share of SAR-only pixels (the segmentation "
        "writes SAR-only answers as negative confidence; the mean uses the magnitude). Keep only some "
        "classes (e.g. 'water'), drop polygons and fill holes smaller than a minimum area, and "
        "simplify outlines (Douglas-Peucker, topology-preserving by default). The raster is read in "
        "blocks, so memory does not grow with the scene. The layer is styled with the class map's colours."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster("CLASSES", "Class map")
        self.add_raster("CONFIDENCE", "Confidence raster (optional; negative = SAR only)", optional=True)
        keep = QgsProcessingParameterString(
            "KEEP_CLASSES", self.tr("Classes to keep (ids or names, comma separated; empty = all)"), optional=True
        )
        self.addParameter(keep)
        self.add_number("MIN_AREA", "Minimum polygon and hole area (m²)", 0.0, 0.0,
                        integer=False, advanced=False)
        self.add_number("SIMPLIFY", "Simplification tolerance (m; 0 = pixel outline)", 0.0, 0.0,
                        integer=False, advanced=False)
        self.add_flag("PRESERVE_TOPOLOGY", "Simplify without self-intersections (topology-preserving)", True)
        self.add_number("BLOCK", "Block size in pixels (memory only; the polygons do not depend on it)", 1024, 16,
                        65536)
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)
        output = QgsProcessingParameterVectorDestination("OUTPUT", self.tr("Polygons (GeoPackage)"))
        output.setSupportsNonFileBasedOutput(False)
        self.addParameter(output)
        self.addOutput(QgsProcessingOutputNumber("POLYGONS", self.tr("Polygons written")))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", self.tr("Run time (s)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super().checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        classes = self.parameterAsRasterLayer(parameters, "CLASSES", context)
        confidence = self.parameterAsRasterLayer(parameters, "CONFIDENCE", context)
        messages = []
        if confidence is not None:
            messages.append(_checks.overlap(classes, confidence, "class map", "confidence raster"))
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if out and not out.startswith(("memory:", "TEMPORARY")):
            if Path(out).suffix.lower() != ".gpkg":
                messages.append(f"The polygons are written as a GeoPackage; give an output name ending in .gpkg "
                                f"(got {out}).")
            else:
                messages.append(_checks.outputs_not_inputs([out], {"class map": classes, "confidence": confidence}))
                messages.append(_checks.output_free(out, self.overwrite(parameters, context), "polygons"))
        return verdict(messages)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from sgcad_qgis.engine.vector.polygonize import vectorize_classes

        classes = self.raster_path(parameters, "CLASSES", context, feedback, "class map")
        confidence = None
        if parameters.get("CONFIDENCE") not in (None, ""):
            confidence = self.raster_path(parameters, "CONFIDENCE", context, feedback, "confidence raster")
        keep = [k.strip() for k in (self.parameterAsString(parameters, "KEEP_CLASSES", context) or "").split(",")]
        out = self.output_path(parameters, "OUTPUT", context)
        with self.stage(feedback, "Polygons") as progress:
            result = vectorize_classes(
                classes,
                out,
                confidence_path=confidence,
                classes=[k for k in keep if k] or None,
                min_area=self.parameterAsDouble(parameters, "MIN_AREA", context),
                simplify=self.parameterAsDouble(parameters, "SIMPLIFY", context),
                preserve_topology=self.parameterAsBoolean(parameters, "PRESERVE_TOPOLOGY", context),
                block=self.parameterAsInt(parameters, "BLOCK", context),
                overwrite=self.overwrite(parameters, context),
                progress=progress,
            )
        feedback.pushInfo(
            f"{result['polygons']} polygons of {result['components']} connected areas "
            f"({result['dropped']['below_min_area']} below the minimum area) in {result['seconds']:.1f} s"
        )
        name = f"Polygons of {Path(classes).stem}"
        layers.publish_polygons(context, out, result["layer"], name, result["legend"], "OUTPUT")
        return {"OUTPUT": out, "POLYGONS": result["polygons"], "SECONDS": result["seconds"]}
