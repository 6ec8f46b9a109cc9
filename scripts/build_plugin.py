"""Assemble the QGIS plugin folder, for development (symlinks) or as the installable zip.

The plugin folder is ``sgcad_qgis/`` holding the plugin modules, ``metadata.txt``, the
resources and the engine vendored as the sub-package ``sgcad_qgis.engine``: inside QGIS the
engine is never a bare top-level ``engine`` that another plugin could shadow.

Usage:
    python scripts/build_plugin.py dev      # build/plugins/sgcad_qgis -> symlinks into the repo
    python scripts/build_plugin.py zip      # dist/sgcad_qgis-<version>.zip
"""

from __future__ import annotations

import argparse
import configparser
import os
import shutil
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "sgcad_qgis"
MAX_ZIP_BYTES = 25 * 1024 * 1024
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".aux.xml"}


def members() -> dict:
    """Map of name inside the plugin folder -> source path in the repository."""
    entries = {p.name: p for p in sorted((ROOT / PLUGIN).iterdir()) if p.name not in SKIP_DIRS}
    entries["engine"] = ROOT / "engine"
    entries["resources"] = ROOT / "resources"
    entries["metadata.txt"] = ROOT / "metadata.txt"
    entries["LICENSE"] = ROOT / "LICENSE"
    return entries


def build_dev(dest_parent: Path = ROOT / "build" / "plugins") -> Path:
    """Create (or refresh) a plugin folder of symlinks; returns its parent for QGIS_PLUGINPATH."""
    folder = dest_parent / PLUGIN
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    wanted = members()
    for existing in folder.iterdir():
        if existing.name not in wanted:
            existing.unlink() if existing.is_symlink() else shutil.rmtree(existing)
    for name, source in wanted.items():
        link = folder / name
        if link.is_symlink() and os.readlink(link) == str(source):
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(source)
    return dest_parent


def _walk(source: Path):
    if source.is_file():
        yield source, Path()
        return
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for filename in sorted(filenames):
            if any(filename.endswith(s) for s in SKIP_SUFFIXES):
                continue
            path = Path(dirpath) / filename
            yield path, path.relative_to(source)


def build_zip(dist: Path = ROOT / "dist") -> Path:
    """Write ``dist/sgcad_qgis-<version>.zip`` atomically; refuse it above 25 MB."""
    meta = configparser.ConfigParser()
    meta.read(ROOT / "metadata.txt")
    version = meta["general"]["version"]
    dist.mkdir(parents=True, exist_ok=True)
    target = dist / f"{PLUGIN}-{version}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, source in members().items():
            for path, rel in _walk(source):
                arcname = Path(PLUGIN) / name / rel if rel != Path() else Path(PLUGIN) / name
                zf.write(path, str(arcname))
    size = tmp.stat().st_size
    if size > MAX_ZIP_BYTES:
        tmp.unlink()
        raise SystemExit(f"plugin zip would be {size / 1e6:.1f} MB, above the 25 MB limit")
    tmp.replace(target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["dev", "zip"])
    args = parser.parse_args(argv)
    if args.mode == "dev":
        print(build_dev())
    else:
        target = build_zip()
        print(f"{target} ({target.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
