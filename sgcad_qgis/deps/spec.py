"""What SGCAD needs, which versions the installer pins, and which torch build fits the machine.

Everything here is plain Python (no QGIS), so the choices are tested for every platform on
any machine: :class:`PlatformInfo` and :class:`GpuInfo` are inputs, not read from globals.

The pins are the versions the project tests with (Python 3.11, Debian 12) and, for other
Pythons, the newest release of each package that still supports that Python and numpy 1.x.
They live in :func:`pinned_versions` and nowhere else.
"""

from __future__ import annotations

import platform as _platform
import re
import shutil
import subprocess  # fixed argument lists, no shell
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

#: Where PyTorch publishes its CPU and CUDA builds (one index per build).
TORCH_INDEX = "https://download.pytorch.org/whl/{variant}"

#: NVIDIA driver needed by each CUDA build (Linux numbers; Windows' are a few higher, and the
#: same major versions). CUDA 12.x builds run on any 525+ driver (minor-version compatibility).
CUDA_BUILDS: Tuple[Tuple[str, int, str], ...] = (
    ("cu130", 580, "CUDA 13.0"),
    ("cu126", 525, "CUDA 12.6"),
)


@dataclass(frozen=True)
class Package:
    """One Python dependency.

    Attributes:
        module: what SGCAD imports.
        dist: the distribution name pip installs.
        minimum: the oldest version SGCAD works with; older counts as missing.
        optional: SGCAD runs without it (slower or with fewer features).
        purpose: a few words for the user.
        installable: False for what only QGIS itself can provide (GDAL's bindings, numpy).
    """

    module: str
    dist: str
    minimum: str
    optional: bool = False
    purpose: str = ""
    installable: bool = True


PACKAGES: Tuple[Package, ...] = (
    Package("torch", "torch", "2.1", purpose="runs the networks"),
    Package("safetensors", "safetensors", "0.4", purpose="reads and writes model files"),
    Package("numpy", "numpy", "1.22", purpose="arrays (QGIS's own copy is used)", installable=False),
    Package("osgeo.gdal", "GDAL", "3.4", purpose="raster I/O (ships with QGIS)", installable=False),
    Package("rasterio", "rasterio", "1.3", purpose="windowed raster reading and writing"),
    Package("scipy", "scipy", "1.7", purpose="filters and connected components"),
    Package("matplotlib", "matplotlib", "3.5", purpose="figures of the training reports"),
    Package("onnxruntime", "onnxruntime", "1.16", optional=True, purpose="about 2x faster inference on CPU"),
    Package("onnx", "onnx", "1.14", optional=True, purpose="exports models for ONNX Runtime"),
)

#: Approximate download sizes in MB, for the user's decision (``torch`` by build below).
DOWNLOAD_MB = {"safetensors": 1, "rasterio": 22, "scipy": 38, "matplotlib": 9, "onnxruntime": 17,
               "onnx": 18}
TORCH_DOWNLOAD_MB = {
    ("Linux", "cpu"): 190,
    ("Linux", "cuda"): 3300,  # torch plus NVIDIA's CUDA/cuDNN wheels
    ("Windows", "cpu"): 200,
    ("Windows", "cuda"): 2800,
    ("Darwin", "cpu"): 80,
}
#: Build tools pip may list as a dependency; an existing copy is never replaced by SGCAD.
NEVER_REPLACE = ("pip", "setuptools", "wheel")


@dataclass(frozen=True)
class PlatformInfo:
    """The machine and Python the packages are for."""

    system: str  # platform.system(): Linux, Windows, Darwin
    machine: str  # x86_64, AMD64, arm64, aarch64
    python: Tuple[int, int]
    numpy: Optional[str] = None  # QGIS's numpy version, None when numpy is missing

    @classmethod
    def current(cls) -> PlatformInfo:
        try:
            import numpy

            numpy_version: Optional[str] = numpy.__version__
        except Exception:  # numpy missing or broken
            numpy_version = None
        return cls(_platform.system(), _platform.machine(), sys.version_info[:2], numpy_version)


@dataclass(frozen=True)
class GpuInfo:
    """An NVIDIA GPU as ``nvidia-smi`` reports it."""

    name: str
    driver: str  # "550.54.14"
    memory_mb: int = 0

    @property
    def driver_major(self) -> int:
        match = re.match(r"(\d+)", self.driver)
        return int(match.group(1)) if match else 0


