"""Dock choices -> Processing parameters, and algorithm results -> layers to show.

Kept apart from the widgets so that the contract with the ``sgcad`` algorithms (parameter
and output names) lives in one short module.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)

from .. import layers as styles
from ..layers import ResultLayer

SEGMENT = "sgcad:segment"
FINETUNE = "sgcad:finetune"


@dataclass
class Choice:
    """Everything the user chose in the dock, checked and as plain values."""

    optical: Optional[QgsRasterLayer]  # None with a SAR-only model
    optical_bands: List[int]
    sar: QgsRasterLayer
    sar_bands: List[int]
    model: str
    teacher: str
    device: int
    folder: Path
    area: Optional[QgsRectangle] = None
    area_crs: QgsCoordinateReferenceSystem = field(default_factory=QgsCoordinateReferenceSystem)
    model_stem: str = ""


def require_algorithm(alg_id: str) -> None:
    """Raise ValueError when the Processing provider does not offer ``alg_id``."""
    from qgis.core import QgsApplication

    if QgsApplication.processingRegistry().algorithmById(alg_id) is None:
        raise ValueError(f"This SGCAD installation offers no Processing algorithm {alg_id}; update the "
                         "plugin, or enable the SGCAD provider (Processing > Options > Providers).")


def read_model(path: str):
    """The model's metadata (classes, colours, bands), without loading its weights.

    Raises:
        ValueError: the file is missing or not an SGCAD model; the message names it.
    """
    from ..engine.models.checkpoint import read_metadata

    try:
        metadata = read_metadata(path)
    except FileNotFoundError:
        raise ValueError(f"Model file {path} does not exist.") from None
    if metadata.kind != "student":
        raise ValueError(f"{Path(path).name} is a {metadata.kind} model; choose a student (segmentation) "
                         "model here and put a water expert under 'Water expert'.")
    return metadata


def describe_model(metadata) -> str:
    bands = metadata.bands
    names = ", ".join(metadata.schema.names)
    if bands.optical_channels == 0:
        return (f"{metadata.schema.num_classes} classes ({names}); SAR-only: reads {bands.sar_channels} SAR "
                "band(s), the optical layer may stay empty.")
    return (f"{metadata.schema.num_classes} classes ({names}); reads {bands.optical_channels} optical "
            f"+ {bands.sar_channels} SAR band(s).")


def gather(dock, model_path: Optional[str] = None) -> Choice:
    """Collect and check the dock's inputs.

    Raises:
        ValueError: one sentence naming what is missing or does not fit.
    """
    optical, sar = dock.optical.layer(), dock.sar.layer()
    model = model_path or dock.model_picker.current_path()
    metadata = None
    if model and sar is not None:
        try:
            metadata = read_model(model)
        except ValueError:
            pass  # reported below, once a model is required
    # a SAR-only model reads no optical layer: it may be left empty
    sar_only = metadata is not None and metadata.bands.optical_channels == 0
    if sar_only:
        optical = None
    elif optical is None or sar is None:
        raise ValueError("Choose both an optical and a SAR raster layer under 'Imagery and model' "
                         "(a SAR-only model needs the SAR layer only).")
    if optical is not None and optical.id() == sar.id():
        raise ValueError("The optical and the SAR layer are the same layer; choose two different ones.")
    if not model:
        raise ValueError("Choose a model (…) under 'Imagery and model'.")
    if metadata is None:
        metadata = read_model(model)  # raises the reason the file is not a model
    optical_bands = dock.optical.selected_bands() if optical is not None else []
    choice = Choice(optical, optical_bands, sar, dock.sar.selected_bands(), model,
                    dock.teacher.filePath().strip(), dock.device.index(), Path(dock.output.filePath()),
                    model_stem=Path(model).stem)
    pairs = [("SAR", sar, choice.sar_bands, metadata.bands.sar_channels)]
    if optical is not None:
        pairs.insert(0, ("optical", optical, choice.optical_bands, metadata.bands.optical_channels))
    for label, layer, bands, want in pairs:
        if len(bands) != want:
            raise ValueError(f"The model reads {want} {label} band(s), but {len(bands)} are ticked for "
                             f"{layer.name()!r}; tick exactly {want}.")
    if choice.teacher and not Path(choice.teacher).is_file():
        raise ValueError(f"Water expert file {choice.teacher} does not exist.")
    if not str(choice.folder).strip() or str(choice.folder) == ".":
        raise ValueError("Choose a folder to save runs in ('Save runs in').")
    choice.area, choice.area_crs = dock.area.area()
    overlap = imagery_extent(choice)[0]
    if overlap.isEmpty():
        raise ValueError(f"The optical layer {optical.name()!r} and the SAR layer {sar.name()!r} do not "
                         "overlap; choose layers that cover the same place.")
    if choice.area is not None:
        area = _to_crs(choice.area, choice.area_crs, imagery_extent(choice)[1])
        if not area.intersects(overlap):
            raise ValueError("The chosen area does not touch the imagery; pan to the layers or pick "
                             "another area.")
    return choice


def _to_crs(rect: QgsRectangle, source, target) -> QgsRectangle:
    if not source.isValid() or source == target:
        return QgsRectangle(rect)
    return QgsCoordinateTransform(source, target, QgsProject.instance()).transformBoundingBox(rect)


def imagery_extent(choice: Choice) -> Tuple[QgsRectangle, QgsCoordinateReferenceSystem]:
    """Overlap of the optical and SAR layers, in the optical layer's CRS (the SAR layer's extent
    and CRS with a SAR-only model)."""
    if choice.optical is None:
        return QgsRectangle(choice.sar.extent()), choice.sar.crs()
    crs = choice.optical.crs()
    sar = _to_crs(choice.sar.extent(), choice.sar.crs(), crs)
    return choice.optical.extent().intersect(sar), crs


def _source(layer: QgsRasterLayer) -> str:
    # a file name is safe to hand to a worker thread; a layer object is not
    return layer.source()


def _run(kind: str, choice: Choice) -> Dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = choice.folder / f"{kind}-{stamp}"
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = choice.folder / f"{kind}-{stamp}-{suffix}"
    label = {"segment": "Segmentation", "finetune": "Fine-tune"}[kind]
    name = f"{label} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
    when = time.mktime(time.strptime(stamp, "%Y%m%d-%H%M%S"))
    return {"name": name, "group": styles.run_group_name(label, choice.model_stem, when), "folder": folder}


def _extent_string(rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> str:
    text = f"{rect.xMinimum()!r},{rect.xMaximum()!r},{rect.yMinimum()!r},{rect.yMaximum()!r}"
    return f"{text} [{crs.authid()}]" if crs.isValid() and crs.authid() else text


def _common(choice: Choice) -> Dict[str, Any]:
    params = {
        "SAR": _source(choice.sar),
        "SAR_BANDS": choice.sar_bands,
        "MODEL": choice.model,
        "DEVICE": choice.device,
    }
    if choice.optical is not None:  # left out for a SAR-only model
        params.update(OPTICAL=_source(choice.optical), OPTICAL_BANDS=choice.optical_bands)
    # always given: an empty value means "no water expert" (left out, the bundled one is the default)
    params["TEACHER"] = choice.teacher
    return params


def segment_parameters(choice: Choice) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Parameters of ``sgcad:segment`` and the run's name, group and folder."""
    require_algorithm(SEGMENT)
    run = _run("segment", choice)
    params = _common(choice)
    params["OUTPUT_FOLDER"] = str(run["folder"])
    if choice.area is not None:
        params["AOI_EXTENT"] = _extent_string(choice.area, choice.area_crs)
    return params, run


