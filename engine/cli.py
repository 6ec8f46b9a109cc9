"""Argument parsing and dispatch for ``python -m engine``.

Commands live in :mod:`engine.commands`. Each returns a dict; with ``--json`` it is printed
as one JSON object on the last line of stdout, otherwise as readable ``key: value`` lines.

Every failure ends with one line on stderr (``error: ...`` naming the file and the remedy, see
docs/errors.md) and a non-zero exit status: 2 for a request or input to fix, 3 for an output
or system fault (destination not writable, disk full, out of memory), 1 for a bug, 130 after
Ctrl-C, 143 after SIGTERM. ``--debug`` (anywhere on the line) or ``SGCAD_DEBUG=1`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import signal
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from . import __version__
from .progress import end_progress_line, inside_import, record_stop_signal, stop_signal
from .validate import EXIT_INTERRUPTED, EXIT_TERMINATED, STOPS, SgcadError, describe_error, gdal_name_problem


class UserError(SgcadError):
    """A problem with the user's input: printed as one clear line, exit status 2."""


class Terminated(BaseException):
    """SIGTERM: unwinds like Ctrl-C so temporary files and locks are removed."""


def int_list(text: str) -> List[int]:
    """argparse type for comma-separated integers (bands, widths, sizes); "" gives []."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,2,3; got {text!r}") from None


def nonempty_int_list(text: str) -> List[int]:
    values = int_list(text)
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_units_args(parser: argparse.ArgumentParser) -> None:
    """``--optical-units``, ``--sar-units``, ``--sar-calibration`` and ``--sar-backscatter``, the same for
    every command."""
    from .config import OPTICAL_UNITS, SAR_BACKSCATTER, SAR_UNITS

    group = parser.add_argument_group("units of the input files (detected unless given; docs/inputs.md)")
    group.add_argument(
        "--optical-units", choices=[u for u in OPTICAL_UNITS if u != "custom"], default="auto",
        help="auto (detected), uint8, reflectance10000 (e.g. Sentinel-2), reflectance (0-1), dn, "
             "landsat_c2 (Landsat Collection 2 surface reflectance)",
    )
    group.add_argument(
        "--sar-units", choices=SAR_UNITS, default="auto",
        help="auto (detected), linear (sigma0/gamma0), db, amplitude, dn (uncalibrated amplitude numbers)",
    )
    group.add_argument(
        "--sar-calibration", type=float, default=0.0,
        help="calibration constant for --sar-units dn: sigma0 = DN^2 / constant (0: matched to the model)",
    )
    group.add_argument(
        "--sar-backscatter", choices=SAR_BACKSCATTER, default="auto",
        help="auto (named by the file, else sigma0), sigma0, or gamma0 (terrain-flattened RTC products: read as "
             "sigma0 x cos 37 deg)",
    )


def add_sar_levels_arg(parser: argparse.ArgumentParser) -> None:
    """``--sar-levels`` for commands whose water teacher decides water."""
    from .config import SAR_LEVELS

    parser.add_argument(
        "--sar-levels", choices=SAR_LEVELS, default="auto",
        help="calibrated (sigma0/gamma0, e.g. Sentinel-1) or relative (airborne, uncalibrated): on relative "
             "levels the teacher's water cut comes from the scene; auto: relative for DN without --sar-calibration "
             "and for co- and cross-polarised bands too close for calibrated backscatter",
    )


def add_noise_floor_arg(parser: argparse.ArgumentParser) -> None:
    """``--sar-noise-floor`` for commands whose water map may come from the VV + VH water expert."""
    from .config import SAR_NOISE_FLOOR

    parser.add_argument(
        "--sar-noise-floor", choices=SAR_NOISE_FLOOR, default="auto",
        help="the VV + VH water expert learnt noise-removed VH: auto takes each file's VH noise floor (its darkest "
             "1 %%) off calibrated levels; off reads VH as it is (a noise-removed product, or a scene whose darkest "
             "VH is dry land: desert, frozen ground)",
    )


def add_flip_average_arg(parser: argparse.ArgumentParser) -> None:
    """``--flip-average`` for commands that run the networks over a scene."""
    parser.add_argument(
        "--flip-average", action="store_true",
        help="average the networks' logits over 4 flips of each tile: slightly better water maps, 4x the time",
    )


def add_streaming_args(parser: argparse.ArgumentParser) -> None:
    """Device, tiles, threads, flips, ``--overwrite``, ``--quiet`` and ``--json`` of the commands that
    stream a SAR water expert over a scene (``flood``, ``water``)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--tile-size", type=int, default=512, help="network tile edge in pixels (512)")
    parser.add_argument("--overlap", type=int, default=64, help="pixels shared by neighbouring tiles (64)")
    parser.add_argument("--batch-size", type=int, default=4, help="tiles per network call (4)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for the networks (0: default)")
    add_flip_average_arg(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_json_flag(parser)


def streaming_config(args: argparse.Namespace):
    """The :class:`~engine.config.InferenceConfig` of :func:`add_streaming_args`' arguments."""
    from .config import InferenceConfig

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    return InferenceConfig(tile_size=args.tile_size, overlap=args.overlap, batch_size=args.batch_size,
                           device=args.device, threads=args.threads, flip_average=args.flip_average)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object on the last line of stdout"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="SGCAD engine: optical+SAR land-cover segmentation with SAR-guided distillation.",
    )
    parser.add_argument("--version", action="version", version=f"sgcad-engine {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of a failure (also accepted after the command)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    from . import commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def _print_result(result: Dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, default=str))
        return
    for key, value in result.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value, default=str)
        print(f"{key}: {value}")


