"""Distributed training and sharded segmentation on 2 CPU processes (gloo, launched by torchrun).

The launches run this file itself as the worker script (``torchrun ... test_distributed.py
MODE ...``), so the workers and the single-process references build identical data and networks.
Each launch costs a few seconds of start-up (two interpreters importing torch); the test file
makes three.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.utils.data import Dataset

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the torchrun workers run this file as a script
    sys.path.insert(0, str(ROOT))

from engine import distributed as dist  # noqa: E402
from engine.config import ClassSchema, LossConfig, ModelMetadata, StudentConfig, TrainConfig, to_dict  # noqa: E402
from engine.models import build_model  # noqa: E402
from engine.train.loop import Trainer  # noqa: E402
from engine.train.tasks import StudentTask  # noqa: E402

SCHEMA = ClassSchema()
STUDENT = StudentConfig(
    widths=(8, 8, 16, 16), blocks_per_stage=(1, 1, 1, 1), decoder_channels=8, attention_dim=8, pool_size=4
)
PER_RANK_BATCH, WORLD = 4, 2


# ------------------------------------------------------------------------ shared by workers and tests
class Patches(Dataset):
    """Blocky six-class label maps with every pixel labelled (the loss is a plain per-pixel mean)."""

    def __init__(self, n: int, seed: int, size: int = 32, dtype=torch.float32) -> None:
        g = torch.Generator().manual_seed(seed)
        coarse = torch.randint(0, 6, (n, size // 8, size // 8), generator=g)
        self.label = coarse.repeat_interleave(8, 1).repeat_interleave(8, 2)
        colours = torch.rand(6, 3, generator=torch.Generator().manual_seed(0))
        self.optical = colours[self.label].permute(0, 3, 1, 2) + 0.15 * torch.randn(n, 3, size, size, generator=g)
        dark = (self.label == 3).float()
        self.sar = (0.7 - 0.6 * dark + 0.1 * torch.randn(n, size, size, generator=g)).unsqueeze(1)
        self.optical, self.sar = self.optical.to(dtype), self.sar.to(dtype)

    def __len__(self) -> int:
        return self.label.shape[0]

    def __getitem__(self, i):
        return {"optical": self.optical[i], "sar": self.sar[i], "label": self.label[i]}


class MeanCETask(StudentTask):
    """Plain cross-entropy averaged over the batch's pixels: the mean of the ranks' means is the
    global batch's mean, so DDP's gradient average is the single-process gradient."""

    def loss(self, model, batch, epoch):
        logits = self.logits(model, batch).float()
        loss = F.cross_entropy(logits, batch["label"])
        return loss, {"ce": float(loss.detach())}


def _data(dtype):
    # 19 patches: global batches of 8, 8 and 3 (the last split 2 + 1 between the ranks)
    return {"train": Patches(19, 1, dtype=dtype), "val": Patches(6, 2, dtype=dtype), "test": Patches(6, 3, dtype=dtype)}


def _trainer(out, batch_size, epochs=2, cls=Trainer, dtype=torch.float32, max_batches=0):
    torch.manual_seed(0)
    model = build_model(STUDENT).to(dtype)
    meta = ModelMetadata(kind="student", model=to_dict(STUDENT), schema=SCHEMA)
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=1e-2, threads=1, early_stopping_patience=0, device="cpu",
        augment=False, max_batches_per_epoch=max_batches,
    )
    return cls(MeanCETask(SCHEMA, LossConfig(), None), model, meta, _data(dtype), cfg, Path(out), cfg.lr)


class _DiesInSecondEpoch(Trainer):
    def _train_epoch(self, epoch, iters):
        if epoch == 1 and self.ranks.rank == 1:
            os._exit(3)  # a rank lost mid-run (no clean-up), as when its node fails
        return super()._train_epoch(epoch, iters)


def _worker(argv):
    mode, out = argv[0], Path(argv[1])
    f64 = dict(dtype=torch.float64)
    if mode == "train":
        _trainer(out / "run", PER_RANK_BATCH, **f64).fit()
        _trainer(out / "step32", PER_RANK_BATCH, epochs=1, max_batches=1).fit()
        _trainer(out / "dying", PER_RANK_BATCH, cls=_DiesInSecondEpoch, **f64).fit()
        raise AssertionError("rank 1 should have died")
    if mode == "resume":  # then the sharded segmentation, to spare a third launch
        result = _trainer(out / "dying", PER_RANK_BATCH, **f64).fit(resume=True)
        if dist.is_main():
            (out / "resumed.json").write_text(json.dumps(result))
        from engine.cli import main

        raise SystemExit(main(argv[2:]))
    raise SystemExit(f"unknown worker mode {mode}")


def torchrun(*args, timeout=240, check=True):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
           "--monitor_interval=0.2", *[str(a) for a in args]]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)  # noqa: S603
    if check and proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def _weights(path):
    return {k[6:]: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


# ------------------------------------------------------------------------ unit tests (one process)
def test_global_batches_follow_the_single_process_order():
    n, per_rank, world = 19, 4, 2
    g = torch.Generator().manual_seed(5)
    reference = torch.randperm(n, generator=g).tolist()
    parts = []
    for rank in range(world):
        sampler = dist.GlobalBatchSampler(n, per_rank, rank, world, True, torch.Generator().manual_seed(5))
        parts.append(list(sampler))
        assert len(sampler) == 3 and sampler.global_sizes == [8, 8, 3]
    merged = [i for b in range(3) for rank in range(world) for i in parts[rank][b]]
    assert merged == reference  # each global batch = the single process's batch of 8
    s0, s1 = (dist.GlobalBatchSampler(n, per_rank, r, world) for r in range(world))
    assert [s0.share(2), s1.share(2)] == [2 / 3, 1 / 3]
    # DDP averages the two ranks' gradients: (4/3 * mean_0 + 2/3 * mean_1) / 2 = the mean over 3
    assert (s0.loss_scale(0), s0.loss_scale(2), s1.loss_scale(2)) == (1.0, 4 / 3, 2 / 3)
    # a remainder smaller than the world is dropped; too few patches is an error that says so
    assert dist.GlobalBatchSampler(17, 4, 0, 2).global_sizes == [8, 8]
    with pytest.raises(ValueError, match="cannot feed 2 processes"):
        dist.GlobalBatchSampler(1, 4, 0, 2)


def test_strided_evaluation_batches_cover_every_batch_once():
    batches = [b for r in range(3) for b in dist.StridedBatchSampler(10, 3, r, 3)]
    assert sorted(map(tuple, batches)) == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]


def test_single_process_helpers_are_no_ops(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not dist.launched() and dist.rank_info() == dist.RankInfo()
    assert dist.init_process_group("cpu") == dist.RankInfo()
    t = torch.arange(3.0)
    assert torch.equal(dist.all_reduce_sum(t), t.double()) and dist.broadcast_json({"a": 1}) == {"a": 1}
    assert dist.gather_with_grad(t) is t
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    assert type(dist.convert_sync_batchnorm(model, torch.device("cpu"))[1]) is torch.nn.BatchNorm2d
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert dist.env_rank_info() == dist.RankInfo(1, 2, 0, 2) and dist.launched()
    assert dist.threads_per_rank(0) == max(1, len(os.sched_getaffinity(0)) // 2)
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR is not set"):
        dist.init_process_group("cpu")


# ------------------------------------------------------------------------ 2 processes
@pytest.fixture(scope="module")
def launched(tmp_path_factory, scene):
    """Launch 1: an uninterrupted 2-rank run (float64, 2 epochs), one float32 step, and a run whose
    rank 1 dies in epoch 2; launch 2 resumes that one, then runs `engine segment-distributed`.
    The single-process references (one process, the global batch of 8) run here."""
    out = tmp_path_factory.mktemp("ddp")
    proc = torchrun(Path(__file__), "train", out, check=False)
    assert proc.returncode != 0, "the dying run should fail the launch"
    assert (out / "run" / "best.safetensors").is_file() and (out / "dying" / "state.safetensors").is_file()
    seg = torchrun(Path(__file__), "resume", out, *_segment_args(scene, out / "seg"))
    single = _trainer(out / "single", PER_RANK_BATCH * WORLD, dtype=torch.float64).fit()
    _trainer(out / "single32", PER_RANK_BATCH * WORLD, epochs=1, max_batches=1).fit()
    return {"out": out, "single": single, "segment_stdout": seg.stdout}


@pytest.fixture(scope="module")
def trained(launched):
    return launched["out"], launched["single"]


def _gradient_rms(path, steps, beta2=0.999):
    """Per weight, the RMS of its gradients over the run (AdamW's bias-corrected second moment)."""
    tensors = load_file(str(path))
    names = [n for n, _ in build_model(STUDENT).named_parameters()]
    return {n: (tensors[f"optim.{i}.exp_avg_sq"] / (1 - beta2**steps)).sqrt() for i, n in enumerate(names)}


def _worst_relative(a, b, keep=None):
    worst = 0.0
    for key, ref in b.items():
        if not ref.is_floating_point():
            assert torch.equal(a[key], ref), key  # BatchNorm batch counters
            continue
        diff = (a[key] - ref).abs()
        if keep is not None and key in keep:
            diff = diff[keep[key]]
        if diff.numel():
            worst = max(worst, float(diff.max()) / max(float(ref.abs().max()), 1e-3))
    return worst


def test_two_processes_train_like_one_with_the_global_batch(trained):
    out, single = trained
    ddp, ref = _weights(out / "run" / "state.safetensors"), _weights(out / "single" / "state.safetensors")
    assert ddp.keys() == ref.keys()
    # float64, 6 AdamW steps (batches of 8, 8 and 3 per epoch, the last split 2 + 1), synchronised
    # BatchNorm: the runs differ only in summation order, measured 1e-8 of each tensor's largest
    # value (BatchNorm statistics 2e-10); per-rank BatchNorm or one sample in another batch
    # gives more than 1e-2
    assert _worst_relative(ddp, ref) < 1e-6
    # float32, one step: equal to 1e-4 except weights whose gradient is float32 noise (RMS
    # < 1e-6: biases before a softmax, dead channels), which AdamW moves by +-lr whatever the
    # noise's size. Those flips then change every later step, which is why the multi-step
    # comparison runs in float64.
    a32, b32 = _weights(out / "step32" / "state.safetensors"), _weights(out / "single32" / "state.safetensors")
    keep = {k: v >= 1e-6 for k, v in _gradient_rms(out / "single32" / "state.safetensors", 1).items()}
    assert _worst_relative(a32, b32, keep) < 1e-4
    h_ddp = json.loads((out / "run" / "history.json").read_text())["epochs"]
    h_ref = json.loads((out / "single" / "history.json").read_text())["epochs"]
    for a, b in zip(h_ddp, h_ref):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)  # reduced over ranks (float32 loss)
        assert a["val_iou"] == b["val_iou"] and a["val_kappa"] == b["val_kappa"]  # confusion matrices summed
    meta = json.loads((out / "run" / "best.safetensors.json").read_text())
    assert meta["train"]["distributed"] == {
        "world_size": 2, "batch_per_rank": 4, "global_batch": 8, "backend": "gloo"
    }
    assert single["best_epoch"] == json.loads((out / "run" / "metrics.json").read_text())["best_epoch"]


