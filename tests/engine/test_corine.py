"""CORINE -> six-class mapping (engine.data.corine) on its own and on the real BigEarthNet metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import ClassSchema
from engine.data.corine import (
    BIGEARTHNET19_TO_CLASSES,
    CORINE_TO_CLASSES,
    SIX_CLASSES,
    admissible_classes,
    classes_for_label,
    patch_admissible_classes,
)

BIGEARTHNET = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "bigearthnet"


def test_mapping_covers_clc_level3_with_schema_class_names():
    assert len(CORINE_TO_CLASSES) == 44  # the complete CLC level-3 nomenclature
    assert set(SIX_CLASSES) == set(ClassSchema().names)
    for table in (CORINE_TO_CLASSES, BIGEARTHNET19_TO_CLASSES):
        for name, classes in table.items():
            assert classes <= set(SIX_CLASSES), name
    assert classes_for_label("Sea and ocean") == {"water"}
    assert classes_for_label("Port areas") == {"city", "water", "road"}


def test_spelling_variants_union_and_unconstrained_patches():
    assert classes_for_label("Natural grassland") == classes_for_label("Natural grasslands") == {"farmland"}
    assert classes_for_label("transitional woodland/shrub") == {"farmland", "forest"}
    assert classes_for_label("Peatbogs") == {"farmland", "water"}
    assert admissible_classes(["Pastures", "Water bodies"]) == {"farmland", "water"}
    assert admissible_classes(["Pastures", "Beaches, dunes, sands"]) == set(SIX_CLASSES)
    assert admissible_classes([]) == set(SIX_CLASSES)
    with pytest.raises(ValueError, match="unknown CORINE label"):
        classes_for_label("Parking lots")


def test_metadata_file_errors(tmp_path):
    bad = tmp_path / "x_labels_metadata.json"
    bad.write_text(json.dumps({"labels": "Pastures"}))
    with pytest.raises(ValueError, match="labels"):
        patch_admissible_classes(bad)


@pytest.mark.skipif(not BIGEARTHNET.is_dir(), reason=f"shared sample data not found at {BIGEARTHNET}")
def test_real_bigearthnet_patches():
    found = {}
    for path in BIGEARTHNET.glob("BigEarthNet-S*-Example/*/*_labels_metadata.json"):
        patch = "_".join(path.name.split("_")[-4:-2])  # ..._87_48_labels_metadata.json -> 87_48
        assert found.setdefault(patch, patch_admissible_classes(path)) == patch_admissible_classes(path)
    # 87_48: arable + agriculture with natural vegetation; 36_85: arable + pastures; 4_55: pastures
    assert found == {"87_48": {"farmland", "forest"}, "36_85": {"farmland"}, "4_55": {"farmland"}}
