"""sgcad:exportpatches — a leakage-free train/val/test patch set (split first, crop later)."""

from __future__ import annotations

import shutil
from pathlib import Path

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterFolderDestination,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from .. import layers
from . import _checks
from ._common import verdict
from ._training import TrainingAlgorithm


class ExportPatches(TrainingAlgorithm):
    ALG_ID = "exportpatches"
    DISPLAY = "Export training patches"
    GROUP = "preparation"
    HELP = (
        "Prepares a patch set for training: the labelled scene is cut into large tiles that are "
        "assigned to training, validation and test (0.70 / 0.15 / 0.15 by a seed) before patches "
        "are cropped inside each tile, so no patch of one split overlaps another; training tiles "
        "get extra windows where rare classes (road, village, city) appear. The tile size shrinks "
        "automatically on small scenes so every split gets data. Writes manifest.json (every patch "
        "with its split, window and class pixel counts) and patches.gpkg (the patch outlines with "
        "their split, to look at in QGIS); the training algorithms accept the folder as a patch set."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_training_data()
        self.removeParameter("PATCH_SET")
        self.removeParameter("OPTICAL_BANDS")
        self.removeParameter("SAR_BANDS")
        self.add_number("TILE_SIZE", "Split tile size (pixels)", 4096, 16, 1 << 20)
        self.add_number("PATCH_SIZE", "Patch size (pixels)", 256, 16, 8192, advanced=False)
        self.add_number("SEED", "Random seed of the split", 42, 0, 2**31 - 1)
        self.add_number("RESOLUTION", "Grid pixel size for label polygons (0 = the SAR's)", 0.0, 0.0, integer=False)
        self.add_flag("COPY_RASTERS", "Copy the rasters into the folder (a self-contained patch set)", False)
        self.add_flag("OVERWRITE", "Overwrite existing output files", False)
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Patch set folder")))
        self.addOutput(QgsProcessingOutputFile("MANIFEST", self.tr("Manifest (JSON)")))
        self.addOutput(QgsProcessingOutputVectorLayer("PATCHES", self.tr("Patch outlines with their split")))
        for split in ("TRAIN", "VAL", "TEST"):
            self.addOutput(QgsProcessingOutputNumber(f"{split}_PATCHES", self.tr(f"{split.lower()} patches")))
        self.addOutput(QgsProcessingOutputNumber("TILE_SIZE_USED", self.tr("Tile size used (pixels)")))

    def checkParameterValues(self, parameters, context):  # noqa: N802
        ok, message = super(TrainingAlgorithm, self).checkParameterValues(parameters, context)
        if not ok:
            return ok, message
        problem = _checks.vector_layer_choice(parameters.get("LABEL_POLYGONS"))
        if problem:
            return False, problem
        messages = [m for m in self.check_training(parameters, context) if m]
        folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        if folder and not folder.startswith("TEMPORARY"):
            written = [Path(folder) / n for n in ("manifest.json", "labels.tif", "patches.gpkg")]
            inputs = {
                name.lower().replace("_", " "): self._input_value(parameters, name, context)
                for name in ("OPTICAL", "SAR", "LABELS", "LABEL_POLYGONS")
            }
            if self.parameterAsBoolean(parameters, "COPY_RASTERS", context):
                for key, name in (("optical", "OPTICAL"), ("sar", "SAR"), ("label", "LABELS")):
                    source = inputs[name.lower()]
                    if source:
                        target = Path(folder) / f"{key}{Path(source).suffix}"
                        if not _same(source, target):  # a raster already in place is not copied
                            written.append(target)
            messages += [_checks.outputs_not_inputs(written, inputs), _checks.folder_free(folder)]
        if folder and not folder.startswith("TEMPORARY") and (Path(folder) / "manifest.json").exists():
            if not self.overwrite(parameters, context):
                messages.append(
                    f"{folder} already holds a patch set (manifest.json); choose another folder "
                    "or tick 'Overwrite' (OVERWRITE=true)."
                )
        return verdict(messages)

    def _input_value(self, parameters, name: str, context):
        """The file behind an input parameter (layers by their source), or None."""
        value = parameters.get(name)
        if value in (None, ""):
            return None
        if name == "LABEL_POLYGONS":
            return value if isinstance(value, str) else None
        layer = self.parameterAsRasterLayer(parameters, name, context)
        return layer.source() if layer is not None else None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        folder = Path(self.output_folder(parameters, "OUTPUT_FOLDER", context))
        with self.folder_lock(str(folder), "exportpatches"):  # one run at a time into the folder
            return self._export(parameters, context, feedback, folder)

    def _export(self, parameters, context, feedback, folder: Path):
        from sgcad_qgis.engine.config import ClassSchema, PatchConfig
        from sgcad_qgis.engine.data.patches import build_manifest, save_manifest
        from sgcad_qgis.engine.raster.grid import default_grid, grid_of
        from sgcad_qgis.engine.raster.labels import rasterize_labels_to_file

        schema = ClassSchema()
        overwrite = self.overwrite(parameters, context)
        optical = self.raster_path(parameters, "OPTICAL", context, feedback, "optical raster")
        sar = self.raster_path(parameters, "SAR", context, feedback, "SAR raster")
        patch = self.parameterAsInt(parameters, "PATCH_SIZE", context)
        if parameters.get("LABELS") not in (None, ""):
            label = self.raster_path(parameters, "LABELS", context, feedback, "label raster")
        else:
            vector, layer_name = self.vector_path(parameters, "LABEL_POLYGONS", context, feedback)
            resolution = self.parameterAsDouble(parameters, "RESOLUTION", context) or None
            label = str(folder / "labels.tif")
            with self.stage(feedback, "Rasterising the label polygons") as progress:
                grid = default_grid(optical, sar, resolution=resolution, min_size=patch)
                rasterize_labels_to_file(
                    vector,
                    self.parameterAsString(parameters, "CLASS_FIELD", context),
                    grid,
                    schema,
                    label,
                    layer=layer_name,
                    overwrite=overwrite,
                    progress=progress,
                )
        cfg = PatchConfig(
            tile_size=self.parameterAsInt(parameters, "TILE_SIZE", context),
            patch_size=patch,
            seed=self.parameterAsInt(parameters, "SEED", context),
            rare_window=patch,
            rare_stride=max(patch // 2, 1),
        )
        with self.stage(feedback, "Splitting tiles and cutting patches") as progress:
            manifest = build_manifest(label, cfg, schema, progress=progress)
        for warning in manifest["warnings"]:
            feedback.pushWarning(warning)
        sources = {"optical": optical, "sar": sar, "label": label}
        if self.parameterAsBoolean(parameters, "COPY_RASTERS", context):
            for key, path in list(sources.items()):
                target = folder / f"{key}{Path(path).suffix}"
                if not _same(path, target):
                    part = target.with_name(f".{target.stem}.part{target.suffix}")
                    try:  # under a temporary name: an interrupted copy leaves no half-written raster
                        shutil.copyfile(path, part)
                        part.replace(target)
                    finally:
                        part.unlink(missing_ok=True)
                sources[key] = target.name
        manifest["sources"] = {k: str(v) for k, v in sources.items()}
        manifest_path = save_manifest(manifest, folder / "manifest.json")
        outlines = _write_outlines(manifest, grid_of(label), folder / "patches.gpkg", context)
        layers.load_on_completion(context, outlines, "Training patches (split)", "PATCHES")
        summary = manifest["summary"]
        feedback.pushInfo("Patches: " + ", ".join(f"{s} {summary[s]['patches']}" for s in ("train", "val", "test")))
        return {
            "OUTPUT_FOLDER": str(folder),
            "MANIFEST": str(manifest_path),
            "PATCHES": outlines,
            "TRAIN_PATCHES": summary["train"]["patches"],
            "VAL_PATCHES": summary["val"]["patches"],
            "TEST_PATCHES": summary["test"]["patches"],
            "TILE_SIZE_USED": manifest["tile_size"],
        }


def _same(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _write_outlines(manifest, grid, path: Path, context) -> str:
    """Patch windows as polygons with split, rare-class flag and labelled pixels (for a look in QGIS)."""
    fields = QgsFields()
    for name, kind in (
        ("split", QVariant.String),
        ("resampled", QVariant.Bool),
        ("tile", QVariant.Int),
        ("labelled", QVariant.Int),
    ):
        fields.append(QgsField(name, kind))
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", "patches"
    options.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteFile
    crs = QgsCoordinateReferenceSystem.fromWkt(grid.crs_wkt)
    tmp = path.with_name(f".{path.stem}.part.gpkg")
    writer = QgsVectorFileWriter.create(str(tmp), fields, QgsWkbTypes.Polygon, crs, context.transformContext(), options)
    t = grid.transform
    for patch in manifest["patches"]:
        col, row, w, h = patch["window"]
        x0, y0 = t * (col, row)
        x1, y1 = t * (col + w, row + h)
        feature = QgsFeature(fields)
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(x0, y1, x1, y0)))
        feature.setAttributes(
            [patch["split"], bool(patch.get("resampled")), int(patch.get("tile", -1)), int(sum(patch["class_counts"]))]
        )
        writer.addFeature(feature)
    del writer  # closes the GeoPackage
    tmp.replace(path)
    return str(path)
