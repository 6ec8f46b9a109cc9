"""The water expert's real training data (scripts/train_teacher_real.py) never touches scored pixels."""

from __future__ import annotations

import json

import numpy as np
import rasterio
import train_teacher_real as ttr
from eval_finetune_real import scenes, water_labels


def test_training_labels_stay_off_every_evaluation_pixel(shared_data):
    for name, scene in scenes().items():
        label = ttr.training_label(scene)
        labelled = label != 255
        assert labelled.sum() > 1000, name
        assert (label[labelled] == ttr.SCHEMA_WATER).any() and (label[labelled] != ttr.SCHEMA_WATER).any(), name
        if "truth" in scene:  # Sen1Floods11: the left part only, the guard band and the scored half untouched
            assert not labelled[:, ttr.GUARD_FROM:].any(), name
            truth = water_labels(scene, chip_half="left")
            assert np.array_equal(label[labelled] == ttr.SCHEMA_WATER, truth[labelled] == 1), name
        else:  # polygons: never an evaluation polygon's pixel
            assert not (labelled & (water_labels(scene, "eval") != 255)).any(), name


def test_a_real_patch_set_lists_labelled_windows_inside_the_scene(shared_data, tmp_path):
    scene = scenes()["rhone"]
    folder = ttr.real_patch_set("rhone", scene, tmp_path / "rhone", count=8, repeat=3)
    manifest = json.loads((folder / "manifest.json").read_text())
    with rasterio.open(folder / "label.tif") as src:
        label, (w, h) = src.read(1), (src.width, src.height)
    windows = {tuple(p["window"]) for p in manifest["patches"]}
    assert len(manifest["patches"]) == 3 * len(windows) and 1 <= len(windows) <= 8
    for c, r, pw, ph in windows:
        assert 0 <= c <= w - pw and 0 <= r <= h - ph
        assert (label[r:r + ph, c:c + pw] != 255).any()
    assert all(p["split"] == "train" for p in manifest["patches"])
