"""Progress reporting and cancellation shared by the command line and the QGIS plugin."""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional


class Canceled(Exception):
    """Raised inside a long run when the user asked to stop."""


_stop_signal: Optional[int] = None


def record_stop_signal(signum: Optional[int]) -> None:
    """Remember that the command line got Ctrl-C or SIGTERM (``None`` forgets it).

    The signal also raises at once, but Python may deliver that exception inside a C call that
    swallows it; console progress then stops the run at its next check.
    """
    global _stop_signal
    _stop_signal = signum


def inside_import(frame) -> bool:
    """Whether ``frame`` runs inside an import.

    A stop raised there can cross a C++ frame of the module being loaded: torch's initialisation
    calls back into Python through pybind11, which cannot pass the exception on and aborts the
    process ("terminate called after throwing an instance of 'pybind11::error_already_set'",
    seen in CI under load). The stop is then only recorded, and the run stops at its next check.
    """
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def stop_signal() -> Optional[int]:
    """The stop signal the command line received, if any."""
    return _stop_signal


class Progress:
    """Callback object every long-running engine function accepts.

    The base class reports nothing and never cancels. The plugin subclasses it to forward
    to ``QgsProcessingFeedback``; the command line uses :class:`ConsoleProgress`.
    """

    def report(self, fraction: float, message: str = "") -> None:
        """Report progress as a fraction in [0, 1] with an optional message."""

    def info(self, message: str) -> None:
        """Report a line of information (device used, timings, decisions)."""

    def warning(self, message: str) -> None:
        """Report something the user should act on (domain shift, unmeasured accuracy)."""
        self.info(f"warning: {message}")

    def is_canceled(self) -> bool:
        return False

    def check(self) -> None:
        """Raise :class:`Canceled` if cancellation was requested."""
        if self.is_canceled():
            raise Canceled("canceled by the user")

    def sub(self, start: float, end: float) -> Progress:
        """A view of this progress mapped onto the sub-range [start, end]."""
        return _SubProgress(self, start, end)


class _SubProgress(Progress):
    def __init__(self, parent: Progress, start: float, end: float) -> None:
        self.parent, self.start, self.end = parent, start, end

    def report(self, fraction: float, message: str = "") -> None:
        f = min(max(fraction, 0.0), 1.0)
        self.parent.report(self.start + (self.end - self.start) * f, message)

    def info(self, message: str) -> None:
        self.parent.info(message)

    def warning(self, message: str) -> None:
        self.parent.warning(message)

    def is_canceled(self) -> bool:
        return self.parent.is_canceled()


class CallbackProgress(Progress):
    """Adapter from plain callables (``report(fraction, message)``, ``is_canceled()``)."""

    def __init__(
        self,
        report: Optional[Callable[[float, str], None]] = None,
        is_canceled: Optional[Callable[[], bool]] = None,
        info: Optional[Callable[[str], None]] = None,
        warning: Optional[Callable[[str], None]] = None,
    ) -> None:
        self._report, self._cancel, self._info, self._warning = report, is_canceled, info, warning

    def report(self, fraction: float, message: str = "") -> None:
        if self._report:
            self._report(fraction, message)

    def info(self, message: str) -> None:
        if self._info:
            self._info(message)

    def warning(self, message: str) -> None:
        if self._warning:
            self._warning(message)
        else:
            super().warning(message)

    def is_canceled(self) -> bool:
        return bool(self._cancel and self._cancel())


class ConsoleProgress(Progress):
    """Progress on stderr with percentage and ETA, throttled to a few updates per second."""

    def __init__(self, stream=None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.t0 = time.monotonic()
        self._last = 0.0

    def report(self, fraction: float, message: str = "") -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if now - self._last < 0.5 and fraction < 1.0:
            return
        self._last = now
        elapsed = now - self.t0
        eta = elapsed * (1 - fraction) / fraction if fraction > 1e-6 else float("nan")
        eta_text = f"ETA {eta:5.0f}s" if eta == eta else "ETA    ?"
        self.stream.write(f"\r[{fraction * 100:5.1f}%] {eta_text} {message[:60]:<60}")
        if fraction >= 1.0:
            self.stream.write("\n")
        _OPEN_LINE[0] = self.stream if fraction < 1.0 else None
        self.stream.flush()

    def info(self, message: str) -> None:
        if not self.quiet:
            self._line(message)

    def warning(self, message: str) -> None:
        self._line(f"warning: {message}")  # shown even when quiet: the user must act on it

    def is_canceled(self) -> bool:
        return _stop_signal is not None

    def _line(self, message: str) -> None:
        self.stream.write(f"\n{message}\n" if self._last else f"{message}\n")
        _OPEN_LINE[0] = None
        self.stream.flush()


_OPEN_LINE: list = [None]  # the stream whose progress line is not ended yet


def end_progress_line() -> None:
    """End a console progress line left open, so that a message after it (an error) starts its own line."""
    stream, _OPEN_LINE[0] = _OPEN_LINE[0], None
    if stream is not None:
        stream.write("\n")
        stream.flush()


NULL_PROGRESS = Progress()
