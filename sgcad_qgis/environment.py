"""Dependency checks, compute-device detection and the diagnostics report.

Shown to users instead of tracebacks: what is missing or too old, where every package was
imported from, which device SGCAD will use and why. The dock's setup panel and the
*Check environment* dialog read these; the installer (:mod:`.deps`) fixes what they find.
"""

from __future__ import annotations

import html
import importlib
import os
import platform
import sys
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import List, Optional, Tuple

from .deps.spec import PACKAGES, Package, PackageState, version_tuple

PLUGIN_DIR = Path(__file__).absolute().parent

#: Where a user reads how to install by hand (shipped in the plugin, see build_plugin.py).
INSTALL_DOC = "help/install.md"

#: Replaced in tests to simulate a Python without some module (no other caller needs it).
import_module = importlib.import_module


def _version_of(package: Package, module) -> Optional[str]:
    try:
        return importlib_metadata.version(package.dist)
    except importlib_metadata.PackageNotFoundError:
        pass
    for holder in (module, getattr(module, "version", None)):
        value = getattr(holder, "__version__", None) or getattr(holder, "VERSION", None)
        if isinstance(value, str):
            return value
    return None


def package_state(package: Package) -> PackageState:
    """Import ``package.module`` and tell whether it is usable, with version and location."""
    state = PackageState(package)
    try:
        module = import_module(package.module)
    except Exception as exc:  # any import failure (missing, missing DLL, ABI clash) counts
        top = package.module.split(".")[0]
        missing = isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == top
        state.problem = "missing" if missing else f"cannot be imported ({type(exc).__name__}: {exc})"
        return state
    state.version = _version_of(package, module)
    where = getattr(module, "__file__", None)
    state.location = str(Path(where).parent) if where else ""
    if package.module == "osgeo.gdal":
        state.version = getattr(module, "__version__", state.version)
    if state.version and version_tuple(state.version) < version_tuple(package.minimum):
        state.problem = f"too old ({state.version}; SGCAD needs {package.minimum} or newer)"
    return state


def dependency_status(optional: bool = True) -> List[PackageState]:
    """Every package SGCAD uses, in :data:`~.deps.spec.PACKAGES` order."""
    return [package_state(p) for p in PACKAGES if optional or not p.optional]


def missing_dependencies() -> List[str]:
    """Required modules that cannot be used, each with the reason ("torch (missing)")."""
    return [f"{s.name} ({s.problem})" for s in dependency_status(optional=False) if not s.ok]


def dependency_message(as_html: bool = False) -> str:
    """Empty when everything required imports, else what is missing and how to install it.

    Args:
        as_html: escape the text for places that render HTML (Processing's dialogs), so that
            version ranges such as ``numpy<2`` survive.
    """
    missing = missing_dependencies()
    if not missing:
        return ""
    text = (
        "SGCAD cannot run yet: " + "; ".join(missing) + ". Open the SGCAD dock (Plugins > SGCAD > "
        "SGCAD segmentation…) and click 'Install', which installs them for QGIS into your QGIS "
        "profile. To install by hand instead, see " + INSTALL_DOC + " in the plugin folder."
    )
    return html.escape(text) if as_html else text


def available_devices() -> List[Tuple[str, str]]:
    """(value, label) pairs: auto, cpu, and each CUDA device with its name."""
    devices = [("auto", "Automatic (GPU if available, else CPU)"), ("cpu", "CPU")]
    try:
        import torch

        for i in range(torch.cuda.device_count()):
            devices.append((f"cuda:{i}", f"GPU {i}: {torch.cuda.get_device_name(i)}"))
    except Exception:  # torch missing or broken CUDA runtime: CPU only
        return devices
    return devices


