"""SIGTERM during training: an exception, so the last completed epoch is saved before exiting.

``torchrun`` stops the surviving ranks with SIGTERM when one rank dies (then SIGKILL 30 s
later), and batch schedulers (SLURM, Kubernetes) preempt jobs the same way. Python's default
action for SIGTERM ends the process at once, so the state snapshot a trainer holds in memory
(written only every ``state_every`` epochs) would be lost. Inside :class:`TerminationGuard`
the first SIGTERM raises :class:`TrainingTerminated` instead; the trainer's clean-up writes
the snapshot, and further SIGTERMs are ignored while it does.

Signal handlers can only be set from the main thread; elsewhere (a QGIS task thread) the
guard does nothing and cancelling goes through the progress callback as before.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Optional, Type


class TrainingTerminated(SystemExit):
    """The process was asked to stop (SIGTERM); exit status 143 as for an unhandled SIGTERM."""

    def __init__(self) -> None:
        super().__init__(128 + signal.SIGTERM)


class TerminationGuard:
    """Context manager: the first SIGTERM raises :class:`TrainingTerminated`, later ones are ignored."""

    def __init__(self) -> None:
        self.terminated = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> TerminationGuard:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.terminated:  # already stopping (e.g. writing the state): finish that first
            return
        self.terminated = True
        raise TrainingTerminated()
