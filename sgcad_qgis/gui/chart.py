"""A small line chart of the KD region ratio per epoch, painted with QPainter (no plotting library)."""

from __future__ import annotations

from typing import Dict, List, Sequence

from qgis.PyQt.QtCore import QPointF, QRectF, QSize, Qt
from qgis.PyQt.QtGui import QColor, QPainter, QPen
from qgis.PyQt.QtWidgets import QSizePolicy, QWidget

SERIES_COLORS = {"all": "#333333", "water": "#2b83ba", "non-water": "#d7191c"}
OTHER_COLOR = "#7b3294"
CEILINGS = ((0.1, 4), (0.2, 4), (0.5, 5), (1.0, 5))  # (top of the y axis, grid intervals)


class RatioChart(QWidget):
    """Lines of fractions in [0, 1] against epochs, with a legend and light grid."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.epochs: List[int] = []
        self.series: Dict[str, List[float]] = {}
        self.title = "KD region ratio per epoch"
        self.empty_text = "Run a distillation or fine-tune to see the share of gated pixels."
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setMinimumHeight(210)

    def sizeHint(self) -> QSize:
        return QSize(320, 220)

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

    def _legend_rows(self, metrics) -> List[List[tuple]]:
        """Legend entries ``(name, text, width)`` flowed into rows that fit the widget's width."""
        rows: List[List[tuple]] = [[]]
        used = 8
        for name, values in self.series.items():
            text = f"{name} ({values[-1]:.2f})" if values else name
            width = 22 + metrics.horizontalAdvance(text) + 12
            if rows[-1] and used + width > self.width():
                rows.append([])
                used = 8
            rows[-1].append((name, text, width))
            used += width
        return rows

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        metrics = painter.fontMetrics()
        line_h = metrics.height()
        text_color = self.palette().text().color()
        painter.setPen(text_color)
        painter.drawText(QRectF(0, 2, self.width(), line_h), Qt.AlignHCenter, self.title)
        if not self.epochs:
            painter.drawText(QRectF(8, line_h, self.width() - 16, self.height() - line_h),
                             Qt.AlignCenter | Qt.TextWordWrap, self.empty_text)
            return
        peak = max((max(v) for v in self.series.values() if v), default=0.0)
        top, steps = next(((c, n) for c, n in CEILINGS if peak <= c), CEILINGS[-1])
        legend = self._legend_rows(metrics)
        left = metrics.horizontalAdvance("0.00") + 10
        bottom_space = line_h + 4 + len(legend) * (line_h + 2)
        plot = QRectF(left, line_h + 8, self.width() - left - 12, self.height() - line_h - 12 - bottom_space)
        for i in range(steps + 1):
            y = plot.bottom() - plot.height() * i / steps
            painter.setPen(QPen(QColor("#d0d0d0")))
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text_color)
            painter.drawText(QRectF(0, y - line_h / 2, left - 4, line_h), Qt.AlignRight | Qt.AlignVCenter,
                             f"{top * i / steps:.2f}")
        first, last = self.epochs[0], self.epochs[-1]
        span = max(last - first, 1)

        def point(epoch: int, value: float) -> QPointF:
            x = plot.left() + plot.width() * (epoch - first) / span
            return QPointF(x, plot.bottom() - plot.height() * min(max(value, 0.0), top) / top)

        ticks = sorted({first, last, first + span // 2})
        for tick in ticks:
            x = point(tick, 0).x()
            # the outer labels stay inside the widget: left- and right-aligned at the ends
            box, align = QRectF(x - 30, plot.bottom() + 2, 60, line_h), Qt.AlignHCenter
            if tick == last and len(ticks) > 1:
                box, align = QRectF(x - 60, plot.bottom() + 2, 60 + 6, line_h), Qt.AlignRight
            painter.drawText(box, align, str(tick))
        for name, values in self.series.items():
            painter.setPen(QPen(QColor(SERIES_COLORS.get(name, OTHER_COLOR)), 2))
            points = [point(e, v) for e, v in zip(self.epochs, values)]
            for a, b in zip(points, points[1:]):
                painter.drawLine(a, b)
            for p in points if len(points) < 30 else []:
                painter.drawEllipse(p, 2.5, 2.5)
        y = plot.bottom() + line_h + 6
        for row in legend:
            x = 8.0
            for name, text, width in row:
                painter.setPen(QPen(QColor(SERIES_COLORS.get(name, OTHER_COLOR)), 2))
                painter.drawLine(QPointF(x, y + line_h / 2), QPointF(x + 16, y + line_h / 2))
                painter.setPen(text_color)
                painter.drawText(QRectF(x + 22, y, width - 22, line_h), Qt.AlignLeft, text)
                x += width
            y += line_h + 2