def device_summary() -> str:
    """What 'auto' will run on, in words, including why it is the CPU."""
    try:
        import torch
    except Exception as exc:
        return f"nothing yet: torch cannot be imported ({type(exc).__name__})"
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    if torch.version.cuda is None:
        reason = "this torch build has no CUDA"
    else:
        reason = f"torch's CUDA {torch.version.cuda} build sees no usable GPU (driver missing or too old)"
    return f"CPU ({reason}; {torch.get_num_threads()} threads)"


def plugin_version() -> str:
    import configparser

    meta = configparser.ConfigParser()
    meta.read(PLUGIN_DIR / "metadata.txt", encoding="utf-8")
    return meta.get("general", "version", fallback="?")


def qgis_version() -> str:
    try:
        from qgis.core import Qgis

        return Qgis.QGIS_VERSION
    except Exception:  # plain Python
        return "not running in QGIS"


def diagnostics_report(detect_gpu: bool = True, find_interpreter: bool = True) -> str:
    """A plain-text report for bug reports: versions, locations, device, install folder.

    Args:
        detect_gpu: ask ``nvidia-smi`` (takes up to a second).
        find_interpreter: start the candidate interpreters to find QGIS's real Python.
    """
    from .deps import deps_dir
    from .deps.interpreter import find_python
    from .deps.spec import PlatformInfo, choose_torch, detect_nvidia

    folder = deps_dir()
    lines = [
        "SGCAD diagnostics (attach this to a bug report)",
        f"SGCAD plugin: {plugin_version()} in {PLUGIN_DIR}",
        f"QGIS: {qgis_version()}",
        f"Operating system: {platform.platform()} ({platform.machine()})",
        f"Python: {sys.version.split()[0]} (sys.executable {sys.executable}; prefix {sys.prefix})",
    ]
    if find_interpreter:
        interp, tried = find_python()
        lines.append(f"Python interpreter for pip: {interp.path if interp else 'NOT FOUND'}")
        lines += [f"  tried {t}" for t in tried[:6]]
    lines.append(f"SGCAD packages folder: {folder} ({'exists' if folder.is_dir() else 'not created yet'}; "
                 f"{'on' if str(folder) in sys.path else 'not on'} sys.path)")
    lines.append("Packages:")
    for state in dependency_status():
        where = state.location or "-"
        status = "ok" if state.ok else state.problem
        extra = " (optional)" if state.package.optional else ""
        lines.append(f"  {state.package.dist:<12} {state.version or '-':<14} {status}{extra}  {where}")
    lines.append(f"Default device: {device_summary()}")
    try:  # the CPU's fast paths and the precision each model measured here (engine.inference.precision)
        from sgcad_qgis.engine.inference.precision import environment_report, report_lines

        lines += report_lines(environment_report())
    except Exception as exc:  # torch or the engine cannot be imported yet: the packages list says why
        lines.append(f"CPU fast paths: not checked ({type(exc).__name__})")
    if all(s.ok for s in dependency_status(optional=False) if s.package.dist == "torch"):
        import torch

        cuda = torch.version.cuda or "none (CPU build)"
        lines.append(f"torch build: {torch.__version__}, CUDA {cuda}, {torch.cuda.device_count()} CUDA device(s)")
    if detect_gpu:
        gpus, note = detect_nvidia()
        lines.append(f"NVIDIA: {note}" + "".join(f"; {g.name} ({g.memory_mb} MB)" for g in gpus))
        info = PlatformInfo.current()
        lines.append(f"Installer's torch build for this machine: {choose_torch(info, gpus, note).describe()}")
    lines.append(f"numpy pinned for installs: {PlatformInfo.current().numpy or 'none found'}")
    env = {k: os.environ.get(k, "") for k in ("PYTHONPATH", "PYTHONHOME", "QGIS_PLUGINPATH", "CUDA_VISIBLE_DEVICES")}
    lines += [f"{k}={v}" for k, v in env.items() if v]
    lines.append("sys.path (first 8): " + " | ".join(sys.path[:8]))
    return "\n".join(lines)
