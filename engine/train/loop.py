"""One training loop for the teacher, stage 1 and stage 2.

What differs between stages (inputs, loss, what a prediction is, extra test figures) lives in
a :class:`StageTask` (see :mod:`engine.train.stages`); everything else is here: device and
mixed precision, AdamW + per-iteration PolyLR, validation, early stopping, the best-mIoU
checkpoint, exact resume, progress/cancel, logs, plots and the HTML report.

A run folder holds ``best.safetensors`` (+ ``.json``): the model of the best validation mIoU;
``state.safetensors``: the resumable state after the last completed epoch (written every
``state_every`` epochs, after the last one and when the run is cancelled or fails); ``history.csv``/
``.json``; ``metrics.json``; ``plots/*.png`` and ``report.html``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the same loop trains data-parallel (see
:mod:`engine.distributed` and docs/distributed.md): ``TrainConfig.batch_size`` is the batch of
one rank, each rank takes its part of every global batch (the order a single process with the
global batch would see), gradients are averaged by ``DistributedDataParallel``, BatchNorm
statistics span the global batch, losses, KD-region ratios and confusion matrices are reduced
over ranks, and only rank 0 writes. A single process runs exactly the code it always ran.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .. import distributed as dist
from ..config import ModelMetadata, TrainConfig, to_dict
from ..cores import apply_threads
from ..files import atomic_write_bytes
from ..metrics import BoundaryFScore, ConfusionMatrix, format_metrics, thin_structure_classes
from ..models.checkpoint import save_model
from ..progress import NULL_PROGRESS, Progress
from .report import (
    EpochLog,
    metrics_table,
    plot_confusion,
    plot_kd_ratio,
    plot_learning_curves,
    write_html_report,
)
from .schedule import PolyLR
from .state import TrainingSnapshot, load_training_state
from .termination import TerminationGuard

BEST = "best.safetensors"
STATE = "state.safetensors"
Batch = Dict[str, torch.Tensor]


class StageTask:
    """What one stage trains: its loss, its predictions and its extra test figures.

    A new stage (e.g. the planned DI3CL SAR pretraining) is a new subclass: the loop then trains
    it on one process or under torchrun alike. Its loss receives the DDP-wrapped network when
    distributed; a contrastive loss that needs the negatives of the whole global batch gathers
    its embeddings with :func:`engine.distributed.gather_with_grad`.
    """

    stage = "stage"
    class_names: List[str] = []
    water_index = 0

    def loss(self, model: torch.nn.Module, batch: Batch, epoch: int) -> Tuple[torch.Tensor, Dict[str, float]]:
        """Training loss of one batch and the floats to log (means over the epoch)."""
        raise NotImplementedError

    def logits(self, model: torch.nn.Module, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def target(self, batch: Batch) -> torch.Tensor:
        """The labels the metrics compare with (the teacher's are binary)."""
        raise NotImplementedError

    def eval_loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The supervised loss on validation batches (no distillation term)."""
        raise NotImplementedError

    def stopping_starts(self) -> int:
        """First epoch (0-based) that may become the best model and from which early stopping
        counts epochs without progress (stage 2: the first epoch with distillation)."""
        return 0

    def test_extras(
        self, model: torch.nn.Module, loader: Any, device: torch.device, amp: bool
    ) -> Dict[str, Any]:
        """Additional figures computed on the test split with the best model."""
        return {}

    def to(self, device: torch.device) -> StageTask:
        return self


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA GPU is available; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(name)


def train_mode(model: torch.nn.Module, freeze_batchnorm: bool) -> None:
    """``model.train()``, with BatchNorm layers kept in eval mode when their statistics are frozen.

    Frozen, a BatchNorm normalises with the running statistics it learnt on the full training
    set, in training as at inference; its scale and shift still learn. Without this, a few
    fine-tuning patches replace those statistics and the eval-mode network collapses.
    """
    model.train()
    if freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda")


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def check_run_folder(out_dir: Path, resume: bool, overwrite: bool) -> None:
    if resume:
        if not (out_dir / STATE).is_file():
            raise ValueError(f"cannot resume: {out_dir / STATE} does not exist (start without --resume)")
        return
    existing = [p.name for p in (out_dir / BEST, out_dir / STATE) if p.exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{out_dir} already holds a run ({', '.join(existing)}); "
            "pass resume=True (--resume) to continue it or overwrite=True (--overwrite) to replace it"
        )


class Trainer:
    """Runs one stage in a run folder.

    Args:
        task: the stage (loss, predictions).
        model: the network to train (already initialised, e.g. from stage 1).
        metadata: stored with every checkpoint; its ``metrics`` and ``train`` are filled in.
        datasets: ``train``, ``val`` and ``test`` datasets of dict items.
        cfg: optimisation settings.
        out_dir: the run folder.
        lr: base learning rate of this stage (stage 2: a tenth of stage 1).
        progress: progress/cancel callback; cancel takes effect within one batch.
        pretrained: the model starts from trained weights (BatchNorm statistics then stay
            frozen unless ``cfg.freeze_batchnorm`` says otherwise).
    """

    def __init__(
        self,
        task: StageTask,
        model: torch.nn.Module,
        metadata: ModelMetadata,
        datasets: Dict[str, Dataset],
        cfg: TrainConfig,
        out_dir: Path,
        lr: float,
        progress: Optional[Progress] = None,
        pretrained: bool = False,
    ) -> None:
        self.task, self.model, self.metadata, self.cfg = task, model, metadata, cfg
        self.datasets, self.out_dir, self.lr = datasets, Path(out_dir), lr
        self.freeze_bn = cfg.freeze_batchnorm if cfg.freeze_batchnorm is not None else pretrained
        self.progress = progress or NULL_PROGRESS
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise ValueError(
                f"epochs and batch size must be at least 1, got {cfg.epochs} and {cfg.batch_size}"
            )
        for split in ("train", "val"):
            if split not in datasets or len(datasets[split]) == 0:
                raise ValueError(
                    f"the {split} split has no patches; use a larger labelled area, a smaller tile "
                    "size or other split ratios"
                )

    # ----------------------------------------------------------------- set-up
    def _loader(self, split: str, shuffle: bool, whole: bool = False) -> DataLoader:
        cuda = self.device.type == "cuda"
        workers = max(0, int(self.cfg.num_workers))
        if self.distributed and not whole:
            return self._rank_loader(split, shuffle, workers, cuda)
        return DataLoader(
            self.datasets[split],
            batch_size=self.cfg.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            pin_memory=cuda,
            persistent_workers=workers > 0,
            generator=self.generator if shuffle else None,
            drop_last=False,
        )

    def _rank_loader(self, split: str, shuffle: bool, workers: int, cuda: bool) -> DataLoader:
        """This rank's batches: its part of every global batch (training) or every world-th
        whole batch (evaluation)."""
        n, rank, world = len(self.datasets[split]), self.ranks.rank, self.ranks.world_size
        if shuffle:
            sampler: Any = dist.GlobalBatchSampler(n, self.cfg.batch_size, rank, world, True, self.generator)
            self.train_sampler = sampler
        else:
            sampler = dist.StridedBatchSampler(n, self.cfg.batch_size, rank, world)
        return DataLoader(
            self.datasets[split],
            batch_sampler=sampler,
            num_workers=workers,
            pin_memory=cuda,
            persistent_workers=workers > 0,
            generator=self.generator if shuffle else None,
        )

    def _setup_distributed(self) -> None:
        """Join torchrun's process group; this rank's device, threads and (quiet) progress."""
        self.ranks = dist.init_process_group(self.device.type)
        self.distributed = self.ranks.distributed
        self.writes = self.ranks.is_main
        if not self.distributed:
            return
        self.device = dist.device_for_rank(self.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        torch.set_num_threads(dist.threads_per_rank(self.cfg.threads))
        if not self.ranks.is_main:
            self.progress = _QuietProgress(self.progress)

    def _wrap_distributed(self) -> None:
        """BatchNorm over the global batch, then DistributedDataParallel (broadcasts rank 0's weights)."""
        from torch.nn.parallel import DistributedDataParallel

        self.model = dist.convert_sync_batchnorm(self.model, self.device)
        self.net = DistributedDataParallel(
            self.model,
            device_ids=[self.device.index] if self.device.type == "cuda" else None,
            broadcast_buffers=False,  # synchronised BatchNorm keeps the statistics identical on every rank
        )

    def _iters_per_epoch(self) -> int:
        n = len(self.train_loader)
        return min(n, self.cfg.max_batches_per_epoch) if self.cfg.max_batches_per_epoch > 0 else n

    # ----------------------------------------------------------------- run
    def fit(self, resume: bool = False, overwrite: bool = False) -> Dict[str, Any]:
        """Train, keep the best-mIoU model, test it, write logs/plots/report.

        Returns:
            summary dict: paths, best epoch, validation and test metrics, extras.
        """
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        check_run_folder(self.out_dir, resume, overwrite)
        apply_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        self.ranks, self.distributed, self.writes = dist.RankInfo(), False, True
        if dist.launched():
            self._setup_distributed()
        self.amp = bool(cfg.amp and self.device.type == "cuda")
        seed_everything(cfg.seed)
        self.generator = torch.Generator()
        self.train_loader = self._loader("train", shuffle=True)
        self.val_loader = self._loader("val", shuffle=False)
        self.model.to(self.device)
        self.task.to(self.device)
        self.net = self.model
        if self.distributed:
            self._wrap_distributed()
        iters = self._iters_per_epoch()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.lr, weight_decay=cfg.weight_decay)
        self.scheduler = PolyLR(self.optimizer, total_iters=max(1, cfg.epochs * iters), power=cfg.poly_power)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        book: Dict[str, Any] = {
            "history": [],
            "best_miou": -1.0,
            "best_epoch": -1,
            "best_kappa": -1.0,
            "best_score": -1.0,
            "bad_epochs": 0,
            "stopped_early": False,
        }
        start = 0
        if resume:
            start, book = load_training_state(
                self.out_dir / STATE,
                self.model,
                self.optimizer,
                self.scheduler,
                self.scaler if self.amp else None,
            )
            self.progress.info(f"resuming {self.task.stage} after epoch {start} from {self.out_dir / STATE}")
        self.progress.info(
            f"{self.task.stage}: device {self._device_text()}, "
            f"{len(self.datasets['train'])} training patches, "
            f"{iters} batches of {cfg.batch_size} per epoch, {cfg.epochs} epochs"
        )
        self.log = (EpochLog if self.writes else _MemoryLog)(self.out_dir, self.task.class_names, book["history"])
        val_batches = len(self.val_loader)
        self._units = (
            cfg.epochs * (iters + val_batches) + len(self.datasets.get("test", [])) // cfg.batch_size + 1
        )
        self._done = start * (iters + val_batches)
        self._pending_state: Optional[TrainingSnapshot] = None
        with TerminationGuard() as guard:
            try:
                self._epochs(start, iters, book)
            except BaseException:  # cancelled, failed or SIGTERM: keep the last completed epoch resumable
                guard.terminated = True  # a SIGTERM from now on must not interrupt the write
                pending = self._pending_state
                if pending is not None and not pending.written:
                    with contextlib.suppress(OSError):  # the original error says more than a full disk
                        pending.write(self.out_dir / STATE)
                raise
        return self._finish(book)

    def _epochs(self, start: int, iters: int, book: Dict[str, Any]) -> None:
        """The epoch loop of :meth:`fit` (from ``start``); keeps ``self._pending_state``."""
        cfg = self.cfg
        for epoch in range(start, cfg.epochs):
            if book["stopped_early"]:
                break
            t0 = time.monotonic()
            train_logs = self._train_epoch(epoch, iters)
            val = self._evaluate(self.val_loader, f"epoch {epoch + 1}/{cfg.epochs} validating")
            record = self._record(epoch, train_logs, val, time.monotonic() - t0)
            self._select(epoch, record, val, book)
            book["history"] = self.log.records
            if cfg.keep_epochs and self.writes:  # for a later choice on data the run never saw
                save_model(self.out_dir / "epochs" / f"epoch_{epoch + 1:03d}.safetensors", self.model, self.metadata)
            # order matters for a kill at any moment: the best model first, the state last,
            # so a resume from the previous state redoes the epochs since and rewrites both
            if self.writes:  # distributed: rank 0 only, every rank holds the same weights
                self._pending_state = TrainingSnapshot(
                    self.model, self.optimizer, self.scheduler, epoch + 1, book, self.scaler if self.amp else None
                )
                last = epoch + 1 == cfg.epochs or book["stopped_early"]
                if last or (epoch + 1) % max(1, cfg.state_every) == 0:
                    self._pending_state.write(self.out_dir / STATE)
            if self.distributed:
                dist.barrier()
            self.progress.info(
                f"epoch {epoch + 1}/{cfg.epochs} loss {record['train_loss']:.4f} "
                + format_metrics(val, self.task.class_names)
                + (" (best)" if record["is_best"] else "")
            )

    def _device_text(self) -> str:
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            text = f"CUDA {name}" + (" (mixed precision)" if self.amp else "")
        else:
            text = f"CPU ({torch.get_num_threads()} threads)"
        if self.distributed:
            text += f", {self.ranks.world_size} processes (rank {self.ranks.rank}), global batch " + str(
                self.cfg.batch_size * self.ranks.world_size
            )
        return text

    def _train_epoch(self, epoch: int, iters: int) -> Dict[str, float]:
        train_mode(self.net, self.freeze_bn)
        self.generator.manual_seed(self.cfg.seed * 100_003 + epoch)  # shuffling fixed by (seed, epoch)
        if self.distributed:  # augmentation draws: distinct per rank, fixed by (seed, epoch, rank)
            seed_everything((self.cfg.seed * 100_003 + epoch) * 8_191 + self.ranks.rank + 1)
        sums: Dict[str, float] = {}
        n = 0
        for i, batch in enumerate(itertools.islice(self.train_loader, iters)):
            self.progress.check()
            batch = _to_device(batch, self.device)
            with _autocast(self.device, self.amp):
                loss, logs = self.task.loss(self.net, batch, epoch)
            if not torch.isfinite(loss):
                raise RuntimeError(
                    f"{self.task.stage}: the loss became {loss.item()} at epoch {epoch + 1}, batch {i + 1}; "
                    "lower the learning rate or check the inputs for extreme values"
                )
            self.optimizer.zero_grad(set_to_none=True)
            if self.distributed:  # a short last global batch split unevenly: weigh each rank's mean
                scale = self.train_sampler.loss_scale(i)
                self.scaler.scale(loss if scale == 1.0 else loss * scale).backward()
            else:
                self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            n += 1
            share = self.train_sampler.share(i) if self.distributed else None
            for key, value in {"loss": float(loss.detach()), **logs}.items():
                if value is not None:
                    if share is None:
                        sums[key] = sums.get(key, 0.0) + float(value)
                        sums[f"n_{key}"] = sums.get(f"n_{key}", 0.0) + 1
                    else:  # the global batch's value: this rank's weighted by its share of samples
                        sums[key] = sums.get(key, 0.0) + float(value) * share
                        sums[f"n_{key}"] = sums.get(f"n_{key}", 0.0) + share
            self._done += 1
            self.progress.report(
                self._done / self._units,
                f"{self.task.stage} epoch {epoch + 1}/{self.cfg.epochs} batch {i + 1}/{iters} "
                f"loss {float(loss.detach()):.3f}",
            )
        if self.distributed:
            return _reduce_logs(sums)
        return {k: sums[k] / sums[f"n_{k}"] for k in sums if not k.startswith("n_")}

    @torch.no_grad()
    def _evaluate(
        self, loader: DataLoader, message: str, model: Optional[torch.nn.Module] = None
    ) -> Dict[str, Any]:
        model = model or self.model
        model.eval()
        cm = ConfusionMatrix(len(self.task.class_names))
        boundary = BoundaryFScore(len(self.task.class_names))  # thin structures and shorelines
        loss_sum, batches = 0.0, 0
        for batch in loader:
            self.progress.check()
            batch = _to_device(batch, self.device)
            with _autocast(self.device, self.amp):
                logits = self.task.logits(model, batch)
            logits = logits.float()
            loss_sum += float(self.task.eval_loss(logits, batch))
            batches += 1
            pred, target = logits.argmax(1), self.task.target(batch)
            cm.update(pred, target)
            boundary.update_batch(pred, target)
            self._done += 1
            self.progress.report(min(self._done / self._units, 1.0), message)
        if self.distributed:  # every rank evaluated every world-th batch: sum the counts
            k = cm.matrix.size
            total = dist.all_reduce_sum(np.concatenate([cm.matrix.ravel(), [loss_sum, batches]]))
            cm.matrix[:] = total[:k].round().long().numpy().reshape(cm.matrix.shape)
            loss_sum, batches = float(total[k]), int(round(float(total[k + 1])))
            counts = dist.all_reduce_sum(boundary.counts.ravel().astype(np.float64))
            boundary.counts[:] = counts.round().long().numpy().reshape(boundary.counts.shape)
        metrics = cm.compute()
        metrics.update(boundary.compute())
        named = thin_structure_classes(self.task.class_names, self.task.water_index)
        metrics["boundary_f_named"] = {n: metrics["boundary_f"][c] for n, c in named.items()}
        metrics["loss"] = loss_sum / max(batches, 1)
        metrics["water_iou"] = metrics["iou"][self.task.water_index]
        metrics["score"] = (metrics["oa"] or 0.0) + (metrics["miou"] or 0.0)
        return metrics

    def _record(
        self, epoch: int, train: Dict[str, float], val: Dict[str, Any], seconds: float
    ) -> Dict[str, Any]:
        record: Dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
        }
        record.update({f"train_{k}": v for k, v in train.items()})
        for key in ("loss", "oa", "kappa", "miou", "water_iou", "score"):
            record[f"val_{key}"] = val[key]
        record["val_iou"] = val["iou"]
        for name, value in (val.get("boundary_f_named") or {}).items():
            record[f"val_boundary_f_{name}"] = value
        return record

    def _select(self, epoch: int, record: Dict[str, Any], val: Dict[str, Any], book: Dict[str, Any]) -> None:
        miou, kappa, score = val["miou"] or 0.0, val["kappa"] or 0.0, val["score"]
        # a stage-2 run returns a distilled model: warm-up epochs compete only if nothing follows them
        first = min(self.task.stopping_starts(), self.cfg.epochs - 1)
        record["is_best"] = epoch >= first and miou > book["best_miou"]
        if record["is_best"]:
            book["best_miou"], book["best_epoch"] = miou, epoch + 1
            self.metadata.metrics = {"best_epoch": epoch + 1, "validation": _summary(val)}
            self.metadata.train = self._train_record()
            if self.writes:
                save_model(self.out_dir / BEST, self.model, self.metadata)
        # early stopping: patience counts epochs in which neither Kappa nor OA + mIoU improved
        improved = kappa > book["best_kappa"] or score > book["best_score"]
        book["best_kappa"], book["best_score"] = (
            max(book["best_kappa"], kappa),
            max(book["best_score"], score),
        )
        if epoch < self.task.stopping_starts() or improved:
            book["bad_epochs"] = 0
        else:
            book["bad_epochs"] += 1
        patience = self.cfg.early_stopping_patience
        if patience > 0 and book["bad_epochs"] >= patience:
            book["stopped_early"] = True
            self.progress.info(
                f"early stop after epoch {epoch + 1}: no gain in Kappa or OA + mIoU for {patience} epochs"
            )
        record["bad_epochs"] = book["bad_epochs"]
        self.log.append(record)

    def _train_record(self) -> Dict[str, Any]:
        record = {
            "stage": self.task.stage,
            "config": to_dict(self.cfg),
            "lr": self.lr,
            "train_patches": len(self.datasets["train"]),
            **getattr(self.task, "record", {}),
        }
        if self.distributed:
            record["distributed"] = {
                "world_size": self.ranks.world_size,
                "batch_per_rank": self.cfg.batch_size,
                "global_batch": self.cfg.batch_size * self.ranks.world_size,
                "backend": "nccl" if self.device.type == "cuda" else "gloo",
            }
        return record

    # ----------------------------------------------------------------- end of run
    def _finish(self, book: Dict[str, Any]) -> Dict[str, Any]:
        best_path = self.out_dir / BEST
        from safetensors.torch import load_file

        if self.writes:
            self.model.load_state_dict(load_file(str(best_path)))
        self.model.to(self.device)
        if self.distributed:  # rank 0 read the best weights: no shared storage needed for them
            dist.broadcast_module(self.model)
        result: Dict[str, Any] = {
            "stage": self.task.stage,
            "model": str(best_path),
            "best_epoch": book["best_epoch"],
            "epochs_run": len(self.log.records),
            "stopped_early": book["stopped_early"],
        }
        best_val = next(r for r in self.log.records if r["epoch"] == book["best_epoch"])
        result["validation"] = {k[4:]: best_val[k] for k in best_val if k.startswith("val_")}
        test_set = self.datasets.get("test")
        if test_set is not None and len(test_set) > 0:
            loader = self._loader("test", shuffle=False)
            test = self._evaluate(loader, "testing the best model")
            result["test"] = _summary(test)
            if not self.distributed:
                result["test"].update(self.task.test_extras(self.model, loader, self.device, self.amp))
            elif self.writes:  # task-specific figures: rank 0 over the whole test split
                whole = self._loader("test", shuffle=False, whole=True)
                result["test"].update(self.task.test_extras(self.model, whole, self.device, self.amp))
        else:
            self.progress.info("no test patches: test metrics are not reported")
        self.metadata.metrics = {
            "best_epoch": book["best_epoch"],
            "validation": result["validation"],
            "test": result.get("test"),
        }
        self.metadata.train = self._train_record()
        if self.writes:
            save_model(best_path, self.model, self.metadata)
            atomic_write_bytes(self.out_dir / "metrics.json", json.dumps(result, indent=2).encode("utf-8"))
            result.update(self._report(result))
        if self.distributed:
            result = dist.broadcast_json(result if self.writes else None)
            self.model = dist.revert_sync_batchnorm(self.model)
            self.net = self.model
        self.progress.report(1.0, f"{self.task.stage} done")
        return result

    def _report(self, result: Dict[str, Any]) -> Dict[str, Any]:
        plots = self.out_dir / "plots"
        plots.mkdir(exist_ok=True)
        records = self.log.records
        images = {"Learning curves": plot_learning_curves(records, plots / "learning_curves.png")}
        if any(r.get("train_kd_ratio") is not None for r in records):
            kd = [
                {
                    "epoch": r["epoch"],
                    "kd_ratio": r.get("train_kd_ratio"),
                    "kd_ratio_water": r.get("train_kd_ratio_water"),
                    "kd_ratio_non_water": r.get("train_kd_ratio_non_water"),
                }
                for r in records
            ]
            images["KD region ratio per epoch"] = plot_kd_ratio(kd, plots / "kd_ratio.png")
        sections = []
        test = result.get("test")
        if test:
            images["Confusion matrix (test, best model)"] = plot_confusion(
                test["matrix"], self.task.class_names, plots / "confusion_test.png"
            )
            sections.append(
                {
                    "title": "Test metrics of the best model",
                    "html": metrics_table(test, self.task.class_names),
                }
            )
            fusion = test.get("fusion")
            if fusion:
                sections.append(
                    {
                        "title": "Fusion evaluation (teacher vs student, water)",
                        "html": "<table>"
                        + "".join(
                            f"<tr><th>{k}</th><td>{v if not isinstance(v, float) else f'{v:.4f}'}</td></tr>"
                            for k, v in fusion.items()
                        )
                        + "</table>",
                    }
                )
        facts = {
            "stage": self.task.stage,
            "device": self._device_text(),
            "best epoch": result["best_epoch"],
            "epochs run": result["epochs_run"],
            "stopped early": result["stopped_early"],
            "model": result["model"],
            "learning rate": self.lr,
            "batch size": self.cfg.batch_size,
            "engine version": self.metadata.engine_version,
        }
        report = write_html_report(
            self.out_dir / "report.html", f"SGCAD {self.task.stage} run", sections, images, facts
        )
        return {
            "report": str(report),
            "plots": [str(p) for p in images.values()],
            "history": str(self.out_dir / "history.csv"),
        }


