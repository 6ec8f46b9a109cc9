"""Result layers of a run: added to a layer-tree group named after the run, or updated in place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from qgis.core import QgsDataProvider, QgsLayerTreeGroup, QgsProject, QgsRasterLayer

from .. import layers as styles


@dataclass
class ResultLayer:
    """One output raster of a run.

    Attributes:
        role: stable key (``classes``, ``gate_water`` ...): a later run with the same role
            replaces this layer's file instead of adding a new layer.
        path: the raster file.
        name: layer name; it says what the layer shows (it is the legend's title).
        kind: a style kind of :mod:`sgcad_qgis.layers` (classes, probability, gates, kd_ratio),
            or ``band`` for a paletted view of one band given by ``classes``.
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
    visible: bool = True


def style(layer: QgsRasterLayer, item: ResultLayer, schema) -> None:
    """Apply the style that says what ``item`` shows."""
    if item.kind == "band":
        layer.setRenderer(styles.paletted_renderer(layer, item.classes, item.band))
        layer.renderer().setOpacity(styles.GATE_OPACITY)
    else:
        extra = item.classes if item.kind == styles.KIND_CLASSES else ()
        styles.apply_style(layer, item.kind, schema, item.band, extra)


def find_or_make_group(name: str, previous: Optional[str] = None) -> QgsLayerTreeGroup:
    """The group called ``previous`` renamed to ``name``, or a new group at the top of the tree."""
    root = QgsProject.instance().layerTreeRoot()
    group = root.findGroup(previous) if previous else None
    group = group or root.findGroup(name)
    if group is None:
        group = root.insertGroup(0, name)
    group.setName(name)
    return group


def show_results(
    group: QgsLayerTreeGroup, results: Iterable[ResultLayer], schema, existing: Dict[str, str],
) -> Dict[str, str]:
    """Add (or refresh in place) the layers of ``results`` under ``group``.

    Args:
        group: where new layers go.
        results: the outputs to show; files that do not exist are skipped.
        schema: the model's ``ClassSchema`` (styles the class map).
        existing: role -> layer id of layers shown earlier; those are re-pointed to the new
            file, keeping their place, visibility and any style edits the user made.

    Returns:
        role -> layer id of every layer now shown.

    Raises:
        ValueError: an output file exists but GDAL cannot open it.
    """
    project = QgsProject.instance()
    shown = dict(existing)
    for item in results:
        if not item.path or not Path(item.path).is_file():
            continue
        layer = project.mapLayer(existing.get(item.role, ""))
        if isinstance(layer, QgsRasterLayer):
            layer.setDataSource(item.path, item.name, "gdal", QgsDataProvider.ProviderOptions())
        else:
            layer = QgsRasterLayer(item.path, item.name, "gdal")
            if not layer.isValid():
                raise ValueError(f"The output {item.path} cannot be opened as a raster.")
            project.addMapLayer(layer, False)
            group.addLayer(layer).setItemVisibilityChecked(item.visible)
        if not layer.isValid():
            raise ValueError(f"The output {item.path} cannot be opened as a raster.")
        style(layer, item, schema)
        layer.setAbstract(item.abstract)
        shown[item.role] = layer.id()
        layer.triggerRepaint()
    return shown
