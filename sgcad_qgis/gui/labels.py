"""Label layers for fine-tuning: creation, class styling, adding polygons and sanity checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDefaultValue,
    QgsFeature,
    QgsField,
    QgsFillSymbol,
    QgsGeometry,
    QgsProject,
    QgsRectangle,
    QgsRendererCategory,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant
from qgis.PyQt.QtGui import QColor

from ..engine.config import ClassSchema
from ..layers import LABEL_ROLE, ROLE_PROPERTY

CLASS_FIELD = "class"


def create_label_layer(
    crs: QgsCoordinateReferenceSystem, schema: ClassSchema, path: Optional[Path] = None,
    name: str = "SGCAD labels",
) -> QgsVectorLayer:
    """A polygon layer with a text ``class`` field, styled with the schema's colours.

    Args:
        crs: CRS of the new layer (use the imagery's, so polygons need no reprojection).
        schema: classes whose names and colours style the layer.
        path: GeoPackage to create; ``None`` makes a scratch (memory) layer.
        name: layer name shown in the Layers panel.

    Raises:
        ValueError: when the GeoPackage exists or cannot be written.
    """
    memory = QgsVectorLayer(f"Polygon?crs={crs.authid() or crs.toWkt()}", name, "memory")
    memory.dataProvider().addAttributes([QgsField(CLASS_FIELD, QVariant.String, len=64)])
    memory.updateFields()
    if path is None:
        layer = memory
    else:
        path = Path(path)
        if path.exists():
            raise ValueError(f"{path} already exists; choose a new GeoPackage name for the labels")
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = "labels"
        result = QgsVectorFileWriter.writeAsVectorFormatV3(
            memory, str(path), QgsProject.instance().transformContext(), options
        )
        if result[0] != QgsVectorFileWriter.NoError:
            raise ValueError(f"cannot create the label GeoPackage {path}: {result[1]}")
        layer = QgsVectorLayer(f"{path}|layername=labels", name, "ogr")
        if not layer.isValid():
            raise ValueError(f"the label GeoPackage {path} was written but cannot be opened")
    style_label_layer(layer, schema)
    layer.setCustomProperty(ROLE_PROPERTY, LABEL_ROLE)  # result groups go below it
    return layer


def style_label_layer(layer: QgsVectorLayer, schema: ClassSchema) -> None:
    """Categorise ``layer`` by its class field: one semi-transparent fill per schema class."""
    categories = []
    for name, color in zip(schema.names, schema.colors):
        rgb = QColor(color)  # "#rrggbb99" would be read as #aarrggbb: another colour
        symbol = QgsFillSymbol.createSimple(
            {"color": f"{rgb.red()},{rgb.green()},{rgb.blue()},153", "outline_color": color, "outline_width": "0.6"}
        )
        categories.append(QgsRendererCategory(name, symbol, name))
    layer.setRenderer(QgsCategorizedSymbolRenderer(CLASS_FIELD, categories))
    layer.triggerRepaint()


def set_default_class(layer: QgsVectorLayer, class_name: str) -> None:
    """Pre-fill the class of features digitised with QGIS's own tools."""
    index = layer.fields().indexOf(CLASS_FIELD)
    if index >= 0:
        quoted = class_name.replace("'", "''")
        layer.setDefaultValueDefinition(index, QgsDefaultValue(f"'{quoted}'"))


def is_label_layer(layer) -> bool:
    return (
        isinstance(layer, QgsVectorLayer)
        and layer.geometryType() == QgsWkbTypes.PolygonGeometry
        and layer.fields().indexOf(CLASS_FIELD) >= 0
    )


def add_polygon(
    layer: QgsVectorLayer, geometry: QgsGeometry, source_crs: QgsCoordinateReferenceSystem,
    class_name: str,
) -> QgsFeature:
    """Store ``geometry`` (in ``source_crs``) in ``layer`` with ``class_name``.

    Written straight to the provider unless the user has the layer in edit mode, in which
    case the feature joins the edit buffer so that QGIS's undo works as usual.
    """
    geometry = QgsGeometry(geometry)
    if source_crs != layer.crs():
        transform = QgsCoordinateTransform(source_crs, layer.crs(), QgsProject.instance())
        geometry.transform(transform)
    feature = QgsFeature(layer.fields())
    feature.setGeometry(geometry)
    feature.setAttribute(CLASS_FIELD, class_name)
    if layer.isEditable():
        layer.addFeature(feature)
    else:
        ok, _ = layer.dataProvider().addFeatures([feature])
        if not ok:
            raise ValueError(f"cannot add the polygon to layer {layer.name()!r}; is it read-only?")
        layer.updateExtents()
    layer.triggerRepaint()
    return feature


def label_problems(
    layer: QgsVectorLayer, schema: ClassSchema, extent: QgsRectangle,
    extent_crs: QgsCoordinateReferenceSystem,
) -> Dict[str, Any]:
    """Check drawn labels before fine-tuning.

    Returns:
        ``errors`` and ``warnings`` (lists of sentences the user can act on: no polygons,
        polygons without or with an unknown class, polygons outside the imagery (all of
        them: error; some: warning), a single class only) and ``counts`` (class name ->
        usable polygons).
    """
    errors: List[str] = []
    warnings: List[str] = []
    known = {n.lower(): n for n in schema.names}
    transform = QgsCoordinateTransform(layer.crs(), extent_crs, QgsProject.instance())
    counts: Dict[str, int] = {}
    unknown, missing, outside, total = set(), 0, 0, 0
    for feature in layer.getFeatures():
        geometry = feature.geometry()
        if geometry is None or geometry.isEmpty():
            continue
        total += 1
        value = feature[CLASS_FIELD]
        text = "" if value is None or str(value) == "NULL" else str(value).strip()
        if not text:
            missing += 1
            continue
        name = known.get(text.lower())
        if name is None and text.isdigit() and int(text) in schema.ids:
            name = schema.names[schema.ids.index(int(text))]
        if name is None:
            unknown.add(text)
            continue
        g = QgsGeometry(geometry)
        g.transform(transform)
        if not g.boundingBox().intersects(extent) or not g.intersects(QgsGeometry.fromRect(extent)):
            outside += 1
            continue
        counts[name] = counts.get(name, 0) + 1
    if total == 0:
        errors.append(f"No polygons yet in {layer.name()!r}: pick a class in the palette and draw "
                      "polygons on the map (left-click vertices, right-click to finish).")
        return {"errors": errors, "warnings": warnings, "counts": counts}
    if unknown:
        errors.append(f"{len(unknown)} class value(s) {sorted(unknown)} are not classes of the model "
                      f"(it knows {list(schema.names)}); fix the '{CLASS_FIELD}' field.")
    if missing:
        errors.append(f"{missing} polygon(s) have no class; fill the '{CLASS_FIELD}' field or delete them.")
    if outside and not counts:
        errors.append(f"All {outside} polygon(s) lie outside the imagery; draw them over the optical "
                      "and SAR layers.")
    elif outside:
        warnings.append(f"{outside} polygon(s) lie outside the imagery and are ignored.")
    if len(counts) == 1:
        only = next(iter(counts))
        errors.append(f"Only one class ({only}) is labelled; draw polygons of at least one other "
                      "class so the model learns to tell them apart.")
    return {"errors": errors, "warnings": warnings, "counts": counts}
