"""Area to segment: the canvas extent, the extent of a polygon layer, or a rectangle drawn on the map."""

from __future__ import annotations

from typing import Optional, Tuple

from qgis.core import QgsCoordinateReferenceSystem, QgsMapLayerProxyModel, QgsRectangle
from qgis.gui import QgsMapCanvas, QgsMapLayerComboBox
from qgis.PyQt import sip
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QGridLayout, QLabel, QPushButton, QWidget

from .inputs import shrinkable
from .map_tools import RectangleMapTool

WHOLE, CANVAS, LAYER, DRAWN = "whole", "canvas", "layer", "drawn"


class AreaPicker(QWidget):
    """Mode combo plus the widgets of the chosen mode."""

    changed = pyqtSignal()

    def __init__(self, canvas: QgsMapCanvas, parent=None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.drawn: Optional[QgsRectangle] = None
        self.drawn_crs = QgsCoordinateReferenceSystem()
        self.mode = QComboBox(self)
        self.mode.addItem("Whole overlap of the two layers", WHOLE)
        self.mode.addItem("Current map view", CANVAS)
        self.mode.addItem("Extent of a polygon layer", LAYER)
        self.mode.addItem("Rectangle drawn on the map", DRAWN)
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        shrinkable(self.mode)
        shrinkable(self.layer_combo)
        self.draw_button = QPushButton("Draw rectangle", self)
        self.draw_button.setToolTip("Drag a rectangle on the map")
        self.draw_button.setCheckable(True)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.mode, 0, 0, 1, 2)
        layout.addWidget(self.layer_combo, 1, 0, 1, 2)
        layout.addWidget(self.draw_button, 2, 0)
        layout.addWidget(self.status, 2, 1)
        self.tool = RectangleMapTool(canvas)
        self.tool.rectangle_drawn.connect(self._drawn)
        self.tool.deactivated.connect(self._tool_deactivated)
        self.draw_button.toggled.connect(self._toggle_tool)
        self.mode.currentIndexChanged.connect(self._mode_changed)
        self.layer_combo.layerChanged.connect(lambda _l: self.changed.emit())
        self._mode_changed()

    def current_mode(self) -> str:
        return self.mode.currentData()

    def set_mode(self, mode: str) -> None:
        self.mode.setCurrentIndex(self.mode.findData(mode))

    def _mode_changed(self) -> None:
        mode = self.current_mode()
        self.layer_combo.setVisible(mode == LAYER)
        self.draw_button.setVisible(mode == DRAWN)
        self.status.setVisible(mode == DRAWN)
        self.status.setText("" if self.drawn is None else self._describe(self.drawn))
        if mode != DRAWN and self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)
        self.changed.emit()

    def _tool_deactivated(self) -> None:
        if not sip.isdeleted(self.draw_button):
            self.draw_button.setChecked(False)

    def shutdown(self) -> None:
        """Take the rectangle tool off the canvas and drop its signals (the dock is going away)."""
        for signal, slot in ((self.tool.deactivated, self._tool_deactivated),
                             (self.tool.rectangle_drawn, self._drawn)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):  # already disconnected
                pass
        if not sip.isdeleted(self.canvas) and self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)

    def _toggle_tool(self, on: bool) -> None:
        if on:
            self.canvas.setMapTool(self.tool)
        elif self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)

    def _drawn(self, rectangle: QgsRectangle) -> None:
        self.drawn = QgsRectangle(rectangle)
        self.drawn_crs = self.canvas.mapSettings().destinationCrs()
        self.status.setText(self._describe(self.drawn))
        self.canvas.unsetMapTool(self.tool)
        self.changed.emit()

    @staticmethod
    def _describe(rect: QgsRectangle) -> str:
        return f"{rect.width():.0f} × {rect.height():.0f} map units"

    def area(self) -> Tuple[Optional[QgsRectangle], QgsCoordinateReferenceSystem]:
        """The chosen rectangle and its CRS; ``(None, invalid CRS)`` means the whole overlap.

        Raises:
            ValueError: the mode needs a layer or a drawn rectangle that is not there yet.
        """
        mode = self.current_mode()
        if mode == WHOLE:
            return None, QgsCoordinateReferenceSystem()
        if mode == CANVAS:
            return QgsRectangle(self.canvas.extent()), self.canvas.mapSettings().destinationCrs()
        if mode == LAYER:
            layer = self.layer_combo.currentLayer()
            if layer is None:
                raise ValueError("Area: choose a polygon layer, or another kind of area.")
            return QgsRectangle(layer.extent()), layer.crs()
        if self.drawn is None:
            raise ValueError("Area: click 'Draw rectangle' and drag a rectangle on the map first.")
        return QgsRectangle(self.drawn), self.drawn_crs
