"""Map tools of the dock: draw a labelled polygon, or a rectangle for the area to segment."""

from __future__ import annotations

from typing import List

from qgis.core import QgsGeometry, QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapCanvas, QgsMapMouseEvent, QgsMapTool, QgsMapToolExtent, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor


class PolygonMapTool(QgsMapTool):
    """Left clicks add vertices, right click finishes the polygon, Esc drops it.

    Backspace removes the last vertex. The finished polygon is emitted in the canvas CRS;
    the receiver (the dock) stores it with the class chosen in the palette.
    """

    polygon_finished = pyqtSignal(QgsGeometry)
    message = pyqtSignal(str)

    def __init__(self, canvas: QgsMapCanvas, color: QColor = QColor("#2b83ba")) -> None:
        super().__init__(canvas)
        self._points: List[QgsPointXY] = []
        self._band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
        self._band.setWidth(2)
        self.set_color(color)
        self.setCursor(Qt.CrossCursor)

    def set_color(self, color: QColor) -> None:
        """Outline in the class colour so the user sees which class is being drawn."""
        if self._band is None:
            return
        self._band.setStrokeColor(color)
        fill = QColor(color)
        fill.setAlpha(70)
        self._band.setFillColor(fill)

    @property
    def points(self) -> List[QgsPointXY]:
        return list(self._points)

    def canvasReleaseEvent(self, event: QgsMapMouseEvent) -> None:
        if event.button() == Qt.LeftButton:
            self._points.append(event.mapPoint())
            self._redraw()
        elif event.button() == Qt.RightButton:
            self.finish()

    def canvasMoveEvent(self, event: QgsMapMouseEvent) -> None:
        if self._points:
            self._redraw(event.mapPoint())

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key_Escape:
            self.reset()
            event.accept()
        elif event.key() in (Qt.Key_Backspace, Qt.Key_Delete) and self._points:
            self._points.pop()
            self._redraw()
            event.accept()
        else:
            event.ignore()

    def finish(self) -> None:
        """Emit the polygon if it has at least three vertices, then start a new one."""
        if len(self._points) < 3:
            self.message.emit("A polygon needs at least three vertices: left-click to add them, "
                              "right-click to finish.")
            self.reset()
            return
        geometry = QgsGeometry.fromPolygonXY([self._points + [self._points[0]]])
        if not geometry.isGeosValid():
            geometry = geometry.makeValid()
        self.reset()
        self.polygon_finished.emit(geometry)

    def reset(self) -> None:
        self._points = []
        if self._band is not None:
            self._band.reset(QgsWkbTypes.PolygonGeometry)

    def deactivate(self) -> None:
        self.reset()
        super().deactivate()

    def release(self) -> None:
        """Remove the rubber band from the canvas (before the tool is dropped)."""
        if self._band is not None:
            self._band.reset(QgsWkbTypes.PolygonGeometry)
            scene = self._band.scene()
            if scene is not None:
                scene.removeItem(self._band)
            self._band = None

    def _redraw(self, floating: QgsPointXY = None) -> None:
        points = self._points + ([floating] if floating is not None else [])
        if self._band is None:
            return
        self._band.reset(QgsWkbTypes.PolygonGeometry)
        for i, point in enumerate(points):
            self._band.addPoint(point, i == len(points) - 1)


class RectangleMapTool(QgsMapToolExtent):
    """Drag a rectangle; emits it in the canvas CRS when the mouse is released."""

    rectangle_drawn = pyqtSignal(QgsRectangle)

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.extentChanged.connect(self._emit)

    def _emit(self, rectangle: QgsRectangle) -> None:
        if rectangle.isEmpty():
            return
        self.rectangle_drawn.emit(rectangle)
