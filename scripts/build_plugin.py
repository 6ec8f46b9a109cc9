"""Assemble the QGIS plugin folder, for development (symlinks) or as the installable zip.

The plugin folder is ``sgcad_qgis/`` holding the plugin modules, ``metadata.txt``, the
resources and the engine vendored as the sub-package ``sgcad_qgis.engine``: inside QGIS the
engine is never a bare top-level ``engine`` that another plugin could shadow.

Usage:
    python scripts/build_plugin.py dev      # build/plugins/sgcad_qgis -> symlinks into the repo
    python scripts/build_plugin.py zip      # dist/sgcad_qgis-<version>.zip, then the checks below
    python scripts/build_plugin.py check [ZIP]  # the QGIS plugin repository's checks on a zip

``check`` runs what plugins.qgis.org runs on an upload: size (25 MB), one top folder that is a
Python identifier, ``__init__.py``, ``LICENSE``, ``metadata.txt`` with the required fields, no
``.pyc``/``__pycache__``/``.git``/``__MACOSX``, no path tricks; plus no executable binaries
(ELF, PE, Mach-O, shared libraries) and Bandit on the zip's Python files. The repository
also requires public ``email``, ``tracker`` and ``repository`` values, which this project does
not have yet: they are reported as the one remaining step (docs/install.md, "Publishing").
"""

from __future__ import annotations

import argparse
import configparser
import os
import shutil
import subprocess  # runs Bandit with a fixed argument list
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import List, Tuple

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = "sgcad_qgis"
MAX_ZIP_BYTES = 25_000_000  # plugins.qgis.org's limit (decimal megabytes)
#: Documentation shipped in the plugin's ``help`` folder (the algorithms' help buttons open it).
HELP_FILES = ("processing.md", "install.md", "gui.md")
#: Metadata plugins.qgis.org requires; the last three need a public address.
REQUIRED_METADATA = ("name", "description", "version", "qgisMinimumVersion", "author", "about", "email",
                     "tracker", "repository")
