"""QGIS layers <-> files the engine reads and writes.

Inputs: the engine streams plain raster files, so a file-based layer is handed over as its path.
Layers with real pixels that are not plain files (GeoPackage rasters, /vsi paths, WCS, PostGIS
rasters, virtual rasters) are exported, only over the window needed, to a temporary GeoTIFF; rendered web maps
(WMS/WMTS/XYZ, ArcGIS map services) hold pictures rather than measurements and are refused.

Outputs: every raster the algorithms write gets a style that says what it is: the class map as a
paletted raster with the model's class names and colours, probabilities and the KD-region
ratio with a colour ramp, gate masks half transparent. The style is applied when Processing
loads the layer (a post-processor) and is also saved as a ``.qml`` beside the file, which QGIS
reads as the default style whenever the file is opened later.

Results of a run (segmentation, fine-tuning) are published by one function,
:func:`publish_results`, whether the Toolbox ran the algorithm (through
:func:`publish_on_completion`) or the dock did: the same layer names, one group per run at the
top of the layer tree (under SGCAD label layers, which stay on top), the class map visible and
first, every probability, ratio and gate mask added but hidden.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDataProvider,
    QgsGradientColorRamp,
    QgsLayerTreeGroup,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterBlockFeedback,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRasterShader,
    QgsRasterTransparency,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

#: Providers whose pixels are rendered pictures, never the measurements a network needs.
RENDERED_PROVIDERS = {"wms", "arcgismapserver", "vectortile"}

#: Output kinds and their styles.
KIND_CLASSES = "classes"
KIND_PROBABILITY = "probability"
KIND_GATES = "gates"
KIND_KD_RATIO = "kd_ratio"
KIND_CONFIDENCE = "confidence"
KIND_GATE_BANDS = "gate_bands"
KIND_PLAIN = "plain"  # keep QGIS's default rendering; only the layer name is set
KIND_FLOOD_EXTENT = "flood_extent"  # flood maps (sgcad:floodmap): classes of flood_extent.tif
KIND_EXCLUSION = "exclusion"  # where SAR cannot see water (exclusion.tif)
KIND_FLOOD_LIKELIHOOD = "flood_likelihood"  # 0-1 ramp
KIND_PSEUDO_LABELS = "pseudo_labels"  # what the water expert learnt from without labels (pseudo_labels.tif)
KIND_WATER_CHANGE = "water_change"  # a label-free adaptation's water map against the zero-shot one
KINDS = (
    KIND_CLASSES,
    KIND_PROBABILITY,
    KIND_GATES,
    KIND_KD_RATIO,
    KIND_CONFIDENCE,
    KIND_GATE_BANDS,
    KIND_PLAIN,
    KIND_FLOOD_EXTENT,
    KIND_EXCLUSION,
    KIND_FLOOD_LIKELIHOOD,
    KIND_PSEUDO_LABELS,
    KIND_WATER_CHANGE,
)

#: Gate-mask values written by the distillation algorithms (0 = outside both gates).
GATE_CLASSES = ((1, "#1f78b4", "KD gate: confident water"), (2, "#ff7f00", "KD gate: confident non-water"))
GATE_OPACITY = 0.55
#: Values of pseudo_labels.tif (255, left out, is transparent).
PSEUDO_LABEL_CLASSES = ((0, "#c8a064", "pseudo-label: not water"), (1, "#1f78b4", "pseudo-label: water"))
#: Values of water_change.tif drawn (0, land in both maps, and 255, not read, are transparent).
WATER_CHANGE_CLASSES = ((1, "#a6cee3", "water in both maps"), (2, "#ff7f00", "water before adapting, land after"),
                        (3, "#e31a1c", "land before adapting, water after"))
#: Class-map value of segmentation outputs where only SAR was available and it is not water.
SAR_ONLY_NON_WATER = (254, "#a0a0a0", "non-water (SAR only)")


# --------------------------------------------------------------------------- inputs
def raster_source(
    layer: Optional[QgsRasterLayer],
    label: str,
    feedback=None,
    extent: Optional[QgsRectangle] = None,
    extent_crs: Optional[QgsCoordinateReferenceSystem] = None,
    temp_dir: Optional[str] = None,
) -> str:
    """A plain raster file holding ``layer``'s pixels, exporting a window if needed.

    Args:
        layer: the raster layer chosen by the user.
        label: what the layer is for ("optical raster"), used in messages.
        feedback: Processing feedback; reports the export and lets the user cancel it.
        extent: only this area is needed (exports are clipped to it); ``None`` = whole layer.
        extent_crs: CRS of ``extent`` (default: the layer's CRS).
        temp_dir: folder for exported windows (default: Processing's temporary folder).

    Raises:
        QgsProcessingException: the layer is missing, invalid, a rendered web map, or cannot
            be exported; the message names the layer and what to do instead.
    """
    if layer is None or not layer.isValid():
        raise QgsProcessingException(f"The {label} is missing or is not a valid raster layer.")
    provider = layer.providerType()
    if provider == "gdal" and Path(layer.source()).is_file():
        nodata = _user_nodata(layer, label)
        if nodata is None:
            return layer.source()  # a plain file: the engine streams it itself
        return _with_nodata(layer, nodata, temp_dir)
    if provider in RENDERED_PROVIDERS:
        raise QgsProcessingException(
            f"The {label} '{layer.name()}' is a web map ({provider} provider: WMS/WMTS/XYZ or a "
            "map service) that serves rendered pictures, not sensor values, which SGCAD cannot "
            "use. Choose the original image file, or a layer from a data source such as a "
            "GeoTIFF, WCS or PostGIS raster."
        )
    data = layer.dataProvider()
    if data is None or not (int(data.capabilities()) & int(QgsRasterDataProvider.Size)):
        raise QgsProcessingException(
            f"The {label} '{layer.name()}' ({provider}) has no fixed pixel grid to read; save it "
            "as a GeoTIFF (Export > Save As…) and select that file."
        )
    return export_window(layer, label, feedback, extent, extent_crs, temp_dir)


def _user_nodata(layer: QgsRasterLayer, label: str) -> Optional[float]:
    """The no-data value the user set on the layer in QGIS (Layer Properties > Transparency > Additional
    no data value), which the file does not hold; None when there is none."""
    data = layer.dataProvider()
    values = set()
    for band in range(1, layer.bandCount() + 1):
        for r in data.userNoDataValues(band):
            if r.min() != r.max():
                raise QgsProcessingException(
                    f"The {label} '{layer.name()}' has the no-data range {r.min():g} to {r.max():g} set in QGIS; "
                    "SGCAD reads one no-data value: set a single value (Layer Properties > Transparency), or "
                    "save the layer as a GeoTIFF with its no-data value (Export > Save As...) and select that file."
                )
            values.add(float(r.min()))
    if len(values) > 1:
        raise QgsProcessingException(
            f"The {label} '{layer.name()}' has different no-data values set in QGIS for its bands "
            f"({', '.join(f'{v:g}' for v in sorted(values))}); SGCAD reads one value for every band: set the same "
            "value on each band (Layer Properties > Transparency).")
    return values.pop() if values else None


def _with_nodata(layer: QgsRasterLayer, nodata: float, temp_dir: Optional[str] = None) -> str:
    """A virtual raster over the layer's file that declares ``nodata`` (no pixel is copied). Its name starts
    with the file's, so what the name says (a product, gamma nought, dB) is still read."""
    from osgeo import gdal

    folder = Path(temp_dir or QgsProcessingUtils.tempFolder())
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(layer.source())
    target = folder / f"{source.stem}_nodata_{uuid.uuid4().hex[:8]}.vrt"
    if gdal.Translate(str(target), str(source), format="VRT", noData=nodata) is None:
        raise QgsProcessingException(f"Cannot declare the no-data value {nodata:g} of '{layer.name()}' ({source}).")
    return str(target)


def export_window(
    layer: QgsRasterLayer,
    label: str,
    feedback=None,
    extent: Optional[QgsRectangle] = None,
    extent_crs: Optional[QgsCoordinateReferenceSystem] = None,
    temp_dir: Optional[str] = None,
) -> str:
    """Write the layer's raw values over ``extent`` (snapped to its pixels) to a temporary GeoTIFF, with the
    no-data value set on the layer in QGIS, if any (QGIS's writer leaves those pixels as they are)."""
    nodata = _user_nodata(layer, label)
    window = QgsRectangle(layer.extent())
    if extent is not None and not extent.isEmpty():
        wanted = QgsRectangle(extent)
        if extent_crs is not None and extent_crs.isValid() and extent_crs != layer.crs():
            transform = QgsCoordinateTransform(extent_crs, layer.crs(), QgsProject.instance())
            wanted = transform.transformBoundingBox(wanted)
        window = window.intersect(wanted)
        if window.isEmpty():
            raise QgsProcessingException(f"The {label} '{layer.name()}' does not cover the area of interest.")
    window = _snap(window, layer)
    xres, yres = layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
    cols, rows = round(window.width() / xres), round(window.height() / yres)
    folder = Path(temp_dir or QgsProcessingUtils.tempFolder())
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"sgcad_{_safe(layer.name())}_{uuid.uuid4().hex[:8]}.tif"
    tmp = target.with_name(target.stem + ".part.tif")
    if feedback is not None:
        feedback.pushInfo(f"Exporting {cols}×{rows} pixels of the {label} '{layer.name()}' to {target}")
    pipe = QgsRasterPipe()
    if not pipe.set(layer.dataProvider().clone()):
        raise QgsProcessingException(f"Cannot read the pixels of the {label} '{layer.name()}'.")
    writer = QgsRasterFileWriter(str(tmp))
    writer.setOutputFormat("GTiff")
    block_feedback = QgsRasterBlockFeedback()
    if feedback is not None:
        feedback.canceled.connect(block_feedback.cancel)
    transform_context = QgsProject.instance().transformContext()
    error = writer.writeRaster(pipe, cols, rows, window, layer.crs(), transform_context, block_feedback)
    if error != QgsRasterFileWriter.NoError or block_feedback.isCanceled():
        _remove(tmp)
        reason = "canceled" if block_feedback.isCanceled() else f"GDAL writer error {int(error)}"
        raise QgsProcessingException(f"Exporting the {label} '{layer.name()}' failed ({reason}).")
    _keep_source_metadata(layer, tmp, nodata)
    os.replace(tmp, target)
    return str(target)


def _keep_source_metadata(layer: QgsRasterLayer, path: Path, nodata: Optional[float] = None) -> None:
    """Copy what the source says of its pixels into an exported window: band descriptions and band
    metadata (B4, VV, WAVELENGTH), the file's metadata, and its file name as the tag ``source``. QGIS's
    writer drops them, and the engine reads band roles, units and backscatter from them
    (``engine.inputs``; a zipped product or a ``SENTINEL2_L2A:`` subdataset is exported, not read in place),
    as ``engine.data.raster_ops.carry_band_metadata`` keeps them through alignment; ``nodata``: the value
    set on the layer in QGIS, declared on every band."""
    from osgeo import gdal

    target = gdal.Open(str(path), gdal.GA_Update)
    if target is None:
        return
    if nodata is not None:
        for b in range(1, target.RasterCount + 1):
            target.GetRasterBand(b).SetNoDataValue(nodata)
    source = gdal.Open(layer.source()) if layer.providerType() == "gdal" else None
    if source is None or source.RasterCount != layer.bandCount():
        return
    tags = {str(k): str(v) for k, v in (source.GetMetadata() or {}).items() if k != "AREA_OR_POINT"}
    from sgcad_qgis.engine.raster.io import source_tag

    target.SetMetadata(dict(tags, source=source_tag(Path(layer.source().split("|")[0]).name, tags)))
    for b in range(1, source.RasterCount + 1):
        band, out = source.GetRasterBand(b), target.GetRasterBand(b)
        if band.GetDescription():
            out.SetDescription(band.GetDescription())
        metadata = band.GetMetadata() or {}
        if metadata:
            out.SetMetadata({str(k): str(v) for k, v in metadata.items()})
    target = None  # noqa: F841 - closing the dataset writes the names


def _snap(rect: QgsRectangle, layer: QgsRasterLayer) -> QgsRectangle:
    """Grow ``rect`` outwards to the layer's pixel edges, so exported pixels are not resampled."""
    import math

    full = layer.extent()
    xres, yres = layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
    x0 = full.xMinimum() + math.floor((rect.xMinimum() - full.xMinimum()) / xres + 1e-9) * xres
    x1 = full.xMinimum() + math.ceil((rect.xMaximum() - full.xMinimum()) / xres - 1e-9) * xres
    y1 = full.yMaximum() - math.floor((full.yMaximum() - rect.yMaximum()) / yres + 1e-9) * yres
    y0 = full.yMaximum() - math.ceil((full.yMaximum() - rect.yMinimum()) / yres - 1e-9) * yres
    return QgsRectangle(x0, y0, x1, y1)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40] or "layer"


def _remove(path: Path) -> None:
    for candidate in (path, Path(str(path) + ".aux.xml")):
        if candidate.exists():
            candidate.unlink()


# --------------------------------------------------------------------------- styles
def _ramp(stops: Sequence[str]) -> QgsGradientColorRamp:
    return QgsGradientColorRamp(QColor(stops[0]), QColor(stops[-1]))


def paletted_renderer(layer: QgsRasterLayer, classes: Iterable[Tuple[int, str, str]], band: int = 1):
    """A paletted renderer of ``(value, colour, label)`` classes; other values stay transparent."""
    items = [QgsPalettedRasterRenderer.Class(int(v), QColor(c), str(lbl)) for v, c, lbl in classes]
    return QgsPalettedRasterRenderer(layer.dataProvider(), band, items)


def ramp_renderer(layer: QgsRasterLayer, low: float, high: float, colors: Sequence[str], band: int = 1):
    """A continuous colour ramp from ``low`` to ``high`` over ``band``."""
    ramp_shader = QgsColorRampShader(low, high)
    ramp_shader.setColorRampType(QgsColorRampShader.Interpolated)
    n = len(colors)
    values = [low + (high - low) * i / (n - 1) for i in range(n)]
    ramp_shader.setColorRampItemList(
        [QgsColorRampShader.ColorRampItem(v, QColor(c), f"{v:.2f}") for v, c in zip(values, colors)]
    )
    ramp_shader.setSourceColorRamp(_ramp(colors))
    shader = QgsRasterShader(low, high)
    shader.setRasterShaderFunction(ramp_shader)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    return renderer


PROBABILITY_COLORS = ("#f7fbff", "#6baed6", "#08306b")  # white -> deep blue: more likely
KD_RATIO_COLORS = ("#fcfbfd", "#9e9ac8", "#3f007d")  # white -> purple: more transferred
# negative = SAR-only pixel (teacher's confidence), positive = student's confidence
CONFIDENCE_COLORS = ("#e66101", "#ffffff", "#2c7bb6")


def gate_bands_renderer(layer: QgsRasterLayer):
    """Three 0/1 gate bands (water, non-water, agreement): water blue, non-water red, rest clear."""
    renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 2, -1, 1)
    for band, setter in ((2, renderer.setRedContrastEnhancement), (1, renderer.setBlueContrastEnhancement)):
        enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(0)
        enhancement.setMaximumValue(1)
        setter(enhancement)
    transparency = QgsRasterTransparency()
    clear = QgsRasterTransparency.TransparentThreeValuePixel()
    clear.red = clear.green = clear.blue = 0.0
    clear.percentTransparent = 100.0
    transparency.setTransparentThreeValuePixelList([clear])
    renderer.setRasterTransparency(transparency)
    return renderer