def _on_stop_signal(signum, frame):
    # Recorded first: an exception raised inside a C extension that is calling back into Python
    # (torch building a tensor, say) can come out as a different error, or be swallowed.
    record_stop_signal(signum)
    if inside_import(frame):  # the run stops at its next progress check instead
        return
    if signum == signal.SIGTERM:
        raise Terminated()
    raise KeyboardInterrupt()


def _fail(message: str, code: int, as_json: bool) -> int:
    end_progress_line()
    print(f"error: {message}" if code not in (EXIT_INTERRUPTED, EXIT_TERMINATED) else message, file=sys.stderr)
    if as_json:
        print(json.dumps({"ok": False, "error": message, "exit_status": code}))
    return code


def _string_values(options: dict) -> Iterator[str]:
    """Every string an option holds (lists of paths included)."""
    for value in options.values():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, (str, Path)):
                yield str(item)


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SGCAD_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    if not debug:  # GDAL's own "ERROR 1: ..." lines: the one-line message below says it with the remedy
        os.environ.setdefault("CPL_LOG", os.devnull)
    as_json = "--json" in argv
    previous = {}
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, _on_stop_signal)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        as_json = bool(getattr(args, "json", False))
        for value in _string_values(vars(args)):
            problem = gdal_name_problem(value)
            if problem:
                raise SgcadError(problem)
        with warnings.catch_warnings():
            if not debug:  # rasterio's two-line warning: every reader that needs a CRS says so with the remedy
                warnings.filterwarnings("ignore", message="Dataset has no geotransform")
            result = args.func(args)
    except (KeyboardInterrupt, Terminated, Exception) as exc:
        if debug:
            traceback.print_exc()
        # a recorded signal wins: inside a C call a stop can come out as another exception
        exc_signal = signal.SIGTERM if isinstance(exc, Terminated) else (
            signal.SIGINT if isinstance(exc, KeyboardInterrupt) else None)
        stopped = stop_signal() or exc_signal
        if stopped:
            message, code = STOPS[stopped]
            return _fail(message, code, as_json)
        message, code, _ = describe_error(exc)
        return _fail(message, code, as_json)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        record_stop_signal(None)  # the next in-process call starts afresh
    _print_result(result or {}, as_json)
    return 0