def parse_nvidia_smi(text: str) -> List[GpuInfo]:
    """GPUs from ``nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 2 or not re.match(r"\d+\.\d+", parts[1]):
            continue
        memory = int(float(parts[2])) if len(parts) > 2 and re.match(r"^\d+(\.\d+)?$", parts[2]) else 0
        gpus.append(GpuInfo(parts[0], parts[1], memory))
    return gpus


def _nvidia_smi() -> Optional[str]:
    found = shutil.which("nvidia-smi")
    if found:
        return found
    if sys.platform == "win32":  # older drivers install it outside PATH
        for candidate in (r"C:\Windows\System32\nvidia-smi.exe",
                          r"C:\Program Files\NVIDIA Corporation\NVSMI\nvidia-smi.exe"):
            if shutil.which(candidate):
                return candidate
    return None


def detect_nvidia(timeout: float = 15.0) -> Tuple[List[GpuInfo], str]:
    """(GPUs, how they were found or why none was), from the NVIDIA driver's ``nvidia-smi``.

    The driver, not an installed CUDA toolkit, decides which torch build can use the GPU:
    torch's CUDA builds bring their own CUDA runtime.
    """
    if sys.platform == "darwin":
        return [], "macOS has no NVIDIA CUDA driver"
    tool = _nvidia_smi()
    if tool is None:
        return [], "no NVIDIA driver found (nvidia-smi is not installed)"
    try:
        out = subprocess.run(  # absolute tool path, fixed arguments
            [tool, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi did not answer ({type(exc).__name__})"
    gpus = parse_nvidia_smi(out.stdout)
    if not gpus:
        detail = (out.stderr or out.stdout).strip().splitlines()
        return [], "nvidia-smi found no GPU" + (f" ({detail[0][:120]})" if detail else "")
    return gpus, f"{len(gpus)} NVIDIA GPU(s), driver {gpus[0].driver}"


def pinned_versions(info: PlatformInfo) -> Dict[str, str]:
    """Exact versions the installer asks pip for, by distribution name."""
    py = info.python
    mac_intel = info.system == "Darwin" and info.machine == "x86_64"
    if mac_intel:
        torch = "2.2.2"  # the last release with Intel-Mac wheels
    elif py >= (3, 10):
        torch = "2.13.0"  # the version the project tests with
    else:
        torch = "2.8.0"  # the last release for Python 3.9 (QGIS 3.22-3.28 on Windows)
    new_py = py >= (3, 13)
    return {
        "torch": torch,
        "safetensors": "0.6.2",
        "rasterio": "1.4.3" if new_py else "1.3.11",
        "scipy": "1.15.3" if new_py else "1.13.1",
        "matplotlib": "3.9.4" if new_py else "3.8.4",
        "onnxruntime": "1.23.2" if py >= (3, 10) else "1.19.2",
        "onnx": "1.19.1" if py >= (3, 10) else "1.17.0",
    }


@dataclass(frozen=True)
class TorchChoice:
    """Which torch build to install and why, in words the dock shows."""

    version: str  # "2.13.0"
    variant: str  # "cpu", "cu126", "cu130", "pypi"
    index_url: Optional[str]  # None: the default index (PyPI)
    requirement: str  # "torch==2.13.0+cpu"
    download_mb: int
    summary: str  # "CPU build"
    reason: str  # why this build

    def describe(self) -> str:
        return f"torch {self.version}, {self.summary} (about {_size(self.download_mb)}): {self.reason}"


def _size(mb: int) -> str:
    return f"{mb / 1000:.1f} GB" if mb >= 1000 else f"{mb} MB"


def choose_torch(
    info: PlatformInfo, gpus: Sequence[GpuInfo], gpu_note: str = "", index_override: Optional[str] = None,
) -> TorchChoice:
    """The torch build for this machine: CUDA when an NVIDIA driver can run it, else CPU.

    Args:
        info: platform and Python.
        gpus: NVIDIA GPUs found (see :func:`detect_nvidia`).
        gpu_note: what the GPU detection said (used in the reason when there is no GPU).
        index_override: a package index to use instead of PyTorch's (a mirror, or "" for
            pip's configured indexes only, e.g. a folder of wheels).
    """
    version = pinned_versions(info)["torch"]
    system = info.system
    if system == "Darwin":
        apple = info.machine == "arm64"
        return TorchChoice(version, "pypi", _index(None, index_override), f"torch=={version}",
                           TORCH_DOWNLOAD_MB[("Darwin", "cpu")],
                           "macOS build" + (" with Apple GPU (MPS) support" if apple else ""),
                           "PyTorch publishes one build for macOS; SGCAD runs on the CPU there")
    if system == "Linux" and info.machine in ("aarch64", "arm64") and not gpus:
        return TorchChoice(version, "pypi", _index(None, index_override), f"torch=={version}", 100,
                           "CPU build (ARM)", gpu_note or "no NVIDIA GPU found")
    size_key = "Windows" if system == "Windows" else "Linux"
    if gpus:
        gpu = gpus[0]
        for variant, min_driver, label in CUDA_BUILDS:
            if version.startswith("2.8.") and variant == "cu130":
                continue  # 2.8 has no CUDA 13 build
            if gpu.driver_major >= min_driver:
                return TorchChoice(
                    version, variant, _index(TORCH_INDEX.format(variant=variant), index_override),
                    f"torch=={version}+{variant}", TORCH_DOWNLOAD_MB[(size_key, "cuda")],
                    f"{label} GPU build",
                    f"{gpu.name} with NVIDIA driver {gpu.driver} (>= {min_driver} runs {label})",
                )
        reason = (f"{gpu.name} found, but its NVIDIA driver {gpu.driver} is older than "
                  f"{CUDA_BUILDS[-1][1]}, the oldest that runs a current CUDA build; update the "
                  "driver and install again to use the GPU")
    else:
        reason = gpu_note or "no NVIDIA GPU found"
    return TorchChoice(version, "cpu", _index(TORCH_INDEX.format(variant="cpu"), index_override),
                       f"torch=={version}+cpu", TORCH_DOWNLOAD_MB[(size_key, "cpu")], "CPU build", reason)


def _index(default: Optional[str], override: Optional[str]) -> Optional[str]:
    if override is None:
        return default
    return override.strip() or None


@dataclass
class PackageState:
    """What the running Python has of one :class:`Package`."""

    package: Package
    version: Optional[str] = None
    location: str = ""
    problem: str = ""  # "" when usable; else missing / too old / broken, in words

    @property
    def ok(self) -> bool:
        return not self.problem

    @property
    def name(self) -> str:
        return self.package.module


def version_tuple(text: str) -> Tuple[int, ...]:
    """(2, 13, 0) from "2.13.0+cpu"; non-numeric tails are ignored."""
    parts = []
    for piece in re.split(r"[.+-]", text or ""):
        match = re.match(r"(\d+)", piece)
        if not match:
            break
        parts.append(int(match.group(1)))
    return tuple(parts)


@dataclass
class Requirements:
    """The pip requirements of an installation and the constraints that protect QGIS."""

    requirements: List[str] = field(default_factory=list)
    constraints: List[str] = field(default_factory=list)
    packages: List[str] = field(default_factory=list)  # distribution names, for messages
    download_mb: int = 0


def requirements_for(
    states: Sequence[PackageState], info: PlatformInfo, torch: Optional[TorchChoice], optional: bool = True,
) -> Requirements:
    """Pinned requirements for every installable package that is missing, too old or broken.

    Args:
        states: the packages as they are now (see ``environment.dependency_status``).
        info: platform, Python and QGIS's numpy.
        torch: the torch build chosen for this machine (needed when torch is missing).
        optional: also install the optional packages that are missing.
    """
    pins = pinned_versions(info)
    result = Requirements()
    for state in states:
        package = state.package
        if state.ok or not package.installable or (package.optional and not optional):
            continue
        if package.dist == "torch":
            if torch is None:
                raise ValueError("torch is missing: choose its build first (choose_torch)")
            result.requirements.append(torch.requirement)
            result.download_mb += torch.download_mb
        else:
            result.requirements.append(f"{package.dist}=={pins[package.dist]}")
            result.download_mb += DOWNLOAD_MB.get(package.dist, 5)
        result.packages.append(package.dist)
    result.constraints = numpy_constraints(info.numpy)
    return result


def numpy_constraints(numpy_version: Optional[str]) -> List[str]:
    """Keep QGIS's numpy exactly: its GDAL bindings are compiled against that major version."""
    if numpy_version:
        return [f"numpy=={numpy_version}"]
    return ["numpy<2"]  # QGIS 3.22-3.34 builds are linked against numpy 1.x
