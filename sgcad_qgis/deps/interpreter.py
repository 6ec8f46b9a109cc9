"""The Python interpreter that belongs to the running QGIS.

Inside QGIS, ``sys.executable`` is QGIS itself (``/usr/bin/qgis``, ``qgis-bin.exe``,
``QGIS.app/Contents/MacOS/QGIS``): running ``sys.executable -m pip`` would start another QGIS.
The real interpreter is found next to the Python installation QGIS embeds, and accepted only
if it reports the same Python version and ``sys.prefix`` as QGIS's Python, so pip installs
packages built for the Python that will import them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess  # fixed argument lists, no shell
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

PROBE = "import json, sys; print(json.dumps([list(sys.version_info[:3]), sys.prefix]))"


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: Tuple[int, int, int]
    prefix: str


def candidates(
    executable: str = sys.executable,
    prefix: str = sys.exec_prefix,
    base: Optional[str] = None,
    version: Tuple[int, int] = sys.version_info[:2],
    platform: str = sys.platform,
) -> List[str]:
    """Paths where the interpreter behind QGIS usually is, most likely first.

    * Linux (distribution packages, Flatpak, conda): ``<exec_prefix>/bin/python3.X``, then
      ``python3.X`` / ``python3`` on PATH.
    * Windows (OSGeo4W and the standalone installer): ``<exec_prefix>\\python.exe``
      (``…\\apps\\Python3X``), then ``python3.exe`` beside it.
    * macOS (QGIS.app): ``Contents/MacOS/bin/python3`` beside the QGIS executable, then the
      framework's ``<exec_prefix>/bin/python3.X``.
    """
    major, minor = version
    names = [f"python{major}.{minor}", f"python{major}", "python"]
    found: List[str] = []
    base = base if base is not None else getattr(sys, "_base_executable", "")
    if base and Path(base).name.lower().startswith("python"):
        found.append(base)
    if Path(executable).name.lower().startswith("python"):
        found.append(executable)  # plain Python (tests, qgis_process wrappers that run python)
    if platform == "win32":
        root = Path(prefix)
        found += [str(root / "python.exe"), str(root / "python3.exe"),
                  str(Path(executable).parent / "python.exe"), str(Path(executable).parent / "python3.exe")]
    else:
        if platform == "darwin":
            macos = Path(executable).parent  # QGIS.app/Contents/MacOS
            found += [str(macos / "bin" / n) for n in names[:2]]
            found += [str(macos.parent / "Frameworks" / "Python.framework" / "Versions" / f"{major}.{minor}"
                          / "bin" / n) for n in names[:2]]
        found += [str(Path(prefix) / "bin" / n) for n in names]
    for name in names[:2]:
        on_path = shutil.which(name)
        if on_path:
            found.append(on_path)
    unique: List[str] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def probe(path: str, timeout: float = 30.0) -> Optional[Interpreter]:
    """Run ``path`` and read its version and prefix; None when it is not a working Python."""
    if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
        return None
    try:
        out = subprocess.run(  # interpreter path checked above, fixed arguments
            [path, "-I", "-c", PROBE], capture_output=True, text=True, timeout=timeout, check=False,
            env=clean_environment(),
        )
        version, prefix = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None
    return Interpreter(path, tuple(version), prefix)


def clean_environment(extra_path: Iterable[str] = ()) -> dict:
    """QGIS's environment for a child Python, with its own PYTHONPATH.

    QGIS sets variables for its embedded Python (e.g. ``PYTHONHOME`` on Windows, which must
    stay); ``PYTHONPATH`` is replaced by ``extra_path`` so that pip sees the folders QGIS's
    Python sees and nothing from a developer's shell.
    """
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONSTARTUP", None)
    paths = [p for p in extra_path if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONIOENCODING"] = "utf-8"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def find_python(
    paths: Optional[Iterable[str]] = None,
    version: Tuple[int, int] = sys.version_info[:2],
    prefix: str = sys.prefix,
) -> Tuple[Optional[Interpreter], List[str]]:
    """(the interpreter of QGIS's Python, what was tried).

    A candidate must run the same ``major.minor`` Python; one with the same ``sys.prefix`` as
    QGIS's Python wins over one that only matches the version.
    """
    tried: List[str] = []
    same_version: Optional[Interpreter] = None
    for path in paths if paths is not None else candidates():
        found = probe(path)
        if found is None:
            tried.append(f"{path}: not a working Python")
            continue
        if tuple(found.version[:2]) != tuple(version):
            tried.append(f"{path}: Python {'.'.join(map(str, found.version))}, QGIS runs {version[0]}.{version[1]}")
            continue
        if os.path.normcase(os.path.realpath(found.prefix)) == os.path.normcase(os.path.realpath(prefix)):
            return found, tried
        tried.append(f"{path}: Python {'.'.join(map(str, found.version))} of another installation ({found.prefix})")
        same_version = same_version or found
    return same_version, tried
