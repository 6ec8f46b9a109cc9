"""docs/processing.md documents every algorithm's parameters and outputs exactly as the code has them."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "processing.md"


def test_the_processing_page_matches_the_algorithms(sgcad_provider):
    from sgcad_qgis.algorithms._docs import refresh

    text = PAGE.read_text()
    expected = refresh(text, sgcad_provider.algorithms())
    assert text == expected, "regenerate it: .venv/bin/python scripts/processing_docs.py"
    for alg in sgcad_provider.algorithms():
        assert f"### `sgcad:{alg.name()}`" in text
