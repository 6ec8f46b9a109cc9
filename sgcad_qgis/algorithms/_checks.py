"""Checks run by ``checkParameterValues``: catch what can be caught before a long run starts.

Each function returns ``None`` when the check passes, else one sentence saying what is wrong
and what would fit, so the Processing dialog, batch mode and ``qgis_process`` show it before
anything is computed. Where the inputs are plain files, the sentence is the engine's own
(``engine.validate``), so the command line and Processing refuse alike and say it alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional, Sequence, Tuple

from qgis.core import (
    QgsCoordinateTransform,
    QgsMapLayer,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsWkbTypes,
)


def engine_check(check: Callable, *args, **kwargs) -> Optional[str]:
    """Run an engine check; its error (any kind) as the engine's one line, else None."""
    from sgcad_qgis.engine.validate import describe_error

    try:
        check(*args, **kwargs)
    except Exception as exc:
        return describe_error(exc)[0]
    return None


def plain_file(layer: Any) -> Optional[str]:
    """The file behind a raster layer read in place by the engine (a GDAL plain file), else None."""
    if isinstance(layer, QgsRasterLayer) and layer.providerType() == "gdal" and Path(layer.source()).is_file():
        return layer.source()
    return None


def georeferenced(layer: Any) -> Optional[str]:
    """Message when a raster layer has no georeferencing (the engine's sentence)."""
    if not isinstance(layer, QgsRasterLayer):
        return None
    path = plain_file(layer)
    if path:
        from sgcad_qgis.engine.validate import check_georeferenced

        return engine_check(check_georeferenced, path)
    if not layer.crs().isValid():
        from sgcad_qgis.engine.validate import no_georeferencing

        return no_georeferencing(layer.source() or layer.name())
    return None


def _extent_in(layer: Any, crs) -> QgsRectangle:
    """Extent of a map layer or feature source in ``crs``."""
    if isinstance(layer, QgsMapLayer):
        extent, source_crs = layer.extent(), layer.crs()
    else:  # QgsProcessingFeatureSource
        extent, source_crs = layer.sourceExtent(), layer.sourceCrs()
    if source_crs.isValid() and crs.isValid() and source_crs != crs:
        extent = QgsCoordinateTransform(source_crs, crs, QgsProject.instance()).transformBoundingBox(extent)
    return extent


def overlap(a: QgsMapLayer, b: Any, label_a: str, label_b: str, tile_size: Optional[int] = None) -> Optional[str]:
    """Message when ``b``'s footprint does not overlap raster/vector ``a``'s.

    Two raster files are checked by the engine on ``b``'s grid (the SAR's, the reference's), with
    the engine's sentence; layers that are not plain files, and vectors, by their QGIS extents.
    Rasters without georeferencing are named as such, not as "not overlapping".
    """
    if a is None or b is None:
        return None
    for layer in (a, b):
        problem = georeferenced(layer) or polygon_source(layer, label_a if layer is a else label_b)
        if problem:
            return problem
    path_a, path_b = plain_file(a), plain_file(b)
    if path_a and path_b:
        from sgcad_qgis.engine.raster.grid import grid_of
        from sgcad_qgis.engine.validate import check_pair_overlap

        words = (label_a.replace(" raster", ""), label_b.replace(" raster", ""))
        return engine_check(lambda: check_pair_overlap(path_a, path_b, grid_of(path_b), labels=words))
    ea, eb = a.extent(), _extent_in(b, a.crs())
    inter = ea.intersect(eb)
    if inter.isEmpty() or inter.width() <= 0 or inter.height() <= 0:
        name_b = b.name() if isinstance(b, QgsMapLayer) else label_b
        return (
            f"The {label_a} '{a.name()}' and the {label_b} '{name_b}' do not overlap "
            f"({a.crs().authid()} extents {ea.toString(1)} and {eb.toString(1)}); choose layers "
            "that cover the same area."
        )
    return None


def polygon_source(layer: Any, label: str) -> Optional[str]:
    """Message when a vector layer or source holds no feature, or points or lines instead of polygons
    (either would otherwise read as "does not overlap")."""
    if isinstance(layer, QgsRasterLayer) or not hasattr(layer, "featureCount"):
        return None
    name = layer.name() if isinstance(layer, QgsMapLayer) else (getattr(layer, "sourceName", lambda: "")() or label)
    if layer.featureCount() == 0:
        return f"The {label} layer '{name}' holds no features; draw at least one polygon, or choose another layer."
    kind = {QgsWkbTypes.PointGeometry: "points", QgsWkbTypes.LineGeometry: "lines"}.get(
        QgsWkbTypes.geometryType(layer.wkbType()))
    if kind:
        return f"The {label} layer '{name}' holds {kind}; polygons are expected."
    return None


