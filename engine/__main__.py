"""``python -m engine``: the engine's command line."""

import os
import signal
import sys

from .progress import inside_import, record_stop_signal, stop_signal
from .validate import STOPS


class QuietAfterStop:
    """stderr that, once Ctrl-C or SIGTERM is recorded, passes only the stop's own line.

    A library can print the interrupt's traceback itself when it lands inside a C call (seen once
    inside an import, under load); the run still stops as it should, and says so in one line.
    """

    LINES = frozenset(message for message, _ in STOPS.values())

    def __init__(self, stream) -> None:
        self._stream, self._after_line = stream, False

    def write(self, text: str) -> int:
        passes = stop_signal() is None or text in self.LINES or (text == "\n" and self._after_line)
        self._after_line = text in self.LINES
        return self._stream.write(text) if passes else len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _stop_while_loading(signum, frame):
    record_stop_signal(signum)  # kept even if an import swallows the exception below
    if not inside_import(frame):  # inside one, raising can abort the process (progress.inside_import)
        raise KeyboardInterrupt()


def _exit_after_stop(code: int) -> None:
    # A Ctrl-C that lands inside exec() (dataclasses and torch build code that way while importing)
    # leaves CPython's "unhandled interrupt" flag set, and the interpreter would then kill itself with
    # SIGINT instead of exiting with the documented status. Cleanup is done by now: end here.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run() -> None:
    debug = "--debug" in sys.argv or os.environ.get("SGCAD_DEBUG", "") not in ("", "0")
    if sys.stderr is not None and not debug:  # --debug: every traceback
        sys.stderr = QuietAfterStop(sys.stderr)
    for signum in STOPS:
        signal.signal(signum, _stop_while_loading)
    code = None
    try:
        from .cli import main

        if stop_signal() is None:  # else an import swallowed the interrupt
            code = main()
    except KeyboardInterrupt:
        pass  # outside main's own handling: while loading, or between two of its statements
    if code is None:  # stopped before main() could say so
        message, code = STOPS[stop_signal() or signal.SIGINT]
        print(message, file=sys.stderr)
    if code in {c for _, c in STOPS.values()}:
        _exit_after_stop(code)
    sys.exit(code)


if __name__ == "__main__":
    _run()
