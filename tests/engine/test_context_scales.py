"""The water teacher read at several scales: what each pass sees, exact under folded offsets, and
stored with the model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from engine.config import TeacherConfig
from engine.models import HRNetTeacher
from engine.models.checkpoint import load_model, save_model
from engine.models.hrnet import context_poolings
from engine.water.calibration import fold_water_offset

TINY = TeacherConfig(widths=(4, 8, 16, 32))


def _pair(scales):
    torch.manual_seed(3)
    one = HRNetTeacher(TINY).eval()
    two = HRNetTeacher(dataclasses.replace(TINY, context_scales=scales)).eval()
    two.load_state_dict(one.state_dict())  # the same weights: scales are a way of reading, not weights
    return one, two


def test_two_scales_average_the_full_pass_and_the_pass_over_the_2x2_mean():
    one, two = _pair((1.0, 0.5))
    x = torch.rand(1, 1, 45, 67)  # odd: the 2 x 2 mean needs a replicated row and column
    with torch.no_grad():
        fused = two(x)
        full = one(x)
        padded = F.pad(x, (0, 1, 0, 1), mode="replicate")
        coarse = F.interpolate(one(F.avg_pool2d(padded, 2)), size=(46, 68), mode="bilinear",
                               align_corners=False)[..., :45, :67]
    assert fused.shape == (1, 2, 45, 67)
    assert torch.allclose(fused, (full + coarse) / 2, atol=1e-5)
    assert not torch.allclose(fused, full, atol=1e-3)  # the coarse pass is not a no-op


def test_an_offset_folded_into_the_head_moves_the_fused_decision_exactly():
    _, two = _pair((1.0, 0.5, 0.25))
    x = torch.rand(2, 1, 64, 96)
    with torch.no_grad():
        before = two(x)
        offset = fold_water_offset(two, 0.3)
        after = two(x)
    shift = (after[:, 1] - after[:, 0]) - (before[:, 1] - before[:, 0])
    assert torch.allclose(shift, torch.full_like(shift, offset), atol=1e-4)


@pytest.mark.parametrize("scales", [(1.0, 0.4), (0.0,), (1.0, 1.0), ()])
def test_scales_that_are_not_distinct_whole_fractions_are_refused(scales):
    with pytest.raises(ValueError, match="context_scales"):
        HRNetTeacher(dataclasses.replace(TINY, context_scales=scales))
    assert context_poolings((1.0, 0.5, 0.25)) == (1, 2, 4)


def test_scales_travel_with_the_model_file_and_old_files_read_at_one_scale(tmp_path):
    _, two = _pair((1.0, 0.5))
    from engine.config import ModelMetadata, to_dict

    meta = ModelMetadata(kind="teacher", model=to_dict(two.config))
    save_model(tmp_path / "two.safetensors", two, meta)
    loaded, loaded_meta = load_model(tmp_path / "two.safetensors", "teacher")
    assert loaded.poolings == (1, 2) and tuple(loaded_meta.model["context_scales"]) == (1.0, 0.5)
    x = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), two(x), atol=1e-6)
    old = dict(meta.model)
    old.pop("context_scales")  # a file written before the field existed
    save_model(tmp_path / "old.safetensors", two, dataclasses.replace(meta, model=old))
    assert load_model(tmp_path / "old.safetensors", "teacher")[0].poolings == (1,)
