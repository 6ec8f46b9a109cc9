"""Reduced precision for the networks: which of fp32, bf16 and int8 a segmentation runs at.

* ``bf16``: torch autocast to bfloat16. Fast only where the CPU has bf16 matrix instructions
  (AVX512-BF16, AMX); elsewhere torch emulates it, measured 70x slower than fp32 on an AVX2 CPU,
  so ``auto`` does not try it there.
* ``int8``: ONNX Runtime static quantisation (int8 weights per output channel, uint8
  activations whose ranges are calibrated on tiles of the scene being segmented).
* ``auto``: every candidate the machine offers is run against fp32 on real tiles of the scene
  and kept only when it is both faithful (argmax agreement >= :data:`MIN_AGREEMENT` for the
  student, the same for the teacher's water/non-water answer) and faster (>= :data:`MIN_SPEEDUP`,
  medians of interleaved repetitions). The decision is cached per weights, tile shape and
  machine (:func:`decision_path`), so it is measured once.

On CUDA, fp16 autocast (``InferenceConfig.amp``) is the fast path and ``auto`` keeps it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

PRECISIONS = ("auto", "fp32", "bf16", "int8")
MIN_AGREEMENT = 0.995
MIN_SPEEDUP = 1.1
#: ``auto`` measures candidates only for runs of at least this many network pixels (64 tiles of
#: 512²): the first measurement (export, calibration, timing) takes half a minute on 2 cores.
AUTO_MIN_PIXELS = 64 * 512 * 512
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> Dict[str, str]:
    """The first value of each key of ``/proc/cpuinfo`` (empty where there is none), read once."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    info: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def cpu_flags() -> Tuple[str, ...]:
    """The CPU's feature flags (``/proc/cpuinfo`` on Linux; empty elsewhere)."""
    return tuple(sorted(set(_cpuinfo().get("flags", "").split())))


def cpu_model() -> str:
    """The CPU's model name, or the architecture when the OS does not say."""
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def native_bf16(flags: Optional[Sequence[str]] = None) -> bool:
    """Whether the CPU has bf16 matrix instructions (AVX512-BF16 or AMX)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in _BF16_FLAGS)


def fast_paths() -> Dict[str, Any]:
    """What this CPU offers for reduced precision, in words (for ``engine check``)."""
    flags = cpu_flags()
    vector = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
              if f in flags]
    try:
        import onnxruntime  # noqa: F401

        int8 = "yes (ONNX Runtime static quantisation)"
    except ImportError:
        int8 = "no (onnxruntime is not installed)"
    return {
        "cpu": cpu_model(),
        "vector_extensions": vector,
        "bf16": "native" if native_bf16(flags) else "emulated (no AVX512-BF16/AMX): not used",
        "int8": int8,
    }


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def candidates(device_type: str, backend: str = "auto") -> Tuple[List[str], Dict[str, str]]:
    """Reduced precisions worth measuring here for ``backend``, and why the others are not."""
    tried, skipped = [], {}
    if device_type != "cpu":
        skipped["bf16"] = skipped["int8"] = "CUDA runs fp16 autocast (amp)"
        return tried, skipped
    if backend == "onnx":
        skipped["bf16"] = "bf16 runs in torch and the backend is onnx"
    elif native_bf16():
        tried.append("bf16")
    else:
        skipped["bf16"] = "no bf16 matrix instructions on this CPU (emulated bf16 is far slower)"
    if backend == "torch":
        skipped["int8"] = "int8 runs in ONNX Runtime and the backend is torch"
    elif onnx_available():
        tried.append("int8")
    else:
        skipped["int8"] = "onnxruntime is not installed"
    return tried, skipped


@dataclass
class Fidelity:
    """How far a reduced-precision network's answers are from fp32's on the same tiles."""

    agreement: float  # share of pixels with the same argmax class
    iou_change: Dict[str, float]  # per class: 1 - IoU(class mask at fp32, class mask here)
    water_agreement: Optional[float] = None  # teacher: same side of 0.5

    @property
    def worst(self) -> float:
        return min(self.agreement, 1.0 if self.water_agreement is None else self.water_agreement)


def fidelity(
    reference: Tuple[np.ndarray, Optional[np.ndarray]],
    other: Tuple[np.ndarray, Optional[np.ndarray]],
    class_names: Sequence[str],
) -> Fidelity:
    """Compare ``(probs (B,K,h,w), water (B,h,w) | None)`` of a candidate with fp32's."""
    a, b = reference[0].argmax(1), other[0].argmax(1)
    change = {}
    for k, name in enumerate(class_names):
        ma, mb = a == k, b == k
        union = int((ma | mb).sum())
        if union:
            change[name] = round(1.0 - int((ma & mb).sum()) / union, 5)
    water = None
    if reference[1] is not None and other[1] is not None:
        water = float(((reference[1] > 0.5) == (other[1] > 0.5)).mean())
    return Fidelity(float((a == b).mean()), change, water)


