"""The dependency installer's decisions: torch build per platform and driver, pinned versions,
numpy kept, pip commands, the interpreter behind QGIS, and the runner's progress and Cancel."""

from __future__ import annotations

import json
import os
import sys

import pytest

from sgcad_qgis.deps import plan as plan_mod
from sgcad_qgis.deps.interpreter import candidates, find_python
from sgcad_qgis.deps.location import activate
from sgcad_qgis.deps.spec import (
    PACKAGES,
    GpuInfo,
    PackageState,
    PlatformInfo,
    choose_torch,
    parse_nvidia_smi,
    pinned_versions,
    requirements_for,
)

LINUX = PlatformInfo("Linux", "x86_64", (3, 11), "1.24.2")
WINDOWS_39 = PlatformInfo("Windows", "AMD64", (3, 9), "1.22.4")
MAC_ARM = PlatformInfo("Darwin", "arm64", (3, 11), "1.26.4")
MAC_INTEL = PlatformInfo("Darwin", "x86_64", (3, 9), "1.23.5")


def states(missing=("torch", "safetensors"), optional_missing=("onnxruntime", "onnx")):
    out = []
    for package in PACKAGES:
        state = PackageState(package, version="9.9")
        if package.module in missing or package.module in optional_missing:
            state.problem, state.version = "missing", None
        out.append(state)
    return out


def test_nvidia_smi_output_is_parsed_and_garbage_ignored():
    text = "NVIDIA H200, 570.124.06, 143771\nNVIDIA GeForce GTX 1080, 470.256.02, 8192\nNo devices were found\n"
    gpus = parse_nvidia_smi(text)
    assert [(g.name, g.driver, g.driver_major, g.memory_mb) for g in gpus] == [
        ("NVIDIA H200", "570.124.06", 570, 143771), ("NVIDIA GeForce GTX 1080", "470.256.02", 470, 8192)]
    assert parse_nvidia_smi("") == []


@pytest.mark.parametrize(
    "info,gpus,variant,requirement,index,size",
    [
        (LINUX, [], "cpu", "torch==2.13.0+cpu", "https://download.pytorch.org/whl/cpu", 190),
        (LINUX, [GpuInfo("RTX 4090", "550.54.14")], "cu126", "torch==2.13.0+cu126",
         "https://download.pytorch.org/whl/cu126", 3300),
        (LINUX, [GpuInfo("H200", "580.65.06")], "cu130", "torch==2.13.0+cu130",
         "https://download.pytorch.org/whl/cu130", 3300),
        (LINUX, [GpuInfo("GTX 980", "470.256.02")], "cpu", "torch==2.13.0+cpu",
         "https://download.pytorch.org/whl/cpu", 190),
        # Python 3.9 (QGIS 3.22 on Windows): torch 2.8, which has no CUDA 13 build
        (WINDOWS_39, [GpuInfo("RTX A2000", "591.44")], "cu126", "torch==2.8.0+cu126",
         "https://download.pytorch.org/whl/cu126", 2800),
        (MAC_ARM, [], "pypi", "torch==2.13.0", None, 80),
        (MAC_INTEL, [], "pypi", "torch==2.2.2", None, 80),
    ],
)
def test_torch_build_follows_platform_python_and_nvidia_driver(info, gpus, variant, requirement, index, size):
    choice = choose_torch(info, gpus, "no NVIDIA driver found (nvidia-smi is not installed)")
    assert (choice.variant, choice.requirement, choice.index_url, choice.download_mb) == (
        variant, requirement, index, size)
    text = choice.describe()
    assert text.startswith(f"torch {choice.version}, ") and "about " in text
    if gpus and variant == "cpu":
        assert "driver 470.256.02 is older than 525" in choice.reason
    elif gpus:
        assert gpus[0].name in choice.reason and gpus[0].driver in choice.reason
    elif info.system == "Linux":
        assert "nvidia-smi is not installed" in choice.reason


def test_torch_index_can_be_replaced_by_a_mirror_or_by_pips_own_configuration():
    assert choose_torch(LINUX, [], index_override="").index_url is None
    assert choose_torch(LINUX, [], index_override="https://mirror.example/torch").index_url == \
        "https://mirror.example/torch"


