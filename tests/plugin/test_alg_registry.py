"""Every algorithm of the issue is registered, grouped and documented; none needs torch to load."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from qgis.core import QgsProcessingOutputHtml, QgsProcessingParameterDefinition

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = {
    "segment": "segmentation",
    "trainteacher": "training",
    "trainstudent": "training",
    "distill": "training",
    "finetune": "training",
    "adaptwater": "training",
    "evaluate": "evaluation",
    "preprocesssar": "preparation",
    "normalizeoptical": "preparation",
    "stackbands": "preparation",
    "alignpair": "preparation",
    "rasterizelabels": "preparation",
    "exportpatches": "preparation",
    "synthscene": "preparation",
    "vectorize": "segmentation",
    "floodmap": "segmentation",
    "watermap": "segmentation",
    "explain": "evaluation",
}


def test_all_algorithms_are_listed_in_their_groups(sgcad_provider):
    algs = {a.name(): a for a in sgcad_provider.algorithms()}
    assert set(EXPECTED) <= set(algs), sorted(set(EXPECTED) - set(algs))
    for name, group in EXPECTED.items():
        alg = algs[name]
        assert alg.groupId() == group, name
        assert len(alg.shortHelpString()) > 150, name  # says what it does, not just its name
        params = alg.parameterDefinitions()
        assert any(
            p.name() == "OVERWRITE" and p.flags() & QgsProcessingParameterDefinition.FlagAdvanced for p in params
        ), f"{name}: no advanced OVERWRITE switch"
    assert isinstance(algs["evaluate"].outputDefinition("OUTPUT_HTML"), QgsProcessingOutputHtml)
    assert isinstance(algs["trainstudent"].outputDefinition("REPORT"), QgsProcessingOutputHtml)
    for name in ("segment", "trainteacher", "trainstudent", "distill", "finetune"):
        device = algs[name].parameterDefinition("DEVICE")
        assert device.options()[:2] == ["Automatic (GPU if available, else CPU)", "CPU"], name


def test_provider_loads_without_torch_and_says_what_is_missing(tmp_path):
    """With torch unimportable the algorithms still load; canExecute names the missing module."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        sys.path.insert(0, {str(ROOT / "build" / "plugins")!r})
        from qgis.core import QgsApplication
        app = QgsApplication([], False)
        app.initQgis()
        from sgcad_qgis.provider import SgcadProvider
        provider = SgcadProvider()
        QgsApplication.processingRegistry().addProvider(provider)
        algs = {{a.name(): a for a in provider.algorithms()}}
        ok, message = algs["segment"].canExecute()
        env_ok, _ = algs["checkenvironment"].canExecute()
        print("RESULT", len(algs), ok, env_ok, message)
        import os; os._exit(0)
        """
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT")), "")
    assert line, done.stdout[-2000:] + done.stderr[-2000:]
    _, count, ok, env_ok, message = line.split(" ", 4)
    assert int(count) >= len(EXPECTED) + 1 and ok == "False" and env_ok == "True"
    # what is missing, and where to install it from (the dock's one-click install), no broken command
    assert "torch (missing)" in message and "Install" in message and "pip install" not in message
