"""The commands of an installation: resolve with pip's report, then install exactly that.

Two pip runs, both with QGIS's own interpreter:

1. ``pip install --dry-run --report`` resolves the pinned requirements against what QGIS's
   Python already has (plus SGCAD's folder). Nothing QGIS ships is listed unless it is
   missing or too old, and the constraints keep QGIS's numpy exactly as it is.
2. ``pip install --target <folder> --no-deps --upgrade`` installs exactly the distributions
   of that report into SGCAD's folder.

A plain ``pip install --target`` would not do: ``--target`` makes pip ignore everything
installed, so it would put a second numpy (and every other shared dependency) into the folder,
first on ``sys.path``, in front of the numpy QGIS's GDAL was built with.

PEP 668 (Debian 12's ``EXTERNALLY-MANAGED``) forbids installing into the system's
site-packages; pip applies it only to that, not to ``--target`` installs nor to
``--dry-run --report``, so no ``--break-system-packages`` is needed (and none is passed).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from .spec import NEVER_REPLACE, Requirements, TorchChoice

#: pip release fetched when QGIS's Python has no pip (Debian without python3-pip) or one
#: older than 22.2, which cannot write the resolution report.
PIP_VERSION = "24.3.1"
MIN_PIP = (22, 2)

#: Run by QGIS's Python to fetch pip's wheel from PyPI (its SHA-256 is checked against PyPI's
#: JSON). pip runs straight from the wheel file (``python pip.whl/pip ...``), a use pip supports.
BOOTSTRAP = r"""
import hashlib, json, os, sys, urllib.request
version, folder = sys.argv[1], sys.argv[2]
url = "https://pypi.org/pypi/pip/%s/json" % version
with urllib.request.urlopen(url, timeout=60) as r:
    files = json.load(r)["urls"]
wheel = [f for f in files if f["filename"].endswith("-py3-none-any.whl")][0]
print("Downloading " + wheel["filename"], flush=True)
with urllib.request.urlopen(wheel["url"], timeout=300) as r:
    data = r.read()
if hashlib.sha256(data).hexdigest() != wheel["digests"]["sha256"]:
    sys.exit("the downloaded pip wheel does not match PyPI's SHA-256")
os.makedirs(folder, exist_ok=True)
target = os.path.join(folder, wheel["filename"])
with open(target + ".part", "wb") as f:
    f.write(data)
os.replace(target + ".part", target)
print("Saved " + target, flush=True)
"""


@dataclass
class Step:
    """One command of an installation.

    Attributes:
        label: what the user reads ("Resolving", "Installing").
        args: the command; ``build`` may replace it just before the step runs.
        weight: share of the whole progress bar.
        build: called before the step starts; returns the command, or None to skip the step.
    """

    label: str
    args: List[str] = field(default_factory=list)
    weight: float = 1.0
    build: Optional[Callable[[], Optional[List[str]]]] = None


@dataclass
class InstallPlan:
    """Everything an installation does, for the dock to show and the runner to run."""

    python: str
    target: Path
    requirements: Requirements
    torch: Optional[TorchChoice]
    steps: List[Step]
    env: Dict[str, str]
    work: Path  # report and constraint files

    def summary(self) -> str:
        lines = [f"Into {self.target} with {self.python}:"]
        for req in self.requirements.requirements:
            if self.torch is not None and req == self.torch.requirement:
                lines.append(f"  {self.torch.describe()}")
            else:
                lines.append(f"  {req}")
        lines.append(f"Download: about {self.requirements.download_mb} MB in all.")
        return "\n".join(lines)


def index_arguments(torch: Optional[TorchChoice], requirements: Sequence[str]) -> List[str]:
    """PyTorch's index for its CPU or CUDA build, next to the default index (PyPI)."""
    if torch is None or torch.index_url is None or torch.requirement not in requirements:
        return []
    return ["--extra-index-url", torch.index_url]


def pip_command(python: str, pip_wheel: Optional[str] = None) -> List[str]:
    return [python, os.path.join(pip_wheel, "pip")] if pip_wheel else [python, "-m", "pip"]


COMMON = ["--disable-pip-version-check", "--no-input", "--progress-bar", "off"]


def resolve_args(pip: List[str], report: Path, constraints: Path, requirements: Sequence[str],
                 torch: Optional[TorchChoice]) -> List[str]:
    return [*pip, "install", "--dry-run", "--report", str(report), *COMMON, "-c", str(constraints),
            *index_arguments(torch, requirements), *requirements]


def install_args(pip: List[str], target: Path, pins: Sequence[str], torch: Optional[TorchChoice],
                 requirements: Sequence[str]) -> List[str]:
    return [*pip, "install", "--target", str(target), "--no-deps", "--upgrade", "--no-warn-script-location",
            *COMMON, *index_arguments(torch, requirements), *pins]