def test_requirements_pin_only_what_is_missing_and_keep_qgis_numpy():
    torch = choose_torch(LINUX, [])
    pins = pinned_versions(LINUX)
    req = requirements_for(states(), LINUX, torch)
    assert req.requirements == ["torch==2.13.0+cpu", "safetensors==0.6.2", f"onnxruntime=={pins['onnxruntime']}",
                                f"onnx=={pins['onnx']}"]
    assert req.constraints == ["numpy==1.24.2"]
    assert req.download_mb == 190 + 1 + 17 + 18
    assert requirements_for(states(), LINUX, torch, optional=False).requirements == [
        "torch==2.13.0+cpu", "safetensors==0.6.2"]
    # numpy and GDAL come with QGIS: never installed, even when broken
    broken = states(missing=("torch", "numpy", "osgeo.gdal"), optional_missing=())
    assert requirements_for(broken, LINUX, torch).requirements == ["torch==2.13.0+cpu"]
    assert requirements_for(states(missing=()), PlatformInfo("Linux", "x86_64", (3, 11), None), None,
                            optional=False).constraints == ["numpy<2"]
    with pytest.raises(ValueError, match="choose its build"):
        requirements_for(states(), LINUX, None)


def make_plan(tmp_path, pip_version=(23, 0)):
    torch = choose_torch(LINUX, [])
    req = requirements_for(states(optional_missing=()), LINUX, torch)
    site = tmp_path / "site-packages"
    site.mkdir()
    return plan_mod.build_plan("/usr/bin/python3.11", tmp_path / "deps" / "3.11", req, torch, pip_version,
                               path=[str(site), "/nonexistent/dist-packages", str(tmp_path)])


