"""docs/processing.md's per-algorithm sections, generated from the algorithms themselves.

Each section (``### `sgcad:<id>` — <name>``) holds the group and help text, the parameter and
output tables, then hand-written prose and examples, which are kept. ``refresh()`` rewrites the
generated part of every section (and appends sections for new algorithms); a test fails when
the shipped page differs from what it would write, so the page never drifts from the code.
"""

from __future__ import annotations

import re
from typing import Dict, List

from qgis.core import QgsProcessingParameterDefinition

SECTION = re.compile(r"^### `sgcad:(\w+)` — .*$", re.MULTILINE)


def _default(definition) -> str:
    value = definition.defaultValue()
    if value is None or value == "":
        return ""
    options = getattr(definition, "options", None)
    if options and isinstance(value, int) and not definition.usesStaticStrings():
        return f"`{value} ({options()[value]})`"
    if isinstance(value, str) and ("/" in value or "\\" in value):
        return "the bundled model"  # an absolute path differs per installation
    return f"`{value}`"


def _describe(definition) -> str:
    text = definition.description()
    extras = []
    if definition.flags() & QgsProcessingParameterDefinition.FlagOptional:
        extras.append("optional")
    if definition.flags() & QgsProcessingParameterDefinition.FlagAdvanced:
        extras.append("advanced")
    options = getattr(definition, "options", None)
    if options and definition.usesStaticStrings():
        text += f": {', '.join(f'`{o}`' for o in options())}"
    return text + (f" ({', '.join(extras)})" if extras else "")


def generated_part(alg) -> str:
    """Group and help text, the parameter table and the output table of one algorithm."""
    lines = [f"### `sgcad:{alg.name()}` — {alg.displayName()}", "", f"*{alg.group()}.* {alg.shortHelpString()}", "",
             "| parameter | type | description | default |", "|---|---|---|---|"]
    for d in alg.parameterDefinitions():
        lines.append(f"| `{d.name()}` | {d.type()} | {_describe(d)} | {_default(d)} |")
    lines += ["", "| output | type | description |", "|---|---|---|"]
    for o in alg.outputDefinitions():
        lines.append(f"| `{o.name()}` | {o.type()} | {o.description()} |")
    return "\n".join(lines) + "\n"


def _sections(text: str) -> Dict[str, List[int]]:
    starts = [(m.group(1), m.start()) for m in SECTION.finditer(text)]
    return {name: [start, starts[i + 1][1] if i + 1 < len(starts) else len(text)] for i, (name, start) in
            enumerate(starts)}


def refresh(text: str, algorithms) -> str:
    """``text`` with every algorithm's generated part replaced (new algorithms appended)."""
    sections = _sections(text)
    out, cursor = [], 0
    by_name = {a.name(): a for a in algorithms}
    for name, (start, end) in sorted(sections.items(), key=lambda kv: kv[1][0]):
        out.append(text[cursor:start])
        body = text[start:end]
        # the generated part ends after the output table; prose and examples follow it
        tables = body.find("| output | type | description |")
        rest = body[body.find("\n\n", tables) + 2:] if tables >= 0 and body.find("\n\n", tables) >= 0 else ""
        alg = by_name.pop(name, None)
        out.append(generated_part(alg) + ("\n" + rest if rest else "\n") if alg is not None else body)
        cursor = end
    out.append(text[cursor:])
    result = "".join(out)
    for name in sorted(by_name):
        result = result.rstrip("\n") + "\n\n" + generated_part(by_name[name])
    return result.rstrip("\n") + "\n"  # one final newline: refreshing a refreshed page changes nothing