def apply_style(layer: QgsRasterLayer, kind: str, schema=None, band: int = 1, extra_classes=()) -> None:
    """Style ``layer`` as output ``kind`` (one of :data:`KINDS`).

    Args:
        layer: the loaded output raster.
        kind: ``classes`` (needs ``schema``), ``probability``, ``gates`` (one band, values
            of :data:`GATE_CLASSES`), ``gate_bands`` (segmentation's three 0/1 bands),
            ``confidence`` (-1..1) or ``kd_ratio``.
        schema: the model's ``ClassSchema`` (names, ids, colours) for class maps.
        band: band to show for single-band styles.
        extra_classes: ``(value, colour, label)`` entries a class map holds beyond the schema.
    """
    if kind == KIND_PLAIN:
        return
    if kind == KIND_CLASSES:
        if schema is None:
            raise ValueError("a class map needs the class schema to be styled")
        classes = [(i, schema.colors[n], f"{i} {schema.names[n]}") for n, i in enumerate(schema.ids)]
        layer.setRenderer(paletted_renderer(layer, classes + list(extra_classes), band))
    elif kind in (KIND_GATES, KIND_PSEUDO_LABELS, KIND_WATER_CHANGE):
        palette = {KIND_GATES: GATE_CLASSES, KIND_PSEUDO_LABELS: PSEUDO_LABEL_CLASSES,
                   KIND_WATER_CHANGE: WATER_CHANGE_CLASSES}[kind]
        layer.setRenderer(paletted_renderer(layer, palette, band))
        layer.renderer().setOpacity(GATE_OPACITY)
    elif kind == KIND_PROBABILITY:
        layer.setRenderer(ramp_renderer(layer, 0.0, 1.0, PROBABILITY_COLORS, band))
    elif kind == KIND_KD_RATIO:
        layer.setRenderer(ramp_renderer(layer, 0.0, 1.0, KD_RATIO_COLORS, band))
    elif kind == KIND_CONFIDENCE:
        layer.setRenderer(ramp_renderer(layer, -1.0, 1.0, CONFIDENCE_COLORS, band))
    elif kind == KIND_GATE_BANDS:
        layer.setRenderer(gate_bands_renderer(layer))
        layer.renderer().setOpacity(GATE_OPACITY)
    elif kind in (KIND_FLOOD_EXTENT, KIND_EXCLUSION, KIND_FLOOD_LIKELIHOOD):
        apply_flood_style(layer, kind, band)
    else:
        raise ValueError(f"unknown output kind {kind!r}; expected one of {KINDS}")
    layer.triggerRepaint()