def test_plan_resolves_against_qgis_packages_then_installs_exactly_that_into_the_target(tmp_path):
    plan = make_plan(tmp_path)
    assert [s.label for s in plan.steps] == ["Resolving versions", "Downloading and installing"]
    resolve = plan.steps[0].build()
    assert resolve[:5] == ["/usr/bin/python3.11", "-m", "pip", "install", "--dry-run"]
    assert "--report" in resolve and "--target" not in resolve and "--break-system-packages" not in resolve
    assert resolve[resolve.index("-c") + 1] == str(plan.work / "constraints.txt")
    assert (plan.work / "constraints.txt").read_text() == "numpy==1.24.2\n"
    assert resolve[resolve.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert resolve[-2:] == ["torch==2.13.0+cpu", "safetensors==0.6.2"]
    # pip sees the target and QGIS's site folders as installed; nothing from the user's shell
    assert plan.env["PYTHONPATH"].split(os.pathsep) == [str(plan.target), str(tmp_path / "site-packages")]
    assert plan.env["PIP_USER"] == "0"

    report = {"install": [
        {"metadata": {"name": "torch", "version": "2.13.0+cpu"}},
        {"metadata": {"name": "safetensors", "version": "0.6.2"}},
        {"metadata": {"name": "typing_extensions", "version": "4.16.0"}},
        {"metadata": {"name": "setuptools", "version": "84.2.1"}},  # Debian's stays
    ]}
    (plan.work / "report.json").write_text(json.dumps(report))
    install = plan.steps[1].build()
    assert install[:4] == ["/usr/bin/python3.11", "-m", "pip", "install"]
    assert install[install.index("--target") + 1] == str(plan.target)
    assert "--no-deps" in install and "--upgrade" in install and "--dry-run" not in install
    assert install[-3:] == ["torch==2.13.0+cpu", "safetensors==0.6.2", "typing_extensions==4.16.0"]
    assert "torch 2.13.0, CPU build (about 190 MB)" in plan.summary()

    (plan.work / "report.json").write_text(json.dumps({"install": []}))
    assert plan.steps[1].build() is None  # everything satisfied: nothing to install


@pytest.mark.parametrize("pip_version", [None, (21, 3)])
def test_a_python_without_pip_or_with_an_old_pip_fetches_pip_first(tmp_path, pip_version):
    plan = make_plan(tmp_path, pip_version)
    assert plan.steps[0].label.startswith(f"Fetching pip {plan_mod.PIP_VERSION}")
    assert plan.steps[0].args[:3] == ["/usr/bin/python3.11", "-I", "-c"]
    wheel = str(plan.work / "pip" / f"pip-{plan_mod.PIP_VERSION}-py3-none-any.whl")
    assert plan.steps[1].build()[:2] == ["/usr/bin/python3.11", os.path.join(wheel, "pip")]


def test_interpreter_candidates_for_qgis_on_linux_windows_and_macos():
    linux = candidates("/usr/bin/qgis", "/usr", "/usr/bin/qgis", (3, 11), "linux")
    assert linux[0] == "/usr/bin/python3.11" and "/usr/bin/qgis" not in linux
    win = candidates(r"C:\OSGeo4W\bin\qgis-bin.exe", r"C:\OSGeo4W\apps\Python39", "", (3, 9), "win32")
    assert win[0].endswith("Python39/python.exe") or win[0].endswith("Python39\\python.exe")
    mac = candidates("/Applications/QGIS.app/Contents/MacOS/QGIS",
                     "/Applications/QGIS.app/Contents/Frameworks/Python.framework/Versions/3.9", "", (3, 9), "darwin")
    assert mac[0] == "/Applications/QGIS.app/Contents/MacOS/bin/python3.9"


def test_find_python_accepts_only_the_same_python_and_prefers_the_same_installation(tmp_path):
    """QGIS's sys.executable is QGIS itself: the Python behind it is found by version and prefix."""
    found, tried = find_python(["/usr/bin/qgis", str(tmp_path / "nothing"), "/usr/bin/python3.11"],
                               version=(3, 11), prefix="/usr")
    assert found is not None and found.path == "/usr/bin/python3.11" and found.prefix == "/usr"
    assert any("not a working Python" in t for t in tried)
    wrong, tried = find_python(["/usr/bin/python3.11"], version=(3, 9), prefix="/usr")
    assert wrong is None and "QGIS runs 3.9" in tried[0]
    # this test's own Python (a venv) is found as itself
    mine, _ = find_python([sys.executable])
    assert mine is not None and mine.prefix == sys.prefix


def test_activate_makes_a_package_installed_while_running_importable(tmp_path, monkeypatch):
    folder = tmp_path / "deps" / "3.11"
    assert activate(folder) is None  # not there yet: nothing added
    with pytest.raises(ImportError):
        __import__("sgcad_fresh_package")
    (folder / "sgcad_fresh_package").mkdir(parents=True)
    (folder / "sgcad_fresh_package" / "__init__.py").write_text("VALUE = 42\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert activate(folder) == str(folder) and sys.path[0] == str(folder)
    import sgcad_fresh_package

    assert sgcad_fresh_package.VALUE == 42
    sys.modules.pop("sgcad_fresh_package")


def test_deps_folder_is_in_the_qgis_profile_per_python_version(tmp_path, monkeypatch):
    from sgcad_qgis.deps.location import deps_dir

    monkeypatch.delenv("SGCAD_DEPS_DIR", raising=False)
    tag = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert deps_dir(tmp_path) == tmp_path / "python" / "sgcad_deps" / tag
    monkeypatch.setenv("SGCAD_DEPS_DIR", str(tmp_path / "shared"))
    assert deps_dir() == tmp_path / "shared" / tag


def test_missing_torch_is_reported_plainly_and_html_safe(monkeypatch, tmp_path):
    from sgcad_qgis import environment

    monkeypatch.setenv("SGCAD_CACHE_DIR", str(tmp_path))  # no precision measured here yet, whatever this machine ran

    real = environment.import_module

    def fake(name):
        if name.split(".")[0] in ("torch", "safetensors"):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return real(name)

    monkeypatch.setattr(environment, "import_module", fake)
    status = {s.name: s for s in environment.dependency_status()}
    assert status["torch"].problem == "missing" and status["numpy"].ok and status["numpy"].version
    assert environment.missing_dependencies() == ["torch (missing)", "safetensors (missing)"]
    text = environment.dependency_message()
    assert "torch (missing)" in text and "'Install'" in text
    assert "&#x27;Install&#x27;" in environment.dependency_message(as_html=True)
    report = environment.diagnostics_report(detect_gpu=False, find_interpreter=False)
    assert "torch" in report and "missing" in report and "SGCAD packages folder:" in report
    assert "bf16: " in report and "precision decisions:" in report  # the CPU's fast paths (engine check)


def test_too_old_counts_as_missing(monkeypatch):
    import types

    from sgcad_qgis import environment

    old = types.ModuleType("scipy")
    old.__version__ = "1.2.0"
    real = environment.import_module
    monkeypatch.setattr(environment, "import_module", lambda n: old if n == "scipy" else real(n))
    monkeypatch.setattr(environment, "_version_of", lambda package, module: getattr(module, "__version__", None))
    state = {s.name: s for s in environment.dependency_status()}["scipy"]
    assert state.problem == "too old (1.2.0; SGCAD needs 1.7 or newer)"


# ---------------------------------------------------------------------------- runner
def fake_plan(tmp_path, *scripts):
    """A plan whose steps run small Python scripts instead of pip."""
    from sgcad_qgis.deps.spec import Requirements

    steps = [plan_mod.Step(f"step {i}", [sys.executable, "-c", code], 1.0) for i, code in enumerate(scripts)]
    req = Requirements(["a==1", "b==2"], ["numpy==1.24.2"], ["a", "b"], 3)
    return plan_mod.InstallPlan(sys.executable, tmp_path / "t", req, None, steps, dict(os.environ), tmp_path)


def run_to_end(runner, timeout_ms=60000):
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    result = {}
    loop = QEventLoop()
    runner.finished.connect(lambda ok, text: (result.update(ok=ok, text=text), loop.quit()))
    QTimer.singleShot(timeout_ms, loop.quit)
    runner.start()
    if not result:
        loop.exec_()
    return result


def test_runner_reports_monotonic_progress_and_the_log(qgis_app, tmp_path):
    from sgcad_qgis.deps.runner import InstallRunner

    pip_like = ("print('Collecting a==1'); print('  Downloading a-1.whl (1 MB)'); print('Collecting b==2');"
                "print('Installing collected packages: a, b'); print('Successfully installed a-1 b-2')")
    runner = InstallRunner(fake_plan(tmp_path, "print('resolved')", pip_like))
    values, lines = [], []
    runner.progress.connect(values.append)
    runner.line.connect(lines.append)
    result = run_to_end(runner)
    assert result == {"ok": True, "text": "Packages installed."}
    assert values == sorted(values) and values[-1] == 100 and len(values) >= 4
    assert "Successfully installed a-1 b-2" in lines and "--- step 1" in lines


def test_runner_failure_names_pips_error_and_cancel_stops_pip(qgis_app, tmp_path):
    from qgis.PyQt.QtCore import QTimer

    from sgcad_qgis.deps.runner import InstallRunner

    failing = "import sys; print('ERROR: No matching distribution found for torch==9.9'); sys.exit(1)"
    result = run_to_end(InstallRunner(fake_plan(tmp_path, failing, "print('never')")))
    assert result["ok"] is False
    assert result["text"] == "step 0 failed (exit code 1): ERROR: No matching distribution found for torch==9.9"

    runner = InstallRunner(fake_plan(tmp_path, "import time; print('Collecting x', flush=True); time.sleep(60)"))
    QTimer.singleShot(1500, runner.cancel)
    result = run_to_end(runner, timeout_ms=20000)
    assert result == {"ok": False, "text": "Installation canceled; nothing was changed."}
    assert not runner.running()


def test_job_progress_never_goes_back_over_stages_and_chained_algorithms():
    from sgcad_qgis.gui.tasks import JobProgress

    job = JobProgress()
    job.begin(JobProgress.FINETUNE_THEN_SEGMENT)
    seen = []
    for line, values in (("Patches around the polygons…", (0, 50, 100)), ("Fine-tuning…", (0, 10, 50, 100)),
                         ("Segmentation…", (0, 40, 100))):
        job.stage_started(line)
        job.stage_started("torch threads: 2")  # other lines change nothing
        seen += [job.update(v) for v in values]
    assert seen == sorted(seen) and seen[-1] == 100
    assert seen[2] == 5 and seen[6] == 85  # stage shares: 5 %, 80 %, 15 %
    job.update(100)  # a late 100 of the training stage cannot pass the re-segmentation's share
    assert job.value == 100
