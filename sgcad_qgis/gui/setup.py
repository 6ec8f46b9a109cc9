"""The dock's setup panel: which Python packages are missing, and an *Install* button.

Shown at the top of the dock while a required package is missing or too old. *Install* runs
the plan of :mod:`sgcad_qgis.deps` (QGIS's own Python, pip, a folder in the QGIS profile)
with progress, a log and Cancel; afterwards the new folder is put on ``sys.path`` and the
panel emits :attr:`DependencyPanel.ready` when everything imports, without a restart.
"""

from __future__ import annotations

import html
import sys
from typing import List, Optional

from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QApplication,
    QCheckBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
)

from .. import environment
from ..deps import activate
from ..deps.prepare import Preparation, prepare
from ..deps.spec import PackageState

RED, GREEN, AMBER = "#b00020", "#1b5e20", "#8a5a00"


class DependencyPanel(QGroupBox):
    """What is missing, what *Install* would do, and the installation's progress.

    Signals:
        ready(): every required package imports now (after an installation, or at once).
        message(str, int): a sentence for the dock's status line and a level (0 info … 3 success).
    """

    ready = pyqtSignal()
    message = pyqtSignal(str, int)

    def __init__(self, parent=None) -> None:
        super().__init__("Python packages", parent)
        self.states: List[PackageState] = []
        self.preparation: Optional[Preparation] = None
        self.runner = None
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.RichText)
        self.plan_text = QLabel("", self)
        self.plan_text.setWordWrap(True)
        self.plan_text.setTextFormat(Qt.PlainText)
        self.plan_text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.optional = QCheckBox("Include optional packages", self)
        self.optional.setToolTip("onnxruntime and onnx: about twice as fast segmentation on the CPU")
        self.optional.setChecked(True)
        self.optional.toggled.connect(lambda _on: self.refresh(force_plan=True))
        self.install_button = QPushButton("Install", self)
        self.install_button.setToolTip("Install the missing packages for QGIS, into your QGIS profile")
        self.install_button.clicked.connect(self.install)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.details_button = QPushButton("Details…", self)
        self.details_button.setToolTip("Versions, folders and devices; a report to attach to bug reports")
        self.details_button.clicked.connect(self.show_environment)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.log = QPlainTextEdit(self)
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setMinimumHeight(120)
        self.log.setLineWrapMode(QPlainTextEdit.WidgetWidth)
        buttons = QHBoxLayout()
        buttons.addWidget(self.install_button, 1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.details_button)
        self.plan_text.setMinimumWidth(1)  # long paths wrap anywhere rather than widen the dock
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.plan_text)
        layout.addWidget(self.optional)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.log)
        self.progress.setVisible(False)
        self.log.setVisible(False)
        self.cancel_button.setEnabled(False)

    # ------------------------------------------------------------------ state
    def missing(self) -> List[PackageState]:
        return [s for s in self.states if not s.ok and not s.package.optional]

    def is_ready(self) -> bool:
        return bool(self.states) and not self.missing()

    def refresh(self, force_plan: bool = False) -> bool:
        """Check the packages again; returns True when every required one imports."""
        if self.running():
            return False
        self.states = environment.dependency_status()
        missing = self.missing()
        if not missing:
            optional = [s.package.dist for s in self.states if not s.ok]
            note = (f" Optional, not installed: {html.escape(', '.join(optional))} (faster segmentation on "
                    "the CPU)." if optional else "")
            self.status.setText(f"<span style='color:{GREEN}'>All required packages import.</span>{note}")
            self.plan_text.setText("")
            self.plan_text.setVisible(False)
            self.install_button.setEnabled(bool(optional))
            self.install_button.setText("Install optional")
            self.optional.setVisible(False)
            self.preparation = None
            if not self.log.isVisible():  # keep an installation's log in view
                self.setVisible(bool(optional))
            return True
        self.plan_text.setVisible(True)
        self.setVisible(True)
        names = ", ".join(f"<b>{html.escape(s.package.dist)}</b> ({html.escape(s.problem)})" for s in missing)
        self.status.setText(f"<span style='color:{RED}'>SGCAD needs Python packages that QGIS's "
                            f"Python does not have:</span> {names}.")
        self.optional.setVisible(any(s.package.optional and not s.ok for s in self.states))
        if self.preparation is None or force_plan:
            self._prepare()
        return False

    def _prepare(self) -> None:
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            self.preparation = prepare(self.states, optional=self.optional.isChecked())
        finally:
            QApplication.restoreOverrideCursor()
        prep = self.preparation
        lines = list(prep.notes)
        if prep.problem:
            lines.append(prep.problem)
        elif prep.plan is not None:
            lines.insert(0, prep.plan.summary())
        # zero-width spaces after path separators: long paths wrap instead of widening the dock
        self.plan_text.setText("\n".join(lines).replace("/", "/\u200b").replace("\\", "\\\u200b"))
        self.install_button.setEnabled(prep.plan is not None)

    # ------------------------------------------------------------------ install
    def running(self) -> bool:
        return self.runner is not None and self.runner.running()

    def install(self) -> bool:
        """Start the installation shown in the panel; False when there is none."""
        if self.running():
            return False
        if self.preparation is None or self.preparation.plan is None:
            self._prepare()
        if self.preparation is None or self.preparation.plan is None:
            return False
        from ..deps.runner import InstallRunner

        self.runner = InstallRunner(self.preparation.plan, self)
        self.runner.progress.connect(self.progress.setValue)
        self.runner.line.connect(self.log.appendPlainText)
        self.runner.finished.connect(self._finished)
        self.progress.setValue(0)
        self.progress.setVisible(True)
        self.log.setVisible(True)
        self.install_button.setEnabled(False)
        self.optional.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.message.emit("Installing Python packages for SGCAD; this can take several minutes.", 0)
        self.runner.start()
        return True

    def cancel(self) -> None:
        if self.running():
            self.runner.cancel()

    def _finished(self, ok: bool, text: str) -> None:
        self.cancel_button.setEnabled(False)
        self.optional.setEnabled(True)
        self.runner = None
        if not ok:
            self.install_button.setEnabled(True)
            self.message.emit(f"Installation did not finish: {text} The log below has pip's messages.", 2)
            return
        added = activate(self.preparation.plan.target)
        self.log.appendPlainText(f"Added to sys.path: {added}")
        self.progress.setValue(100)
        restart = self._needs_restart()
        if self.refresh():
            self.preparation = None
            if restart:
                self.message.emit("Packages installed, but an older copy was already loaded: restart QGIS "
                                  "to use the new one.", 1)
            else:
                self.message.emit("Packages installed and imported: SGCAD is ready (no restart needed).", 3)
            self.ready.emit()
        else:
            still = ", ".join(f"{s.package.dist} ({s.problem})" for s in self.missing())
            self.message.emit(f"Packages installed, but these still cannot be used: {still}. Restart QGIS; if "
                              "that does not help, attach the report of 'Check environment…' to a bug report.", 2)

    def _needs_restart(self) -> bool:
        """True when a package the installation replaced was imported already in this QGIS."""
        plan = self.preparation.plan if self.preparation else None
        if plan is None:
            return False
        return any(name.split("==")[0].lower() in sys.modules for name in plan.requirements.requirements)

    def show_environment(self) -> None:
        from .environment_dialog import EnvironmentDialog

        EnvironmentDialog(self.window()).exec_()
