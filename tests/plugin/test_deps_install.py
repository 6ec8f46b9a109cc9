"""A real installation with pip: Debian's Python (PEP 668 marked, no safetensors) installs a
pinned package into a temporary SGCAD folder, keeps its own numpy, and imports it afterwards.

It needs pip's package index (the machine's configured PyPI or wheel folders). The desktop
check (scripts/desktop_check.sh) installs torch itself the same way inside a real QGIS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sgcad_qgis.deps.plan import build_plan, pip_version_of
from sgcad_qgis.deps.spec import PACKAGES, PackageState, PlatformInfo, requirements_for

SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.slow


def system_numpy() -> str:
    out = subprocess.run([SYSTEM_PYTHON, "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


@pytest.fixture()
def debian_python():
    if not Path(SYSTEM_PYTHON).is_file() or not Path("/usr/lib/python3.11/EXTERNALLY-MANAGED").is_file():
        pytest.skip("needs Debian 12's python3 (PEP 668 marked)")
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import safetensors"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("Debian's python3 already has safetensors")
    return SYSTEM_PYTHON


def test_install_into_the_plugin_folder_with_debians_python(debian_python, tmp_path, qgis_app):
    from test_deps import run_to_end

    from sgcad_qgis.deps.runner import InstallRunner

    numpy_version = system_numpy()
    info = PlatformInfo("Linux", "x86_64", (3, 11), numpy_version)
    states = [PackageState(p, problem="missing" if p.dist == "safetensors" else "", version="1")
              for p in PACKAGES if not p.optional]
    requirements = requirements_for(states, info, None)
    assert requirements.requirements == ["safetensors==0.6.2"]
    target = tmp_path / "sgcad_deps" / "3.11"
    # the site folders of Debian's Python, as QGIS's sys.path holds them
    site = json.loads(subprocess.run([debian_python, "-c", "import json, sys; print(json.dumps(sys.path))"],
                                     capture_output=True, text=True, check=True).stdout)
    plan = build_plan(debian_python, target, requirements, None, pip_version_of(debian_python), path=site)
    lines = []
    runner = InstallRunner(plan)
    runner.line.connect(lines.append)
    result = run_to_end(runner, timeout_ms=300000)
    assert result["ok"], "\n".join(lines[-30:])
    report = json.loads((plan.work / "report.json").read_text())
    assert [i["metadata"]["name"] for i in report["install"]] == ["safetensors"]  # numpy kept
    assert (target / "safetensors" / "__init__.py").is_file()
    assert not list(target.glob("numpy*")) and not any("break-system-packages" in line for line in lines)
    check = subprocess.run(
        [debian_python, "-c", f"import sys; sys.path.insert(0, {str(target)!r}); import numpy, safetensors; "
                              "print(safetensors.__version__, numpy.__version__, safetensors.__file__)"],
        capture_output=True, text=True, check=True)
    version, numpy_after, where = check.stdout.split()
    assert (version, numpy_after) == ("0.6.2", numpy_version) and where.startswith(str(target))
    assert sys.version_info[:2] == (3, 11)