def quantize_int8(fp32_path: Path, out_path: Path, calibration: Sequence[Dict[str, np.ndarray]]) -> Path:
    """Static int8 quantisation of an ONNX model, calibrated on ``calibration`` input feeds.

    Operator format (integer kernels; ONNX Runtime's QDQ form ran slower on an AVX2 CPU),
    per-channel int8 weights, uint8 activations with min/max ranges. Written atomically.
    """
    from onnxruntime.quantization import CalibrationDataReader

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(list(calibration))

        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            return next(self.feeds, None)

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs a warning per integer tensor it leaves alone
    try:
        _quantize(fp32_path, out_path, Feeds())
    finally:
        root.setLevel(level)
    return out_path


def _quantize(fp32_path: Path, out_path: Path, feeds: Any) -> None:
    import tempfile

    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quant-") as tmp:
        prepared, written = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared), str(written), feeds, quant_format=QuantFormat.QOperator,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
        )
        os.replace(written, out_path)


@dataclass
class PrecisionDecision:
    """What a run uses and why; ``measured`` holds each candidate's speed-up and fidelity."""

    precision: str
    reason: str
    measured: Dict[str, Any] = field(default_factory=dict)
    cached: bool = False


def machine_key(threads: int) -> str:
    """What a cached decision depends on besides the weights: CPU, flags, threads, library versions."""
    import torch

    try:
        import onnxruntime

        ort = onnxruntime.__version__
    except ImportError:
        ort = "-"
    text = "|".join([cpu_model(), ",".join(cpu_flags()), str(threads), torch.__version__, ort])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def decision_path(weights_key: str, threads: int, folder: Optional[Path] = None) -> Path:
    """Where the decision for these weights (and tile shape) on this machine is cached."""
    from .backends import cache_dir

    folder = Path(folder) if folder is not None else cache_dir() / "precision"
    return folder / f"{weights_key}-{machine_key(threads)}.json"


