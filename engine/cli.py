"""Argument parsing and dispatch for ``python -m engine``.

Commands live in :mod:`engine.commands`. Each returns a dict; with ``--json`` it is printed
as one JSON object on the last line of stdout, otherwise as readable ``key: value`` lines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from typing import Any, Dict, List, Optional

from . import __version__
from .progress import Canceled


class UserError(Exception):
    """A problem with the user's input: printed as one clear line, exit status 2."""


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
    """``--optical-units``, ``--sar-units`` and ``--sar-calibration``, the same for every command."""
    from .config import OPTICAL_UNITS, SAR_UNITS

    group = parser.add_argument_group("units of the input files (detected unless given; docs/inputs.md)")
    group.add_argument(
        "--optical-units", choices=[u for u in OPTICAL_UNITS if u != "custom"], default="auto",
        help="auto (detected), uint8, reflectance10000 (e.g. Sentinel-2), reflectance (0-1), dn",
    )
    group.add_argument(
        "--sar-units", choices=SAR_UNITS, default="auto",
        help="auto (detected), linear (sigma0/gamma0), db, amplitude, dn (uncalibrated amplitude numbers)",
    )
    group.add_argument(
        "--sar-calibration", type=float, default=0.0,
        help="calibration constant for --sar-units dn: sigma0 = DN^2 / constant (0: matched to the model)",
    )


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


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    as_json = bool(getattr(args, "json", False))
    try:
        result = args.func(args)
    except Canceled as exc:
        print(f"canceled: {exc}", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if as_json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        return 2
    _print_result(result or {}, as_json)
    return 0
