"""A small line chart of the KD region ratio per epoch, painted with QPainter (no plotting library)."""

from __future__ import annotations

from typing import Dict, List, Sequence

from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

SERIES_COLORS = {"all": "#333333", "water": "#2b83ba", "non-water": "#d7191c"}


class RatioChart(QWidget):
    """Lines of fractions in [0, 1] against epochs, with a legend and light grid."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.epochs: List[int] = []
        self.series: Dict[str, List[float]] = {}
        self.title = "KD region ratio per epoch"
        self.empty_text = "Run a distillation or fine-tune to see the share of gated pixels."
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setMinimumHeight(170)

    def sizeHint(self) -> QSize:
        return QSize(320, 180)

    def set_series(self, epochs: Sequence[int], series: Dict[str, Sequence[float]]) -> None:
        """Show ``series`` (name -> one value per epoch); names in SERIES_COLORS get fixed colours."""
        for name, values in series.items():
            if len(values) != len(epochs):
                raise ValueError(f"series {name!r} has {len(values)} values for {len(epochs)} epochs")
        self.epochs = [int(e) for e in epochs]
        self.series = {k: [float(v) for v in vals] for k, vals in series.items()}
        self.update()

    def clear(self) -> None:
        self.set_series([], {})

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        metrics = painter.fontMetrics()
        line_h = metrics.height()
        painter.setPen(self.palette().text().color())
        painter.drawText(QRectF(0, 2, self.width(), line_h), Qt.AlignHCenter, self.title)
        if not self.epochs:
            painter.drawText(QRectF(8, line_h, self.width() - 16, self.height() - line_h),
                             Qt.AlignCenter | Qt.TextWordWrap, self.empty_text)
            return
        peak = max((max(v) for v in self.series.values() if v), default=0.0)
        top = 1.0 if peak > 0.5 else (0.5 if peak > 0.2 else 0.2)  # readable fixed ceilings
        left = metrics.horizontalAdvance("0.00") + 10
        plot = QRectF(left, line_h + 6, self.width() - left - 10, self.height() - 3 * line_h - 14)
        grid = QPen(QColor("#d0d0d0"))
        for i in range(5):
            y = plot.bottom() - plot.height() * i / 4
            painter.setPen(grid)
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(self.palette().text().color())
            painter.drawText(QRectF(0, y - line_h / 2, left - 4, line_h), Qt.AlignRight | Qt.AlignVCenter,
                             f"{top * i / 4:.2f}")
        first, last = self.epochs[0], self.epochs[-1]
        span = max(last - first, 1)

        def point(epoch: int, value: float) -> QPointF:
            x = plot.left() + plot.width() * (epoch - first) / span
            return QPointF(x, plot.bottom() - plot.height() * min(value, top) / top)

        for label_epoch in sorted({first, last, first + span // 2}):
            x = point(label_epoch, 0).x()
            painter.drawText(QRectF(x - 20, plot.bottom() + 2, 40, line_h), Qt.AlignHCenter, str(label_epoch))
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2, plot.width(), line_h), Qt.AlignRight, "epoch")
        legend_x = plot.left()
        for name, values in self.series.items():
            color = QColor(SERIES_COLORS.get(name, "#7b3294"))
            painter.setPen(QPen(color, 2))
            points = [point(e, v) for e, v in zip(self.epochs, values)]
            for a, b in zip(points, points[1:]):
                painter.drawLine(a, b)
            for p in points if len(points) < 30 else []:
                painter.drawEllipse(p, 2.5, 2.5)
            y = self.height() - line_h - 2
            painter.drawLine(QPointF(legend_x, y + line_h / 2), QPointF(legend_x + 14, y + line_h / 2))
            painter.setPen(self.palette().text().color())
            text = f"{name} ({values[-1]:.2f})"
            painter.drawText(QRectF(legend_x + 18, y, metrics.horizontalAdvance(text) + 4, line_h),
                             Qt.AlignLeft, text)
            legend_x += 30 + metrics.horizontalAdvance(text)