def output_grid(optical: Any, sar: Any, resolution: float, crs: Optional[str] = None, bounds=None) -> Optional[str]:
    """The engine's message when a pixel size would make an output grid far larger than the inputs
    (``engine.raster.grid.default_grid``); None when it fits or the layers are not plain files."""
    sar_path = plain_file(sar)
    optical_path = plain_file(optical) if optical is not None else sar_path
    if not resolution or resolution <= 0 or not sar_path or not optical_path:
        return None
    from sgcad_qgis.engine.raster.grid import default_grid

    return engine_check(default_grid, optical_path, sar_path, resolution=resolution, crs=crs, bounds=bounds)


def area_of_interest(aoi: Optional[str], grid_raster: Any) -> Optional[str]:
    """The engine's message when an area of interest (a polygon file or a box, as the engine takes it)
    would be refused on the native grid of a raster layer (no polygon, flat box, no pixel covered)."""
    grid_path = plain_file(grid_raster)
    if not aoi or not grid_path:
        return None
    from sgcad_qgis.engine.inference.aoi import load_aoi
    from sgcad_qgis.engine.raster.grid import grid_of

    return engine_check(lambda: load_aoi(aoi, grid_of(grid_path)))


def band_choice(
    layer: QgsMapLayer, bands: Sequence[int], expected: Optional[int], label: str
) -> Optional[str]:
    """Message when chosen bands do not exist or their number differs from ``expected``."""
    if layer is None:
        return None
    count = layer.bandCount()
    wrong = [b for b in bands if not 1 <= b <= count]
    if wrong:
        return f"The {label} '{layer.name()}' has {count} band(s); band(s) {wrong} do not exist."
    have = len(bands) if bands else count
    if expected is not None and have != expected:
        chosen = f"the {len(bands)} chosen band(s) {list(bands)}" if bands else f"its {count} band(s)"
        return (
            f"The {label} '{layer.name()}' gives {chosen}, but {expected} band(s) are expected; "
            f"choose exactly {expected} band(s)."
        )
    return None


def model_file(path: str, kind: Optional[str], label: str = "model") -> Tuple[Any, Optional[str]]:
    """(metadata, None) when ``path`` is an SGCAD ``kind`` model (any file name), else (None, message).

    Only the file's header is read, so this is cheap enough for ``checkParameterValues``. The
    message is the engine's (``engine.validate.check_model_file``), prefixed with ``label``.
    """
    if not path:
        return None, None
    from sgcad_qgis.engine.validate import check_model_file, describe_error

    try:
        meta = check_model_file(path, kind, label.lower())
    except Exception as exc:
        return None, f"{label[0].upper() + label[1:]}: {describe_error(exc)[0]}"
    return meta, None


def model_bands(
    meta: Any, layer: QgsMapLayer, bands: Sequence[int], modality: str, label: str, model_label: str = "model"
) -> Optional[str]:
    """Message when the bands fed to a model do not fit it.

    With no band chosen the engine reads the bands holding the model's roles where the layer's file
    says which is which (``engine.inputs.bands``), else the model's own band numbers, which must
    then exist in the layer; chosen bands must be as many as the model was trained on.
    """
    if meta is None or layer is None:
        return None
    stored = list(meta.bands.optical_bands if modality == "optical" else meta.bands.sar_bands)
    if modality == "optical" and not stored:  # a SAR-only model: the engine leaves the image unread, with a note
        return None
    if modality == "optical" and plain_file(layer):
        from sgcad_qgis.engine.inputs.bands import check_optical_not_paletted

        paletted = engine_check(check_optical_not_paletted, plain_file(layer), list(bands) or stored)
        if paletted:
            return paletted
    if not bands and plain_file(layer):
        from sgcad_qgis.engine.inputs.bands import choose_bands

        choice = choose_bands(plain_file(layer), meta.bands, modality)
        bands = list(choice.bands) if choice else []
    message = band_choice(layer, list(bands) or stored, len(stored), label)
    if message:
        return f"{message} The {model_label} was trained on {modality} bands {stored}."
    return None


def label_field(source: Any, field: str, schema: Any, label: str = "label layer") -> Optional[str]:
    """Message when ``field`` is missing or holds values that are not classes of ``schema``.

    NULL and empty values are allowed (those polygons are left unlabelled).
    """
    if source is None or not field:
        return None
    index = source.fields().lookupField(field)
    if index < 0:
        names = [f.name() for f in source.fields()]
        return f"The {label} has no field '{field}'; its fields are {names}."
    bad = []
    for value in source.uniqueValues(index):
        if value is None or str(value).strip() in ("", "NULL") or _is_null(value):
            continue
        try:
            schema.id_of(value)
        except ValueError:
            bad.append(value)
    if bad:
        return (
            f"Field '{field}' of the {label} holds value(s) {sorted(map(str, bad))[:8]} that are not "
            f"classes of the schema; use the ids {list(schema.ids)} or names {list(schema.names)}."
        )
    return None


