"""Throughput and memory of large-scene segmentation on this machine.

* model-only: the backend alone on in-memory tiles, as many as the scene's tile plan holds;
* pipeline: ``segment_scene`` on a synthetic scene (read, warp, preprocess, network, blend,
  write, overviews), timed without the one-time model loading/export;
* torch vs ONNX Runtime on the same tiles (CPU);
* peak RSS of whole runs on two scene sizes, each in a fresh subprocess.

Throughputs are scene pixels per second in both cases, so their ratio is the share of the
network's speed that the pipeline keeps.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..config import (
    InferenceConfig,
    ModelMetadata,
    StudentConfig,
    TeacherConfig,
    to_dict,
)
from ..progress import NULL_PROGRESS, Progress
from .backends import describe_device, make_backend, resolve_device
from .tiling import plan_tiles

TINY_STUDENT = StudentConfig(widths=(8, 16, 32, 64), decoder_channels=16, attention_dim=16)
TINY_TEACHER = TeacherConfig(widths=(8, 16, 32, 64))


def make_checkpoints(
    folder: Path, scene: Dict[str, Any], size: str = "default", seed: int = 0
) -> Tuple[Path, Path]:
    """Randomly initialised student and teacher saved as checkpoints, with the scene's
    normalisation records, so a benchmark runs the exact code path of a trained model."""
    from ..inputs.contract import InputRecipe, resolve_inputs
    from ..models import build_model
    from ..models.checkpoint import save_model

    torch.manual_seed(seed)
    student_cfg, teacher_cfg = (
        (StudentConfig(), TeacherConfig()) if size == "default" else (TINY_STUDENT, TINY_TEACHER)
    )
    stored = resolve_inputs(InputRecipe(), scene["optical"], scene["sar"]).stored()
    paths = []
    for kind, cfg in (("student", student_cfg), ("teacher", teacher_cfg)):
        meta = ModelMetadata(kind=kind, model=to_dict(cfg), **stored)
        paths.append(save_model(folder / f"{kind}-{size}.safetensors", build_model(cfg), meta))
    return paths[0], paths[1]


def synthetic_scene(folder: Path, size: int, seed: int = 1) -> Dict[str, Any]:
    """A synthetic scene of ``size``², reused when ``folder`` already holds it."""
    from ..data.synthetic import generate_scene

    d = folder / f"scene{size}"
    if (d / "optical.tif").exists() and (d / "sar.tif").exists():
        return {"optical": str(d / "optical.tif"), "sar": str(d / "sar.tif")}
    return generate_scene(d, size=size, seed=seed, write_vector=False, overwrite=True)


def time_backend(
    backend: Any, n_tiles: int, batch: int, tile: Tuple[int, int], channels: Tuple[int, int]
) -> float:
    """Seconds for the backend to run ``n_tiles`` random in-memory tiles (after a warm-up batch)."""
    rng = np.random.default_rng(0)
    h, w = tile
    o = rng.random((batch, channels[0], h, w), dtype=np.float32)
    s = rng.random((batch, channels[1], h, w), dtype=np.float32)
    backend.predict(o, s)
    t0 = time.perf_counter()
    done = 0
    while done < n_tiles:
        k = min(batch, n_tiles - done)
        backend.predict(o[:k], s[:k])
        done += k
    return time.perf_counter() - t0


def throughput(
    work: Path,
    size: int = 1024,
    cfg: InferenceConfig = InferenceConfig(),
    model_size: str = "default",
    compare_onnx: bool = True,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Model-only vs pipeline throughput (and torch vs ONNX) on a ``size``² synthetic scene."""
    from ..models.checkpoint import load_model
    from .pipeline import segment_scene

    progress.info(f"synthetic scene {size}x{size}")
    scene = synthetic_scene(work, size)
    student_path, teacher_path = make_checkpoints(work, scene, model_size)
    student, _ = load_model(student_path, "student")
    teacher, _ = load_model(teacher_path, "teacher")
    plan = plan_tiles(size, size, cfg.tile_size, cfg.overlap)
    device = resolve_device(cfg.device)
    channels = (student.config.optical_channels, student.config.sar_channels)
    pixels = size * size
    backend = make_backend(
        cfg.backend,
        student,
        teacher,
        6,
        *channels,
        plan.tile_shape,
        device,
        cfg.amp,
        cfg.threads,
        info=progress.info,
    )
    progress.info(f"model only: {len(plan.tiles)} tiles of {plan.tile_shape} on {backend.name}")
    model_s = time_backend(backend, len(plan.tiles), cfg.batch_size, plan.tile_shape, channels)
    progress.info("pipeline")
    out = work / f"out{size}"
    result = segment_scene(
        scene["optical"], scene["sar"], student_path, out, teacher_path, cfg, overwrite=True
    )
    t = result["timings"]
    pipeline_s = t["stream_s"] + t["commit_s"]
    figures: Dict[str, Any] = {
        "scene": f"{size}x{size}",
        "tiles": len(plan.tiles),
        "tile": cfg.tile_size,
        "overlap": cfg.overlap,
        "batch": cfg.batch_size,
        "model_size": model_size,
        "backend": backend.name,
        "model_only_px_s": round(pixels / model_s, 1),
        "pipeline_px_s": round(pixels / pipeline_s, 1),
        "ratio": round(model_s / pipeline_s, 3),
        "pipeline_timings": t,
    }
    if compare_onnx and device.type == "cpu":
        other = {}
        for name in ("torch", "onnx"):
            b = (
                backend
                if backend.name == name
                else make_backend(
                    name, student, teacher, 6, *channels, plan.tile_shape, device, cfg.amp, cfg.threads
                )
            )
            other[name] = time_backend(b, len(plan.tiles), cfg.batch_size, plan.tile_shape, channels)
        figures["torch_px_s"] = round(pixels / other["torch"], 1)
        figures["onnx_px_s"] = round(pixels / other["onnx"], 1)
        figures["onnx_speedup"] = round(other["torch"] / other["onnx"], 3)
    return figures


