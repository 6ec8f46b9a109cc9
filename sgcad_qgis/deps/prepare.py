"""Look at this machine and build the installation the dock offers.

Slow parts (starting candidate interpreters, ``nvidia-smi``) take about a second; the dock
calls :func:`prepare` once, when it first finds something missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence

from .interpreter import find_python
from .location import deps_dir
from .plan import InstallPlan, build_plan, pip_version_of
from .spec import GpuInfo, PackageState, PlatformInfo, TorchChoice, choose_torch, detect_nvidia, requirements_for

#: A package index to fetch torch from instead of PyTorch's (a company mirror); set it to an
#: empty value to use only the indexes and wheel folders of pip's own configuration.
ENV_TORCH_INDEX = "SGCAD_TORCH_INDEX_URL"


@dataclass
class Preparation:
    """What the dock shows before the user clicks *Install*."""

    plan: Optional[InstallPlan]
    missing: List[PackageState]
    torch: Optional[TorchChoice]
    gpus: List[GpuInfo] = field(default_factory=list)
    gpu_note: str = ""
    problem: str = ""  # why nothing can be installed (no interpreter found), else ""
    notes: List[str] = field(default_factory=list)


def torch_index_override() -> Optional[str]:
    return os.environ[ENV_TORCH_INDEX] if ENV_TORCH_INDEX in os.environ else None


def prepare(
    states: Sequence[PackageState],
    optional: bool = True,
    target: Optional[Path] = None,
    info: Optional[PlatformInfo] = None,
) -> Preparation:
    """The installation of every missing package, or the reason there can be none.

    Args:
        states: current package states (``environment.dependency_status()``).
        optional: include missing optional packages (onnxruntime).
        target: install folder (default :func:`.location.deps_dir`).
        info: platform (default: this one).
    """
    info = info or PlatformInfo.current()
    missing = [s for s in states if not s.ok and (optional or not s.package.optional)]
    needs_torch = any(s.package.dist == "torch" for s in missing)
    gpus, note = detect_nvidia() if needs_torch else ([], "")
    torch = choose_torch(info, gpus, note, torch_index_override()) if needs_torch else None
    prep = Preparation(None, missing, torch, gpus, note)
    blocked = [s for s in missing if not s.package.installable]
    for state in blocked:
        prep.notes.append(f"{state.package.dist} is {state.problem}: it comes with QGIS itself; "
                          "repair or update the QGIS installation.")
    requirements = requirements_for(missing, info, torch)
    if not requirements.requirements:
        return prep
    interpreter, tried = find_python()
    if interpreter is None:
        prep.problem = ("QGIS's Python interpreter was not found, so nothing can be installed from here. "
                        "Tried: " + "; ".join(tried[:4]) + ". See the manual installation in help/install.md.")
        return prep
    prep.plan = build_plan(interpreter.path, target or deps_dir(), requirements, torch,
                           pip_version_of(interpreter.path))
    return prep
