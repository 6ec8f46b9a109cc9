"""The training loop: learning, determinism, cancel + exact resume, early stopping, stage 2 wiring.

The loop is driven with small in-memory patch sets (the end-to-end path through real
GeoTIFFs is covered in ``test_train_commands.py``) and tiny networks, so each test takes
a few seconds on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from engine.config import (
    ClassSchema,
    DistillConfig,
    LossConfig,
    ModelMetadata,
    StudentConfig,
    TeacherConfig,
    TrainConfig,
    to_dict,
)
from engine.losses import gated_distillation
from engine.models import build_model
from engine.progress import CallbackProgress, Canceled
from engine.train.loop import Trainer
from engine.train.tasks import DistillTask, StudentTask, TeacherTask
from engine.train.termination import TrainingTerminated

SCHEMA = ClassSchema()
STUDENT = StudentConfig(
    widths=(8, 8, 16, 16), blocks_per_stage=(1, 1, 1, 1), decoder_channels=8, attention_dim=8, pool_size=4
)
TEACHER = TeacherConfig(widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1), modules_per_stage=(1, 1, 1, 1))


class Patches(Dataset):
    """Blocky label maps; optical colour separates the land classes, SAR separates water.

    Water and the "city" class share one optical colour (the optical confuser), so the optical
    image alone cannot tell them apart, while water is dark on SAR.
    """

    def __init__(self, n: int, seed: int, size: int = 32) -> None:
        g = torch.Generator().manual_seed(seed)
        coarse = torch.randint(0, 6, (n, size // 8, size // 8), generator=g)
        self.label = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)
        self.label[:, :2, :] = 255  # an unlabelled strip
        colours = torch.rand(6, 3, generator=torch.Generator().manual_seed(0))  # shared by all splits
        colours[3] = colours[1]
        lab = self.label.clamp(max=5)
        self.optical = colours[lab].permute(0, 3, 1, 2) + 0.15 * torch.randn(n, 3, size, size, generator=g)
        dark = (lab == 3).float()
        self.sar = (0.7 - 0.6 * dark + 0.1 * torch.randn(n, size, size, generator=g)).unsqueeze(1)

    def __len__(self) -> int:
        return self.label.shape[0]

    def __getitem__(self, i):
        return {"optical": self.optical[i], "sar": self.sar[i], "label": self.label[i]}


def _data(n_train=16):
    return {"train": Patches(n_train, 1), "val": Patches(6, 2), "test": Patches(6, 3)}


def _cfg(**kw):
    base = dict(epochs=3, batch_size=4, lr=2e-2, threads=1, early_stopping_patience=0, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _stage1(out, cfg, progress=None, data=None):
    torch.manual_seed(0)
    model = build_model(STUDENT)
    meta = ModelMetadata(kind="student", model=to_dict(STUDENT), schema=SCHEMA)
    task = StudentTask(SCHEMA, LossConfig(), None)
    return Trainer(task, model, meta, data or _data(), cfg, out, cfg.lr, progress)


def _state_weights(path):
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def test_stage1_learns_and_writes_logs_plots_report(tmp_path):
    result = _stage1(tmp_path, _cfg(epochs=6, batch_size=8), data=_data(64)).fit()
    history = json.loads((tmp_path / "history.json").read_text())["epochs"]
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5, 6]
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5
    # six classes: a constant prediction scores at most 1/6 OA and about 0.03 mIoU
    assert result["validation"]["miou"] > max(0.25, history[0]["val_miou"] + 0.15)
    csv_head = (tmp_path / "history.csv").read_text().splitlines()[0].split(",")
    for column in (
        "train_loss",
        "train_ce",
        "train_dice",
        "train_lovasz",
        "val_oa",
        "val_kappa",
        "val_miou",
        "val_water_iou",
        "val_iou_water",
        "val_iou_road",
        "lr",
    ):
        assert column in csv_head
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "Test metrics" in html
    assert (tmp_path / "plots" / "confusion_test.png").stat().st_size > 1000
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_epoch"] == max(history, key=lambda r: r["val_miou"])["epoch"]
    assert set(metrics["test"]) >= {"oa", "kappa", "miou", "iou", "precision", "recall", "f1", "matrix"}
    sidecar = json.loads((tmp_path / "best.safetensors.json").read_text())
    assert sidecar["metrics"]["test"]["miou"] == metrics["test"]["miou"]
    assert sidecar["train"]["stage"] == "stage1" and sidecar["train"]["config"]["epochs"] == 6
    with pytest.raises(ValueError, match="already holds a run"):
        _stage1(tmp_path, _cfg()).fit()


def test_same_seed_gives_the_same_numbers(tmp_path):
    a = _stage1(tmp_path / "a", _cfg(epochs=2)).fit()
    b = _stage1(tmp_path / "b", _cfg(epochs=2)).fit()
    assert a["test"] == b["test"]
    wa, wb = (
        _state_weights(tmp_path / "a" / "state.safetensors"),
        _state_weights(tmp_path / "b" / "state.safetensors"),
    )
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cancel_mid_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    cfg = _cfg(epochs=3)
    full = _stage1(tmp_path / "full", cfg).fit()

    calls = {"n": 0}

    def cancel_after_six_batches():
        calls["n"] += 1
        return calls["n"] > 6 + 2  # 4 train + 2 val batches per epoch: stops inside epoch 2

    run = tmp_path / "cut"
    with pytest.raises(Canceled):
        _stage1(run, cfg, CallbackProgress(is_canceled=cancel_after_six_batches)).fit()
    # the last good checkpoint is intact and loadable; no temporary file is left behind
    assert json.loads((run / "history.json").read_text())["epochs"][-1]["epoch"] == 1
    assert (run / "best.safetensors").is_file()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]

    resumed = _stage1(run, cfg).fit(resume=True)  # a fresh process would build the same objects
    assert resumed["test"] == full["test"]
    wf, wr = (
        _state_weights(tmp_path / "full" / "state.safetensors"),
        _state_weights(run / "state.safetensors"),
    )
    assert all(torch.equal(wf[k], wr[k]) for k in wf)

    def numbers(folder):  # the history without wall-clock times
        return [
            {k: v for k, v in r.items() if k != "seconds"}
            for r in json.loads((folder / "history.json").read_text())["epochs"]
        ]

    assert numbers(run) == numbers(tmp_path / "full")


def test_sigterm_saves_the_last_epoch_although_state_is_written_sparsely(tmp_path):
    """torchrun and batch schedulers stop a run with SIGTERM: the in-memory state of epoch 1 is
    written (state_every=5 would not have written it) and the run resumes exactly."""
    cfg = _cfg(epochs=3, state_every=5)
    full = _stage1(tmp_path / "full", cfg).fit()
    calls = {"n": 0}

    def sigterm_in_epoch_two():
        calls["n"] += 1
        if calls["n"] == 6 + 2:  # 4 train + 2 val batches per epoch
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    before = signal.getsignal(signal.SIGTERM)
    run = tmp_path / "cut"
    with pytest.raises(TrainingTerminated) as stopped:
        _stage1(run, cfg, CallbackProgress(is_canceled=sigterm_in_epoch_two)).fit()
    assert stopped.value.code == 143 and signal.getsignal(signal.SIGTERM) is before
    resumed = _stage1(run, cfg).fit(resume=True)
    assert resumed["test"] == full["test"]
    assert [r["epoch"] for r in json.loads((run / "history.json").read_text())["epochs"]] == [1, 2, 3]


def test_early_stopping_counts_epochs_without_kappa_or_score_gain(tmp_path):
    result = _stage1(tmp_path, _cfg(epochs=6, lr=0.0, early_stopping_patience=2)).fit()
    # nothing changes with lr 0: epoch 1 sets the bests, epochs 2 and 3 bring no gain
    assert result["stopped_early"] and result["epochs_run"] == 3 and result["best_epoch"] == 1


def _teacher():
    torch.manual_seed(0)
    return build_model(TEACHER).eval()


def test_teacher_stage_trains_on_binary_water(tmp_path):
    model = build_model(TEACHER)
    task = TeacherTask(SCHEMA, LossConfig(), torch.tensor([0.6, 2.5]))
    meta = ModelMetadata(kind="teacher", model=to_dict(TEACHER), schema=SCHEMA)
    result = Trainer(task, model, meta, _data(64), _cfg(epochs=5, batch_size=8), tmp_path, 2e-2).fit()
    assert len(result["test"]["iou"]) == 2 and result["test"]["water_iou"] > 0.5
    history = json.loads((tmp_path / "history.json").read_text())
    assert history["classes"] == ["non-water", "water"]
    assert "train_edge" in history["epochs"][0]


def test_stage2_loss_is_seg_plus_lambda_kd_after_warmup_only():
    teacher = _teacher()
    calls = {"n": 0}
    teacher.register_forward_hook(lambda *a: calls.__setitem__("n", calls["n"] + 1))
    cfg = DistillConfig(lambda_kd=0.25, warmup_epochs=2, water_threshold=0.5, non_water_threshold=0.5)
    task = DistillTask(SCHEMA, LossConfig(), None, teacher, cfg)
    torch.manual_seed(0)
    student = build_model(STUDENT)
    batch = next(iter(torch.utils.data.DataLoader(Patches(4, 5), batch_size=4)))

    warm, logs = task.loss(student, batch, epoch=1)
    seg = task.criterion(student(batch["optical"], batch["sar"]), batch["label"])
    assert calls["n"] == 0 and logs["kd_active"] == 0.0 and "kd_ratio" not in logs
    assert torch.allclose(warm, seg)

    total, logs = task.loss(student, batch, epoch=2)
    assert calls["n"] == 1 and logs["kd_active"] == 1.0
    logits = student(batch["optical"], batch["sar"])
    p_t = torch.softmax(teacher(batch["sar"]), 1)[:, 1]
    kd = gated_distillation(logits, p_t, batch["label"], SCHEMA.water_class, cfg)
    assert torch.allclose(total, task.criterion(logits, batch["label"]) + 0.25 * kd.loss)
    # KD-region ratio: gated pixels over all pixels of the batch, split water / non-water
    pixels = batch["label"].numel()
    assert logs["kd_ratio"] == pytest.approx((kd.n_water + kd.n_non_water) / pixels)
    assert logs["kd_ratio"] == pytest.approx(logs["kd_ratio_water"] + logs["kd_ratio_non_water"])
    assert 0 < logs["kd_ratio"] < 1
    # dense: every labelled pixel is distilled
    dense = DistillTask(SCHEMA, LossConfig(), None, teacher, DistillConfig(gated=False, warmup_epochs=0))
    _, dense_logs = dense.loss(student, batch, epoch=0)
    assert dense_logs["kd_ratio"] == pytest.approx(float((batch["label"] != 255).float().mean()))


def test_stage2_run_logs_kd_ratio_after_warmup_and_fusion_evaluation(tmp_path):
    torch.manual_seed(0)
    student = build_model(STUDENT)
    cfg = DistillConfig(warmup_epochs=1, water_threshold=0.5, non_water_threshold=0.5)
    task = DistillTask(SCHEMA, LossConfig(), None, _teacher(), cfg)
    meta = ModelMetadata(kind="student", model=to_dict(STUDENT), schema=SCHEMA)
    result = Trainer(task, student, meta, _data(8), _cfg(epochs=2), tmp_path, 3e-4).fit()
    epochs = json.loads((tmp_path / "history.json").read_text())["epochs"]
    assert "train_kd_ratio" not in epochs[0] and epochs[0]["train_kd_active"] == 0.0
    assert 0 < epochs[1]["train_kd_ratio"] <= 1 and epochs[1]["train_kd_active"] == 1.0
    assert result["best_epoch"] == 2  # the model returned by stage 2 is a distilled one
    fusion = result["test"]["fusion"]
    assert 0 <= fusion["water_agreement"] <= 1 and fusion["pixels"] == 6 * 30 * 32
    assert (tmp_path / "plots" / "kd_ratio.png").is_file()
    assert "Fusion evaluation" in (tmp_path / "report.html").read_text()
    assert (
        json.loads((tmp_path / "best.safetensors.json").read_text())["train"]["distill"]["warmup_epochs"] == 1
    )


def test_device_choice():
    from engine.train.loop import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_state_is_written_every_n_epochs_at_the_end_and_on_cancel(tmp_path, monkeypatch):
    from engine.train.state import TrainingSnapshot

    written = []
    write = TrainingSnapshot.write
    monkeypatch.setattr(TrainingSnapshot, "write", lambda self, path: written.append(self.epoch) or write(self, path))
    _stage1(tmp_path / "a", _cfg(epochs=3, state_every=2)).fit()
    assert written == [2, 3]  # every second epoch and the last, not every epoch
    written.clear()
    calls = {"n": 0}

    def cancel_in_epoch_two():
        calls["n"] += 1
        return calls["n"] > 6 + 2  # 4 train + 2 val batches per epoch

    cfg = _cfg(epochs=3, state_every=4)
    with pytest.raises(Canceled):
        _stage1(tmp_path / "b", cfg, CallbackProgress(is_canceled=cancel_in_epoch_two)).fit()
    assert written == [1]  # the cancel wrote the last completed epoch, which was not due yet
    _stage1(tmp_path / "b", cfg).fit(resume=True)
    assert [r["epoch"] for r in json.loads((tmp_path / "b" / "history.json").read_text())["epochs"]] == [1, 2, 3]
    assert written == [1, 3]
