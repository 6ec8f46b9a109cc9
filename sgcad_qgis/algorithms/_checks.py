"""Checks run by ``checkParameterValues``: catch what can be caught before a long run starts.

Each function returns ``None`` when the check passes, else one sentence saying what is wrong
and what would fit, so the Processing dialog, batch mode and ``qgis_process`` show it before
anything is computed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

from qgis.core import QgsCoordinateTransform, QgsMapLayer, QgsProject, QgsRectangle


def _extent_in(layer: Any, crs) -> QgsRectangle:
    """Extent of a map layer or feature source in ``crs``."""
    if isinstance(layer, QgsMapLayer):
        extent, source_crs = layer.extent(), layer.crs()
    else:  # QgsProcessingFeatureSource
        extent, source_crs = layer.sourceExtent(), layer.sourceCrs()
    if source_crs.isValid() and crs.isValid() and source_crs != crs:
        extent = QgsCoordinateTransform(source_crs, crs, QgsProject.instance()).transformBoundingBox(extent)
    return extent


def overlap(a: QgsMapLayer, b: Any, label_a: str, label_b: str) -> Optional[str]:
    """Message when ``b``'s footprint does not overlap raster/vector ``a``'s."""
    if a is None or b is None:
        return None
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


def model_file(path: str, kind: str, label: str = "model") -> Tuple[Any, Optional[str]]:
    """(metadata, None) when ``path`` is an SGCAD ``kind`` model, else (None, message).

    Only the file's header is read, so this is cheap enough for ``checkParameterValues``.
    """
    if not path:
        return None, None
    from sgcad_qgis.engine.models.checkpoint import check_fits, read_metadata

    try:
        meta = read_metadata(path)
        check_fits(meta, path, kind)
    except (ValueError, FileNotFoundError) as exc:
        return None, f"{label[0].upper() + label[1:]}: {exc}"
    return meta, None


def model_bands(
    meta: Any, layer: QgsMapLayer, bands: Sequence[int], modality: str, label: str, model_label: str = "model"
) -> Optional[str]:
    """Message when the bands fed to a model do not fit it.

    With no band chosen the model's own band numbers are used, so they must exist in the layer;
    chosen bands must be as many as the model was trained on.
    """
    if meta is None or layer is None:
        return None
    stored = list(meta.bands.optical_bands if modality == "optical" else meta.bands.sar_bands)
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


def output_free(path: str, overwrite: bool, label: str) -> Optional[str]:
    """Message when an output file already exists and overwriting was not asked for."""
    if path and not str(path).startswith("memory:") and Path(path).exists() and not overwrite:
        return (
            f"The {label} '{path}' already exists; choose another file or tick "
            "'Overwrite existing output files' (OVERWRITE=true)."
        )
    return None
