"""Decision calibration of the water teacher: the folded offset moves the cut exactly, and the
threshold choice and its leave-one-scene-out check follow the IoU table."""

import json
from pathlib import Path

import calibrate_teacher
import numpy as np
import pytest
import torch

from engine.config import TeacherConfig
from engine.models import build_model
from engine.models.checkpoint import load_model, read_metadata
from engine.water.calibration import best_threshold, fold_water_offset, leave_one_out, water_iou


def test_folded_offset_moves_the_decision_exactly():
    torch.manual_seed(0)
    teacher = build_model(TeacherConfig(widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1),
                                        modules_per_stage=(1, 1, 1, 1))).eval()
    sar = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        before = torch.softmax(teacher(sar), 1)[:, 1]
        offset = fold_water_offset(teacher, 0.3)
        after = torch.softmax(teacher(sar), 1)[:, 1]
    assert offset == pytest.approx(np.log(0.7 / 0.3))
    logit = torch.logit(before.double()) + offset
    assert torch.allclose(torch.sigmoid(logit), after.double(), atol=1e-5)
    assert torch.equal(after > 0.5, before > 0.3) or (before - 0.3).abs().min() < 1e-5


def test_fold_rejects_a_network_without_a_two_class_head():
    with pytest.raises(ValueError, match="2-class"):
        fold_water_offset(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1)), 0.3)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        fold_water_offset(build_model(TeacherConfig(widths=(4, 8, 8, 8))), 1.0)


def test_threshold_choice_and_leave_one_out():
    truth = np.array([[1, 1, 0, 255]])
    prob = np.array([[0.4, 0.2, 0.1, 0.9]])
    assert water_iou(prob, truth, 0.3) == pytest.approx(0.5)  # the unscored pixel is ignored
    assert water_iou(prob, truth, 0.15) == pytest.approx(1.0)
    thresholds = (0.3, 0.4, 0.5)
    table = {"a": [0.9, 0.8, 0.7], "b": [0.9, 0.8, 0.6], "c": [0.2, 0.9, 0.5]}
    assert best_threshold(table, thresholds) == 0.4  # mean IoU 0.67, 0.83, 0.60
    loo = leave_one_out(table, thresholds)
    assert loo["c"] == {"threshold": 0.3, "iou": 0.2}  # a and b alone prefer 0.3: c pays for it
    assert loo["a"] == {"threshold": 0.4, "iou": 0.8}
    assert best_threshold({"a": [0.5, 0.5, 0.5]}, thresholds) == 0.5  # a tie keeps the plain cut


def test_the_cut_is_chosen_on_calibrated_sar_only(monkeypatch, tmp_path):
    """Rotterdam (SAR levels not sigma0) is reported but cannot pull the cut: here its water only
    rises above 0.10, which the four calibrated scenes would accept at no cost."""
    def fake_teacher(_teacher, sar, _optical):
        scene = next(s for s in calibrate_teacher.scenes().values() if s["sar"] == sar)
        truth = calibrate_teacher.water_labels(scene, "train", "left")
        water_p = 0.12 if "rotterdam" in str(sar) else 0.55
        return np.where(truth == 1, water_p, 0.05)

    monkeypatch.setattr(calibrate_teacher, "teacher_water", fake_teacher)
    teacher = Path(__file__).resolve().parents[2] / "resources" / "models" / "sgcad_teacher.safetensors"
    record_file = tmp_path / "cal.json"
    assert calibrate_teacher.main(["--teacher", str(teacher), "--out", str(tmp_path / "cal"),
                                   "--json", str(record_file)]) == 0
    record = json.loads(record_file.read_text())
    assert record["iou"]["rotterdam"][0] == pytest.approx(1.0) and record["iou"]["rotterdam"][-3] == 0.0
    # all five scenes would choose 0.10 (mean 1.0); the calibrated four tie everywhere and keep 0.5
    assert record["calibration"]["threshold"] == 0.5 and record["calibration"]["reported_only"] == ["rotterdam"]
    assert "rotterdam" not in record["calibration"]["scenes"] and (tmp_path / "cal" / "best.safetensors").is_file()


def test_a_teacher_read_at_new_scales_is_calibrated_as_it_will_be_read(monkeypatch, tmp_path):
    """``--context-scales``: every probability scored comes from the model read at those scales, the
    result keeps them, and the offset already in the head keeps its record."""
    read = []

    def fake_teacher(teacher, sar, _optical):
        read.append(tuple(read_metadata(teacher).model["context_scales"]))
        scene = next(s for s in calibrate_teacher.scenes().values() if s["sar"] == sar)
        return np.where(calibrate_teacher.water_labels(scene, "train", "left") == 1, 0.45, 0.05)

    monkeypatch.setattr(calibrate_teacher, "teacher_water", fake_teacher)
    teacher = Path(__file__).resolve().parents[2] / "resources" / "models" / "sgcad_teacher.safetensors"
    assert calibrate_teacher.main(["--teacher", str(teacher), "--out", str(tmp_path / "cal"),
                                   "--context-scales", "1,0.25"]) == 0
    assert read and set(read) == {(1.0, 0.25)}
    meta = read_metadata(tmp_path / "cal" / "best.safetensors")
    assert meta.model["context_scales"] == [1.0, 0.25]
    cal = meta.train["calibration"]
    assert cal["threshold"] == 0.4  # the highest cut under 0.45 that keeps every water pixel
    assert cal["earlier"] == read_metadata(teacher).train["calibration"]
    assert load_model(tmp_path / "cal" / "best.safetensors", "teacher")[0].poolings == (1, 4)
