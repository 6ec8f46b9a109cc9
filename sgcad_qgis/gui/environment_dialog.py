"""*Check environment*: versions, folders, device, and a report to attach to bug reports."""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (
    QApplication,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from .. import environment


class EnvironmentDialog(QDialog):
    """Shows :func:`environment.diagnostics_report`, with *Copy* and *Save…*."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("SGCAD: check environment")
        self.resize(760, 520)
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            self.report = environment.diagnostics_report()
        finally:
            QApplication.restoreOverrideCursor()
        missing = environment.missing_dependencies()
        summary = QLabel(
            "Everything SGCAD needs imports." if not missing else
            "Missing: " + "; ".join(missing) + ". Open the SGCAD dock and click 'Install'.", self)
        summary.setWordWrap(True)
        summary.setTextFormat(Qt.PlainText)
        self.text = QPlainTextEdit(self.report, self)
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        copy = QPushButton("Copy", self)
        save = QPushButton("Save…", self)
        buttons.addButton(copy, QDialogButtonBox.ActionRole)
        buttons.addButton(save, QDialogButtonBox.ActionRole)
        copy.clicked.connect(self.copy)
        save.clicked.connect(self.save_dialog)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(summary)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)

    def copy(self) -> None:
        QApplication.clipboard().setText(self.report)

    def save(self, path: str) -> str:
        target = Path(path)
        target.write_text(self.report + "\n", encoding="utf-8")
        return str(target)

    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the SGCAD diagnostics report",
                                              str(Path.home() / "sgcad_diagnostics.txt"), "Text (*.txt)")
        if path:
            self.save(path)