class _QuietProgress(Progress):
    """Progress of ranks other than 0: silent, but cancel still reaches them."""

    def __init__(self, parent: Progress) -> None:
        self.parent = parent

    def is_canceled(self) -> bool:
        return self.parent.is_canceled()


class _MemoryLog(EpochLog):
    """The history on ranks other than 0: kept for the loop's decisions, never written."""

    def write(self) -> None:
        return None


def _reduce_logs(sums: Dict[str, float]) -> Dict[str, float]:
    """Epoch means of the per-batch logs over all ranks (rank 0's keys; weights are sample shares)."""
    keys = dist.broadcast_json(sorted(k for k in sums if not k.startswith("n_")))
    total = dist.all_reduce_sum([sums.get(k, 0.0) for k in keys] + [sums.get(f"n_{k}", 0.0) for k in keys])
    return {k: float(total[i] / total[len(keys) + i]) for i, k in enumerate(keys) if total[len(keys) + i] > 0}


def _summary(metrics: Dict[str, Any]) -> Dict[str, Any]:
    keys = (
        "oa",
        "kappa",
        "miou",
        "mf1",
        "water_iou",
        "score",
        "loss",
        "iou",
        "precision",
        "recall",
        "f1",
        "support",
        "pixels",
        "matrix",
        "boundary_f",
        "boundary_f_named",
        "boundary_tolerance",
    )
    return {k: metrics[k] for k in keys if k in metrics}