def peak_rss(
    work: Path,
    sizes: Sequence[int],
    cfg: InferenceConfig,
    model_size: str = "tiny",
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Peak resident memory of a whole segmentation per scene size, each in a fresh process."""
    from ..models.checkpoint import load_model

    module = __name__.rsplit(".inference", 1)[0]  # "engine", or the vendored package name
    figures: Dict[str, Any] = {}
    for size in sizes:
        progress.info(f"peak RSS: synthetic scene {size}x{size}")
        scene = synthetic_scene(work, size)
        student, teacher = make_checkpoints(work, scene, model_size)
        # export (and cache) the ONNX models here, so no worker's peak includes the exporter
        s_model, t_model = load_model(student, "student")[0], load_model(teacher, "teacher")[0]
        tile = plan_tiles(size, size, cfg.tile_size, cfg.overlap).tile_shape
        make_backend(
            cfg.backend,
            s_model,
            t_model,
            6,
            s_model.config.optical_channels,
            s_model.config.sar_channels,
            tile,
            resolve_device(cfg.device),
            cfg.amp,
            cfg.threads,
        )
        del s_model, t_model
        cmd = [
            sys.executable,
            "-m",
            module,
            "bench",
            "--json",
            "--quiet",
            "--rss-worker",
            json.dumps(
                {
                    "optical": scene["optical"],
                    "sar": scene["sar"],
                    "model": str(student),
                    "teacher": str(teacher),
                    "out": str(work / f"rss{size}"),
                    "cfg": to_dict(cfg),
                }
            ),
        ]
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(filter(None, [str(_package_root()), os.environ.get("PYTHONPATH")])),
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"RSS worker for {size}x{size} failed: {proc.stderr.strip()[-2000:]}")
        figures[str(size)] = json.loads(proc.stdout.strip().splitlines()[-1])
    if len(sizes) >= 2:
        lo, hi = figures[str(sizes[0])]["peak_rss_mb"], figures[str(sizes[-1])]["peak_rss_mb"]
        figures["ratio"] = round(hi / lo, 3)
    return figures


def _package_root() -> Path:
    return Path(__file__).resolve().parents[2]


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, which starts afresh at ``exec``; ``ru_maxrss``
    would also count the parent's memory at ``fork`` time. Elsewhere ``ru_maxrss``.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB elsewhere


def rss_worker(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Run one segmentation and report this process's peak RSS (called in a subprocess)."""
    from ..config import from_dict
    from .pipeline import segment_scene

    cfg = from_dict(InferenceConfig, spec["cfg"])
    before = peak_rss_mb()
    t0 = time.perf_counter()
    r = segment_scene(
        spec["optical"], spec["sar"], spec["model"], spec["out"], spec["teacher"], cfg, overwrite=True
    )
    return {
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_before_run_mb": round(before, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "tiles": r["tiles"],
        "backend": r["backend"],
    }


def machine(cfg: InferenceConfig) -> Dict[str, Any]:
    """Where the figures come from."""
    device = resolve_device(cfg.device)
    info = {
        "device": describe_device(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover
        info["onnxruntime"] = None
    return info


def run_bench(
    size: int = 1024,
    rss_sizes: Sequence[int] = (2048, 8192),
    cfg: Optional[InferenceConfig] = None,
    model_size: str = "default",
    rss_model_size: str = "tiny",
    work: Optional[Path] = None,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """All figures: machine, throughput (model-only, pipeline, ratio, torch vs ONNX), peak RSS."""
    cfg = cfg or InferenceConfig()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    with tempfile.TemporaryDirectory(prefix="sgcad-bench-") as tmp:
        folder = Path(work) if work else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        result: Dict[str, Any] = {"machine": machine(cfg)}
        if size:
            result["throughput"] = throughput(folder, size, cfg, model_size, progress=progress)
        if rss_sizes:
            result["peak_rss"] = peak_rss(folder, rss_sizes, cfg, rss_model_size, progress)
    return result
