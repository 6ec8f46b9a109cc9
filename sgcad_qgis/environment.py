"""Dependency checks and compute-device detection, shown to users instead of tracebacks."""

from __future__ import annotations

import importlib
from typing import List, Tuple

REQUIRED = ("torch", "safetensors", "numpy", "rasterio", "osgeo.gdal", "scipy")
INSTALL_HINT = (
    "Install them into the Python that QGIS uses, e.g. from the OSGeo4W shell or a terminal: "
    "python -m pip install torch safetensors scipy rasterio \"numpy<2\""
)


def missing_dependencies() -> List[str]:
    """Names of required modules that cannot be imported, each with the reason."""
    missing = []
    for name in REQUIRED:
        try:
            importlib.import_module(name)
        except Exception as exc:  # any import failure (missing DLL, ABI clash) counts
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    return missing


def dependency_message() -> str:
    """Empty when everything imports, else one actionable sentence."""
    missing = missing_dependencies()
    if not missing:
        return ""
    return "SGCAD cannot run: missing Python modules: " + "; ".join(missing) + ". " + INSTALL_HINT


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
        return f"CPU unavailable too: torch cannot be imported ({exc})"
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    reason = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU detected"
    return f"CPU ({reason}; {torch.get_num_threads()} threads)"