NEEDS_PUBLIC_ADDRESS = ("email", "tracker", "repository")
BINARY_SUFFIXES = (".so", ".dll", ".pyd", ".dylib", ".exe", ".bin", ".pyc", ".pyo", ".o", ".a", ".lib")
BINARY_MAGIC = (b"\x7fELF", b"MZ", b"\xcf\xfa\xed\xfe", b"\xce\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".aux.xml"}
# evaluation label sets serve the project's measurements, not users: they stay in the repository
ZIP_SKIP = ("resources/labels",)


def members() -> dict:
    """Map of name inside the plugin folder -> source path in the repository."""
    entries = {p.name: p for p in sorted((ROOT / PLUGIN).iterdir()) if p.name not in SKIP_DIRS}
    entries["engine"] = ROOT / "engine"
    entries["resources"] = ROOT / "resources"
    entries["metadata.txt"] = ROOT / "metadata.txt"
    entries["LICENSE"] = ROOT / "LICENSE"
    return entries


def help_members() -> dict:
    """``help/<file>`` -> the repository's ``docs/<file>``."""
    return {f"help/{name}": ROOT / "docs" / name for name in HELP_FILES if (ROOT / "docs" / name).is_file()}


def build_dev(dest_parent: Path = ROOT / "build" / "plugins") -> Path:
    """Create (or refresh) a plugin folder of symlinks; returns its parent for QGIS_PLUGINPATH."""
    folder = dest_parent / PLUGIN
    if folder.is_symlink() or folder.is_file():
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    wanted = members()
    wanted_names = set(wanted) | {"help"}
    for existing in folder.iterdir():
        if existing.name not in wanted_names:
            existing.unlink() if existing.is_symlink() else shutil.rmtree(existing)
    links = dict(wanted, **help_members())
    (folder / "help").mkdir(exist_ok=True)
    for name, source in links.items():
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
        for name, source in dict(members(), **help_members()).items():
            for path, rel in _walk(source):
                if any((Path(name) / rel).as_posix().startswith(skip) for skip in ZIP_SKIP):
                    continue
                arcname = Path(PLUGIN) / name / rel if rel != Path() else Path(PLUGIN) / name
                zf.write(path, arcname.as_posix())
    size = tmp.stat().st_size
    if size > MAX_ZIP_BYTES:
        tmp.unlink()
        raise SystemExit(f"plugin zip would be {size / 1e6:.1f} MB, above the 25 MB limit")
    tmp.replace(target)
    return target


def check_zip(path: Path, bandit: bool = True) -> Tuple[List[str], List[str]]:
    """(problems, missing public addresses) of a plugin zip, as plugins.qgis.org would see it."""
    problems: List[str] = []
    if path.stat().st_size > MAX_ZIP_BYTES:
        problems.append(f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; the limit is 25 MB")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if zf.testzip() is not None:
            problems.append("the zip is damaged")
        tops = {n.split("/")[0] for n in names}
        if len(tops) != 1 or not next(iter(tops)).isidentifier():
            problems.append(f"the zip must hold one folder named like a Python module, not {sorted(tops)}")
        top = next(iter(tops))
        for name in names:
            parts = name.split("/")
            if ".." in name or name.startswith("/") or "\\" in name:
                problems.append(f"path trick in {name}")
            if {"__pycache__", ".git", "__MACOSX"} & set(parts) or name.endswith((".pyc", ".pyo")):
                problems.append(f"forbidden file {name}")
            if name.lower().endswith(BINARY_SUFFIXES):
                problems.append(f"binary file {name}")
            elif not name.endswith("/") and zf.read(name)[:4].startswith(BINARY_MAGIC):
                problems.append(f"executable binary {name}")
        for required in ("__init__.py", "LICENSE", "metadata.txt"):
            if f"{top}/{required}" not in names:
                problems.append(f"{top}/{required} is missing")
        meta = configparser.ConfigParser()
        meta.optionxform = str
        meta.read_string(zf.read(f"{top}/metadata.txt").decode("utf-8"))
        general = meta["general"] if meta.has_section("general") else {}
        missing_public = [k for k in NEEDS_PUBLIC_ADDRESS if not general.get(k, "").strip()]
        for key in REQUIRED_METADATA:
            if key not in NEEDS_PUBLIC_ADDRESS and not general.get(key, "").strip():
                problems.append(f"metadata.txt has no {key}")
        if "/" in general.get("author", ""):
            problems.append("metadata.txt: the author may not contain '/'")
        icon = general.get("icon", "")
        if icon and f"{top}/{icon}" not in names:
            problems.append(f"metadata.txt names icon {icon}, which is not in the zip")
        if bandit:
            problems += _bandit(zf, [n for n in names if n.endswith(".py")])
    return problems, missing_public


def _bandit(zf: zipfile.ZipFile, python_files: List[str]) -> List[str]:
    """Bandit (medium and high severity) over the zip's Python files, with the project's config."""
    with tempfile.TemporaryDirectory() as tmp:
        for name in python_files:
            zf.extract(name, tmp)
        out = subprocess.run(  # the running Python's Bandit, fixed arguments
            [sys.executable, "-m", "bandit", "-q", "-r", tmp, "-ll", "-c", str(ROOT / "pyproject.toml")],
            capture_output=True, text=True, check=False,
        )
    if out.returncode == 0:
        return []
    return ["Bandit: " + (out.stdout or out.stderr).strip()[-2000:]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["dev", "zip", "check"])
    parser.add_argument("zip", nargs="?", help="zip to check (default: build it)")
    args = parser.parse_args(argv)
    if args.mode == "dev":
        print(build_dev())
        return 0
    target = Path(args.zip) if args.mode == "check" and args.zip else build_zip()
    print(f"{target} ({target.stat().st_size / 1e6:.2f} MB)")
    problems, missing_public = check_zip(target)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    if missing_public:
        print("Before uploading to plugins.qgis.org, set " + ", ".join(missing_public) + " in metadata.txt "
              "(public addresses; see docs/install.md, 'Publishing').")
    if not problems:
        print("The plugin repository's checks pass" + (" except the public addresses above." if missing_public
                                                        else "."))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
