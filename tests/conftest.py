"""Test session set-up shared by engine and plugin tests.

QGIS (through pytest-qgis) starts once for the session, offscreen. The plugin is loaded the
way QGIS loads it: from the assembled folder ``build/plugins/sgcad_qgis`` in which the engine
is the vendored sub-package ``sgcad_qgis.engine``.
"""

from __future__ import annotations

import gc
import importlib
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_plugin  # noqa: E402

PLUGIN_PARENT = build_plugin.build_dev()
if str(PLUGIN_PARENT) not in sys.path:
    sys.path.insert(0, str(PLUGIN_PARENT))
sys.path_importer_cache.pop(str(PLUGIN_PARENT), None)
importlib.invalidate_caches()

os.environ.setdefault("GDAL_PAM_ENABLED", "NO")  # no .aux.xml written beside test inputs
os.environ.setdefault("XDG_RUNTIME_DIR", f"/tmp/runtime-{os.getuid()}")
Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)

SHARED_DATA = ROOT.parent / "shared" / "data"

_exit_status = {"value": None}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real sample rasters beside the repository (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real sample data not found at {SHARED_DATA}")
    return SHARED_DATA


def pytest_sessionfinish(session, exitstatus):
    _exit_status["value"] = int(exitstatus)
    # Garbage collection after the tests can free Qt wrappers whose C++ objects QGIS already deleted,
    # and segfault in the summary (seen after a few plugin test files run alone); the process ends next.
    gc.disable()


def _release_temporary_folders(config, keep: int = 3) -> None:
    """What pytest does at exit, which os._exit skips: release this session's temporary folder and remove all but
    the last ``keep`` unlocked ones (about 1 GB per full run; they piled up to fill a disk)."""
    base = getattr(getattr(config, "_tmp_path_factory", None), "_basetemp", None)
    if base is None or config.option.basetemp:  # a folder the user chose is theirs
        return
    base = Path(base)
    (base / ".lock").unlink(missing_ok=True)
    runs = sorted((p for p in base.parent.glob("pytest-*") if p.name[len("pytest-"):].isdigit()),
                  key=lambda p: int(p.name[len("pytest-"):]))
    for old in runs[:-keep]:
        if not (old / ".lock").exists():  # another session still running holds its lock
            shutil.rmtree(old, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Exit with pytest's own status before GDAL/QGIS teardown can segfault (PLATFORM notes)."""
    status = _exit_status["value"]
    if status is None:
        return
    _release_temporary_folders(config)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
