"""Label panel: pick or create a label layer, choose a class, draw polygons on the map."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from qgis.core import QgsMapLayerProxyModel, QgsProject, QgsVectorLayer
from qgis.gui import QgsMapCanvas, QgsMapLayerComboBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..engine.config import ClassSchema
from . import labels
from .inputs import shrinkable
from .map_tools import PolygonMapTool
from .palette import ClassPalette


class LabelPanel(QWidget):
    """Everything needed to draw training polygons.

    Signals:
        message(str, int): a sentence for the user and a Qgis message level.
    """

    message = pyqtSignal(str, int)
    labels_changed = pyqtSignal()

    def __init__(self, canvas: QgsMapCanvas, parent=None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.schema = ClassSchema()
        self.crs_source = None  # callable giving the imagery CRS for new layers
        self._watched = set()
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        shrinkable(self.layer_combo)
        self.layer_combo.setToolTip(f"Polygon layer with a '{labels.CLASS_FIELD}' field holding class names")
        self.new_button = QToolButton(self)
        self.new_button.setText("New")
        self.new_button.setPopupMode(QToolButton.MenuButtonPopup)
        self.new_button.setToolTip("Create a label layer styled with the model's classes")
        menu = QMenu(self.new_button)
        menu.addAction("Scratch layer (in memory)", lambda: self.create_layer(None))
        menu.addAction("GeoPackage…", self._create_geopackage)
        self.new_button.setMenu(menu)
        self.new_button.clicked.connect(lambda: self.create_layer(None))
        self.palette = ClassPalette(self.schema, parent=self)
        self.draw_button = QPushButton("Draw polygons", self)
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Left-click vertices, right-click to finish a polygon, Esc to drop it")
        self.counts = QLabel("", self)
        self.counts.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.layer_combo, 1)
        row.addWidget(self.new_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(QLabel("Class of the next polygon:", self))
        layout.addWidget(self.palette)
        layout.addWidget(self.draw_button)
        layout.addWidget(self.counts)

        self.tool = PolygonMapTool(canvas, self.palette.current_color())
        self.tool.polygon_finished.connect(self._polygon_finished)
        self.tool.message.connect(lambda text: self.message.emit(text, 1))
        self.tool.deactivated.connect(self._tool_deactivated)
        self.draw_button.toggled.connect(self._toggle_tool)
        self.palette.class_changed.connect(self._class_changed)
        self.layer_combo.layerChanged.connect(self._layer_changed)
        self._layer_changed(self.layer_combo.currentLayer())

    # -------------------------------------------------------------- layer
    def layer(self) -> Optional[QgsVectorLayer]:
        layer = self.layer_combo.currentLayer()
        return layer if labels.is_label_layer(layer) else None

    def set_schema(self, schema: ClassSchema) -> None:
        self.schema = schema
        self.palette.set_schema(schema)
        if self.layer() is not None:
            labels.style_label_layer(self.layer(), schema)

    def create_layer(self, path: Optional[Path]) -> Optional[QgsVectorLayer]:
        """Create, style, add to the project and select a new label layer."""
        crs = self.crs_source() if self.crs_source else self.canvas.mapSettings().destinationCrs()
        try:
            layer = labels.create_label_layer(crs, self.schema, path)
        except ValueError as exc:
            self.message.emit(str(exc), 2)
            return None
        project = QgsProject.instance()
        project.addMapLayer(layer, False)
        project.layerTreeRoot().insertLayer(0, layer)  # on top, so drawn polygons are seen
        self.layer_combo.setLayer(layer)
        self.message.emit(f"Label layer {layer.name()!r} created: pick a class and draw polygons.", 0)
        return layer

    def _create_geopackage(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New label GeoPackage", "labels.gpkg",
                                              "GeoPackage (*.gpkg)")
        if path:
            self.create_layer(Path(path if path.endswith(".gpkg") else path + ".gpkg"))

    def _layer_changed(self, layer) -> None:
        usable = labels.is_label_layer(layer)
        self.draw_button.setEnabled(usable)
        if layer is not None and not usable:
            self.message.emit(f"Layer {layer.name()!r} has no '{labels.CLASS_FIELD}' field; create a "
                              "label layer with 'New'.", 1)
        if usable:
            labels.set_default_class(layer, self.palette.current_class())
            if layer.id() not in self._watched:  # QGIS digitising, attribute edits, deletions
                self._watched.add(layer.id())
                layer.featureAdded.connect(self._update_counts)
                layer.dataChanged.connect(self._update_counts)
        elif self.draw_button.isChecked():
            self.draw_button.setChecked(False)
        self._update_counts()

    # -------------------------------------------------------------- drawing
    def _tool_deactivated(self) -> None:
        if not sip.isdeleted(self.draw_button):
            self.draw_button.setChecked(False)

    def shutdown(self) -> None:
        """Take the drawing tool off the canvas and drop its signals (the dock is going away)."""
        for signal, slot in ((self.tool.deactivated, self._tool_deactivated),
                             (self.tool.polygon_finished, self._polygon_finished)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):  # already disconnected
                pass
        if not sip.isdeleted(self.canvas) and self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)
        self.tool.release()

    def _toggle_tool(self, on: bool) -> None:
        if on:
            self.canvas.setMapTool(self.tool)
        elif self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)

    def _class_changed(self, name: str) -> None:
        self.tool.set_color(self.palette.current_color())
        if self.layer() is not None:
            labels.set_default_class(self.layer(), name)

    def _polygon_finished(self, geometry) -> None:
        layer = self.layer()
        if layer is None:
            self.message.emit("Choose or create a label layer before drawing.", 1)
            return
        try:
            labels.add_polygon(layer, geometry, self.canvas.mapSettings().destinationCrs(),
                               self.palette.current_class())
        except ValueError as exc:
            self.message.emit(str(exc), 2)
        self._update_counts()
        self.labels_changed.emit()

    def class_counts(self) -> Dict[str, int]:
        layer = self.layer()
        counts: Dict[str, int] = {}
        if layer is None:
            return counts
        for feature in layer.getFeatures():
            value = feature[labels.CLASS_FIELD]
            key = "no class" if value is None or str(value) in ("", "NULL") else str(value)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def _update_counts(self, *_args) -> None:
        counts = self.class_counts()
        if self.layer() is None:
            self.counts.setText("No label layer yet: click 'New'.")
        elif not counts:
            self.counts.setText("No polygons yet.")
        else:
            total = sum(counts.values())
            parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            self.counts.setText(f"{total} polygon(s): {parts}")
