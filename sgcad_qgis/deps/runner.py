"""Runs an :class:`~.plan.InstallPlan` with ``QProcess``: progress, a log and Cancel.

QGIS stays responsive: each pip run is a child process whose output arrives through Qt's
event loop. Cancel kills the running pip; pip writes a ``--target`` installation into a
temporary folder and moves it into place only at the end, so a canceled run leaves SGCAD's
folder as it was.
"""

from __future__ import annotations

import re
from typing import Optional

from qgis.PyQt.QtCore import QObject, QProcess, QProcessEnvironment, pyqtSignal

from .plan import InstallPlan

#: pip output lines that mark progress through the packages of the install step.
_COLLECT = re.compile(r"^\s*(Collecting|Processing|Downloading|Using cached|Obtaining)\b")
_INSTALLING = re.compile(r"^\s*Installing collected packages")
_DONE = re.compile(r"^\s*Successfully installed")


class InstallRunner(QObject):
    """Runs the plan's steps one after the other.

    Signals:
        progress(int): 0-100 over the whole installation, never going backwards.
        line(str): a line of pip's output, or of the runner.
        finished(bool, str): success, and a sentence for the user.
    """

    progress = pyqtSignal(int)
    line = pyqtSignal(str)
    finished = pyqtSignal(bool, str)

    def __init__(self, plan: InstallPlan, parent=None) -> None:
        super().__init__(parent)
        self.plan = plan
        self.process: Optional[QProcess] = None
        self.index = -1
        self.canceled = False
        self.value = 0
        self._done_before = 0.0  # weight of the finished steps
        self._total = sum(s.weight for s in plan.steps) or 1.0
        self._packages = max(len(plan.requirements.requirements), 1)
        self._seen = 0
        self._buffer = ""
        self._tail: list = []

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        self.line.emit(self.plan.summary())
        self._next()

    def running(self) -> bool:
        return self.process is not None

    def cancel(self) -> None:
        self.canceled = True
        if self.process is not None:
            self.line.emit("Canceling: stopping pip…")
            self.process.kill()

    # ------------------------------------------------------------------ steps
    def _next(self) -> None:
        if self.index >= 0:
            self._done_before += self.plan.steps[self.index].weight
            self._set_progress(self._done_before / self._total)
        self.index += 1
        if self.index >= len(self.plan.steps):
            self.process = None
            self.finished.emit(True, "Packages installed.")
            return
        step = self.plan.steps[self.index]
        try:
            args = step.build() if step.build is not None else step.args
        except (OSError, ValueError, KeyError) as exc:
            self._fail(f"{step.label}: {exc}")
            return
        if args is None:
            self.line.emit(f"{step.label}: nothing to do")
            self._next()
            return
        self._seen, self._tail = 0, []
        self.line.emit(f"--- {step.label}")
        self.line.emit(" ".join(_quote(a) for a in args if "\n" not in a))
        process = QProcess(self)
        environment = QProcessEnvironment()
        for key, value in self.plan.env.items():
            environment.insert(key, value)
        process.setProcessEnvironment(environment)
        process.setProcessChannelMode(QProcess.MergedChannels)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._step_finished)
        process.errorOccurred.connect(self._error)
        self.process = process
        process.start(args[0], args[1:])

    def _read(self) -> None:
        if self.process is None:
            return
        self._buffer += bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        *lines, self._buffer = self._buffer.replace("\r", "\n").split("\n")
        for text in lines:
            if text.strip():
                self._on_line(text.rstrip())

    def _on_line(self, text: str) -> None:
        self.line.emit(text)
        self._tail = (self._tail + [text])[-12:]
        step = self.plan.steps[self.index]
        within = None
        if _COLLECT.match(text):
            self._seen += 1
            within = min(self._seen / (2.0 * self._packages + 1.0), 0.85)
        elif _INSTALLING.match(text):
            within = 0.9
        elif _DONE.match(text):
            within = 1.0
        if within is not None:
            self._set_progress((self._done_before + step.weight * within) / self._total)

    def _set_progress(self, fraction: float) -> None:
        value = int(round(100 * min(max(fraction, 0.0), 1.0)))
        if value > self.value:
            self.value = value
            self.progress.emit(value)

    def _error(self, error) -> None:
        if error == QProcess.FailedToStart and self.process is not None:
            program = self.process.program()
            self.process = None
            self._fail(f"cannot start {program}")

    def _step_finished(self, code: int, status) -> None:
        if self.process is None:
            return
        self._read()
        if self._buffer.strip():
            self._on_line(self._buffer.rstrip())
        self._buffer = ""
        self.process.deleteLater()
        self.process = None
        step = self.plan.steps[self.index]
        if self.canceled:
            self.finished.emit(False, "Installation canceled; nothing was changed.")
            return
        if status != QProcess.NormalExit or code != 0:
            reason = _reason(self._tail)
            self._fail(f"{step.label} failed (exit code {code}){': ' + reason if reason else ''}")
            return
        self._next()

    def _fail(self, message: str) -> None:
        self.process = None
        self.line.emit(message)
        self.finished.emit(False, message)


def _reason(tail) -> str:
    """The most telling line of pip's last output (its ERROR line, else the last line)."""
    errors = [t.strip() for t in tail if t.strip().startswith("ERROR")]
    text = errors[-1] if errors else (tail[-1].strip() if tail else "")
    return text[:300]


def _quote(arg: str) -> str:
    return f'"{arg}"' if (" " in arg or "<" in arg or ">" in arg) else arg
