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

import copy
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..config import (
    InferenceConfig,
    ModelMetadata,
    StudentConfig,
    TeacherConfig,
    to_dict,
)
from ..cores import apply_threads, available_cores, threads_for
from ..progress import NULL_PROGRESS, Progress
from .backends import describe_device, make_backend, resolve_device
from .flips import flip_averaged
from .precision import cpu_model
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
    backend: Any, n_tiles: int, batch: int, tile: Tuple[int, int], channels: Tuple[int, int], warm: bool = True
) -> float:
    """Seconds for the backend to run ``n_tiles`` random in-memory tiles (after a warm-up batch)."""
    rng = np.random.default_rng(0)
    h, w = tile
    o = rng.random((batch, channels[0], h, w), dtype=np.float32)
    s = rng.random((batch, channels[1], h, w), dtype=np.float32)
    if warm:
        backend.predict(o, s)
    t0 = time.perf_counter()
    done = 0
    while done < n_tiles:
        k = min(batch, n_tiles - done)
        backend.predict(o[:k], s[:k])
        done += k
    return time.perf_counter() - t0


def interleaved(runs: Dict[str, Callable[[], Optional[float]]], repeats: int) -> Dict[str, List[float]]:
    """Seconds of each run per repetition, the runs interleaved so that a load change on a shared
    machine hits every side alike. A run may return its own seconds (e.g. a part of its work)."""
    times: Dict[str, List[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            own = fn()
            times[name].append(float(own) if isinstance(own, (int, float)) else time.perf_counter() - t0)
    return times


def _summary(seconds: Sequence[float], pixels: int) -> Dict[str, float]:
    """px/s as median, min and max over the repetitions."""
    rates = [pixels / max(t, 1e-9) for t in seconds]
    return {"px_s": round(statistics.median(rates), 1), "min": round(min(rates), 1), "max": round(max(rates), 1)}


def _ratio(num: Sequence[float], den: Sequence[float]) -> Dict[str, float]:
    """Speed of ``num`` over ``den`` (their seconds inverted), per repetition: median, min, max."""
    r = [d / max(n, 1e-9) for n, d in zip(num, den)]
    return {"median": round(statistics.median(r), 3), "min": round(min(r), 3), "max": round(max(r), 3)}


def throughput(
    work: Path,
    size: int = 1024,
    cfg: InferenceConfig = InferenceConfig(),
    model_size: str = "default",
    compare_onnx: bool = True,
    progress: Progress = NULL_PROGRESS,
    repeats: int = 3,
) -> Dict[str, Any]:
    """Network-only vs pipeline throughput, teacher off and on (and torch vs ONNX) on a ``size``²
    synthetic scene, every side on the same threads, repetitions interleaved.

    ``ratio`` is pipeline / network with the student alone, ``ratio_teacher`` the same with the
    teacher, ``teacher_cost`` the pipeline's speed with the teacher over without; each with the
    median, min and max over the repetitions (ratios taken within one repetition).
    """
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
    precision = "fp32" if cfg.precision == "auto" else cfg.precision
    cfg = dataclasses.replace(cfg, precision=precision)

    def backend_for(name: str, with_teacher: bool) -> Any:
        return make_backend(
            name, flip_averaged(student, cfg.flip_average),
            flip_averaged(teacher, cfg.flip_average) if with_teacher else None, 6, *channels, plan.tile_shape, device,
            cfg.amp, cfg.threads, info=progress.info, precision=precision,
        )

    backends = {False: backend_for(cfg.backend, False), True: backend_for(cfg.backend, True)}
    n, batch = len(plan.tiles), cfg.batch_size
    out = work / f"out{size}"

    def network(with_teacher: bool) -> Callable[[], float]:
        return lambda: time_backend(backends[with_teacher], n, batch, plan.tile_shape, channels, warm=False)

    def pipeline(with_teacher: bool) -> Callable[[], float]:
        def run() -> float:
            r = segment_scene(scene["optical"], scene["sar"], student_path, out,
                              teacher_path if with_teacher else None, cfg, overwrite=True)
            pipeline.last = r  # type: ignore[attr-defined]
            return r["timings"]["stream_s"] + r["timings"]["commit_s"]  # without model loading
        return run

    runs = {"network": network(False), "pipeline": pipeline(False),
            "network_teacher": network(True), "pipeline_teacher": pipeline(True)}
    progress.info(f"{n} tiles of {plan.tile_shape} on {backends[False].name}; warm-up, then {repeats} repetitions")
    for fn in runs.values():  # exports, caches, first allocations
        fn()
    times = interleaved(runs, repeats)
    last = pipeline.last  # type: ignore[attr-defined]
    figures: Dict[str, Any] = {
        "scene": f"{size}x{size}",
        "tiles": n,
        "tile": cfg.tile_size,
        "overlap": cfg.overlap,
        "batch": batch,
        "model_size": model_size,
        "backend": backends[False].name,
        "precision": precision,
        "threads": threads_for(cfg.threads),
        "repeats": repeats,
        "model_only_px_s": _summary(times["network"], pixels)["px_s"],
        "pipeline_px_s": _summary(times["pipeline"], pixels)["px_s"],
        "ratio": _ratio(times["pipeline"], times["network"])["median"],
        "network": _summary(times["network"], pixels),
        "pipeline": _summary(times["pipeline"], pixels),
        "network_teacher": _summary(times["network_teacher"], pixels),
        "pipeline_teacher": _summary(times["pipeline_teacher"], pixels),
        "pipeline_over_network": _ratio(times["pipeline"], times["network"]),
        "pipeline_over_network_teacher": _ratio(times["pipeline_teacher"], times["network_teacher"]),
        "teacher_on_over_off": _ratio(times["pipeline_teacher"], times["pipeline"]),
        "pipeline_timings": last["timings"],
    }
    figures.update(flop_rates(student, n * plan.tile_shape[0] * plan.tile_shape[1], times["network"], device))
    if compare_onnx and device.type == "cpu":
        other = {name: backend_for(name, True) for name in ("torch", "onnx")}
        t = interleaved(
            {k: (lambda b=b: time_backend(b, n, batch, plan.tile_shape, channels)) for k, b in other.items()},
            repeats,
        )
        figures["torch_px_s"] = _summary(t["torch"], pixels)["px_s"]
        figures["onnx_px_s"] = _summary(t["onnx"], pixels)["px_s"]
        figures["onnx_speedup"] = _ratio(t["onnx"], t["torch"])["median"]
        figures["onnx_over_torch"] = _ratio(t["onnx"], t["torch"])
    return figures


def matmul_gflop_s(device: torch.device, size: int = 1024, repeats: int = 5) -> float:
    """The machine's measured limit: fp32 matrix-product GFLOP/s on the current threads (best of
    ``repeats``), the densest work a network can be turned into."""
    a, b = torch.rand(size, size, device=device), torch.rand(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        (a @ b).sum().item()
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def flop_rates(
    student: Any, tile_pixels: int, network_seconds: Sequence[float], device: torch.device
) -> Dict[str, Any]:
    """The student's FLOP/s in the network-only runs (every tile pixel counted, overlaps too)
    against :func:`matmul_gflop_s`."""
    from ..models.profile import flops_per_pixel

    per_pixel = flops_per_pixel(copy.deepcopy(student).cpu(), student.config, 256)  # the backend's stays put
    achieved = per_pixel * tile_pixels / statistics.median(network_seconds) / 1e9
    peak = matmul_gflop_s(device)
    return {
        "student_gflop_per_megapixel": round(per_pixel / 1e3, 1),
        "network_gflop_s": round(achieved, 2),
        "matmul_gflop_s": round(peak, 2),
        "share_of_matmul_peak": round(achieved / peak, 3),
    }


def peers(
    work: Path,
    size: int,
    cfg: InferenceConfig,
    model_size: str = "default",
    repeats: int = 3,
    progress: Progress = NULL_PROGRESS,
    deepness_path: Optional[str] = None,
) -> Dict[str, Any]:
    """Our end-to-end speed (``segment_scene`` from files to GeoTIFFs, model loading included,
    teacher off) over GeoDeep's on the same network (exported single-input), scene, tile size,
    overlap and threads; GeoDeep is skipped when it is not installed."""
    from ..models.checkpoint import load_model
    from ..raster.grid import grid_of
    from .peers import deepness_runner, export_single_input, geodeep_runner
    from .pipeline import segment_scene

    scene = synthetic_scene(work, size)
    student_path, _ = make_checkpoints(work, scene, model_size)
    student, meta = load_model(student_path, "student")
    tile = plan_tiles(size, size, cfg.tile_size, cfg.overlap).tile_shape[0]
    res = abs(grid_of(scene["optical"]).transform.a)
    model = export_single_input(student, student.config.sar_channels, tile, work / f"single-input-{model_size}.onnx",
                                res, 100.0 * cfg.overlap / tile, list(meta.schema.names))
    cfg = dataclasses.replace(cfg, precision="fp32" if cfg.precision == "auto" else cfg.precision)
    threads = threads_for(cfg.threads)
    out = work / f"peers{size}"

    def ours() -> float:
        return segment_scene(scene["optical"], scene["sar"], student_path, out, None, cfg, overwrite=True)["seconds"]

    runs: Dict[str, Callable[[], Optional[float]]] = {"ours": ours}
    result: Dict[str, Any] = {"scene": f"{size}x{size}", "tile": tile, "overlap": cfg.overlap, "threads": threads,
                              "single_input_model": str(model)}
    geodeep = geodeep_runner(scene["optical"], model, threads)
    if geodeep is None:
        result["geodeep"] = {"skipped": "geodeep is not installed (pip install geodeep==0.9.13)"}
    else:
        runs["geodeep"] = geodeep
    deepness, why = deepness_runner(deepness_path, scene["optical"], model, tile, cfg.overlap, cfg.batch_size,
                                    threads, res)
    if deepness is None:
        result["deepness"] = {"skipped": why}
    else:
        runs["deepness"] = deepness
    progress.info(f"peers: {', '.join(runs)}; warm-up, then {repeats} repetitions")
    for fn in runs.values():
        fn()
    times = interleaved(runs, repeats)
    pixels = size * size
    result["ours"] = _summary(times["ours"], pixels)
    for name in runs:
        if name != "ours":
            result[name] = {**_summary(times[name], pixels), "ours_over_peer": _ratio(times["ours"], times[name])}
    return result


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
            flip_averaged(s_model, cfg.flip_average),
            flip_averaged(t_model, cfg.flip_average),
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
        "cpu": cpu_model(),
        "cores_available": available_cores(),
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
    repeats: int = 3,
    peer_size: int = 0,
    deepness_path: Optional[str] = None,
) -> Dict[str, Any]:
    """All figures: machine, throughput (model-only, pipeline, ratio, torch vs ONNX), peers, peak RSS."""
    cfg = cfg or InferenceConfig()
    apply_threads(cfg.threads)
    with tempfile.TemporaryDirectory(prefix="sgcad-bench-") as tmp:
        folder = Path(work) if work else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        result: Dict[str, Any] = {"machine": machine(cfg)}
        if size:
            result["throughput"] = throughput(folder, size, cfg, model_size, progress=progress, repeats=repeats)
        if peer_size:
            result["peers"] = peers(folder, peer_size, cfg, model_size, repeats, progress, deepness_path)
        if rss_sizes:
            result["peak_rss"] = peak_rss(folder, rss_sizes, cfg, rss_model_size, progress)
    return result