def test_resume_after_a_rank_died_reaches_the_uninterrupted_weights(trained):
    out, _ = trained
    resumed = json.loads((out / "resumed.json").read_text())
    assert resumed["epochs_run"] == 2
    a, b = _weights(out / "run" / "state.safetensors"), _weights(out / "dying" / "state.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit


# ------------------------------------------------------------------------ sharded segmentation
K = 6


def _raster(path, data, res=5.0):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype="float32", crs="EPSG:32631", transform=from_origin(500000.0, 5800000.0, res, res), nodata=float("nan"),
    ) as ds:
        ds.write(data.astype("float32"))
    return path


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 360 x 400 optical + SAR pair (a NaN hole in the optical) and tiny untrained checkpoints."""
    from scipy import ndimage

    from engine.config import TeacherConfig
    from engine.models.checkpoint import save_model

    d = tmp_path_factory.mktemp("shard_scene")
    rng = np.random.default_rng(7)

    def field():
        f = ndimage.gaussian_filter(rng.standard_normal((360, 400)), 7.0)
        return (f - f.min()) / (f.max() - f.min())

    a, b = field(), field()
    optical = np.stack([a * 255, b * 255, (a + b) * 127.5])
    optical[:, 150:190, 30:90] = np.nan  # SAR-only answers from the teacher there
    sar = (-25.0 + 25.0 * b)[None]
    student_cfg = StudentConfig(widths=(4, 8, 8, 8), decoder_channels=8, attention_dim=8, pool_size=4)
    teacher_cfg = TeacherConfig(widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1), modules_per_stage=(1, 1, 1, 1))
    torch.manual_seed(3)
    student = save_model(d / "student.safetensors", build_model(student_cfg),
                         ModelMetadata(kind="student", model=to_dict(student_cfg), schema=SCHEMA))
    teacher = save_model(d / "teacher.safetensors", build_model(teacher_cfg),
                         ModelMetadata(kind="teacher", model=to_dict(teacher_cfg), schema=SCHEMA))
    return {"optical": _raster(d / "optical.tif", optical), "sar": _raster(d / "sar.tif", sar),
            "model": student, "teacher": teacher}


def _context_backend():
    """Class and water probabilities from 9x9 means (zero padding at tile edges, like a CNN)."""
    from engine.inference.backends import CallableBackend

    def fn(optical, sar):
        pool = lambda x: F.avg_pool2d(torch.from_numpy(x), 9, 1, 4).numpy()  # noqa: E731
        f, s = pool(optical.mean(1, keepdims=True)), pool(sar)
        logits = -((f - np.linspace(0.1, 0.9, K, dtype=np.float32).reshape(1, K, 1, 1)) ** 2) / 0.005
        probs = np.exp(logits - logits.max(1, keepdims=True))
        water = 1.0 / (1.0 + np.exp(-25.0 * (0.3 - s[:, 0])))
        return (probs / probs.sum(1, keepdims=True)).astype(np.float32), water.astype(np.float32)

    return CallableBackend(fn, K, has_teacher=True)


def _bands(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read()


INFER = dict(tile_size=64, overlap=16, batch_size=3)


def test_block_layout_puts_borders_where_one_tile_row_crosses():
    from engine.inference.shards import auto_block_rows, band_plan, block_bounds, output_block
    from engine.inference.tiling import plan_tiles

    plan = plan_tiles(4000, 3000, 512, 64)
    bounds = block_bounds(plan, 1024, 256)
    assert bounds[0][0] == 0 and bounds[-1][1] == 3000 and all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(y0 % 256 == 0 for y0, _ in bounds)
    for (_, y1) in bounds[:-1]:  # tile rows start every 448 px and overlap by 64: one row crosses
        assert sum(1 for y in {t.y0 for t in plan.tiles} if y < y1 < y + 512) == 1
    assert sum(len(band_plan(plan, *b).tiles) for b in bounds) < 1.5 * len(plan.tiles)
    assert output_block(96) == 32 and auto_block_rows(32768, 512, 2) == 8192
    assert auto_block_rows(2000, 512, 2) == 2048 and auto_block_rows(2048, 512, 2) == 1024  # >= 2 tiles high


def test_shards_give_the_single_run_outputs_and_a_restart_skips_finished_blocks(scene, tmp_path):
    from engine.config import InferenceConfig
    from engine.inference.pipeline import segment_scene
    from engine.inference.shards import segment_sharded

    cfg = InferenceConfig(**INFER)
    single = segment_scene(scene["optical"], scene["sar"], scene["model"], tmp_path / "single", cfg=cfg,
                           backend=_context_backend())
    out = tmp_path / "sharded"
    runs = [
        segment_sharded(scene["optical"], scene["sar"], scene["model"], out, cfg=cfg, backend=_context_backend(),
                        shards=2, shard=k, block_rows=96)
        for k in (0, 1)
    ]
    assert runs[0]["blocks"]["total"] == 4 and runs[0]["blocks"]["this_shard"] == [0, 2]
    assert not runs[0].get("complete") and runs[1]["complete"]  # the last shard assembled
    for key, name in (("classes", "classes"), ("confidence", "confidence"), ("water", "water_probability"),
                      ("gates", "gates")):
        mosaic = _bands(out / f"{name}.vrt")
        np.testing.assert_array_equal(mosaic, _bands(single["outputs"][key]))  # bit for bit, no seam
    assert runs[1]["class_pixels"] == single["class_pixels"]
    assert runs[1]["sar_only_pixels"] == single["sar_only_pixels"] > 0
    import rasterio

    with rasterio.open(out / "classes.vrt") as ds:
        assert ds.colormap(1)[3][:3] == SCHEMA.rgb(3) and "class_names" in ds.tags()
        assert ds.overviews(1)  # the blocks' overviews serve the mosaic
    # a block lost (its record gone, as when a shard dies before writing it) is recomputed alone
    (out / "blocks" / "b0003" / "done.json").unlink()
    (out / "mosaic.json").unlink()
    again = segment_sharded(scene["optical"], scene["sar"], scene["model"], out, cfg=cfg, backend=_context_backend(),
                            shards=2, shard=1, block_rows=96)
    assert again["blocks_computed"] == [3] and again["blocks_skipped"] == [1] and again["complete"]
    np.testing.assert_array_equal(_bands(out / "classes.vrt"), _bands(single["outputs"]["classes"]))
    # finished: a late shard has nothing to do; another job into the folder is refused
    late = segment_sharded(scene["optical"], scene["sar"], scene["model"], out, cfg=cfg, backend=_context_backend(),
                           shards=2, shard=0, block_rows=96)
    assert late["complete"] and "blocks_computed" not in late
    with pytest.raises(Exception, match="another segmentation"):
        segment_sharded(scene["optical"], scene["sar"], scene["model"], out,
                        cfg=InferenceConfig(tile_size=64, overlap=8), backend=_context_backend(),
                        shards=2, shard=0, block_rows=96)
    # the same files read another way (units, levels, backscatter, noise floor) are another job, not a restart
    with pytest.raises(Exception, match="another segmentation"):
        segment_sharded(scene["optical"], scene["sar"], scene["model"], out, cfg=cfg, backend=_context_backend(),
                        shards=2, shard=0, block_rows=96, sar_backscatter="gamma0")


def _segment_args(scene, out):
    return [
        "segment-distributed", "--optical", scene["optical"], "--sar", scene["sar"],
        "--model", scene["model"], "--teacher", scene["teacher"], "--out", out, "--tile-size", 64,
        "--overlap", 16, "--batch-size", 3, "--backend", "torch", "--device", "cpu", "--threads", 1,
        "--block-rows", 96, "--merge", "--json",
    ]


def test_torchrun_two_processes_segment_like_one(scene, launched, tmp_path):
    """`torchrun --nproc_per_node 2 ... engine segment-distributed` with real (tiny) networks."""
    from engine.config import InferenceConfig
    from engine.inference.pipeline import segment_scene

    cfg = InferenceConfig(**INFER, backend="torch", device="cpu", threads=1)
    single = segment_scene(scene["optical"], scene["sar"], scene["model"], tmp_path / "single", scene["teacher"],
                           cfg=cfg)
    out = launched["out"] / "seg"
    results = [json.loads(line) for line in launched["segment_stdout"].splitlines() if line.startswith("{")]
    assert sorted(r["shard"] for r in results) == [0, 1] and any(r.get("complete") for r in results)
    for key, name in (("classes", "classes"), ("gates", "gates"), ("confidence", "confidence")):
        reference = _bands(single["outputs"][key])
        for mosaic in (_bands(out / f"{name}.vrt"), _bands(out / f"{name}.tif")):  # VRT and --merge copy
            if key == "confidence":  # CPU convolutions round differently with another batch make-up
                np.testing.assert_allclose(mosaic, reference, rtol=0, atol=1e-6)
            else:
                np.testing.assert_array_equal(mosaic, reference)


if __name__ == "__main__":
    _worker(sys.argv[1:])
