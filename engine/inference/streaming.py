"""The streaming core: a reader thread, network compute, and a blend/write thread.

Reading + preprocessing the next batch and blending + writing the previous one run in
background threads while the calling thread runs the network, so the scene costs little
more than the network alone. Queues are bounded (memory does not grow with the scene) and
every wait polls a stop flag, so an error or a cancel anywhere stops all three promptly.
Progress and cancellation are only touched from the calling thread (QGIS feedback objects
belong to the thread that runs the task).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from ..progress import NULL_PROGRESS, Progress
from .assembler import BlockAssembler
from .blending import BlendAccumulator
from .outputs import SPECS, OutputSet
from .products import OPTICAL_VALID, SAR_VALID, AoiMask, Thresholds, cell_products
from .tiling import TilePlan

_END = object()


@dataclass
class StreamStats:
    """Where the time went, and what was produced."""

    tiles: int = 0
    read_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    wait_input_s: float = 0.0  # compute thread idle, waiting for the reader
    wall_s: float = 0.0  # from the start, less backend_s
    backend_s: float = 0.0  # building the backend, when given a builder (the reader runs meanwhile)
    class_pixels: Dict[int, int] = field(default_factory=dict)
    sar_only_pixels: int = 0  # answered by the teacher alone (optical missing)
    sar_pixels: int = 0  # with every SAR band (run tiles, AOI or not)
    sar_without_optical_pixels: int = 0  # of those, without the optical input (cloud, gap, nodata)
    peak_live_cells: int = 0
    peak_live_blocks: int = 0


class _Stop(Exception):
    pass


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def stream_segmentation(
    plan: TilePlan,
    read_batch: Callable[[list], Any],
    backend: Any,
    outputs: OutputSet,
    water_class: int,
    batch_size: int = 4,
    thresholds: Thresholds = Thresholds(),
    aoi_mask: Optional[AoiMask] = None,
    blend: str = "cosine",
    progress: Progress = NULL_PROGRESS,
    queue_size: int = 2,
) -> StreamStats:
    """Run the network over every tile of ``plan`` and write the blended products.

    Args:
        plan: tiles to compute (all the same shape).
        read_batch: ``read_batch(tiles) -> TileBatch``-like object with ``optical``, ``sar``,
            ``teacher_sar`` (or None) and ``flags``; called in the reader thread.
        backend: ``predict(optical, sar, teacher_sar=None) -> (probs, water | None)``, or a
            function without arguments that builds one: it is called once the reader thread has
            started, so the first batches are read while the model loads.
        outputs: opened :class:`OutputSet`; blocks are written to it, not committed here.
        water_class: class id of water (SAR-only answers, agreement gate).
        batch_size: tiles per network call.
        thresholds: teacher confidence gates.
        aoi_mask: pixel mask of the AOI, or None.
        blend: ramp shape of the blend weights.
        progress: reporting and cancellation (called from this thread only).
        queue_size: batches buffered between threads.

    Raises:
        Canceled: when ``progress`` asks to stop; every thread has ended when it propagates.
    """
    stats = StreamStats()
    t_start = time.perf_counter()
    stop = threading.Event()
    errors: List[BaseException] = []
    q_in: queue.Queue = queue.Queue(maxsize=queue_size)
    q_out: queue.Queue = queue.Queue(maxsize=queue_size)
    counts = np.zeros(256, dtype=np.int64)
    sar_only = [0]
    sar_coverage = [0, 0]  # pixels with SAR, and of those without optical

    def reader() -> None:
        try:
            for tiles in plan.batches(batch_size):
                t0 = time.perf_counter()
                batch = read_batch(tiles)
                stats.read_s += time.perf_counter() - t0
                _put(q_in, batch, stop)
            _put(q_in, _END, stop)
        except _Stop:
            pass
        except BaseException as exc:  # handed to the calling thread
            errors.append(exc)
            stop.set()

    def writer() -> None:
        try:
            while True:
                item = _get(q_out, stop)
                if item is _END:
                    return
                batch, probs, water = item
                t0 = time.perf_counter()
                for i, tile in enumerate(batch.tiles):
                    w = water[i] if water is not None else None
                    for cell in acc.add(tile, probs[i], w, batch.flags[i]):
                        arrays = cell_products(cell, water_class, thresholds, aoi_mask)
                        cls = arrays["classes"][0]
                        counts[:] += np.bincount(cls.ravel(), minlength=256)
                        sar_only[0] += int((arrays["confidence"] < 0).sum())
                        sar = (cell.flags & SAR_VALID) > 0
                        sar_coverage[0] += int(sar.sum())
                        sar_coverage[1] += int((sar & ((cell.flags & OPTICAL_VALID) == 0)).sum())
                        for x0, y0, block in assembler.add(cell.x0, cell.y0, arrays):
                            outputs.write(x0, y0, block)
                stats.write_s += time.perf_counter() - t0
        except _Stop:
            pass
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=reader, name="sgcad-reader", daemon=True),
        threading.Thread(target=writer, name="sgcad-writer", daemon=True),
    ]
    threads[0].start()
    total = max(len(plan.tiles), 1)
    try:
        if not hasattr(backend, "predict"):  # a builder: the reader is already reading ahead
            t0 = time.perf_counter()
            backend = backend()
            stats.backend_s = time.perf_counter() - t0
        acc = BlendAccumulator(plan, backend.num_classes, bool(getattr(backend, "has_teacher", False)), blend)
        layout = {k: (SPECS[k].count, SPECS[k].dtype, SPECS[k].nodata) for k in outputs.keys}
        assembler = BlockAssembler(plan.width, plan.height, outputs.block, acc.cell_rects(), layout)
        threads[1].start()
        progress.report(0.0, f"segmenting {len(plan.tiles)} tiles")
        try:
            while True:
                progress.check()
                t0 = time.perf_counter()
                batch = _get(q_in, stop)
                stats.wait_input_s += time.perf_counter() - t0
                if batch is _END:
                    _put(q_out, _END, stop)
                    break
                t0 = time.perf_counter()
                probs, water = backend.predict(batch.optical, batch.sar, batch.teacher_sar)
                stats.compute_s += time.perf_counter() - t0
                _put(q_out, (batch, probs, water), stop)
                stats.tiles += len(batch.tiles)
                progress.report(stats.tiles / total, f"tile {stats.tiles}/{total}")
            while threads[1].is_alive():  # let the writer finish, still honouring cancel
                threads[1].join(timeout=0.1)
                progress.check()
        except _Stop:
            pass  # a worker failed; its error is raised below
    except BaseException:
        stop.set()
        raise
    finally:
        for t in threads:
            if t.ident is not None:  # the writer starts only once the backend is built
                t.join()
    if errors:
        raise errors[0]
    stats.wall_s = time.perf_counter() - t_start - stats.backend_s
    stats.class_pixels = {int(i): int(c) for i, c in enumerate(counts) if c and i < 254}
    stats.sar_only_pixels = sar_only[0]
    stats.sar_pixels, stats.sar_without_optical_pixels = sar_coverage
    stats.peak_live_cells = acc.peak_live_pixels
    stats.peak_live_blocks = assembler.peak_buffers
    return stats
