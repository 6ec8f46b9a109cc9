"""Plugin object: menu, toolbar, Processing provider registration and clean unload."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

MENU = "&SGCAD"
ICON = Path(__file__).absolute().parent / "resources" / "icons" / "sgcad.svg"


class SgcadPlugin:
    """Created by :func:`classFactory`; QGIS calls ``initProcessing``, ``initGui`` and ``unload``."""

    def __init__(self, iface) -> None:
        self.iface = iface
        self.provider = None
        self.actions = []
        self.toolbar = None
        self.dock = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS hook
        from .provider import SgcadProvider

        registry = QgsApplication.processingRegistry()
        if self.provider is None and registry.providerById("sgcad") is None:
            self.provider = SgcadProvider()
            registry.addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS hook
        self.initProcessing()
        self.toolbar = self.iface.addToolBar("SGCAD")
        self.toolbar.setObjectName("SgcadToolbar")
        self._add_action("SGCAD segmentation…", self.show_dock, toolbar=True)
        self._add_action("Check environment…", self.check_environment)

    def _add_action(self, text: str, slot, toolbar: bool = False) -> QAction:
        action = QAction(QIcon(str(ICON)), text, self.iface.mainWindow())
        action.triggered.connect(slot)
        self.iface.addPluginToMenu(MENU, action)
        if toolbar and self.toolbar is not None:
            self.toolbar.addAction(action)
        self.actions.append(action)
        return action

    def show_dock(self) -> None:
        """Open the segmentation dock (created on first use so QGIS starts fast).

        The dock opens even when torch or another package is missing: it then says what is
        missing and offers to install it.
        """
        if self.dock is None:
            from qgis.PyQt.QtCore import Qt

            from .gui.dock import SgcadDock

            self.dock = SgcadDock(self.iface)
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
            window = self.iface.mainWindow()
            if hasattr(window, "resizeDocks"):  # a comfortable first width; the contents fit it
                from .gui.dock import PANEL_WIDTH

                window.resizeDocks([self.dock], [PANEL_WIDTH], Qt.Horizontal)
        self.dock.show()
        self.dock.raise_()

    def check_environment(self) -> None:
        """Versions, folders, device and a report to attach to bug reports."""
        from .gui.environment_dialog import EnvironmentDialog

        EnvironmentDialog(self.iface.mainWindow()).exec_()

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
            action.deleteLater()
        self.actions = []
        if self.toolbar is not None:
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.dock is not None:
            self.dock.shutdown()  # map tools off the canvas before their widgets go
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
