"""The SGCAD Processing provider: every engine capability as an algorithm."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

from qgis.core import QgsProcessingAlgorithm, QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

PROVIDER_ID = "sgcad"
ICON_PATH = Path(__file__).absolute().parent / "resources" / "icons" / "sgcad.svg"


def algorithm_classes():
    """All algorithm classes defined in ``sgcad_qgis.algorithms`` (discovered, sorted by id)."""
    from . import algorithms

    found = {}
    for info in pkgutil.iter_modules(algorithms.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{algorithms.__name__}.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, QgsProcessingAlgorithm)
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
                and getattr(cls, "ALG_ID", None)
            ):
                found[cls.ALG_ID] = cls
    return [found[k] for k in sorted(found)]


class SgcadProvider(QgsProcessingProvider):
    def id(self) -> str:
        return PROVIDER_ID

    def name(self) -> str:
        return "SGCAD"

    def longName(self) -> str:  # noqa: N802
        return "SGCAD optical+SAR land cover"

    def icon(self) -> QIcon:
        return QIcon(str(ICON_PATH))

    def loadAlgorithms(self) -> None:  # noqa: N802
        for cls in algorithm_classes():
            self.addAlgorithm(cls())