def snapshot_labels(layer, folder: Path) -> str:
    """Copy the label polygons (edit buffer included) to ``folder/labels.gpkg``.

    The worker thread then reads a file rather than a live layer, and the run folder keeps
    the exact labels each model was tuned on.
    """
    from qgis.core import QgsVectorFileWriter

    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "labels.gpkg"
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "labels"
    error, message = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(target), QgsProject.instance().transformContext(), options)[:2]
    if error != QgsVectorFileWriter.NoError:
        raise ValueError(f"Cannot copy the label layer {layer.name()!r} to {target}: {message}")
    return str(target)


def finetune_parameters(choice: Choice, label_layer, steps: int,
                        pretrain_steps: int = 0) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Parameters of ``sgcad:finetune`` on the drawn polygons (copied into the run folder); with
    ``pretrain_steps`` the student's SAR encoder is first pretrained on the SAR layer."""
    require_algorithm(FINETUNE)
    run = _run("finetune", choice)
    params = _common(choice)
    params.pop("MODEL")
    params.update({
        "STUDENT": choice.model,
        "LABEL_POLYGONS": snapshot_labels(label_layer, run["folder"]),
        "CLASS_FIELD": "class",
        "STEPS": int(steps),
        "OUTPUT_FOLDER": str(run["folder"]),
    })
    if choice.area is not None:  # unlabelled context for distillation is drawn from the area
        params["AOI_EXTENT"] = _extent_string(choice.area, choice.area_crs)
    if pretrain_steps:
        params["PRETRAIN_STEPS"] = int(pretrain_steps)
    return params, run