def save_style_sidecar(path: str, kind: str, schema=None, band: int = 1, extra_classes=()) -> Optional[str]:
    """Save the style of output ``kind`` as ``<file>.qml``, QGIS's default style for that file."""
    if kind == KIND_PLAIN:
        return None
    layer = QgsRasterLayer(str(path), "style", "gdal")
    try:
        if not layer.isValid():
            return None
        apply_style(layer, kind, schema, band, extra_classes)
        qml = str(Path(path).with_suffix(".qml"))
        tmp = str(Path(path).with_name(f".{Path(path).stem}.part.qml"))  # QGIS wants the .qml suffix
        message, ok = layer.saveNamedStyle(tmp)
        if not ok:
            _remove(Path(tmp))
            return None
        os.replace(tmp, qml)
        return qml
    finally:
        del layer  # no layer may outlive QGIS (PLATFORM notes)


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Names and styles an output layer once Processing has loaded it."""

    def __init__(self, name: str, kind: str, schema=None, band: int = 1, extra_classes=()) -> None:
        super().__init__()
        self.name, self.kind, self.schema, self.band = name, kind, schema, band
        self.extra_classes = tuple(extra_classes)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        if isinstance(layer, QgsRasterLayer):
            layer.setName(self.name)
            apply_style(layer, self.kind, self.schema, self.band, self.extra_classes)


# Processing does not own post-processors: keep them alive until their layer has loaded.
_ALIVE: deque = deque(maxlen=512)


def publish_output(
    context: QgsProcessingContext,
    path: str,
    name: str,
    kind: str,
    output_name: str = "",
    schema=None,
    band: int = 1,
    add_to_load: bool = False,
    extra_classes=(),
) -> StylePostProcessor:
    """Style an output file: ``.qml`` sidecar + name/style when Processing loads it.

    Args:
        context: the running algorithm's context.
        path: the written raster.
        name: layer name that says what the layer is.
        kind: one of :data:`KINDS`.
        output_name: the algorithm output the file belongs to.
        schema: class schema for class maps.
        band: band shown by single-band styles.
        add_to_load: also ask Processing to load a file that is not a destination parameter
            (e.g. gate masks written into an output folder).
        extra_classes: class-map values beyond the schema, see :func:`apply_style`.
    """
    save_style_sidecar(path, kind, schema, band, extra_classes)
    processor = StylePostProcessor(name, kind, schema, band, extra_classes)
    _ALIVE.append(processor)
    if add_to_load:
        load_on_completion(context, path, name, output_name)
    if context.willLoadLayerOnCompletion(path):
        details = context.layerToLoadOnCompletionDetails(path)
        details.name = name
        details.setPostProcessor(processor)
    return processor


VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".sqlite")


def load_on_completion(context: QgsProcessingContext, path: str, name: str, output_name: str = "",
                       raster: Optional[bool] = None) -> None:
    """Ask Processing to load a file that is not a destination parameter (when a project is open).

    The layer type is given (``raster``, else guessed from the file's suffix), so that
    Processing does not first try to open a GeoTIFF with OGR, which logged "OGR: Cannot open …".
    """
    if path and not context.willLoadLayerOnCompletion(path) and context.project() is not None:
        if raster is None:
            raster = not str(path).lower().endswith(VECTOR_SUFFIXES)
        details = QgsProcessingContext.LayerDetails(name, context.project(), output_name)
        details.layerTypeHint = QgsProcessingUtils.LayerHint.Raster if raster else QgsProcessingUtils.LayerHint.Vector
        context.addLayerToLoadOnCompletion(path, details)


# --------------------------------------------------------------------------- run results
#: Custom property of layers SGCAD adds; label layers stay at the top of the layer tree.
ROLE_PROPERTY = "sgcad/role"
LABEL_ROLE = "labels"

#: Bands of the segmentation's gates.tif: (role, band, name, colour, explanation).
GATE_BANDS = (
    ("gate_water", 1, "Teacher gate: confident water", "#1f78b4",
     "Pixels where the SAR water expert's water probability is above the water threshold."),
    ("gate_non_water", 2, "Teacher gate: confident non-water", "#ff7f00",
     "Pixels where the water expert's water probability is below the non-water threshold."),
    ("agreement", 3, "Teacher/student agree on water", "#33a02c",
     "Pixels where the water expert and the segmentation model agree on water vs non-water."),
)


@dataclass
class ResultLayer:
    """One layer of a run's results.

    Attributes:
        role: stable key (``classes``, ``gate_water`` ...): a later run with the same role
            re-points this layer to the new file instead of adding another layer.
        path: the raster file.
        name: layer name; it says what the layer shows (it is the legend's title).
        kind: a style kind (:data:`KINDS`), or ``band`` for a paletted view of one band given
            by ``classes``.
        abstract: longer explanation, kept in the layer's metadata (Properties > Metadata).
        band: band to show.
        classes: ``(value, colour, legend label)`` entries for kind ``band``; for kind
            ``classes``, values the class map holds beyond the schema.
        visible: whether a newly added layer starts visible.
    """

    role: str
    path: str
    name: str
    kind: str
    abstract: str = ""
    band: int = 1
    classes: Tuple[Tuple[int, str, str], ...] = ()
    visible: bool = False


def segmentation_results(paths: Dict[str, str], model_name: str) -> List[ResultLayer]:
    """The layers of a segmentation, in layer-tree order (top first).

    Args:
        paths: the engine's output files by key (``classes``, ``confidence``, ``water``,
            ``gates``); missing or empty ones are left out.
        model_name: the student model's name (file stem), shown in the layer names.
    """
    items = [ResultLayer("classes", paths.get("classes", ""), f"Land cover ({model_name})", KIND_CLASSES,
                         "Class of each pixel; grey = non-water seen only by SAR; transparent = no data.",
                         classes=(SAR_ONLY_NON_WATER,), visible=True)]
    for role, band, name, color, abstract in GATE_BANDS:
        items.append(ResultLayer(role, paths.get("gates", ""), name, "band", abstract, band=band,
                                 classes=((1, color, name),)))
    items.append(ResultLayer("confidence", paths.get("confidence", ""),
                             f"Confidence ({model_name}; negative = SAR only)", KIND_CONFIDENCE,
                             "Model's top class probability; negative where only SAR was seen."))
    items.append(ResultLayer("water", paths.get("water", ""), "Water probability (water expert)",
                             KIND_PROBABILITY, "The SAR water expert's water probability."))
    return [i for i in items if i.path]


def finetune_results(gates: str, kd_ratio: str, block="") -> List[ResultLayer]:
    """The gate-mask and KD-region-ratio layers of a distillation or fine-tune."""
    per = f" per {block}-pixel block" if block else " (share of gated pixels per block)"
    items = [
        ResultLayer("kd_gates", gates or "", "KD gates (reliable water / non-water)", KIND_GATES,
                    "Pixels where distillation was applied: the water expert is confident and the labels agree."),
        ResultLayer("kd_ratio", kd_ratio or "", f"KD region ratio{per}", KIND_KD_RATIO,
                    "Fraction of pixels in each block that passed a confidence gate."),
    ]
    return [i for i in items if i.path]


def pseudo_label_results(path: str) -> List[ResultLayer]:
    """The pseudo-label layer of a label-free adaptation (none when the teacher learnt from none)."""
    return _adaptation_layer(path, "pseudo_labels", "Pseudo-labels the water expert learnt from", KIND_PSEUDO_LABELS,
                             "The scene threshold's water and not-water labels the adaptation trained on; transparent: "
                             "left out (near the threshold, specks, far too dark, or vetoed by the expert).")


def water_change_results(path: str) -> List[ResultLayer]:
    """Where a label-free adaptation's water map differs from the zero-shot one (none when nothing adapted)."""
    return _adaptation_layer(path, "water_change", "Water map: adapted against zero-shot", KIND_WATER_CHANGE,
                             "On the pixels the adaptation read: orange, water before adapting and land after; red, "
                             "land before and water after; light blue, water in both; transparent, land in both or "
                             "not read.")


def _adaptation_layer(path: str, role: str, name: str, kind: str, tooltip: str) -> List[ResultLayer]:
    """One visible layer of a label-free adaptation's run, or none without a file."""
    return [ResultLayer(role, path, name, kind, tooltip, visible=True)] if path else []


def run_group_name(label: str, model_name: str = "", when: Optional[float] = None) -> str:
    """``SGCAD Segmentation 14:03:22 · sgcad_student``: one group per run."""
    stamp = time.strftime("%H:%M:%S", time.localtime(when if when is not None else time.time()))
    return f"SGCAD {label} {stamp}" + (f" · {model_name}" if model_name else "")


def style_result(layer: QgsRasterLayer, item: ResultLayer, schema) -> None:
    """Apply the style that says what ``item`` shows."""
    if item.kind == "band":
        layer.setRenderer(paletted_renderer(layer, item.classes, item.band))
        layer.renderer().setOpacity(GATE_OPACITY)
        layer.triggerRepaint()
    else:
        extra = item.classes if item.kind == KIND_CLASSES else ()
        apply_style(layer, item.kind, schema, item.band, extra)


def labels_to_top(root) -> None:
    """Move SGCAD label layers of the tree's top level above everything else (drawn polygons
    must stay visible over the maps)."""
    nodes = [c for c in root.children() if getattr(c, "layer", lambda: None)() is not None
             and c.layer().customProperty(ROLE_PROPERTY) == LABEL_ROLE]
    for position, node in enumerate(nodes):
        if root.children().index(node) != position:
            root.insertChildNode(position, node.clone())
            root.removeChildNode(node)


def find_or_make_group(project: QgsProject, name: str, previous: Optional[str] = None) -> QgsLayerTreeGroup:
    """The group called ``previous`` (renamed to ``name``), or a new group at the top (under
    SGCAD label layers)."""
    root = project.layerTreeRoot()
    group = root.findGroup(previous) if previous else None
    group = group or root.findGroup(name)
    if group is None:
        group = root.insertGroup(0, name)
        labels_to_top(root)
    group.setName(name)
    return group


def publish_results(
    project: QgsProject,
    group_name: str,
    items: Iterable[ResultLayer],
    schema=None,
    existing: Optional[Dict[str, str]] = None,
    previous_group: Optional[str] = None,
    layers: Optional[Dict[str, QgsRasterLayer]] = None,
) -> Tuple[QgsLayerTreeGroup, Dict[str, str]]:
    """Add a run's layers to ``project`` (or refresh them in place): the one place that decides
    names, grouping, order and visibility, for the Toolbox and the dock alike.

    Args:
        project: the project to add to.
        group_name: the run's group (see :func:`run_group_name`); created at the top.
        items: the layers, top first (see :func:`segmentation_results`).
        schema: the model's ``ClassSchema`` (styles the class map).
        existing: role -> layer id of layers shown by an earlier run; those are re-pointed to
            the new file, keeping their place, visibility and the user's style edits.
        previous_group: the group of that earlier run, renamed to ``group_name``.
        layers: role -> an already loaded layer to use (Processing loaded it), moved into the group.

    Returns:
        (the group, role -> layer id of every layer now shown).

    Raises:
        ValueError: an output file exists but GDAL cannot open it.
    """
    existing = dict(existing or {})
    layers = dict(layers or {})
    group = find_or_make_group(project, group_name, previous_group)
    shown = dict(existing)
    position = 0
    for item in items:
        if not item.path or not Path(item.path).is_file():
            continue
        layer = project.mapLayer(existing.get(item.role, ""))
        if isinstance(layer, QgsRasterLayer):
            layer.setDataSource(item.path, item.name, "gdal", QgsDataProvider.ProviderOptions())
            node = group.findLayer(layer.id())
            position = group.children().index(node) + 1 if node is not None else position
        else:
            layer = layers.get(item.role) or QgsRasterLayer(item.path, item.name, "gdal")
            if not layer.isValid():
                raise ValueError(f"The output {item.path} cannot be opened as a raster.")
            layer.setName(item.name)
            loaded = project.layerTreeRoot().findLayer(layer.id())  # where Processing put it, if it did
            if project.mapLayer(layer.id()) is None:
                project.addMapLayer(layer, False)
            group.insertLayer(position, layer).setItemVisibilityChecked(item.visible)
            if loaded is not None and loaded.parent() is not None:  # after the insert: the layer stays
                loaded.parent().removeChildNode(loaded)
            position += 1
        if not layer.isValid():
            raise ValueError(f"The output {item.path} cannot be opened as a raster.")
        style_result(layer, item, schema)
        layer.setAbstract(item.abstract)
        layer.setCustomProperty(ROLE_PROPERTY, item.role)
        shown[item.role] = layer.id()
        layer.triggerRepaint()
    return group, shown


class GroupPublisher(QgsProcessingLayerPostProcessorInterface):
    """Publishes all of a run's layers once Processing has loaded the first of them."""

    def __init__(self, group_name: str, items: Sequence[ResultLayer], schema=None) -> None:
        super().__init__()
        self.group_name, self.items, self.schema = group_name, list(items), schema

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        project = context.project() or QgsProject.instance()
        try:
            publish_results(project, self.group_name, self.items, self.schema,
                            layers={self.items[0].role: layer})
        except ValueError as exc:
            if feedback is not None:
                feedback.reportError(str(exc))


def publish_on_completion(context: QgsProcessingContext, items: Sequence[ResultLayer], group_name: str,
                          schema=None) -> None:
    """Style files (``.qml`` sidecars) and, when Processing will load results into a project,
    publish them with :func:`publish_results` when the algorithm has finished."""
    items = [i for i in items if i.path]
    styled = set()
    for item in items:
        if item.path in styled:
            continue
        styled.add(item.path)
        if item.kind == "band":  # the gate bands of one file: reopened, it shows all three in colour
            save_style_sidecar(item.path, KIND_GATE_BANDS)
        else:
            extra = item.classes if item.kind == KIND_CLASSES else ()
            save_style_sidecar(item.path, item.kind, schema, item.band, extra)
    if not items or context.project() is None:
        return
    publisher = GroupPublisher(group_name, items, schema)
    _ALIVE.append(publisher)
    load_on_completion(context, items[0].path, items[0].name, "")
    if context.willLoadLayerOnCompletion(items[0].path):
        details = context.layerToLoadOnCompletionDetails(items[0].path)
        details.name = items[0].name
        details.setPostProcessor(publisher)


# --------------------------------------------------------------------------- vectors
#: Temporary copies of the user's layers -> how messages name them (the user's file or layer), see ``as_user_named``.
_SHOWN_AS: Dict[str, str] = {}
_SHOWN_AS_KEPT = 256


def as_user_named(text: str) -> str:
    """``text`` with each temporary copy written by :func:`features_to_file` named as the user's own layer."""
    for temp, shown in list(_SHOWN_AS.items()):
        text = text.replace(f"'{temp}'", shown).replace(temp, shown)
    return text


def features_to_file(
    source, label: str, context, feedback=None, temp_dir: Optional[str] = None, shown: Optional[str] = None
) -> str:
    """Write every feature of a feature source (any provider, memory included) to a GeoPackage.

    The engine reads the first layer of a vector file, so a layer inside a multi-layer
    GeoPackage, a memory layer or a database table is handed over as its own small file, under
    the source's layer name. Messages about the copy name ``shown`` instead (the user's file;
    default the layer's name), through :func:`as_user_named`.
    """
    from qgis.core import QgsFeatureRequest, QgsVectorFileWriter

    if source is None:
        raise QgsProcessingException(f"The {label} is missing or cannot be read.")
    folder = Path(temp_dir or QgsProcessingUtils.tempFolder())
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"sgcad_{_safe(label)}_{uuid.uuid4().hex[:8]}.gpkg"
    name = source.sourceName() or label
    _SHOWN_AS[str(target)] = shown or f"'{name}'"
    while len(_SHOWN_AS) > _SHOWN_AS_KEPT:  # a long QGIS session: forget the oldest runs' copies
        del _SHOWN_AS[next(iter(_SHOWN_AS))]
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName, options.layerName = "GPKG", _safe(name)
    writer = QgsVectorFileWriter.create(
        str(target),
        source.fields(),
        source.wkbType(),
        source.sourceCrs(),
        context.transformContext(),
        options,
    )
    if writer.hasError() != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"Cannot write the {label} to {target}: {writer.errorMessage()}")
    for feature in source.getFeatures(QgsFeatureRequest()):
        if feedback is not None and feedback.isCanceled():
            del writer
            _remove(target)
            raise QgsProcessingException(f"Canceled while copying the {label}.")
        writer.addFeature(feature)
    del writer  # closes the file
    return str(target)


