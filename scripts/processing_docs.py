"""Rewrite the generated parts of docs/processing.md from the algorithms (parameters, outputs, help).

    .venv/bin/python scripts/processing_docs.py

Hand-written prose and examples after each section's tables are kept
(``sgcad_qgis/algorithms/_docs.py``); ``tests/plugin/test_processing_docs.py`` fails when the
page differs from what this writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build_plugin.py"), "dev"], check=True,
                   stdout=subprocess.DEVNULL)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT / "build" / "plugins"))
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from sgcad_qgis.algorithms._docs import refresh
    from sgcad_qgis.provider import SgcadProvider

    provider = SgcadProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    page = ROOT / "docs" / "processing.md"
    page.write_text(refresh(page.read_text(), provider.algorithms()))
    print(f"wrote {page}")
    os._exit(0)  # QGIS's exit would crash with layers still open; nothing is left to flush


if __name__ == "__main__":
    main()
