"""The SGCAD dock: segment two layers, fine-tune from drawn polygons, see gates and KD ratios.

The dock only gathers choices and shows results. The work runs in the ``sgcad`` Processing
algorithms (``sgcad:segment``, ``sgcad:finetune``) on a background task (:mod:`.tasks`),
so QGIS stays responsive and the Toolbox, batch mode and ``qgis_process`` run the same code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Optional

from qgis.core import Qgis, QgsProject, QgsSettings
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt, QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (
    QDockWidget,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..engine.config import ClassSchema
from . import labels, wiring
from .area import AreaPicker
from .chart import RatioChart
from .history import ModelHistory
from .inputs import DevicePicker, ModelPicker, RasterBandPicker, remember_model
from .labelling import LabelPanel
from .results import find_or_make_group, show_results
from .tasks import TaskRunner

PLUGIN_DIR = Path(__file__).absolute().parent.parent  # not resolve(): dev builds are symlinks
BUNDLED_MODELS = PLUGIN_DIR / "resources" / "models"
OUTPUT_KEY = "sgcad/output_folder"
LEVELS = {0: Qgis.Info, 1: Qgis.Warning, 2: Qgis.Critical, 3: Qgis.Success}
COLORS = {0: "palette(text)", 1: "#8a5a00", 2: "#b00020", 3: "#1b5e20"}


def default_output_folder() -> str:
    """Last folder used, else ``sgcad_runs`` beside the saved project, else ``~/SGCAD``."""
    saved = QgsSettings().value(OUTPUT_KEY, "")
    if saved:
        return saved
    home = QgsProject.instance().homePath()
    return str(Path(home) / "sgcad_runs") if home else str(Path.home() / "SGCAD")


class SgcadDock(QDockWidget):
    """Dock widget opened from the plugin's menu and toolbar.

    Args:
        iface: QGIS's ``QgisInterface`` (canvas and message bar).
    """

    def __init__(self, iface, parent=None) -> None:
        super().__init__("SGCAD land cover", parent or iface.mainWindow())
        self.setObjectName("SgcadDock")
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.runner = TaskRunner(self)
        self.history = ModelHistory()
        self.schema = ClassSchema()
        self.metadata = None
        self.segment_layers: Dict[str, str] = {}  # role -> layer id, refreshed in place
        self.segment_group: Optional[str] = None
        self.pending: Dict[str, Any] = {}  # what the running task is for
        self.last_finetune: Dict[str, Any] = {}
        self._build()
        self.runner.progress.connect(lambda v: self.progress.setValue(int(v)))
        self.runner.line.connect(self.log.appendPlainText)
        self.runner.finished.connect(self._task_finished)
        self.model_picker.changed.connect(self._model_changed)
        self._model_changed(self.model_picker.current_path())
        self._set_busy(False)

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)

        inputs = QGroupBox("Imagery and model", body)
        form = QFormLayout(inputs)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.DontWrapRows)
        self.optical = RasterBandPicker(3, prefer_sar=False, parent=inputs)
        self.sar = RasterBandPicker(1, prefer_sar=True, parent=inputs)
        self.model_picker = ModelPicker(BUNDLED_MODELS, inputs)
        self.model_info = QLabel("", inputs)
        self.model_info.setWordWrap(True)
        self.teacher = QgsFileWidget(inputs)
        self.teacher.setFilter("SGCAD models (*.safetensors)")
        self.teacher.setToolTip("SAR-only water expert; needed for confidence gates and fine-tuning")
        self.device = DevicePicker(inputs)
        self.output = QgsFileWidget(inputs)
        self.output.setStorageMode(QgsFileWidget.GetDirectory)
        self.output.setFilePath(default_output_folder())
        form.addRow("Optical", self.optical)
        form.addRow("SAR", self.sar)
        form.addRow("Model", self.model_picker)
        form.addRow(self.model_info)
        form.addRow("Water expert", self.teacher)
        form.addRow("Device", self.device)
        form.addRow("Save runs in", self.output)
        layout.addWidget(inputs)

        area_box = QGroupBox("Area", body)
        QVBoxLayout(area_box).addWidget(self._area())
        layout.addWidget(area_box)

        self.tabs = QTabWidget(body)
        self.tabs.addTab(self._segment_tab(), "Segment")
        self.tabs.addTab(self._finetune_tab(), "Fine-tune")
        self.tabs.addTab(self._gates_tab(), "Gates && KD")
        layout.addWidget(self.tabs)
        layout.addStretch(1)

        scroll = self.scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setWidget(body)

        # progress, Cancel and messages stay visible below the scrolling part
        outer = QWidget(self)
        outer_layout = QVBoxLayout(outer)
        outer_layout.setContentsMargins(0, 0, 0, 4)
        outer_layout.addWidget(scroll, 1)
        run_row = QHBoxLayout()
        run_row.setContentsMargins(4, 0, 4, 0)
        self.progress = QProgressBar(outer)
        self.progress.setRange(0, 100)
        self.cancel_button = QPushButton("Cancel", outer)
        self.cancel_button.clicked.connect(self.cancel)
        self.log_button = QToolButton(outer)
        self.log_button.setText("Log")
        self.log_button.setCheckable(True)
        self.log_button.setToolTip("Show the messages of the runs")
        run_row.addWidget(self.progress, 1)
        run_row.addWidget(self.cancel_button)
        run_row.addWidget(self.log_button)
        outer_layout.addLayout(run_row)
        self.status = QLabel("Ready.", outer)
        self.status.setWordWrap(True)
        self.status.setContentsMargins(4, 0, 4, 0)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        outer_layout.addWidget(self.status)
        self.log = QPlainTextEdit(outer)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setVisible(False)
        self.log_button.toggled.connect(self.log.setVisible)
        outer_layout.addWidget(self.log)
        self.setWidget(outer)

    def _area(self) -> QWidget:
        self.area = AreaPicker(self.canvas, self)
        return self.area

    def _segment_tab(self) -> QWidget:
        tab = QWidget(self)
        layout = QVBoxLayout(tab)
        text = QLabel("Maps the six classes over the area with the chosen model. Results appear as "
                      "styled layers in a group named after the run; with a water expert, its "
                      "confidence gates and the expert/model agreement are added too.", tab)
        text.setWordWrap(True)
        self.segment_button = QPushButton("Segment", tab)
        self.segment_button.setDefault(True)
        self.segment_button.clicked.connect(self.segment)
        layout.addWidget(text)
        layout.addWidget(self.segment_button)
        layout.addStretch(1)
        return tab

    def _finetune_tab(self) -> QWidget:
        tab = QWidget(self)
        layout = QVBoxLayout(tab)
        self.labels = LabelPanel(self.canvas, tab)
        self.labels.crs_source = lambda: (self.optical.layer().crs() if self.optical.layer()
                                          else self.canvas.mapSettings().destinationCrs())
        self.labels.message.connect(self.notify)
        layout.addWidget(self.labels)
        row = QHBoxLayout()
        row.addWidget(QLabel("Epochs", tab))
        self.epochs = QSpinBox(tab)
        self.epochs.setRange(1, 500)
        self.epochs.setValue(20)
        self.epochs.setToolTip("Passes over the patches around your polygons")
        row.addWidget(self.epochs)
        self.finetune_button = QPushButton("Fine-tune", tab)
        self.finetune_button.clicked.connect(self.finetune)
        row.addWidget(self.finetune_button, 1)
        layout.addLayout(row)
        layout.addWidget(QLabel("Models of this session (newest last):", tab))
        self.history_list = QListWidget(tab)
        self.history_list.setMaximumHeight(80)
        self.history_list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.history_list.setTextElideMode(Qt.ElideLeft)  # the end of a path says most
        layout.addWidget(self.history_list)
        self.back_button = QPushButton("Back to previous model", tab)
        self.back_button.clicked.connect(self.back_to_previous_model)
        layout.addWidget(self.back_button)
        layout.addStretch(1)
        return tab

    def _gates_tab(self) -> QWidget:
        tab = QWidget(self)
        layout = QVBoxLayout(tab)
        self.chart = RatioChart(tab)
        layout.addWidget(self.chart)
        legend = QLabel(
            "<b>Reliable water</b>: pixels the water expert is sure are water (p &gt; 0.95) and the "
            "labels agree.<br><b>Reliable non-water</b>: expert sure it is not water (p &lt; 0.15), "
            "labels agree.<br><b>KD region ratio</b>: share of gated pixels per block; only there "
            "does the expert teach the model.", tab)
        legend.setWordWrap(True)
        layout.addWidget(legend)
        self.report_button = QPushButton("Open the run's HTML report", tab)
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self.open_report)
        layout.addWidget(self.report_button)
        layout.addStretch(1)
        return tab

    def show_tab(self, index: int) -> None:
        """Select tab ``index`` and scroll so that the whole tab is in view."""
        self.tabs.setCurrentIndex(index)
        self.scroll.widget().adjustSize()
        self.scroll.ensureWidgetVisible(self.tabs, 0, 0)

    # ------------------------------------------------------------------ feedback
    def notify(self, text: str, level: int = 0) -> None:
        """Show ``text`` in the dock and in QGIS's message bar (level 0 info … 3 success)."""
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {COLORS.get(level, COLORS[0])};")
        self.iface.messageBar().pushMessage("SGCAD", text, LEVELS.get(level, Qgis.Info), 8)

    def _set_busy(self, busy: bool) -> None:
        for widget in (self.segment_button, self.finetune_button):
            widget.setEnabled(not busy)
        self.back_button.setEnabled(not busy and self.history.can_go_back())
        self.cancel_button.setEnabled(busy)
        if busy:
            self.progress.setValue(0)

    def _refresh_history(self) -> None:
        self.history_list.clear()
        for entry in self.history.entries:
            self.history_list.addItem(entry.label)
            self.history_list.item(self.history_list.count() - 1).setToolTip(entry.path)
        self.history_list.setCurrentRow(self.history_list.count() - 1)
        self.back_button.setEnabled(self.history.can_go_back() and not self.runner.busy())

    # ------------------------------------------------------------------ model
    def _model_changed(self, path: str) -> None:
        """Read the model's classes and bands; fill the palette; say if the bands do not fit."""
        self.metadata = None
        if not path:
            self.model_info.setText("Choose a model file (…): SGCAD models end in .safetensors.")
            return
        try:
            self.metadata = wiring.read_model(path)
        except ValueError as exc:
            self.model_info.setText(str(exc))
            self.model_info.setStyleSheet(f"color: {COLORS[2]};")
            return
        self.schema = self.metadata.schema
        self.labels.set_schema(self.schema)
        bands = self.metadata.bands
        self.optical.default_bands, self.sar.default_bands = bands.optical_channels, bands.sar_channels
        for picker, count in ((self.optical, bands.optical_channels), (self.sar, bands.sar_channels)):
            if picker.layer() is not None and len(picker.selected_bands()) != count:
                picker.set_bands(range(1, count + 1))
        self.model_info.setStyleSheet("")
        self.model_info.setText(wiring.describe_model(self.metadata))
        if self.history.current() is None or self.history.current().path != path:
            self.history.push(path, f"{Path(path).parent.name}/{Path(path).name}")
            self._refresh_history()

    # ------------------------------------------------------------------ actions
    def segment(self, model_path: Optional[str] = None) -> bool:
        """Start ``sgcad:segment``; returns False (with a message) when inputs are not usable."""
        if self._busy_message():
            return False
        try:
            choice = wiring.gather(self, model_path)
            params, run = wiring.segment_parameters(choice)
        except ValueError as exc:
            self.notify(str(exc), 2)
            return False
        return self._start(wiring.SEGMENT, params, {"run": run, "choice": choice})

    def finetune(self) -> bool:
        """Check the drawn labels, then start ``sgcad:finetune`` (which re-segments when done)."""
        if self._busy_message():
            return False
        try:
            choice = wiring.gather(self)
            layer = self.labels.layer()
            if layer is None:
                raise ValueError("Fine-tuning needs a label layer: click 'New' in the Fine-tune tab, "
                                 "pick a class and draw polygons.")
            problems = labels.label_problems(layer, self.schema, *wiring.imagery_extent(choice))
            if problems["errors"]:
                raise ValueError(" ".join(problems["errors"]))
            for warning in problems["warnings"]:
                self.notify(warning, 1)
            if not choice.teacher:
                raise ValueError("Fine-tuning uses the water expert's confidence gates: choose the "
                                 "water expert (teacher) model under 'Imagery and model'.")
            params, run = wiring.finetune_parameters(choice, layer, self.epochs.value())
        except ValueError as exc:
            self.notify(str(exc), 2)
            return False
        return self._start(wiring.FINETUNE, params, {"run": run, "choice": choice})

    def _busy_message(self) -> bool:
        if self.runner.busy():
            self.notify("Another SGCAD run is still going; wait for it or cancel it first.", 1)
        return self.runner.busy()

    def _start(self, alg_id: str, params: Dict[str, Any], pending: Dict[str, Any]) -> bool:
        QgsSettings().setValue(OUTPUT_KEY, self.output.filePath())
        self.pending = dict(pending, alg=alg_id, started=time.monotonic())
        self.log.appendPlainText(f"--- {alg_id} {pending['run']['name']}")
        self.runner.start(f"SGCAD {pending['run']['name']}", alg_id, params)
        self._set_busy(True)
        self.notify(f"{pending['run']['name']}: running in the background…", 0)
        return True

    def cancel(self) -> None:
        if self.runner.busy():
            self.status.setText("Canceling…")  # first: a queued task reports back synchronously
            self.runner.cancel()

    def back_to_previous_model(self) -> None:
        """Select the model before the newest one; re-segment when a map is shown."""
        try:
            entry = self.history.back()
        except ValueError as exc:
            self.notify(str(exc), 1)
            return
        self._refresh_history()
        self.model_picker.set_path(entry.path)
        if self.segment_layers and self.segment(entry.path):
            self.notify(f"Back to {entry.label}; re-segmenting the area with it.", 0)
        else:
            self.notify(f"Back to {entry.label}.", 0)

    def open_report(self) -> None:
        report = self.last_finetune.get("report")
        if report and Path(report).is_file():
            QDesktopServices.openUrl(QUrl.fromLocalFile(report))

    # ------------------------------------------------------------------ results
    def _task_finished(self, alg_id: str, ok: bool, results: dict, error: str, canceled: bool) -> None:
        pending, self.pending = self.pending, {}
        self._set_busy(False)
        name = pending.get("run", {}).get("name", alg_id)
        if canceled or not ok:
            self.progress.setValue(0)
            self.notify(f"{name}: canceled; no layer was changed." if canceled else f"{name} failed: {error}",
                        1 if canceled else 2)
            return
        self.progress.setValue(100)
        seconds = time.monotonic() - pending.get("started", time.monotonic())
        try:
            if alg_id == wiring.SEGMENT:
                self._show_segmentation(pending, results, seconds)
            else:
                self._finetune_done(pending, results, seconds)
        except ValueError as exc:
            self.notify(f"{name}: {exc}", 2)

    def _show_segmentation(self, pending: Dict[str, Any], results: dict, seconds: float) -> None:
        run = pending["run"]
        group = find_or_make_group(run["group"], self.segment_group)
        self.segment_group = group.name()
        items = wiring.segment_layers(results)
        self.segment_layers = show_results(group, items, self.schema, self.segment_layers)
        self.notify(f"{run['name']}: {len(items)} layer(s) in group '{group.name()}' ({seconds:.0f} s).", 3)

    def _finetune_done(self, pending: Dict[str, Any], results: dict, seconds: float) -> None:
        run = pending["run"]
        model = wiring.finetuned_model(results)
        self.last_finetune = dict(results, report=wiring.report_path(results))
        epochs, series = wiring.kd_series(results)
        self.chart.set_series(epochs, series)
        self.show_tab(2)
        self.report_button.setEnabled(bool(self.last_finetune["report"]))
        group = find_or_make_group(run["group"])
        show_results(group, wiring.finetune_layers(results), self.schema, {})
        remember_model(model)
        self.history.push(model, f"{Path(model).parent.name}/{Path(model).name}")
        self.model_picker.set_path(model)
        self._refresh_history()
        self.notify(f"{run['name']}: new model {Path(model).name} ({seconds:.0f} s); re-segmenting…", 3)
        self.segment(model)