# --------------------------------------------------------------------------- flood maps
#: flood_extent.tif values (engine.flood.report.FLOOD_CLASSES); 0 (not water) stays clear.
FLOOD_EXTENT_CLASSES = (
    (1, "#e31a1c", "observed flood"),
    (2, "#1f78b4", "permanent water"),
    (3, "#fdbf6f", "receded water"),
    (254, "#969696", "excluded (SAR cannot see water)"),
)
#: exclusion.tif values (engine.flood.report.EXCLUSION_CLASSES); 0 (usable) stays clear.
EXCLUSION_CLASSES = (
    (1, "#d9d9d9", "no SAR value on a date"),
    (2, "#4d4d4d", "radar shadow"),
    (3, "#737373", "layover"),
    (4, "#a6a6a6", "very low backscatter on both dates"),
)
EXCLUSION_OPACITY = 0.6
FLOOD_LIKELIHOOD_COLORS = ("#fff5f0", "#fb6a4a", "#67000d")  # white -> dark red: more likely flooded


def apply_flood_style(layer: QgsRasterLayer, kind: str, band: int = 1) -> None:
    """Styles of the flood outputs: flood red, permanent water blue, exclusion grey, likelihood ramp."""
    if kind == KIND_FLOOD_EXTENT:
        layer.setRenderer(paletted_renderer(layer, FLOOD_EXTENT_CLASSES, band))
    elif kind == KIND_EXCLUSION:
        layer.setRenderer(paletted_renderer(layer, EXCLUSION_CLASSES, band))
        layer.renderer().setOpacity(EXCLUSION_OPACITY)
    elif kind == KIND_FLOOD_LIKELIHOOD:
        layer.setRenderer(ramp_renderer(layer, 0.0, 1.0, FLOOD_LIKELIHOOD_COLORS, band))
    else:
        raise ValueError(f"not a flood output kind: {kind!r}")
    layer.triggerRepaint()


