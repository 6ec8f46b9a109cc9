"""Shared base for SGCAD algorithms: dependency gate, progress bridge, common parameters."""

from __future__ import annotations

import time
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..environment import available_devices, dependency_message

ICON = Path(__file__).absolute().parent.parent / "resources" / "icons" / "sgcad.svg"

GROUPS = {
    "segmentation": "Segmentation",
    "training": "Training",
    "preparation": "Data preparation",
    "evaluation": "Evaluation",
    "tools": "Tools",
}


def make_progress(feedback):
    """An engine ``Progress`` forwarding to ``feedback`` (progress bar, log, cancel button)."""
    from sgcad_qgis.engine.progress import Progress

    class _Bridge(Progress):
        def report(self, fraction: float, message: str = "") -> None:
            feedback.setProgress(100.0 * min(max(fraction, 0.0), 1.0))
            if message:
                feedback.setProgressText(message)

        def info(self, message: str) -> None:
            feedback.pushInfo(message)

        def is_canceled(self) -> bool:
            return feedback.isCanceled()

    return _Bridge()


class SgcadAlgorithm(QgsProcessingAlgorithm):
    """Base class: subclasses set ALG_ID, DISPLAY, GROUP and HELP and implement the rest."""

    ALG_ID = ""
    DISPLAY = ""
    GROUP = "tools"
    HELP = ""

    def tr(self, text: str) -> str:
        return QCoreApplication.translate("SGCAD", text)

    def createInstance(self):  # noqa: N802
        return type(self)()

    def name(self) -> str:
        return self.ALG_ID

    def displayName(self) -> str:  # noqa: N802
        return self.tr(self.DISPLAY)

    def group(self) -> str:
        return self.tr(GROUPS[self.GROUP])

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP

    def shortHelpString(self) -> str:  # noqa: N802
        return self.tr(self.HELP)

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def canExecute(self):  # noqa: N802
        message = dependency_message()
        return (not message, message)

    def add_device_parameter(self, name: str = "DEVICE") -> None:
        """Device choice: auto, CPU, and each CUDA device by name."""
        self._devices = available_devices()
        param = QgsProcessingParameterEnum(
            name, self.tr("Device"), options=[label for _, label in self._devices], defaultValue=0
        )
        self.addParameter(param)

    def device_value(self, parameters, context, name: str = "DEVICE") -> str:
        devices = getattr(self, "_devices", None) or available_devices()
        index = self.parameterAsEnum(parameters, name, context)
        if index >= len(devices):
            raise QgsProcessingException(f"Device option {index} does not exist on this machine")
        return devices[index][0]

    def add_advanced(self, param: QgsProcessingParameterDefinition) -> None:
        param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(param)

    @staticmethod
    def timed(feedback, label: str, start: float) -> None:
        feedback.pushInfo(f"{label}: {time.monotonic() - start:.1f} s")
