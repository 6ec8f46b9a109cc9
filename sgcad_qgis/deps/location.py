"""The folder SGCAD installs packages into, and putting it on ``sys.path``."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Optional

#: Overrides the folder (tests, shared installations); otherwise it is in the QGIS profile.
ENV_DIR = "SGCAD_DEPS_DIR"


def python_tag() -> str:
    """``3.11``: packages with compiled parts only work with the Python they were built for."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def profile_dir() -> Optional[Path]:
    """The active QGIS profile folder, or None outside QGIS."""
    try:
        from qgis.core import QgsApplication

        path = QgsApplication.qgisSettingsDirPath()
    except Exception:  # no QGIS (plain Python, engine tests)
        return None
    return Path(path) if path else None


def deps_dir(profile: Optional[Path] = None) -> Path:
    """``<profile>/python/sgcad_deps/<python version>``, or ``$SGCAD_DEPS_DIR/<python version>``.

    The profile keeps it across plugin updates (which replace ``python/plugins/sgcad_qgis``)
    and it never touches the Python installation that QGIS or the system owns.
    """
    override = os.environ.get(ENV_DIR, "").strip()
    if override:
        return Path(override) / python_tag()
    profile = profile or profile_dir()
    if profile is None:
        profile = Path.home() / ".sgcad"
    return Path(profile) / "python" / "sgcad_deps" / python_tag()


def activate(folder: Optional[Path] = None) -> Optional[str]:
    """Put ``folder`` (default :func:`deps_dir`) first on ``sys.path`` when it exists.

    First, so that a package SGCAD installed because QGIS's copy was missing or too old wins.
    Import caches are invalidated so that modules installed while QGIS runs become importable
    without a restart. Returns the folder added (or already there), else None.
    """
    folder = Path(folder) if folder is not None else deps_dir()
    if not folder.is_dir():
        return None
    path = str(folder)
    if path not in sys.path:
        sys.path.insert(0, path)
    sys.path_importer_cache.pop(path, None)  # a finder cached before the folder existed sees nothing
    importlib.invalidate_caches()
    return path