def flood_results(paths: Dict[str, str], label: str = "") -> List[ResultLayer]:
    """The layers of a flood map, top first: the extent visible, the exclusion visible (grey, half
    transparent), the likelihood and each date's water probability hidden.

    Args:
        paths: the engine's outputs by key (``flood``, ``exclusion``, ``likelihood``, ``water_after``,
            ``water_before``); missing or empty ones are left out.
        label: added to the layer names (e.g. the method).
    """
    suffix = f" ({label})" if label else ""
    items = [
        ResultLayer("flood_extent", paths.get("flood", ""), f"Flood extent{suffix}", KIND_FLOOD_EXTENT,
                    "Red: water after and not before (observed flood); blue: water on both dates; orange: "
                    "water before only; grey: excluded (SAR cannot see water there).", visible=True),
        ResultLayer("flood_exclusion", paths.get("exclusion", ""), "Exclusion: SAR cannot see water",
                    KIND_EXCLUSION, "No data on a date, radar shadow, layover, or very low backscatter on both "
                    "dates (dry sand, tarmac) outside permanent water.", visible=True),
        ResultLayer("flood_likelihood", paths.get("likelihood", ""), "Flood likelihood p_after x (1 - p_before)",
                    KIND_FLOOD_LIKELIHOOD, "Probability of water after and not before, from the two dates' "
                    "water probabilities (not masked by the exclusion layer)."),
        ResultLayer("water_after", paths.get("water_after", ""), "Water probability after", KIND_PROBABILITY,
                    "Water probability of the after date on the output grid."),
        ResultLayer("water_before", paths.get("water_before", ""), "Water probability before", KIND_PROBABILITY,
                    "Water probability of the before date, warped onto the after date's grid."),
    ]
    return [i for i in items if i.path]


