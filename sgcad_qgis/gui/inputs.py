"""Input pickers: a raster layer with its bands, the model, the device and the area."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional, Sequence

from qgis.core import QgsMapLayerProxyModel, QgsProject, QgsRasterLayer, QgsSettings
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..environment import available_devices, device_summary

RECENT_KEY = "sgcad/recent_models"
MAX_RECENT = 8
MODEL_SUFFIXES = ("*.safetensors",)
DEFAULT_MODEL = "sgcad_student.safetensors"


def shrinkable(combo: QComboBox, chars: int = 12) -> QComboBox:
    """Let a combo shrink with a narrow dock instead of forcing the dock wider."""
    combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo


def _is_sar_like(layer: QgsRasterLayer) -> bool:
    """Guess SAR: a float raster, or 'sar'/'s1'/'vv' in its name (used only for defaults)."""
    name = layer.name().lower()
    if any(key in name for key in ("sar", "s1", "_vv", "_vh", "hh", "radar")):
        return True
    return layer.dataProvider().dataType(1) in (6, 7)  # Qgis.Float32, Qgis.Float64


TICK_TIP = "Tick the bands the model reads; ticked by hand, they are read top to bottom."


class RasterBandPicker(QWidget):
    """A raster layer combo and a checkable list of its bands.

    Args:
        default_bands: how many leading bands are checked when a layer is chosen.
        prefer_sar: which layer to pick by default (SAR-like or not, see :func:`_is_sar_like`).
    """

    changed = pyqtSignal()

    def __init__(self, default_bands: int, prefer_sar: bool, parent=None) -> None:
        super().__init__(parent)
        self.default_bands = default_bands
        self.prefer_sar = prefer_sar
        self.model_bands: Any = None  # the model's BandMapping: its roles choose the default ticks
        self.order: List[int] = []  # the ticked bands in the order the model reads them
        self.layer_combo = QgsMapLayerComboBox(self)
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        shrinkable(self.layer_combo)
        self.bands = QListWidget(self)
        self.bands.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.bands.setToolTip(TICK_TIP)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.layer_combo)
        layout.addWidget(self.bands)
        self.layer_combo.layerChanged.connect(self._fill_bands)
        self.bands.itemChanged.connect(lambda _item: self.changed.emit())
        self.pick_default()

    def pick_default(self) -> None:
        """Choose the first raster that looks like this input (SAR or optical)."""
        rasters = [lyr for lyr in QgsProject.instance().mapLayers().values()
                   if isinstance(lyr, QgsRasterLayer) and lyr.isValid()]
        matching = [lyr for lyr in rasters if _is_sar_like(lyr) == self.prefer_sar]
        if matching:
            self.layer_combo.setLayer(matching[0])
        self._fill_bands(self.layer())

    def layer(self) -> Optional[QgsRasterLayer]:
        return self.layer_combo.currentLayer()

    def set_layer(self, layer: QgsRasterLayer, bands: Optional[Sequence[int]] = None) -> None:
        self.layer_combo.setLayer(layer)
        if bands is not None:
            self.set_bands(bands)

    def set_model_bands(self, model_bands: Any, count: int) -> None:
        """A model was chosen: tick what it reads from the current layer, unless the ticks fit it
        and were not the previous model's defaults."""
        was_default = self.selected_bands() == self.default_order(self.layer())
        self.model_bands, self.default_bands = model_bands, count
        order = self.default_order(self.layer())  # also says in the tooltip what it rests on
        if self.layer() is not None and (was_default or len(self.selected_bands()) != count):
            self.set_bands(order)

    def default_order(self, layer) -> List[int]:
        """The bands ticked when ``layer`` is chosen: those the engine reads by role where the
        layer's file says which band is which (a Sentinel-2 stack's 4, 3, 2), else the leading ones."""
        if not isinstance(layer, QgsRasterLayer):
            return []
        choice = role_bands(layer, self.model_bands, "sar" if self.prefer_sar else "optical")
        self.bands.setToolTip(TICK_TIP if choice is None else (
            f"Ticked from what the layer's file says ({choice.how}): bands {', '.join(map(str, choice.bands))} are "
            f"read as {', '.join(choice.roles)}. " + TICK_TIP))
        return list(choice.bands) if choice else list(range(1, min(self.default_bands, layer.bandCount()) + 1))

    def _fill_bands(self, layer) -> None:
        self.bands.blockSignals(True)
        self.bands.clear()
        self.order = self.default_order(layer)
        if isinstance(layer, QgsRasterLayer):
            for band in range(1, layer.bandCount() + 1):
                name = layer.bandName(band)
                item = QListWidgetItem(name)
                item.setData(Qt.UserRole, band)
                item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Checked if band in self.order else Qt.Unchecked)
                self.bands.addItem(item)
        self.bands.blockSignals(False)
        rows = min(max(self.bands.count(), 1), 3)  # up to three bands visible, then scroll
        row_height = self.bands.sizeHintForRow(0) if self.bands.count() else 18
        self.bands.setFixedHeight(rows * row_height + 2 * self.bands.frameWidth() + 2)
        self.changed.emit()

    def selected_bands(self) -> List[int]:
        """1-based band numbers that are ticked: in the order they were set (by role, or by
        :meth:`set_bands`) while the same bands stay ticked, else in list order."""
        ticked = [self.bands.item(i).data(Qt.UserRole) for i in range(self.bands.count())
                  if self.bands.item(i).checkState() == Qt.Checked]
        return list(self.order) if sorted(ticked) == sorted(self.order) else ticked

    def set_bands(self, bands: Sequence[int]) -> None:
        self.order = [int(b) for b in bands]
        wanted = set(self.order)
        for i in range(self.bands.count()):
            item = self.bands.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole) in wanted else Qt.Unchecked)


