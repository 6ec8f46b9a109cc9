"""Inference backends: torch (CPU/CUDA) and ONNX Runtime, behind one small interface.

A backend maps a batch of normalised tiles to probabilities:
``predict(optical (B,Co,h,w), sar (B,Cs,h,w)) -> (class probs (B,K,h,w), water (B,h,w) | None)``,
all float32 numpy arrays. The student gives the class probabilities, the optional SAR-only
teacher the water probability. Softmax is part of the exported graph, so every backend
returns the same quantities.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..cores import threads_for

Output = Tuple[np.ndarray, Optional[np.ndarray]]
BACKENDS = ("auto", "torch", "onnx")


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; a CUDA request without CUDA is an error."""
    if device in ("auto", "", None):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA GPU; use --device cpu")
    return dev


def describe_device(device: torch.device) -> str:
    """Human-readable device name (GPU model for CUDA)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return "cpu"


class StudentProbabilities(nn.Module):
    """Student logits -> class probabilities (softmax over classes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, optical: torch.Tensor, sar: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(optical, sar).float(), dim=1)


class TeacherWater(nn.Module):
    """Teacher logits -> water probability (channel 1 of the 2-class softmax)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, sar: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(sar).float(), dim=1)[:, 1]


class CallableBackend:
    """Wraps a plain function ``fn(optical, sar) -> (probs, water|None)`` (tests, custom models)."""

    name = "callable"

    def __init__(
        self, fn: Callable[[np.ndarray, np.ndarray], Output], num_classes: int, has_teacher: bool
    ) -> None:
        self.fn, self.num_classes, self.has_teacher = fn, num_classes, has_teacher
        self.device = torch.device("cpu")

    def predict(
        self, optical: np.ndarray, sar: np.ndarray, teacher_sar: Optional[np.ndarray] = None
    ) -> Output:
        return self.fn(optical, sar)


class TorchBackend:
    """Student (and teacher) in torch; on CUDA with pinned-memory, non-blocking copies, AMP and
    channels-last tensors (the layout cuDNN's tensor-core convolutions want).

    Args:
        student: network ``(optical, sar) -> logits``.
        teacher: optional network ``sar -> 2-class logits``.
        num_classes: K.
        device: torch device.
        amp: float16 autocast on CUDA (ignored on CPU, where it is slower).
        precision: ``"bf16"`` runs under bfloat16 autocast (CPU or CUDA); ``"fp32"`` as ``amp`` says.
    """

    name = "torch"

    def __init__(
        self,
        student: nn.Module,
        teacher: Optional[nn.Module],
        num_classes: int,
        device: torch.device = torch.device("cpu"),
        amp: bool = True,
        precision: str = "fp32",
    ) -> None:
        self.device, self.num_classes = device, num_classes
        self.student = StudentProbabilities(student).to(device).eval()
        self.teacher = TeacherWater(teacher).to(device).eval() if teacher is not None else None
        self.has_teacher = teacher is not None
        self.channels_last = device.type == "cuda"
        if self.channels_last:
            self.student.to(memory_format=torch.channels_last)
            if self.teacher is not None:
                self.teacher.to(memory_format=torch.channels_last)
        if precision == "bf16":
            self.amp, self.amp_dtype, self.precision = True, torch.bfloat16, "bf16"
        else:
            self.amp, self.amp_dtype = bool(amp and device.type == "cuda"), torch.float16
            self.precision = "fp16" if self.amp else "fp32"

    def _to_device(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        if self.device.type == "cuda":
            t = t.pin_memory().to(self.device, non_blocking=True)
            return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
        return t

    def predict(
        self, optical: np.ndarray, sar: np.ndarray, teacher_sar: Optional[np.ndarray] = None
    ) -> Output:
        o, s = self._to_device(optical), self._to_device(sar)
        ts = s if teacher_sar is None else self._to_device(teacher_sar)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            probs = self.student(o, s)
            water = self.teacher(ts) if self.teacher is not None else None
        probs_np = probs.float().cpu().numpy()  # .cpu() synchronises the stream
        water_np = water.float().cpu().numpy() if water is not None else None
        return probs_np, water_np


class OnnxBackend:
    """The exported student (and teacher) run by ONNX Runtime on CPU.

    Args:
        student_path: ONNX file of :class:`StudentProbabilities`.
        teacher_path: ONNX file of :class:`TeacherWater`, or None.
        num_classes: K.
        threads: intra-op threads (0: ONNX Runtime's default).
    """

    name = "onnx"

    def __init__(
        self,
        student_path: Path,
        teacher_path: Optional[Path],
        num_classes: int,
        threads: int = 0,
        precision: str = "fp32",
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # the process's cores, not the machine's: ORT's default pins a worker to every core
        opts.intra_op_num_threads = threads_for(threads)
        opts.inter_op_num_threads = 1
        # idle worker threads must not spin: the reader and writer threads need those cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")

        def session(path: Path) -> ort.InferenceSession:
            return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])

        self.student = session(student_path)
        # a SAR-only student's export has no optical input (the exporter drops an unused one)
        self._student_inputs = {i.name for i in self.student.get_inputs()}
        self.teacher = session(teacher_path) if teacher_path is not None else None
        self.num_classes, self.has_teacher = num_classes, teacher_path is not None
        self.device = torch.device("cpu")
        self.precision = precision

    def predict(
        self, optical: np.ndarray, sar: np.ndarray, teacher_sar: Optional[np.ndarray] = None
    ) -> Output:
        o = np.ascontiguousarray(optical, dtype=np.float32)
        s = np.ascontiguousarray(sar, dtype=np.float32)
        ts = s if teacher_sar is None else np.ascontiguousarray(teacher_sar, dtype=np.float32)
        feeds = {"optical": o, "sar": s}
        probs = self.student.run(None, {k: v for k, v in feeds.items() if k in self._student_inputs})[0]
        water = self.teacher.run(None, {"sar": ts})[0] if self.teacher is not None else None
        return probs, water


def export_onnx(
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    names: Sequence[str],
    output: str,
    path: Path,
) -> Path:
    """Export a probability module to ONNX with a dynamic batch axis, atomically.

    Height and width are fixed to the example's: the networks pad internally to their stride,
    which traces to shape-specific ops; a scene uses one tile shape, so one export serves it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings(), _native_output_silenced(), _exportable_adaptive_pooling():
            warnings.simplefilter("ignore")  # the TorchScript exporter warns that it is legacy
            try:
                torch.onnx.export(
                    module.eval(),
                    tuple(inputs),
                    tmp,
                    dynamo=False,
                    input_names=list(names),
                    output_names=[output],
                    dynamic_axes={n: {0: "batch"} for n in [*names, output]},
                    opset_version=17,
                    do_constant_folding=True,
                )
            except Exception as exc:
                text = str(exc).strip() or type(exc).__name__
                first = text.splitlines()[0].split(" Please feel free")[0].split(" [Caused by")[0][:300]
                raise OnnxExportError(f"ONNX export failed: {first}") from None
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


class OnnxExportError(ValueError):
    """The network cannot be exported to ONNX (e.g. an operator the exporter lacks)."""


def _pooling_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix whose rows average PyTorch's adaptive-pooling bins.

    Bin ``i`` covers ``[floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out))``, exactly as
    ``adaptive_avg_pool2d`` does, so the result is the same for every input size.
    """
    matrix = torch.zeros(n_out, n_in, dtype=like.dtype, device=like.device)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool2d_by_matmul(x: torch.Tensor, output_size) -> torch.Tensor:
    """``F.adaptive_avg_pool2d`` as two matrix products (exactly the same averages).

    The TorchScript ONNX exporter converts adaptive pooling only when it can see static input
    sizes that the output size divides; behind the networks' stride padding it cannot, for any
    tile size. Tile height and width are fixed per export, so the bins become constant
    matrices and the graph holds two MatMul nodes instead.
    """
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    h, w = int(x.shape[-2]), int(x.shape[-1])
    oh, ow = oh or h, ow or w  # None keeps that side, as in PyTorch
    rows, cols = _pooling_matrix(h, oh, x), _pooling_matrix(w, ow, x)
    return torch.matmul(torch.matmul(rows, x), cols.t())


@contextlib.contextmanager
def _exportable_adaptive_pooling() -> Iterator[None]:
    # The replacement gives the same numbers as the original for any input, so another thread
    # that runs a network during an export computes the same result.
    import torch.nn.functional as functional

    original = functional.adaptive_avg_pool2d
    functional.adaptive_avg_pool2d = adaptive_avg_pool2d_by_matmul
    try:
        yield
    finally:
        functional.adaptive_avg_pool2d = original


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    # On failure the exporter prints the whole graph from C++ (thousands of lines); keep it out
    # of the user's console. Runs before any worker thread starts, so nothing else is diverted.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            continue
    # The process's own descriptors, not sys.stdout's: embedded Pythons (QGIS, qgis_process)
    # replace sys.stdout with objects that have no file descriptor, but C++ still writes to 1 and 2.
    streams = [fd for fd in (1, 2) if _is_open(fd)]
    saved = [os.dup(fd) for fd in streams]
    with tempfile.TemporaryFile() as sink:
        for fd in streams:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            _flush_c_stdio()  # C/C++ buffers still hold part of the dump: empty them into the sink
            for fd, copy in zip(streams, saved):
                os.dup2(copy, fd)
                os.close(copy)


def _flush_c_stdio() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library handle on this platform: nothing to flush
        pass


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def cache_dir() -> Path:
    """Folder for exported ONNX models: ``$SGCAD_CACHE_DIR`` or the user cache folder."""
    root = (
        os.environ.get("SGCAD_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    )
    return Path(root) / ("sgcad" if "SGCAD_CACHE_DIR" not in os.environ else "")


def _state_digest(module: nn.Module, shape: Tuple[int, int], extra: str) -> str:
    h = hashlib.sha256(f"{shape}{extra}{torch.__version__}".encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


#: Below this many pixels (about four 512 px tiles) an ONNX export, a few seconds per new model
#: and tile shape, takes longer than ONNX Runtime saves over torch on CPU: ``auto`` keeps torch
#: unless the export is cached already.
ONNX_MIN_PIXELS = 4 * 512 * 512


def _onnx_paths(
    student: nn.Module, teacher: Optional[nn.Module], tile_shape: Tuple[int, int], folder: Path
) -> Tuple[Path, Optional[Path]]:
    sp = folder / f"student-{_state_digest(student, tile_shape, 'student')}.onnx"
    tp = None if teacher is None else folder / f"teacher-{_state_digest(teacher, tile_shape, 'teacher')}.onnx"
    return sp, tp


def _failure_note(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


def onnx_models(
    student: nn.Module,
    teacher: Optional[nn.Module],
    optical_channels: int,
    sar_channels: int,
    tile_shape: Tuple[int, int],
    folder: Optional[Path] = None,
    teacher_sar_channels: Optional[int] = None,
) -> Tuple[Path, Optional[Path]]:
    """ONNX files of the student and teacher for a tile shape, exported once and cached by
    the weights' digest (a retrained model gets a new file).

    A failed export is remembered beside the cache (``<file>.failed`` holding the reason), so
    later runs with the same weights and tile shape fall back at once instead of retrying.

    Raises:
        OnnxExportError: the export failed now or earlier.
    """
    folder = Path(folder) if folder is not None else cache_dir() / "onnx"
    h, w = tile_shape
    o, s = torch.rand(1, optical_channels, h, w), torch.rand(1, sar_channels, h, w)
    t = torch.rand(1, teacher_sar_channels, h, w) if teacher_sar_channels else s  # the teacher may read more bands
    sp, tp = _onnx_paths(student, teacher, tile_shape, folder)
    jobs = [(StudentProbabilities(student), (o, s), ("optical", "sar"), "probs", sp)]
    if teacher is not None:
        jobs.append((TeacherWater(teacher), (t,), ("sar",), "water", tp))
    for module, inputs, names, output, path in jobs:
        if path.exists():
            continue
        note = _failure_note(path)
        if note.is_file():
            raise OnnxExportError(note.read_text(encoding="utf-8").strip() or "ONNX export failed earlier")
        try:
            export_onnx(module, inputs, names, output, path)
        except OnnxExportError as exc:
            with contextlib.suppress(OSError):  # a read-only cache only means trying again next time
                note.parent.mkdir(parents=True, exist_ok=True)
                note.write_text(str(exc), encoding="utf-8")
            raise
    return sp, tp


def make_backend(
    backend: str,
    student: nn.Module,
    teacher: Optional[nn.Module],
    num_classes: int,
    optical_channels: int,
    sar_channels: int,
    tile_shape: Tuple[int, int],
    device: Union[str, torch.device] = "auto",
    amp: bool = True,
    threads: int = 0,
    info: Callable[[str], None] = lambda message: None,
    work_pixels: Optional[int] = None,
    precision: str = "fp32",
    calibration: Optional[Sequence[np.ndarray]] = None,
    teacher_sar_channels: Optional[int] = None,
):
    """Build the backend asked for; ``"auto"`` is torch on CUDA and ONNX Runtime on CPU
    (the faster one on CPU in ``docs/benchmarks.md``).

    Args:
        work_pixels: pixels the run will feed the network (tiles x tile area), when known.
            With ``auto`` on CPU, a run below :data:`ONNX_MIN_PIXELS` uses torch unless the
            ONNX export for these weights and this tile shape is cached already.
        precision: ``"fp32"``; ``"bf16"`` (torch autocast) or ``"int8"`` (ONNX Runtime static
            quantisation, CPU), as decided by :mod:`.precision`.
        calibration: ``(optical, sar, teacher_sar | None)`` tiles that calibrate an int8
            model not quantised before (cached beside the fp32 export).
        teacher_sar_channels: SAR channels the teacher reads when not ``sar_channels`` (the
            VV + VH water expert beside a VV student).

    Raises:
        ValueError: unknown backend or precision, ONNX asked for with a CUDA device, or a
            precision the backend cannot run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if precision not in ("fp32", "bf16", "int8"):
        raise ValueError(f"precision must be fp32, bf16 or int8 here, got {precision!r}")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if backend == "onnx" and dev.type != "cpu":
        raise ValueError("the ONNX backend runs on CPU only; use --backend torch for a GPU")
    if precision == "bf16":
        if backend == "onnx":
            raise ValueError("bf16 runs in torch; use --backend torch or auto with --precision bf16")
        return TorchBackend(student, teacher, num_classes, dev, amp, precision="bf16")
    if precision == "int8":
        if backend == "torch" or dev.type != "cpu":
            raise ValueError("int8 runs in ONNX Runtime on CPU; use --backend onnx or auto on a CPU device")
        return _int8_backend(
            student, teacher, num_classes, optical_channels, sar_channels, tile_shape, threads, calibration,
            teacher_sar_channels,
        )
    if backend == "torch" or (backend == "auto" and dev.type != "cpu"):
        return TorchBackend(student, teacher, num_classes, dev, amp)
    student.eval()
    if teacher is not None:
        teacher.eval()
    if backend == "auto":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return TorchBackend(student, teacher, num_classes, dev, amp)  # optional dependency
        if work_pixels is not None and work_pixels < ONNX_MIN_PIXELS:
            paths = _onnx_paths(student, teacher, tile_shape, cache_dir() / "onnx")
            if not all(p is None or p.exists() for p in paths):
                return TorchBackend(student, teacher, num_classes, dev, amp)
    try:
        sp, tp = onnx_models(student, teacher, optical_channels, sar_channels, tile_shape,
                             teacher_sar_channels=teacher_sar_channels)
    except OnnxExportError as exc:
        if backend == "onnx":
            raise ValueError(f"{exc}; use --backend torch (or another --tile-size)") from None
        info(f"{exc}; running with torch instead")
        return TorchBackend(student, teacher, num_classes, dev, amp)
    return OnnxBackend(sp, tp, num_classes, threads)


def _int8_backend(
    student: nn.Module,
    teacher: Optional[nn.Module],
    num_classes: int,
    optical_channels: int,
    sar_channels: int,
    tile_shape: Tuple[int, int],
    threads: int,
    calibration: Optional[Sequence[np.ndarray]],
    teacher_sar_channels: Optional[int] = None,
) -> OnnxBackend:
    """ONNX Runtime on int8 models quantised from the cached fp32 exports (once per weights)."""
    from .precision import quantize_int8

    student.eval()
    if teacher is not None:
        teacher.eval()
    try:
        sp, tp = onnx_models(student, teacher, optical_channels, sar_channels, tile_shape,
                             teacher_sar_channels=teacher_sar_channels)
    except OnnxExportError as exc:
        raise ValueError(f"{exc}; int8 needs the ONNX export: use --precision fp32") from None
    quantised = []
    for path, inputs in ((sp, ("optical", "sar")), (tp, ("sar",))):
        if path is None:
            quantised.append(None)
            continue
        target = path.with_name(path.stem + ".int8.onnx")
        if not target.exists():
            if calibration is None:
                raise ValueError("int8 quantisation needs calibration tiles of the scene")
            optical, sar, teacher_sar = calibration
            arrays = {"optical": optical, "sar": sar if "optical" in inputs or teacher_sar is None else teacher_sar}
            feeds = [
                {name: np.ascontiguousarray(arrays[name][i : i + 1], dtype=np.float32) for name in inputs}
                for i in range(len(sar))
            ]
            quantize_int8(path, target, feeds)
        quantised.append(target)
    return OnnxBackend(quantised[0], quantised[1], num_classes, threads, precision="int8")