def held_out_text(results: Dict[str, Any]) -> str:
    """The fine-tune's honest figures in one line, next to the linear baseline's."""
    def pct(value) -> str:
        return "n/a" if value in (None, "") else f"{100 * float(value):.1f} %"

    if not results.get("MEASURED"):
        return ("Accuracy unmeasured: no polygon group could be held out. Draw polygons in two or more "
                "separate places to measure the fine-tuned model.")
    parts = []
    if results.get("HELD_OUT_MIOU") not in (None, ""):
        parts.append(f"student mIoU {pct(results['HELD_OUT_MIOU'])} "
                     f"(linear baseline {pct(results.get('BASELINE_MIOU'))})")
        parts.append(f"water IoU {pct(results.get('HELD_OUT_WATER_IOU'))} "
                     f"(baseline {pct(results.get('BASELINE_WATER_IOU'))})")
    if results.get("TEACHER_WATER_IOU") not in (None, ""):
        parts.append(f"water expert {pct(results['TEACHER_WATER_IOU'])} "
                     f"(SAR baseline {pct(results.get('TEACHER_BASELINE_WATER_IOU'))})")
    return "On held-out polygons: " + "; ".join(parts) + "."


# ---------------------------------------------------------------------- results
#: ``sgcad:segment`` outputs -> the engine's output keys that ``layers.segmentation_results`` takes.
SEGMENT_OUTPUTS = {"CLASSES": "classes", "CONFIDENCE": "confidence", "WATER_PROBABILITY": "water",
                   "GATES": "gates"}


def segment_layers(results: Dict[str, Any], model_name: str = "") -> List[ResultLayer]:
    """The layers to show after ``sgcad:segment``, exactly as the Toolbox shows them."""
    paths = {key: results.get(output) or "" for output, key in SEGMENT_OUTPUTS.items()}
    return styles.segmentation_results(paths, model_name or "model")


def _output(results: Dict[str, Any], keys: Tuple[str, ...], filename: str) -> str:
    """A file named by one of ``keys`` in the results, else ``filename`` in the run folder."""
    for key in keys:
        value = results.get(key)
        if isinstance(value, str) and value and Path(value).is_file():
            return value
    fallback = Path(results.get("OUTPUT_FOLDER") or "") / filename
    return str(fallback) if results.get("OUTPUT_FOLDER") and fallback.is_file() else ""


