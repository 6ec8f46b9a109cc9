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
from qgis.gui import QgsFileWidget, QgsMapToolEmitPoint
from qgis.PyQt.QtCore import Qt, QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import (
    QCheckBox,
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

from ..algorithms._base import BUNDLED_DEFAULTS, BUNDLED_MODELS
from ..engine.config import ClassSchema, FinetuneConfig, PretrainConfig
from ..layers import publish_results
from . import labels, wiring
from .area import AreaPicker
from .chart import RatioChart
from .flood import FloodTab, VectorizeOption
from .history import ModelHistory
from .inputs import DevicePicker, ModelPicker, RasterBandPicker, remember_model
from .labelling import LabelPanel
from .setup import DependencyPanel
from .tasks import JobProgress, TaskRunner

BUNDLED_TEACHER = BUNDLED_MODELS / BUNDLED_DEFAULTS["TEACHER"]
FINETUNE_STEPS = FinetuneConfig.steps
PRETRAIN_STEPS = PretrainConfig.steps  # "pretrain on this SAR layer first" (sgcad:pretrainsar)
#: Width the dock's contents must fit without clipping (a typical side panel).
PANEL_WIDTH = 400
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
        self.last_segment: Dict[str, Any] = {}  # outputs of the last segmentation (tile explanations)
        self.job = JobProgress()
        self._message_item = None  # the dock's one message in QGIS's message bar
        self._build()
        self.runner.progress.connect(self._algorithm_progress)
        self.runner.line.connect(self.log.appendPlainText)
        self.runner.line.connect(self.job.stage_started)
        self.runner.finished.connect(self._task_finished)
        self.model_picker.changed.connect(self._model_changed)
        self.setup.ready.connect(self._dependencies_ready)
        self.setup.message.connect(self.notify)
        self._set_busy(False)
        if self.setup.refresh():
            self._dependencies_ready()
        else:
            self.main.setEnabled(False)
            self._model_changed(self.model_picker.current_path())
            self.notify("SGCAD needs Python packages that are missing: see 'Python packages' above and "
                        "click 'Install'.", 1)
        self.fit_width()

    # ------------------------------------------------------------------ layout
    def _build(self) -> None:
        body = QWidget(self)
        outer_body = QVBoxLayout(body)
        outer_body.setContentsMargins(4, 4, 4, 4)
        self.setup = DependencyPanel(body)
        outer_body.addWidget(self.setup)
        self.main = QWidget(body)
        layout = QVBoxLayout(self.main)
        layout.setContentsMargins(0, 0, 0, 0)
        outer_body.addWidget(self.main)
        outer_body.addStretch(1)

        inputs = QGroupBox("Imagery and model", self.main)
        form = QFormLayout(inputs)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.WrapLongRows)
        self.optical = RasterBandPicker(3, prefer_sar=False, parent=inputs)
        self.sar = RasterBandPicker(1, prefer_sar=True, parent=inputs)
        self.model_picker = ModelPicker(BUNDLED_MODELS, inputs)
        self.model_info = QLabel("", inputs)
        self.model_info.setWordWrap(True)
        self.teacher = QgsFileWidget(inputs)
        self.teacher.setFilter("SGCAD models (*.safetensors)")
        self.teacher.setToolTip("SAR-only water expert; needed for confidence gates and fine-tuning")
        if BUNDLED_TEACHER.is_file():
            self.teacher.setFilePath(str(BUNDLED_TEACHER))
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

        area_box = QGroupBox("Area", self.main)
        QVBoxLayout(area_box).addWidget(self._area())
        layout.addWidget(area_box)

        self.tabs = QTabWidget(self.main)
        self.tabs.setUsesScrollButtons(True)
        self.tabs.setElideMode(Qt.ElideNone)
        self.tabs.addTab(self._segment_tab(), "Segment")
        self.tabs.addTab(self._finetune_tab(), "Fine-tune")
        self.tabs.addTab(self._gates_tab(), "Gates && KD")
        self.flood_tab = FloodTab(self)
        self.tabs.addTab(self.flood_tab, "Flood")
        layout.addWidget(self.tabs)

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

    def fit_width(self) -> int:
        """Keep the dock at least as wide as its contents need (a clipped "…" button or label is
        worse than a wider dock); returns that width. The contents fit :data:`PANEL_WIDTH`."""
        body = self.scroll.widget()
        body.layout().activate()
        need = body.minimumSizeHint().width() + self.scroll.verticalScrollBar().sizeHint().width()
        self.scroll.setMinimumWidth(need)
        return need

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
        self.flip_average = QCheckBox("Average 4 flips (4x slower)", tab)
        self.flip_average.setToolTip("Runs the networks on each tile as it is and flipped three ways and averages "
                                     "them (FLIP_AVERAGE of sgcad:segment; docs/inference.md)")
        layout.addWidget(self.flip_average)
        self.vector_option = VectorizeOption(self, tab)
        layout.addWidget(self.vector_option)
        why = QLabel("<b>Why this map</b> (measured on the run's outputs):", tab)
        why.setWordWrap(True)  # a long label would widen the dock past a side panel
        layout.addWidget(why)
        self.explanation = QPlainTextEdit(tab)
        self.explanation.setReadOnly(True)
        self.explanation.setPlaceholderText("Segment to see what the map holds, how sure the model is and where "
                                            "polygons would help most.")
        self.explanation.setMaximumHeight(160)
        layout.addWidget(self.explanation)
        self.explain_tile_button = QPushButton("Explain one tile: click the map", tab)
        self.explain_tile_button.setToolTip("The same explanation for the 512 × 512 px tile around the point you "
                                            "click on the last segmentation")
        self.explain_tile_button.setEnabled(False)
        self.explain_tile_button.clicked.connect(self.pick_tile)
        layout.addWidget(self.explain_tile_button)
        self.tile_tool = QgsMapToolEmitPoint(self.canvas)
        self.tile_tool.canvasClicked.connect(self.explain_tile)
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
        row.addWidget(QLabel("Steps", tab))
        self.steps = QSpinBox(tab)
        self.steps.setRange(1, 5000)
        self.steps.setValue(FINETUNE_STEPS)
        self.steps.setToolTip("Training steps of the student (the water expert takes its own); validation on "
                              "held-out polygons may stop earlier")
        row.addWidget(self.steps)
        self.finetune_button = QPushButton("Fine-tune", tab)
        self.finetune_button.clicked.connect(self.finetune)
        row.addWidget(self.finetune_button, 1)
        layout.addLayout(row)
        self.pretrain_first = QCheckBox("Pretrain on this SAR layer first", tab)
        self.pretrain_first.setToolTip(f"Self-supervised pretraining of the student's SAR encoder on the SAR layer "
                                       f"({PRETRAIN_STEPS} steps, no labels; docs/pretraining.md) before fine-tuning")
        layout.addWidget(self.pretrain_first)
        self.held_out = QLabel("", tab)  # the honest figures of the last fine-tune, next to the baseline
        self.held_out.setWordWrap(True)
        layout.addWidget(self.held_out)
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
        """Select tab ``index`` and scroll (vertically only) so that the tab is in view."""
        self.tabs.setCurrentIndex(index)
        # no adjustSize(): it resized the contents to their preferred width, wider than the dock,
        # which clipped them on the right and then, scrolled into view, on the left
        self.scroll.widget().layout().activate()
        top = self.tabs.mapTo(self.scroll.widget(), self.tabs.rect().topLeft()).y()
        bar = self.scroll.verticalScrollBar()
        bar.setValue(min(max(top - 4, 0), bar.maximum()))
        self.scroll.horizontalScrollBar().setValue(0)

    def shutdown(self) -> None:
        """Before the dock is deleted (plugin unload): release the map tools and stop runs.

        A map tool left on the canvas would call into deleted widgets (and crash QGIS on exit).
        """
        if self.runner.busy():
            self.runner.cancel()
        self.setup.cancel()
        self.labels.shutdown()
        self.area.shutdown()
        self.flood_tab.shutdown()
        self.vector_option.shutdown()
        if self.canvas.mapTool() is self.tile_tool:
            self.canvas.unsetMapTool(self.tile_tool)
        self._clear_message()

    def _dependencies_ready(self) -> None:
        """Every required package imports: enable the dock and read the model."""
        self.main.setEnabled(True)
        self.device.refresh()
        self._refresh_provider()
        self._model_changed(self.model_picker.current_path())
        self._set_busy(False)
        self.fit_width()

    @staticmethod
    def _refresh_provider() -> None:
        """Let the Processing algorithms see the devices of a torch installed just now."""
        from qgis.core import QgsApplication

        provider = QgsApplication.processingRegistry().providerById("sgcad")
        if provider is not None:
            provider.refreshAlgorithms()

    # ------------------------------------------------------------------ feedback
    def notify_result(self, done: str, outputs: dict) -> None:
        """A finished run's line, with the warnings about its inputs under it (not instead of it)."""
        warnings = [f"Warning: {w}" for w in str(outputs.get("WARNINGS") or "").splitlines() if w]
        self.notify("\n".join([done] + warnings), 1 if warnings else 3)

    def notify(self, text: str, level: int = 0) -> None:
        """Show ``text`` in the dock; warnings, errors and results also in QGIS's message bar.

        The dock keeps one message in the bar: a new one replaces the previous, so messages do
        not pile up ("10 more"). Progress notes (level 0) stay in the dock.
        """
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {COLORS.get(level, COLORS[0])};")
        if level == 0:
            return
        bar = self.iface.messageBar()
        self._clear_message()
        if hasattr(bar, "createMessage") and hasattr(bar, "pushWidget"):
            item = bar.createMessage("SGCAD", text)
            self._message_item = item
            bar.pushWidget(item, LEVELS.get(level, Qgis.Info), 10)
        else:  # a stand-in message bar (tests)
            bar.pushMessage("SGCAD", text, LEVELS.get(level, Qgis.Info), 10)

    def _clear_message(self) -> None:
        item, self._message_item = self._message_item, None
        bar = self.iface.messageBar()
        if item is None or not hasattr(bar, "popWidget"):
            return
        try:
            bar.popWidget(item)
        except RuntimeError:  # already closed by the user or timed out
            pass

    def _set_busy(self, busy: bool) -> None:
        for widget in (self.segment_button, self.finetune_button):
            widget.setEnabled(not busy)
        self.back_button.setEnabled(not busy and self.history.can_go_back())
        self.cancel_button.setEnabled(busy)

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
        if not self.setup.is_ready():
            self.model_info.setText("Install the missing Python packages first (above).")
            return
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
        self.optical.set_model_bands(bands, bands.optical_channels)
        self.sar.set_model_bands(bands, bands.sar_channels)
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
        params["FLIP_AVERAGE"] = self.flip_average.isChecked()
        if not self.job.active:  # a re-segmentation after a fine-tune continues that job's bar
            self.job.begin(JobProgress.SEGMENT)
            self.progress.setValue(0)
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
                self.notify("No water expert chosen: the student is fine-tuned without distillation.", 1)
            params, run = wiring.finetune_parameters(
                choice, layer, self.steps.value(), PRETRAIN_STEPS if self.pretrain_first.isChecked() else 0)
        except ValueError as exc:
            self.notify(str(exc), 2)
            return False
        # one bar for the whole job: patches, training, then the re-segmentation that follows
        self.job.begin(JobProgress.FINETUNE_THEN_SEGMENT)
        self.progress.setValue(0)
        return self._start(wiring.FINETUNE, params, {"run": run, "choice": choice})

    def pick_tile(self) -> None:
        """Arm the click that chooses the tile to explain."""
        self.canvas.setMapTool(self.tile_tool)
        self.notify("Click the map where a tile of the last segmentation should be explained.", 0)

    def explain_tile(self, point, button=None) -> bool:
        """Start ``sgcad:explain`` on the tile of the last segmentation around a clicked point."""
        if self.canvas.mapTool() is self.tile_tool:
            self.canvas.unsetMapTool(self.tile_tool)
        if self._busy_message():
            return False
        outputs = self.last_segment
        try:
            window = wiring.tile_window(outputs.get("CLASSES", ""), point,
                                        self.canvas.mapSettings().destinationCrs())
        except ValueError as exc:
            self.notify(str(exc), 2)
            return False
        folder = str(Path(outputs["CLASSES"]).parent)
        run = {"name": f"Tile {window[0]},{window[1]} ({window[2]} × {window[3]} px)"}
        return self._start(wiring.EXPLAIN, wiring.explain_parameters(folder, window), {"run": run})

    def _busy_message(self) -> bool:
        if self.runner.busy():
            self.notify("Another SGCAD run is still going; wait for it or cancel it first.", 1)
        return self.runner.busy()

    def _algorithm_progress(self, value: float) -> None:
        self.progress.setValue(self.job.update(value))

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
            self.job.end()
            self.notify(f"{name}: canceled; no layer was changed." if canceled else f"{name} failed: {error}",
                        1 if canceled else 2)
            return
        if alg_id == wiring.EXPLAIN:
            self.explanation.setPlainText(f"{name}: {results.get('TEXT', '')}")
            self.notify(f"{name}: explained below the Segment button.", 3)
            return
        if alg_id == wiring.SEGMENT:
            self.job.end()
            self.progress.setValue(100)
        seconds = time.monotonic() - pending.get("started", time.monotonic())
        try:
            if alg_id == wiring.SEGMENT:
                self._show_segmentation(pending, results, seconds)
            else:
                self._finetune_done(pending, results, seconds)
        except ValueError as exc:
            self.job.end()
            self.notify(f"{name}: {exc}", 2)

    def _show_segmentation(self, pending: Dict[str, Any], outputs: dict, seconds: float) -> None:
        run = pending["run"]
        items = wiring.segment_layers(outputs, pending["choice"].model_stem)
        group, self.segment_layers = publish_results(
            QgsProject.instance(), run["group"], items, self.schema, self.segment_layers, self.segment_group)
        self.segment_group = group.name()
        self.vector_option.segmentation_done(outputs, group.name())
        self.explanation.setPlainText(str(outputs.get("EXPLANATION") or ""))
        self.last_segment = dict(outputs)
        self.explain_tile_button.setEnabled(bool(outputs.get("EXPLANATION")))
        self.notify_result(f"{run['name']}: {len(items)} layer(s) in group '{group.name()}' ({seconds:.0f} s).",
                           outputs)

    def _finetune_done(self, pending: Dict[str, Any], outputs: dict, seconds: float) -> None:
        run = pending["run"]
        model = wiring.finetuned_model(outputs)
        self.last_finetune = dict(outputs, report=wiring.report_path(outputs))
        epochs, series = wiring.kd_series(outputs)
        self.chart.set_series(epochs, series)
        self.show_tab(2)
        self.report_button.setEnabled(bool(self.last_finetune["report"]))
        self.held_out.setText(wiring.held_out_text(outputs))
        self.log.appendPlainText(wiring.held_out_text(outputs))
        publish_results(QgsProject.instance(), run["group"], wiring.finetune_layers(outputs), self.schema)
        remember_model(model)
        self.history.push(model, f"{Path(model).parent.name}/{Path(model).name}")
        self.model_picker.set_path(model)
        self._refresh_history()
        self.notify_result(f"{run['name']}: new model {Path(model).name} ({seconds:.0f} s); re-segmenting…", outputs)
        self.segment(model)