def _is_null(value: Any) -> bool:
    return hasattr(value, "isNull") and value.isNull()


def outputs_not_inputs(outputs: Iterable[Any], inputs: Dict[str, Any]) -> Optional[str]:
    """The engine's message when an output would replace an input (with OVERWRITE or without).

    ``inputs`` values may be layers (their source is used), paths or None.
    """
    from sgcad_qgis.engine.validate import check_outputs_not_inputs

    paths = {label: (value.source() if isinstance(value, QgsMapLayer) else value) for label, value in inputs.items()}
    return engine_check(check_outputs_not_inputs, [o for o in outputs if o], paths)


def distinct_outputs(outputs: Dict[str, Any]) -> Optional[str]:
    from sgcad_qgis.engine.validate import check_distinct_outputs

    return engine_check(check_distinct_outputs, outputs)


def tiling(tile_size: Any, overlap_px: Any) -> Optional[str]:
    """The engine's message for a tile size or overlap it would refuse."""
    from sgcad_qgis.engine.validate import check_tiling

    try:
        tile, over = int(float(tile_size)), int(float(overlap_px))
    except (TypeError, ValueError):
        return None
    return engine_check(check_tiling, tile, over)


def tiling_of(parameters: Dict[str, Any]) -> Optional[str]:
    """:func:`tiling` of an algorithm's TILE_SIZE and OVERLAP, saying so when OVERLAP was left at its default."""
    from sgcad_qgis.engine.config import InferenceConfig  # the defaults every segmenting algorithm shows

    overlap = parameters.get("OVERLAP", InferenceConfig.overlap)
    problem = tiling(parameters.get("TILE_SIZE", InferenceConfig.tile_size), overlap)
    if problem and "OVERLAP" not in parameters:  # the user set only the tile: say whose overlap it is
        return f"{problem} (OVERLAP was left at its default, {overlap}: set it too)"
    return problem


def folder_free(folder: str) -> Optional[str]:
    """The engine's message when another live run holds an output folder (its run lock)."""
    if not folder or str(folder).startswith(("TEMPORARY", "memory:")):
        return None
    from sgcad_qgis.engine.validate import check_output_folder, check_unlocked

    return engine_check(check_output_folder, folder) or engine_check(check_unlocked, folder)


def vector_layer_choice(value: Any) -> Optional[str]:
    """The engine's message when a vector given as a file path holds several layers and none is chosen.

    A project layer or ``path|layername=NAME`` names its layer; a bare path to a multi-layer
    GeoPackage would otherwise be read from its first layer.
    """
    if not isinstance(value, str) or "|" in value or not Path(value).is_file():
        return None
    from sgcad_qgis.engine.validate import choose_vector_layer

    return engine_check(choose_vector_layer, value, None)


def unreadable_file(value: str, raster: bool = True) -> Optional[str]:
    """The engine's message for a file path QGIS could not open (missing, corrupt, not a raster/vector)."""
    path = Path(str(value).split("|", 1)[0])
    if not path.exists():
        return f"{path}: file not found; check the path"
    if raster:
        import rasterio

        def read():
            with rasterio.open(path) as src:
                src.read(1, window=((0, min(src.height, 1)), (0, min(src.width, 1))))

        return engine_check(read)
    from sgcad_qgis.engine.validate import vector_layers

    return engine_check(vector_layers, path)


def output_free(path: str, overwrite: bool, label: str) -> Optional[str]:
    """Message when an output file already exists and overwriting was not asked for."""
    if path and not str(path).startswith("memory:") and Path(path).exists() and not overwrite:
        return (
            f"The {label} '{path}' already exists; choose another file or tick "
            "'Overwrite existing output files' (OVERWRITE=true)."
        )
    return None


def optical_needed(meta: Any, optical: Optional[QgsMapLayer], model_label: str = "student model") -> Optional[str]:
    """Message when the optical raster is left empty for a model that needs one (a SAR-only model,
    trained by ``engine train-sar``, reads none)."""
    if meta is None or optical is not None or meta.bands.optical_channels == 0:
        return None
    return (
        f"The {model_label} was trained on optical + SAR: choose the optical raster, "
        "or a SAR-only model to map land cover from the SAR alone."
    )
