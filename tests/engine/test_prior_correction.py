"""Class-prior correction of the student's head: the folded offsets move every logit exactly,
tilt uncertain pixels towards the common class, come out again for training, and bad priors or
heads are refused."""

import numpy as np
import pytest
import torch

from engine.config import StudentConfig
from engine.models import build_model
from engine.models.prior import fold_logit_adjustment, label_prior, logit_adjustment, remove_prior_correction


def _student(**overrides):
    torch.manual_seed(0)
    cfg = StudentConfig(widths=(8, 8, 16, 16), decoder_channels=8, attention_dim=8, claire_heads=2, **overrides)
    return build_model(cfg).eval()


def test_prior_from_label_counts_ignores_nodata_and_refuses_missing_classes():
    counts = [np.array([6, 2, 0, 1]), np.array([2, 0, 2, 1, 0, 9])]  # values 4, 5: not classes of 4
    assert label_prior(counts, 4) == pytest.approx([8 / 14, 2 / 14, 2 / 14, 2 / 14])
    with pytest.raises(ValueError, match=r"classes \[2\] never occur"):
        label_prior([np.array([5, 1, 0, 3])], 4)
    with pytest.raises(ValueError, match="no pixel"):
        label_prior([np.zeros(3)], 3)


def test_offsets_are_tau_log_prior_centred():
    prior = np.array([0.6, 0.1, 0.3])
    offsets = logit_adjustment(prior, 0.5)
    assert offsets.sum() == pytest.approx(0.0)
    assert offsets[0] - offsets[1] == pytest.approx(0.5 * np.log(6))
    assert np.allclose(logit_adjustment(prior, 0.0), 0.0)  # tau 0: the balanced decision
    with pytest.raises(ValueError, match="positive"):
        logit_adjustment([0.5, 0.0, 0.5], 0.5)
    with pytest.raises(ValueError, match="tau"):
        logit_adjustment(prior, -1.0)


def test_folded_offsets_shift_the_logits_exactly_and_favour_the_common_class():
    student = _student()
    optical, sar = torch.rand(2, 3, 40, 40), torch.rand(2, 1, 40, 40)
    prior = np.array([0.65, 0.04, 0.02, 0.10, 0.15, 0.04])
    offsets = logit_adjustment(prior, 0.5)
    with torch.no_grad():
        before = student(optical, sar)
        fold_logit_adjustment(student, offsets)
        after = student(optical, sar)
    shift = torch.as_tensor(offsets, dtype=torch.float32).view(1, -1, 1, 1)
    assert torch.allclose(after, before + shift, atol=1e-5)  # through upsampling and cropping
    share_before = (before.argmax(1) == 0).float().mean()
    assert (after.argmax(1) == 0).float().mean() >= share_before


def test_fold_refuses_a_head_it_cannot_shift():
    with pytest.raises(ValueError, match="refine_up"):
        fold_logit_adjustment(_student(refine_up=True), np.zeros(6))
    with pytest.raises(ValueError, match="3 offsets for a head of 6 classes"):
        fold_logit_adjustment(_student(), np.zeros(3))


def test_removing_a_recorded_correction_restores_the_balanced_head():
    student = _student()
    bias = student.head.bias.detach().clone()
    offsets = logit_adjustment([0.65, 0.04, 0.02, 0.10, 0.15, 0.04], 0.5)
    fold_logit_adjustment(student, offsets)
    record = {"prior_correction": {"tau": 0.5, "offsets": offsets.tolist()}}
    assert np.allclose(remove_prior_correction(student, record), offsets)
    assert torch.allclose(student.head.bias, bias, atol=1e-6)
    assert remove_prior_correction(student, {"stage": "student"}) is None  # nothing recorded, nothing done
    assert torch.allclose(student.head.bias, bias, atol=1e-6)


def test_fine_tuning_takes_the_correction_out_and_the_result_records_none(tmp_path):
    """The correction suits zero-shot maps; fine-tuned on a user's polygons, the balanced losses
    decide (kept in, it cost up to 25 points of mIoU on Rotterdam). Learning rate 0: the output
    head is exactly the bundled one minus the recorded offsets."""
    from safetensors.torch import load_file
    from test_finetune import MODELS, ROTTERDAM

    from engine.config import FinetuneConfig
    from engine.models.checkpoint import read_metadata
    from engine.models.prior import recorded_offsets
    from engine.train.finetune import finetune_from_polygons

    bundled = MODELS / "sgcad_student.safetensors"
    offsets = recorded_offsets(read_metadata(bundled).train)
    assert offsets is not None and offsets[0] > 0  # farmland, the common class, is favoured
    # a learning rate too small to move a weight (0 is refused: a run at 0 would report the start as a result)
    cfg = FinetuneConfig(steps=2, eval_every=1, lr=1e-30, crop_size=64, batch_size=2, update_teacher=False)
    result = finetune_from_polygons(ROTTERDAM / "rgb_unmasked.tif", ROTTERDAM / "sar_masked.tif",
                                    ROTTERDAM / "labels_digitised.gpkg", "class", bundled, tmp_path / "ft", cfg=cfg)
    tuned = result["model"]
    assert "prior_correction" not in read_metadata(tuned).train
    before = load_file(str(bundled))["head.bias"].float()
    after = load_file(str(tuned))["head.bias"].float()
    assert torch.allclose(after, before - torch.as_tensor(offsets, dtype=torch.float32), atol=1e-5)


def test_training_from_a_corrected_student_starts_from_its_balanced_head(tmp_path):
    """``train-student --init`` with the bundled student: the trained file must not hold offsets
    that its metadata no longer records (learning rate 0: the head is the bundled one minus them)."""
    from safetensors.torch import load_file
    from test_finetune import MODELS, ROOT

    from engine.config import TrainConfig
    from engine.models.checkpoint import read_metadata
    from engine.models.prior import recorded_offsets
    from engine.progress import CallbackProgress
    from engine.train.data import TrainingInputs
    from engine.train.stages import train_student

    bundled = MODELS / "sgcad_student.safetensors"
    sample = ROOT / "resources" / "sample" / "synthetic"
    messages = []
    run = train_student(
        TrainingInputs(optical=str(sample / "optical.tif"), sar=str(sample / "sar.tif"),
                       labels=str(sample / "label.tif")),
        tmp_path / "s", StudentConfig(), TrainConfig(epochs=1, batch_size=2, max_batches_per_epoch=1, threads=2,
                                                     lr=0.0), init_from=bundled,
        progress=CallbackProgress(info=messages.append),
    )
    assert "prior_correction" not in (read_metadata(run["model"]).train or {})
    assert any("class-prior correction is taken out" in m for m in messages)
    offsets = torch.as_tensor(recorded_offsets(read_metadata(bundled).train), dtype=torch.float32)
    before, after = load_file(str(bundled))["head.bias"].float(), load_file(run["model"])["head.bias"].float()
    assert torch.allclose(after, before - offsets, atol=1e-5)
