"""Class palette: one colour button per class; the checked one labels the next polygon."""

from __future__ import annotations

from typing import Optional

from qgis.PyQt.QtCore import QSize, pyqtSignal
from qgis.PyQt.QtGui import QColor, QIcon, QPixmap
from qgis.PyQt.QtWidgets import QButtonGroup, QGridLayout, QSizePolicy, QToolButton, QWidget

from ..engine.config import ClassSchema


def swatch(color: str, size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class ClassPalette(QWidget):
    """Exclusive, colour-coded class buttons laid out in a grid."""

    class_changed = pyqtSignal(str)

    def __init__(self, schema: Optional[ClassSchema] = None, columns: int = 3, parent=None) -> None:
        super().__init__(parent)
        self._columns = columns
        self._group = QButtonGroup(self)
        self._group.setExclusive(True)
        self._group.buttonClicked.connect(lambda b: self.class_changed.emit(b.property("class_name")))
        self._layout = QGridLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self.schema = None
        self.set_schema(schema or ClassSchema())

    def set_schema(self, schema: ClassSchema) -> None:
        """Rebuild the buttons for ``schema``, keeping the current class when it still exists."""
        previous = self.current_class() if self.schema is not None else None
        for button in self._group.buttons():
            self._group.removeButton(button)
            self._layout.removeWidget(button)
            button.deleteLater()
        self.schema = schema
        for i, (name, color) in enumerate(zip(schema.names, schema.colors)):
            button = QToolButton(self)
            button.setText(name)
            button.setIcon(swatch(color))
            button.setIconSize(QSize(14, 14))
            button.setToolButtonStyle(2)  # Qt.ToolButtonTextBesideIcon
            button.setCheckable(True)
            button.setProperty("class_name", name)
            button.setObjectName(f"class_{name}")
            button.setToolTip(f"Label the next polygon as {name}")
            button.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
            self._group.addButton(button, i)
            self._layout.addWidget(button, i // self._columns, i % self._columns)
        names = list(schema.names)
        self.set_class(previous if previous in names else names[0])

    def current_class(self) -> str:
        button = self._group.checkedButton()
        return button.property("class_name") if button is not None else self.schema.names[0]

    def current_color(self) -> QColor:
        return QColor(self.schema.colors[list(self.schema.names).index(self.current_class())])

    def set_class(self, name: str) -> None:
        for button in self._group.buttons():
            if button.property("class_name") == name:
                button.setChecked(True)
                self.class_changed.emit(name)
                return
        raise ValueError(f"{name!r} is not a class of the palette; classes: {list(self.schema.names)}")
