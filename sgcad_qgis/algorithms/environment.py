"""sgcad:checkenvironment — which dependencies and which compute device SGCAD will use."""

from __future__ import annotations

from qgis.core import QgsProcessingOutputNumber, QgsProcessingOutputString

from ..environment import dependency_message, device_summary, diagnostics_report, missing_dependencies
from ._base import SgcadAlgorithm


class CheckEnvironment(SgcadAlgorithm):
    ALG_ID = "checkenvironment"
    DISPLAY = "Check environment (dependencies and device)"
    GROUP = "tools"
    HELP = (
        "Reports whether the Python modules SGCAD needs can be imported (version and folder of "
        "each), which compute device (GPU name, or CPU and why) the other algorithms will use by "
        "default, and where the plugin installs missing packages. The REPORT output is the "
        "diagnostics text to attach to a bug report. Missing packages are installed from the "
        "SGCAD dock's 'Install' button."
    )

    def canExecute(self):  # noqa: N802 - this one must run to say what is missing
        return True, ""

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addOutput(QgsProcessingOutputString("DEVICE", self.tr("Default device")))
        self.addOutput(QgsProcessingOutputNumber("MISSING", self.tr("Missing dependencies")))
        self.addOutput(QgsProcessingOutputString("MESSAGE", self.tr("Message")))
        self.addOutput(QgsProcessingOutputString("REPORT", self.tr("Diagnostics report")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        missing = missing_dependencies()
        device = device_summary()
        message = dependency_message() or "All dependencies import."
        feedback.pushInfo(message)
        feedback.pushInfo(f"Default device: {device}")
        report = diagnostics_report()
        for line in report.splitlines():
            feedback.pushInfo(line)
        return {"DEVICE": device, "MISSING": len(missing), "MESSAGE": message, "REPORT": report}