def role_bands(layer: QgsRasterLayer, model_bands: Any, modality: str) -> Any:
    """The engine's choice of bands by role from the layer's source (``engine.inputs.bands``), or
    None: no model yet, not a GDAL source, the source does not say, or the engine cannot load."""
    source = layer.source().split("|")[0]
    if model_bands is None or layer.providerType() != "gdal":
        return None
    try:
        from ..engine.inputs.bands import choose_bands

        choice = choose_bands(source, model_bands, modality)  # a file, or what GDAL opens (/vsizip/, SAFE)
    except (ImportError, OSError, ValueError):  # without rasterio (dependencies not installed yet): leading bands
        return None
    return choice


def bundled_models(folder: Path) -> List[Path]:
    """Model files shipped under ``resources/models`` (empty when none are bundled); the default
    optical + SAR student first, since the first one is preselected."""
    if not folder.is_dir():
        return []
    found = {p for pattern in MODEL_SUFFIXES for p in folder.glob(pattern)}
    return sorted(found, key=lambda p: (p.name != DEFAULT_MODEL, p.name))


def recent_models() -> List[str]:
    value = QgsSettings().value(RECENT_KEY, "[]")
    try:
        paths = json.loads(value) if isinstance(value, str) else list(value or [])
    except ValueError:
        paths = []
    return [p for p in paths if Path(p).is_file()]


def remember_model(path: str) -> None:
    """Put ``path`` first in the recent-models list kept in QGIS's settings."""
    paths = [str(path)] + [p for p in recent_models() if p != str(path)]
    QgsSettings().setValue(RECENT_KEY, json.dumps(paths[:MAX_RECENT]))


class ModelPicker(QWidget):
    """Bundled default model, recent models and a file browser in one combo."""

    changed = pyqtSignal(str)

    def __init__(self, bundled_folder: Path, parent=None) -> None:
        super().__init__(parent)
        self.bundled_folder = Path(bundled_folder)
        self.combo = shrinkable(QComboBox(self))
        self.browse = QToolButton(self)
        self.browse.setText("…")
        self.browse.setToolTip("Choose a model file (.safetensors)")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(self.browse)
        self.browse.clicked.connect(self._browse)
        self.combo.currentIndexChanged.connect(lambda _i: self.changed.emit(self.current_path()))
        self.refresh()

    def refresh(self, select: Optional[str] = None) -> None:
        select = select or self.current_path()
        self.combo.blockSignals(True)
        self.combo.clear()
        seen = set()
        for path in bundled_models(self.bundled_folder):
            self.combo.addItem(f"{path.stem} (bundled)", str(path))
            seen.add(str(path))
        for path in recent_models():
            if path not in seen:
                self.combo.addItem(Path(path).name, path)
                self.combo.setItemData(self.combo.count() - 1, path, Qt.ToolTipRole)
                seen.add(path)
        if self.combo.count() == 0:
            self.combo.addItem("No model yet: choose a file with …", "")
        index = self.combo.findData(select) if select else -1
        self.combo.setCurrentIndex(max(index, 0))
        self.combo.blockSignals(False)
        self.changed.emit(self.current_path())

    def current_path(self) -> str:
        if self.combo.count() == 0:
            return ""
        return self.combo.currentData() or ""

    def set_path(self, path: str) -> None:
        """Select ``path`` (added to the recent list so it stays in the combo)."""
        remember_model(path)
        self.refresh(select=str(path))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose an SGCAD model", "",
                                              "SGCAD models (*.safetensors)")
        if path:
            self.set_path(path)


class DevicePicker(QWidget):
    """Device combo (automatic, CPU, each GPU by name) and a line saying what 'automatic' means."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.combo = shrinkable(QComboBox(self))
        self.summary = QLabel("", self)
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("font-style: italic;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addWidget(self.summary)
        self.refresh()

    def refresh(self) -> None:
        """Ask torch again (it may have been installed since the dock opened)."""
        self.devices = available_devices()
        self.combo.clear()
        for value, label in self.devices:
            self.combo.addItem(label, value)
        self.summary.setText(f"Automatic runs on: {device_summary()}")

    def index(self) -> int:
        """Index into :func:`available_devices`, which is what the algorithms' DEVICE enum takes."""
        return max(self.combo.currentIndex(), 0)

    def value(self) -> str:
        return self.combo.currentData()