def load_decision(path: Path) -> Optional[PrecisionDecision]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return PrecisionDecision(data["precision"], data["reason"], data.get("measured", {}), cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_decision(path: Path, decision: PrecisionDecision) -> None:
    data = asdict(decision)
    data.pop("cached")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:  # a read-only cache only means measuring again next time
        pass


def median_seconds(runs: Dict[str, Callable[[], Any]], repeats: int = 3) -> Dict[str, float]:
    """Median wall time of each callable, repetitions interleaved (one warm-up call each) so
    that a load change on a shared machine hits every side alike."""
    for fn in runs.values():
        fn()
    times: Dict[str, List[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def choose(
    build: Callable[[str], Any],
    sample: Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]],
    class_names: Sequence[str],
    tried: Sequence[str],
    skipped: Dict[str, str],
    repeats: int = 3,
) -> PrecisionDecision:
    """Measure each candidate precision against fp32 on ``sample`` (a batch of real tiles).

    Args:
        build: ``build(precision) -> backend`` (``predict(optical, sar, teacher_sar)``).
        sample: ``(optical, sar, teacher_sar)`` of a batch not used for calibration.
        class_names: the student's classes, for the per-class IoU change.
        tried, skipped: from :func:`candidates`.
    """
    measured: Dict[str, Any] = {k: {"skipped": v} for k, v in skipped.items()}
    if not tried:
        return PrecisionDecision("fp32", "no reduced precision to try: " + "; ".join(skipped.values()), measured)
    backends = {"fp32": build("fp32")}
    for name in tried:
        try:
            backends[name] = build(name)
        except Exception as exc:  # a quantiser or kernel this build lacks: that candidate is out
            measured[name] = {"failed": f"{type(exc).__name__}: {str(exc)[:200]}"}
    seconds = median_seconds({k: (lambda b=b: b.predict(*sample)) for k, b in backends.items()}, repeats)
    reference = backends["fp32"].predict(*sample)
    best, best_speedup = "fp32", 1.0
    for name, backend in backends.items():
        if name == "fp32":
            continue
        fid = fidelity(reference, backend.predict(*sample), class_names)
        speedup = seconds["fp32"] / seconds[name]
        faithful = fid.worst >= MIN_AGREEMENT
        measured[name] = {
            "speedup": round(speedup, 3),
            "agreement": round(fid.agreement, 5),
            "water_agreement": None if fid.water_agreement is None else round(fid.water_agreement, 5),
            "iou_change": fid.iou_change,
            "faithful": faithful,
        }
        if faithful and speedup >= MIN_SPEEDUP and speedup > best_speedup:
            best, best_speedup = name, speedup
    if best == "fp32":
        reason = f"no candidate was both faithful (agreement >= {MIN_AGREEMENT:.1%}) and >= {MIN_SPEEDUP:.1f}x faster"
    else:
        reason = f"{best} is {best_speedup:.2f}x faster than fp32 with agreement {measured[best]['agreement']:.2%}"
    return PrecisionDecision(best, reason, measured)


def decide(
    requested: str,
    build: Callable[[str], Any],
    samples: Callable[[], Tuple[Any, Any]],
    class_names: Sequence[str],
    device_type: str,
    backend: str,
    weights_key: str,
    threads: int,
    work_pixels: int,
    cache: Optional[Path] = None,
    refresh: bool = False,
) -> PrecisionDecision:
    """The one place where a run's precision is decided.

    ``fp32``/``bf16``/``int8`` are used as asked. ``auto``: the cached decision for these
    weights on this machine (unless ``refresh``); else, for runs of at least
    :data:`AUTO_MIN_PIXELS`, the candidates are measured on ``samples()`` (``(calibration,
    validation)`` batches of the scene) and the result cached; smaller runs use fp32.
    """
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if requested != "auto":
        return PrecisionDecision(requested, "asked for")
    tried, skipped = candidates(device_type, backend)
    if not tried:
        return PrecisionDecision("fp32", "; ".join(sorted(set(skipped.values()))) or "fp32")
    path = decision_path(weights_key, threads, cache)
    cached = None if refresh else load_decision(path)
    if cached is not None:
        return cached
    if work_pixels < AUTO_MIN_PIXELS:
        return PrecisionDecision("fp32", "run too small to measure reduced precision (measured once for larger runs)")
    _, validation = samples()
    decision = choose(build, validation, class_names, tried, skipped)
    _save_decision(path, decision)
    return decision


def weights_key(student: Any, teacher: Any, tile_shape: Tuple[int, int], batch_size: int) -> str:
    """Digest of the networks' weights, the tile shape and the batch size (what a decision is for)."""
    from .backends import _state_digest

    parts = [_state_digest(student, tile_shape, f"student{batch_size}")]
    if teacher is not None:
        parts.append(_state_digest(teacher, tile_shape, "teacher"))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def environment_report(threads: int = 0) -> Dict[str, Any]:
    """The CPU's fast paths and the cached precision decisions of this machine (``engine check``,
    the plugin's *Check environment*)."""
    from ..cores import available_cores, threads_for
    from .backends import cache_dir

    n = threads_for(threads)
    suffix = f"-{machine_key(n)}.json"
    folder = cache_dir() / "precision"
    decisions = []
    for path in sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []:
        d = load_decision(path)
        if d is not None:
            decisions.append({"model": path.name[: -len(suffix)], "precision": d.precision, "reason": d.reason,
                              "measured": d.measured})
    return {"cores": available_cores(), "threads": n, **fast_paths(), "decisions": decisions}


def report_lines(report: Dict[str, Any]) -> List[str]:
    """:func:`environment_report` as text lines."""
    lines = [
        f"CPU: {report['cpu']}; cores available to this process: {report['cores']}, threads used: {report['threads']}",
        f"CPU vector extensions: {', '.join(report['vector_extensions']) or 'none of AVX2/AVX-512/AMX'}",
        f"bf16: {report['bf16']}; int8: {report['int8']}",
    ]
    if not report["decisions"]:
        lines.append("precision decisions: none measured yet (a large run with precision auto measures one)")
    for d in report["decisions"]:
        lines.append(f"precision for model {d['model']}: {d['precision']} ({d['reason']})")
        for name, m in d["measured"].items():
            if "agreement" in m:
                lines.append(f"  {name}: {m['speedup']:.2f}x fp32's speed, argmax agreement {m['agreement']:.2%}")
            else:
                lines.append(f"  {name}: {m.get('skipped') or m.get('failed')}")
    return lines