def water_date_results(water: str, probability: str) -> List[ResultLayer]:
    """The layers of one date's water map (``sgcad:watermap``): water visible, its probability hidden."""
    items = [
        ResultLayer("water_date", water, "Water", "band",
                    "Open water: the water expert's probability at or above the threshold.", visible=True,
                    classes=((1, "#1f78b4", "water"),)),
        ResultLayer("water_date_probability", probability, "Water probability", KIND_PROBABILITY,
                    "The water expert's water probability (VV + VH expert where the bands are named so)."),
    ]
    return [i for i in items if i.path]


# --------------------------------------------------------------------------- polygons
POLYGON_OPACITY = 0.75


def polygon_renderer(classes: Iterable[Tuple[int, str, str]], field: str = "class_id"):
    """A categorized renderer of polygons by ``field``: ``(value, colour, label)`` per class."""
    from qgis.core import QgsCategorizedSymbolRenderer, QgsFillSymbol, QgsRendererCategory

    categories = []
    for value, colour, label in classes:
        symbol = QgsFillSymbol.createSimple({"color": colour, "outline_color": "#303030", "outline_width": "0.1"})
        categories.append(QgsRendererCategory(int(value), symbol, str(label)))
    return QgsCategorizedSymbolRenderer(field, categories)


def style_polygons(layer, classes: Iterable[Tuple[int, str, str]]) -> None:
    """Categorized fill by class (the class map's colours), three quarters opaque."""
    layer.setRenderer(polygon_renderer(classes))
    layer.setOpacity(POLYGON_OPACITY)
    layer.triggerRepaint()