def finetuned_model(results: Dict[str, Any]) -> str:
    path = _output(results, ("OUTPUT_MODEL", "MODEL"), "student.safetensors")
    if not path:
        raise ValueError("the fine-tune finished but wrote no model file; see the log.")
    return path


def report_path(results: Dict[str, Any]) -> str:
    return _output(results, ("REPORT",), "report.html")


def _history_file(results: Dict[str, Any]) -> Optional[Path]:
    path = _output(results, ("HISTORY",), "history.json")
    return Path(path) if path else None


def kd_series(results: Dict[str, Any]) -> Tuple[List[int], Dict[str, List[float]]]:
    """Epochs and KD-region ratios (all, water, non-water) from the run's ``history.json``.

    Warm-up epochs (no distillation yet) have no ratio and are left out.
    """
    path = _history_file(results)
    if path is None:
        return [], {}
    records = json.loads(path.read_text())
    records = records.get("epochs", records.get("records", [])) if isinstance(records, dict) else records

    def value(record, key):
        v = record.get(f"train_{key}", record.get(key))
        return None if v is None else float(v)

    rows = [r for r in records if value(r, "kd_ratio") is not None]
    epochs = [int(r.get("epoch", i + 1)) for i, r in enumerate(rows)]
    series = {"all": [value(r, "kd_ratio") for r in rows]}
    for key, name in (("kd_ratio_water", "water"), ("kd_ratio_non_water", "non-water")):
        values = [value(r, key) for r in rows]
        if rows and all(v is not None for v in values):
            series[name] = values
    return epochs, series


def finetune_layers(results: Dict[str, Any]) -> List[ResultLayer]:
    """Gate masks and the KD-region-ratio raster written by ``sgcad:finetune``, and the
    pseudo-labels its water expert learnt from when the polygons held no water."""
    pseudo = results.get("PSEUDO_LABELS")  # this run's only: a run folder may keep an older one
    return (styles.finetune_results(_output(results, ("GATES",), "gates.tif"),
                                    _output(results, ("KD_RATIO",), "kd_ratio.tif"))
            + styles.pseudo_label_results(pseudo if isinstance(pseudo, str) and Path(pseudo).is_file() else ""))


EXPLAIN = "sgcad:explain"
EXPLAIN_TILE = 512  # pixels: the tile a click on the map explains (the segmentation's tile size)


def tile_window(classes_path: str, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> Tuple[int, int, int, int]:
    """The ``EXPLAIN_TILE`` window of the run's class map around a clicked map point.

    Raises:
        ValueError: the map has no class map, or the click is outside it.
    """
    layer = QgsRasterLayer(classes_path, "classes") if classes_path else None
    if layer is None or not layer.isValid():
        raise ValueError("Segment first: a tile can only be explained on a segmentation's class map.")
    transform = QgsCoordinateTransform(crs, layer.crs(), QgsProject.instance())
    at = transform.transform(point)
    extent, width, height = layer.extent(), layer.width(), layer.height()
    col = int((at.x() - extent.xMinimum()) / layer.rasterUnitsPerPixelX())
    row = int((extent.yMaximum() - at.y()) / layer.rasterUnitsPerPixelY())
    if not (0 <= col < width and 0 <= row < height):
        raise ValueError("The click is outside the last segmentation; click inside its class map.")
    size_x, size_y = min(EXPLAIN_TILE, width), min(EXPLAIN_TILE, height)
    left = min(max(col - size_x // 2, 0), width - size_x)
    top = min(max(row - size_y // 2, 0), height - size_y)
    return left, top, size_x, size_y


def explain_parameters(run_folder: str, window: Tuple[int, int, int, int]) -> Dict[str, Any]:
    """``sgcad:explain`` of one pixel window of a run (a clicked tile)."""
    return {"RUN_FOLDER": run_folder, "WINDOW": ",".join(str(v) for v in window), "OVERWRITE": True}
