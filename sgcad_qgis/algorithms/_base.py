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
from qgis.PyQt.QtCore import QCoreApplication, QUrl
from qgis.PyQt.QtGui import QIcon

from ..environment import available_devices, dependency_message

PLUGIN_DIR = Path(__file__).absolute().parent.parent
ICON = PLUGIN_DIR / "resources" / "icons" / "sgcad.svg"
BUNDLED_MODELS = PLUGIN_DIR / "resources" / "models"

#: Model-file parameters whose default is a model shipped with the plugin.
BUNDLED_DEFAULTS = {
    "MODEL": "sgcad_student.safetensors",
    "STUDENT": "sgcad_student.safetensors",
    "TEACHER": "sgcad_teacher.safetensors",
}

#: Parameter types that ``qgis_process`` of QGIS 3.22 demands even when they have a default
#: (numbers, booleans and enums take theirs): see :meth:`SgcadAlgorithm.addParameter`.
DEFAULTED_TYPES = ("file", "field")

#: Public address of the documentation (``…/docs``); empty until the project is published
#: (docs/install.md, "Publishing"). Until then the help button opens the copy of
#: docs/processing.md shipped in the plugin's ``help`` folder.
PUBLIC_DOCS_URL = ""


def heading_anchor(heading: str) -> str:
    """The anchor GitHub and GitLab give a Markdown heading (docs/processing.md has one per algorithm)."""
    text = "".join(c for c in heading.lower() if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def help_url(anchor: str = "", page: str = "processing.md") -> str:
    """Where the Processing help button of an algorithm leads."""
    fragment = f"#{anchor}" if anchor else ""
    if PUBLIC_DOCS_URL:
        return f"{PUBLIC_DOCS_URL.rstrip('/')}/{page}{fragment}"
    local = PLUGIN_DIR / "help" / page
    if not local.is_file():  # development folder: the repository's docs
        local = PLUGIN_DIR.resolve().parent / "docs" / page
    return QUrl.fromLocalFile(str(local)).toString() + fragment

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
        last_text = ""

        def report(self, fraction: float, message: str = "") -> None:
            feedback.setProgress(100.0 * min(max(fraction, 0.0), 1.0))
            if message and message != self.last_text:  # a loop repeats its text at every step: log it once
                self.last_text = message
                feedback.setProgressText(message)

        def info(self, message: str) -> None:
            feedback.pushInfo(message)

        def warning(self, message: str) -> None:
            feedback.pushWarning(message)

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

    def helpUrl(self) -> str:  # noqa: N802
        return help_url(heading_anchor(f"`sgcad:{self.ALG_ID}` — {self.DISPLAY}"))

    def canExecute(self):  # noqa: N802
        message = dependency_message(as_html=True)  # Processing shows it as rich text
        return (not message, message)

    def addParameter(self, definition, createOutput=True):  # noqa: N802 - QGIS API
        """Adds ``definition``; a model file parameter named in :data:`BUNDLED_DEFAULTS`
        without a default gets the bundled model as its default.

        A required file or field parameter that has a default is flagged optional, its default
        standing in when it is left out or empty: ``qgis_process`` of QGIS 3.22 refuses to run
        without every required file and field parameter, default or not ("The following
        mandatory parameters were not specified: MODEL").
        """
        bundled = BUNDLED_DEFAULTS.get(definition.name())
        if bundled and definition.type() == "file" and definition.defaultValue() in (None, ""):
            path = BUNDLED_MODELS / bundled
            if path.is_file():
                definition.setDefaultValue(str(path))
        optional = definition.flags() & QgsProcessingParameterDefinition.FlagOptional
        if definition.type() in DEFAULTED_TYPES and not optional and definition.defaultValue() not in (None, ""):
            definition.setFlags(definition.flags() | QgsProcessingParameterDefinition.FlagOptional)
            self.defaulted_parameters()[definition.name()] = definition.defaultValue()
        return super().addParameter(definition, createOutput)

    def defaulted_parameters(self) -> dict:
        """Required parameters flagged optional because they have a default (:meth:`addParameter`): name → default."""
        if not hasattr(self, "_defaulted"):
            self._defaulted = {}
        return self._defaulted

    def parameterAsFile(self, parameters, name, context):  # noqa: N802 - QGIS API
        """As QGIS's, except that an optional model given explicitly as empty (``TEACHER=``, a
        cleared field) means "none" rather than the bundled default, and that a required one
        left empty (``MODEL=``) means its default."""
        if name in parameters and parameters[name] in (None, ""):
            if name in self.defaulted_parameters():
                return str(self.defaulted_parameters()[name])
            definition = self.parameterDefinition(name)
            if name in BUNDLED_DEFAULTS and definition is not None and (
                    definition.flags() & QgsProcessingParameterDefinition.FlagOptional):
                return ""
        return super().parameterAsFile(parameters, name, context)

    def parameterAsString(self, parameters, name, context):  # noqa: N802 - QGIS API
        """As QGIS's, except that a required field parameter left empty (``CLASS_FIELD=``) means its default."""
        if name in self.defaulted_parameters() and parameters.get(name) in (None, ""):
            return str(self.defaulted_parameters()[name])
        return super().parameterAsString(parameters, name, context)

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
