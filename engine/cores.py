"""How many CPU threads the engine uses: one decision for torch, ONNX Runtime and every stage.

A process pinned to some cores (``taskset``, a batch scheduler, a container's cpuset) must not
start a thread per core of the machine: ONNX Runtime pins a worker to every core by default and
torch counts the machine's cores, so both oversubscribe the cores the process may use. Here the
default is the size of the process's CPU affinity mask.
"""

from __future__ import annotations

import os


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_for(requested: int = 0) -> int:
    """``requested`` when > 0, else every core this process may run on."""
    if requested and requested < 0:
        raise ValueError(f"threads must be 0 (every available core) or more, got {requested}")
    return int(requested) if requested and requested > 0 else available_cores()


def apply_threads(requested: int = 0) -> int:
    """Set torch's intra-op threads for the calling thread (:func:`threads_for`); returns the count."""
    import torch

    n = threads_for(requested)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