def pins_from_report(report: dict, keep: Callable[[str], bool] = lambda name: True) -> List[str]:
    """``name==version`` of every distribution pip's report would install.

    Args:
        report: pip's ``--report`` JSON.
        keep: False for a distribution that must not be installed (see :data:`NEVER_REPLACE`).
    """
    pins = []
    for item in report.get("install", []):
        meta = item.get("metadata", {})
        name, version = meta.get("name", ""), meta.get("version", "")
        if name and version and keep(name):
            pins.append(f"{name}=={version}")
    return pins


def installed_elsewhere(name: str) -> bool:
    """True when the running Python already has distribution ``name`` (any version)."""
    try:
        importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return False
    return True


def keep_distribution(name: str) -> bool:
    """Build tools that QGIS's Python has already are never installed into SGCAD's folder."""
    return not (name.lower() in NEVER_REPLACE and installed_elsewhere(name))


def site_folders(path: Sequence[str] = tuple(sys.path)) -> List[str]:
    """The folders of ``sys.path`` that hold installed distributions (site-/dist-packages)."""
    return [p for p in path if p and os.path.isdir(p) and Path(p).name in ("site-packages", "dist-packages")]


def build_plan(
    python: str,
    target: Path,
    requirements: Requirements,
    torch: Optional[TorchChoice],
    pip_version: Optional[tuple] = None,
    work: Optional[Path] = None,
    path: Sequence[str] = tuple(sys.path),
) -> InstallPlan:
    """The steps that install ``requirements`` into ``target`` with ``python``.

    Args:
        python: QGIS's interpreter (see :func:`.interpreter.find_python`).
        target: SGCAD's folder (see :func:`.location.deps_dir`).
        requirements: pinned requirements and constraints (see :func:`.spec.requirements_for`).
        torch: the torch build, for its package index.
        pip_version: the interpreter's pip version, None when it has no pip.
        work: folder for the report and constraint files (default: ``target``'s parent).
        path: QGIS's ``sys.path``; its site folders are shown to pip as installed.
    """
    target = Path(target)
    work = Path(work) if work is not None else target.parent / "_install"
    report, constraints = work / "report.json", work / "constraints.txt"
    env_paths = [str(target)] + [p for p in site_folders(path) if p != str(target)]
    from .interpreter import clean_environment

    env = clean_environment(env_paths)
    env.update({"PIP_USER": "0", "PIP_REQUIRE_VIRTUALENV": "0"})  # a user pip.conf must not redirect it
    steps: List[Step] = []
    pip_wheel: Optional[str] = None
    if pip_version is None or tuple(pip_version[:2]) < MIN_PIP:
        pip_folder = work / "pip"
        steps.append(Step(f"Fetching pip {PIP_VERSION} (QGIS's Python has "
                          f"{'no pip' if pip_version is None else 'pip ' + '.'.join(map(str, pip_version))})",
                          [python, "-I", "-c", BOOTSTRAP, PIP_VERSION, str(pip_folder)], 0.05))
        pip_wheel = str(pip_folder / f"pip-{PIP_VERSION}-py3-none-any.whl")
    pip = pip_command(python, pip_wheel)
    reqs = list(requirements.requirements)

    def prepare_resolve() -> List[str]:
        work.mkdir(parents=True, exist_ok=True)
        report.unlink(missing_ok=True)
        constraints.write_text("\n".join(requirements.constraints) + "\n", encoding="utf-8")
        return resolve_args(pip, report, constraints, reqs, torch)

    def prepare_install() -> Optional[List[str]]:
        data = json.loads(report.read_text(encoding="utf-8"))
        pins = pins_from_report(data, keep_distribution)
        if not pins:
            return None
        target.mkdir(parents=True, exist_ok=True)
        return install_args(pip, target, pins, torch, reqs)

    steps.append(Step("Resolving versions", resolve_args(pip, report, constraints, reqs, torch), 0.15,
                      prepare_resolve))
    steps.append(Step("Downloading and installing", [], 0.8, prepare_install))
    return InstallPlan(python, target, requirements, torch, steps, env, work)


def pip_version_of(python: str, pip_wheel: Optional[str] = None, timeout: float = 60.0) -> Optional[tuple]:
    """The version of pip that ``python -m pip`` runs, None when there is none."""
    import re
    import subprocess  # fixed argument lists, no shell

    from .interpreter import clean_environment

    try:
        out = subprocess.run(  # interpreter found by find_python, fixed arguments
            [*pip_command(python, pip_wheel), "--version"], capture_output=True, text=True, timeout=timeout,
            check=False, env=clean_environment(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.match(r"pip (\d+)\.(\d+)", out.stdout.strip())
    return (int(match.group(1)), int(match.group(2))) if match and out.returncode == 0 else None
