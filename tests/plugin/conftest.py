"""Fixtures for plugin tests: an iface that records menus, and Processing initialised."""

from __future__ import annotations

import pytest


class RecordingIface:
    """Wraps pytest-qgis's stand-in iface and records plugin menu entries and docks."""

    def __init__(self, iface) -> None:
        self._iface = iface
        self.menu_actions = []
        self.docks = []

    def __getattr__(self, name):
        return getattr(self._iface, name)

    def addPluginToMenu(self, name, action):
        self.menu_actions.append((name, action))

    def removePluginMenu(self, name, action):
        self.menu_actions.remove((name, action))

    def addDockWidget(self, area, dock):
        self.docks.append(dock)

    def removeDockWidget(self, dock):
        self.docks.remove(dock)

    def browserModel(self):  # processing.createAlgorithmDialog needs it (PLATFORM notes)
        from qgis.core import QgsBrowserModel

        if not hasattr(self, "_browser"):
            self._browser = QgsBrowserModel()
        return self._browser


@pytest.fixture()
def recording_iface(qgis_iface):
    return RecordingIface(qgis_iface)


@pytest.fixture()
def sgcad_provider(qgis_processing):
    """The SGCAD provider registered in QGIS's Processing registry (re-registered after a test
    unloaded the plugin, which deletes the provider)."""
    yield ensure_sgcad_provider()


# Session fixtures of the algorithm and Modeler tests (synthetic scene, tiny models).
from alg_fixtures import (  # noqa: E402,F401
    ensure_sgcad_provider,
    scene,
    synthetic_scene,
    trained_models,
    untrained_models,
)
