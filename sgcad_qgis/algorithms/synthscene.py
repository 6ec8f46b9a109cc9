"""sgcad:synthscene — a seeded synthetic optical + SAR scene with its six-class label."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingOutputString,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterFolderDestination,
)

from .. import layers
from ._common import EngineAlgorithm


class SynthScene(EngineAlgorithm):
    ALG_ID = "synthscene"
    DISPLAY = "Synthetic optical + SAR scene"
    GROUP = "preparation"
    HELP = (
        "Writes a seeded synthetic scene into a folder: optical.tif (RGB), sar.tif (linear sigma0 "
        "with speckle), label.tif (class ids of the six default classes) and label.gpkg (the label "
        "as polygons with class_id and class_name). The same seed gives the same scene, so it is "
        "useful to try the whole workflow, for tests and for benchmarks. Optical clouds and "
        "water-like dark objects can be switched off; the SAR can be shifted against the optical "
        "to imitate misregistration."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_number("SIZE", "Size (pixels per side)", 512, 32, 65536, advanced=False)
        self.add_number("SEED", "Seed", 1, 0, 2**31 - 1, advanced=False)
        self.add_number("LOOKS", "SAR looks (fewer = stronger speckle)", 4.0, 0.5, 100, integer=False)
        self.add_number("RESOLUTION", "Pixel size (m)", 2.0, 0.1, 1000, integer=False)
        self.add_number("SHIFT_X", "SAR misregistration in x (pixels)", 0.0, -100, 100, integer=False)
        self.add_number("SHIFT_Y", "SAR misregistration in y (pixels)", 0.0, -100, 100, integer=False)
        self.add_flag("CLOUDS", "Clouds and cloud shadows in the optical image", True)
        self.add_flag("CONFUSERS", "Water-like dark roofs and terrain shadow in the optical image", True)
        self.add_flag("WRITE_VECTOR", "Also write the label as polygons (label.gpkg)", True, advanced=False)
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer("OPTICAL", self.tr("Optical raster")))
        self.addOutput(QgsProcessingOutputRasterLayer("SAR", self.tr("SAR raster")))
        self.addOutput(QgsProcessingOutputRasterLayer("LABEL", self.tr("Label raster")))
        self.addOutput(QgsProcessingOutputVectorLayer("LABEL_VECTOR", self.tr("Label polygons")))
        self.addOutput(QgsProcessingOutputNumber("WATER_FRACTION", self.tr("Fraction of water pixels")))
        self.addOutput(QgsProcessingOutputString("CLASS_FRACTIONS", self.tr("Class fractions (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        import json

        from sgcad_qgis.engine.config import ClassSchema
        from sgcad_qgis.engine.data.synthetic import generate_scene

        folder = self.output_folder(parameters, "OUTPUT_FOLDER", context)
        num = lambda name: self.parameterAsDouble(parameters, name, context)  # noqa: E731
        with self.stage(feedback, "Synthetic scene") as progress:
            result = generate_scene(
                folder,
                size=self.parameterAsInt(parameters, "SIZE", context),
                seed=self.parameterAsInt(parameters, "SEED", context),
                looks=num("LOOKS"),
                misregistration=(num("SHIFT_X"), num("SHIFT_Y")),
                clouds=self.parameterAsBoolean(parameters, "CLOUDS", context),
                confusers=self.parameterAsBoolean(parameters, "CONFUSERS", context),
                resolution=num("RESOLUTION"),
                write_vector=self.parameterAsBoolean(parameters, "WRITE_VECTOR", context),
                overwrite=self.overwrite(parameters, context),
                progress=progress,
            )
        schema = ClassSchema()
        seed = result["seed"]
        layers.publish_output(
            context,
            result["label"],
            f"Synthetic label (seed {seed})",
            layers.KIND_CLASSES,
            "LABEL",
            schema,
            add_to_load=True,
        )
        for key, title in (("optical", "Synthetic optical"), ("sar", "Synthetic SAR (sigma0)")):
            layers.load_on_completion(context, result[key], f"{title} (seed {seed})", key.upper())
        fractions = result["class_fractions"]
        feedback.pushInfo("Class fractions: " + ", ".join(f"{k} {v:.1%}" for k, v in fractions.items()))
        return {
            "OUTPUT_FOLDER": folder,
            "OPTICAL": result["optical"],
            "SAR": result["sar"],
            "LABEL": result["label"],
            "LABEL_VECTOR": result.get("label_vector") or "",
            "WATER_FRACTION": fractions.get(schema.names[schema.water_class], 0.0),
            "CLASS_FRACTIONS": json.dumps(fractions),
        }
