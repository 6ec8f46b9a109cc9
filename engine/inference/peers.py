"""Peer tools on our network: the student exported as a single-input ONNX model, run by GeoDeep
(``pip install geodeep==0.9.13``) and by the Deepness QGIS plugin, against ``segment_scene``.

GeoDeep (and Deepness) take one input tensor of 3 image bands, so the exported model takes the
3 optical bands and feeds the SAR branch a copy of band 1: the same network, the same FLOPs
per tile, only the SAR values differ (its output is not compared, only its speed). Peers run
with their own defaults except where noted: no small-segment sieve in GeoDeep (that would
only slow it down), tile size and overlap ours.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn

from .backends import StudentProbabilities, export_onnx


class SingleInputStudent(nn.Module):
    """``(B, 3, h, w)`` image bands in 0-1 -> class probabilities; band 1 stands in for the SAR."""

    def __init__(self, student: nn.Module, sar_channels: int) -> None:
        super().__init__()
        self.probs = StudentProbabilities(student)
        self.sar_channels = sar_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        sar = image[:, :1].repeat(1, self.sar_channels, 1, 1)
        return self.probs(image, sar)


def export_single_input(
    student: nn.Module,
    sar_channels: int,
    tile: int,
    path: Path,
    resolution_m: float,
    overlap_percent: float,
    class_names: List[str],
) -> Path:
    """Export the student for GeoDeep/Deepness: one input ``(B, 3, tile, tile)``, with the
    metadata GeoDeep reads (model type, resolution in cm/px, overlap in %, class names)."""
    import onnx

    path = Path(path)
    export_onnx(SingleInputStudent(student.eval(), sar_channels), (torch.rand(1, 3, tile, tile),), ("input",),
                "output", path)
    model = onnx.load(str(path))
    # the exporter leaves the class axis symbolic; the peers read the class count from it
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, value in zip(list(dims)[1:], (len(class_names), tile, tile)):
        dim.dim_value = value
    meta = {
        "model_type": json.dumps("Segmentor"),
        "resolution": str(resolution_m * 100.0),
        "tiles_overlap": str(overlap_percent),
        "class_names": json.dumps({str(i): n for i, n in enumerate(class_names)}),
        "seg_thresh": "0",
        "seg_small_segment": "0",
        "standardization_mean": "[0.0, 0.0, 0.0]",
        "standardization_std": "[1.0, 1.0, 1.0]",
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def geodeep_runner(raster: str, model: Path, threads: int) -> Optional[Callable[[], Any]]:
    """A call that segments ``raster`` with GeoDeep end to end, or None when GeoDeep is absent."""
    try:
        import geodeep
    except ImportError:
        return None
    def run() -> None:
        geodeep.segment(str(raster), str(model), output_type="raw", max_threads=threads)

    return run


def deepness_runner(
    source: Optional[str], raster: str, model: Path, tile: int, overlap: int, batch: int, threads: int,
    resolution_m: float,
) -> Tuple[Optional[Callable[[], float]], str]:
    """A call that runs Deepness (``scripts/deepness_peer.py`` in a QGIS subprocess) and returns
    its seconds, or None and why it is skipped."""
    import os
    import subprocess  # nosec B404
    import sys

    if not source:
        return None, "no --deepness-path given"
    if not (Path(source) / "src" / "deepness").is_dir() and not (Path(source) / "deepness").is_dir():
        return None, f"{source} holds no Deepness source (expected src/deepness or deepness)"
    script = Path(__file__).resolve().parents[2] / "scripts" / "deepness_peer.py"
    if not script.is_file():
        return None, f"{script} is missing: run the bench from the repository"
    cmd = [sys.executable, str(script), str(source), str(raster), str(model), "--tile", str(tile),
           "--overlap", str(overlap), "--batch", str(batch), "--threads", str(threads),
           "--resolution-cm", str(resolution_m * 100.0)]
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))

    def run() -> float:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)  # nosec B603
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"Deepness run failed: {(proc.stderr or proc.stdout).strip()[-1500:]}")
        return float(json.loads(lines[-1])["seconds"])

    return run, ""
