"""Run a Processing algorithm in QGIS's task manager, with progress, log lines and Cancel.

QGIS stays responsive because the algorithm runs on a worker thread. Only plain values
(paths, numbers, strings) cross the thread boundary: layers are passed by file name, and
result layers are created back on the main thread by the caller.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsTask,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal


class RelayFeedback(QgsProcessingFeedback):
    """Feedback whose text lines are re-emitted as a Qt signal (queued to the main thread)."""

    line = pyqtSignal(str)

    def setProgressText(self, text: str) -> None:
        super().setProgressText(text)
        self.line.emit(text)

    def pushInfo(self, info: str) -> None:
        super().pushInfo(info)
        self.line.emit(info)

    def pushWarning(self, warning: str) -> None:
        super().pushWarning(warning)
        self.line.emit("Warning: " + warning)

    def reportError(self, error: str, fatalError: bool = False) -> None:
        super().reportError(error, fatalError)
        self.line.emit("Error: " + error)


class AlgorithmTask(QgsTask):
    """A ``QgsTask`` that calls ``processing.run(alg_id, parameters)`` on a worker thread.

    Args:
        description: shown in QGIS's task list.
        alg_id: e.g. ``"sgcad:segment"``.
        parameters: plain values only (paths, numbers, strings, lists of them).
        done: called on the main thread as ``done(ok, results, error, canceled)``.
        use_project: let parameters name project layers by id (reads the project from the
            worker thread; needed only for layers that are not files).
    """

    def __init__(
        self, description: str, alg_id: str, parameters: Dict[str, Any],
        done: Callable[[bool, Dict[str, Any], str, bool], None], use_project: bool = False,
    ) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.alg_id = alg_id
        self.parameters = dict(parameters)
        self.done = done
        self.use_project = use_project
        self.feedback = RelayFeedback()
        self.feedback.progressChanged.connect(self.setProgress)
        self.results: Dict[str, Any] = {}
        self.error = ""

    def run(self) -> bool:
        import processing

        context = QgsProcessingContext()
        if self.use_project:
            context.setProject(QgsProject.instance())
        context.setFeedback(self.feedback)
        try:
            self.results = processing.run(self.alg_id, self.parameters, context=context,
                                          feedback=self.feedback)
        except QgsProcessingException as exc:
            self.error = str(exc).strip()
            return False
        except Exception as exc:  # the dock shows every failure as a message, never a traceback
            self.error = f"{type(exc).__name__}: {exc}"
            return False
        return not self.feedback.isCanceled()

    def cancel(self) -> None:
        self.feedback.cancel()
        super().cancel()

    def finished(self, result: bool) -> None:
        canceled = self.feedback.isCanceled()
        error = self.error
        if not result and not error and not canceled:
            error = f"{self.alg_id} stopped without saying why; see the log above."
        self.done(bool(result), dict(self.results or {}), error, canceled)


class TaskRunner(QObject):
    """Starts one algorithm task at a time and reports it through signals.

    Signals:
        progress(float): 0-100.
        line(str): log line from the algorithm.
        finished(str, bool, dict, str, bool): alg_id, ok, results, error, canceled.
    """

    progress = pyqtSignal(float)
    line = pyqtSignal(str)
    finished = pyqtSignal(str, bool, dict, str, bool)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.task: Optional[AlgorithmTask] = None

    def busy(self) -> bool:
        return self.task is not None

    def start(self, description: str, alg_id: str, parameters: Dict[str, Any],
              use_project: bool = False) -> AlgorithmTask:
        """Queue ``alg_id`` in QGIS's task manager.

        Raises:
            ValueError: another run is still going (two torch runs would share the CPU cores).
        """
        if self.task is not None:
            raise ValueError("Another SGCAD run is still going; wait for it or cancel it first.")

        def done(ok, results, error, canceled, _alg=alg_id):
            self.task = None
            self.finished.emit(_alg, ok, results, error, canceled)

        task = AlgorithmTask(description, alg_id, parameters, done, use_project)
        task.progressChanged.connect(self.progress.emit)
        task.feedback.line.connect(self.line.emit)
        self.task = task  # keep a Python reference: the task manager does not
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


class JobProgress:
    """One progress bar for a job of several algorithm stages, never going backwards.

    An SGCAD algorithm reports each of its stages from 0 to 100 % (a fine-tune: the patches,
    then the training) and announces each stage with a log line ``"<stage>…"``; the dock
    chains algorithms (fine-tune, then re-segment). The job gives each stage a share of the bar.
    """

    #: stage announced by the algorithms -> its share of a fine-tune job (the patches around the
    #: polygons, the training, and the re-segmentation that follows)
    FINETUNE_THEN_SEGMENT = (("Patches around the polygons", 0.05), ("Fine-tuning", 0.8), ("Segmentation", 0.15))
    SEGMENT = (("Segmentation", 1.0),)

    def __init__(self) -> None:
        self.begin(self.SEGMENT)
        self.active = False

    def begin(self, stages) -> None:
        total = float(sum(w for _, w in stages)) or 1.0
        self.labels = [label for label, _ in stages]
        self.weights = [w / total for _, w in stages]
        self.stage, self.value, self.active = 0, 0, True

    def stage_started(self, line: str) -> None:
        """Follow the algorithm's ``"<stage>…"`` log lines; other lines change nothing."""
        label = line.strip().rstrip("…").strip()
        if label in self.labels:
            self.stage = max(self.stage, self.labels.index(label))

    def update(self, algorithm_value: float) -> int:
        """The bar's value (0-100) for the running stage's progress ``algorithm_value``."""
        value = min(max(float(algorithm_value), 0.0), 100.0)
        done = sum(self.weights[: self.stage])
        overall = int(100 * (done + self.weights[self.stage] * value / 100.0))
        self.value = max(self.value, min(overall, 100))
        return self.value

    def end(self) -> None:
        self.active = False