def polygon_layer_uri(path: str, layer_name: str) -> str:
    return f"{path}|layername={layer_name}"


def save_polygon_style(path: str, layer_name: str, classes) -> Optional[str]:
    """Save the polygons' style as ``<file>.qml``, QGIS's default style when the file is opened."""
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(polygon_layer_uri(path, layer_name), "style", "ogr")
    try:
        if not layer.isValid():
            return None
        style_polygons(layer, classes)
        qml = str(Path(path).with_suffix(".qml"))
        tmp = str(Path(path).with_name(f".{Path(path).stem}.part.qml"))
        _, ok = layer.saveNamedStyle(tmp)
        if not ok:
            _remove(Path(tmp))
            return None
        os.replace(tmp, qml)
        return qml
    finally:
        del layer


class PolygonStylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Names and styles a polygon output once Processing has loaded it."""

    def __init__(self, name: str, classes) -> None:
        super().__init__()
        self.name, self.classes = name, tuple(classes)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 - QGIS API
        from qgis.core import QgsVectorLayer

        if isinstance(layer, QgsVectorLayer):
            layer.setName(self.name)
            style_polygons(layer, self.classes)


def publish_polygons(context: QgsProcessingContext, path: str, layer_name: str, name: str, classes,
                     output_name: str = "", add_to_load: bool = False) -> None:
    """Style a polygon output (``.qml`` sidecar) and name/style it when Processing loads it."""
    save_polygon_style(path, layer_name, classes)
    processor = PolygonStylePostProcessor(name, classes)
    _ALIVE.append(processor)
    if add_to_load:
        load_on_completion(context, path, name, output_name, raster=False)
    if context.willLoadLayerOnCompletion(path):
        details = context.layerToLoadOnCompletionDetails(path)
        details.name = name
        details.setPostProcessor(processor)


def add_polygon_layer(project: QgsProject, path: str, layer_name: str, name: str, classes,
                      group_name: Optional[str] = None, role: str = "polygons"):
    """Add (or re-point) a styled polygon layer at the top of ``group_name`` (created if missing)."""
    from qgis.core import QgsVectorLayer

    uri = polygon_layer_uri(path, layer_name)
    root = project.layerTreeRoot()
    group = find_or_make_group(project, group_name) if group_name else root
    for node in group.findLayers():
        layer = node.layer()
        if isinstance(layer, QgsVectorLayer) and layer.customProperty(ROLE_PROPERTY) == role:
            layer.setDataSource(uri, name, "ogr", QgsDataProvider.ProviderOptions())
            style_polygons(layer, classes)
            return layer
    layer = QgsVectorLayer(uri, name, "ogr")
    if not layer.isValid():
        raise ValueError(f"The polygons {path} cannot be opened as a vector layer.")
    style_polygons(layer, classes)
    layer.setCustomProperty(ROLE_PROPERTY, role)
    project.addMapLayer(layer, False)
    group.insertLayer(0, layer)
    return layer

