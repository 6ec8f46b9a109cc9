"""The engine is a pure-Python package: no QGIS or Qt, and a working command line."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("qgis", "PyQt5", "PyQt6", "processing", "sip")


def _imported_roots(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_no_module_under_engine_imports_qgis_or_qt():
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted((ROOT / "engine").rglob("*.py"))
        for name in _imported_roots(path)
        if name in FORBIDDEN
    ]
    assert offenders == []


def test_importing_every_engine_module_loads_no_qgis_or_qt():
    code = (
        "import importlib, pkgutil, sys, engine\n"
        "for m in pkgutil.walk_packages(engine.__path__, 'engine.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in %r)\n"
        "print(bad)\n".replace("%r", repr(FORBIDDEN))
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_cli_help_lists_commands_and_version():
    out = subprocess.run(
        [sys.executable, "-m", "engine", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "COMMAND" in out.stdout
    version = subprocess.run(
        [sys.executable, "-m", "engine", "--version"], cwd=ROOT, capture_output=True, text=True
    )
    assert version.stdout.strip().startswith("sgcad-engine ")


def test_config_round_trips_through_json():
    from engine.config import ClassSchema, ModelMetadata, StudentConfig, from_dict, to_dict

    meta = ModelMetadata(model=to_dict(StudentConfig(widths=(16, 32, 64, 128))))
    back = from_dict(ModelMetadata, json.loads(json.dumps(to_dict(meta))))
    assert back == meta
    assert back.schema.names[back.schema.water_class] == "water"
    schema = ClassSchema()
    assert schema.id_of("Water") == 3 and schema.id_of("5") == 5 and schema.id_of(4) == 4


def test_config_rejects_unknown_fields_and_bad_classes():
    import pytest

    from engine.config import ClassSchema, StudentConfig, from_dict

    with pytest.raises(ValueError, match="unknown field"):
        from_dict(StudentConfig, {"widht": 3})
    with pytest.raises(ValueError, match="not a class of the schema"):
        ClassSchema().id_of("lake")
