"""The pretraining run: steps, resumable states, cancel, the loss report and the encoder file.

``pretrain_sar`` writes into ``out_dir``:

* ``sar_encoder.safetensors`` (+ ``.json``): the pretrained encoder (:mod:`.transfer`), written
  only when every step has run;
* ``state.safetensors``: the resumable state, every ``checkpoint_every`` steps (a cancelled or
  killed run continues from the last one with ``resume=True``);
* ``history.json`` / ``history.csv``: the loss terms every ``log_every`` steps; ``report.html``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import torch

from .. import __version__
from ..config import ModelMetadata, PretrainConfig, StudentConfig, TeacherConfig, from_dict, to_dict
from ..inputs.contract import InputOverrides, InputRecipe
from ..models.checkpoint import read_metadata
from ..progress import NULL_PROGRESS, Progress
from ..train.loop import resolve_device
from ..train.report import EpochLog, write_html_report
from ..train.state import load_training_state, save_training_state
from .backbones import build_backbone
from .moco import DI3CL
from .sampler import ViewPairSampler, open_sources, recipe_for
from .transfer import save_encoder

PathLike = Union[str, Path]
ENCODER_FILE = "sar_encoder.safetensors"
STATE_FILE = "state.safetensors"
OUTPUTS = (ENCODER_FILE, ENCODER_FILE + ".json", "history.json", "history.csv", "report.html", "losses.png")
PROBE_STEP = 2**40  # the probe batch is drawn as if at this step: never one of the training steps
TERMS = ("loss", "global", "dynamic_instance", "contour", "contour_consistency")


def _architecture(cfg: PretrainConfig, like: Optional[PathLike]) -> tuple:
    """(model config, input recipe) of the network the encoder will initialise."""
    if like is None:
        config = StudentConfig() if cfg.target == "student" else TeacherConfig()
        return config, None
    meta = read_metadata(like)
    if meta.kind not in ("student", "teacher"):
        raise ValueError(f"{like} is a {meta.kind} model; --like takes a student or teacher model")
    if meta.kind != cfg.target:
        raise ValueError(f"{like} is a {meta.kind}, but the pretraining target is {cfg.target}; "
                         f"set the target to {meta.kind}")
    cls = StudentConfig if meta.kind == "student" else TeacherConfig
    return from_dict(cls, meta.model), InputRecipe.of(meta)


def _plot(records: List[Dict[str, Any]], path: Path) -> Path:
    from matplotlib.figure import Figure

    from ..train.report import save_figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    steps = [r["step"] for r in records]
    for key in TERMS:
        if any(key in r for r in records):
            ax.plot(steps, [r.get(key, float("nan")) for r in records], marker=".", label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)  # atomic: a killed run leaves the previous figure, not half of one


def pretrain_sar(
    sar_paths: Sequence[PathLike],
    out_dir: PathLike,
    cfg: Optional[PretrainConfig] = None,
    like: Optional[PathLike] = None,
    sar_bands: Sequence[int] = (),
    overrides: Optional[InputOverrides] = None,
    progress: Progress = NULL_PROGRESS,
    resume: bool = True,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Pretrain a SAR encoder on unlabelled SAR rasters (DI3CL) and write it to ``out_dir``.

    Args:
        sar_paths: SAR rasters of any size (read by windows; units resolved per file).
        out_dir: receives the encoder, the resumable state, the history and the report.
        cfg: :class:`~engine.config.PretrainConfig` (target, steps, views, loss weights ...).
        like: a student or teacher model whose architecture and input recipe the encoder follows
            (default: a new model's).
        sar_bands: 1-based SAR bands (default: the recipe's).
        overrides: units and calibration of the rasters.
        progress: progress and cancellation; a cancel keeps the last resumable state.
        resume: continue from ``out_dir/state.safetensors`` when it exists.
        overwrite: replace an earlier encoder in ``out_dir``.

    Returns:
        ``encoder`` (path), ``report``, ``steps``, ``resumed_from``, ``seconds``, the first and
        last logged losses, ``warnings``.
    """
    cfg = cfg or PretrainConfig()
    if cfg.target not in ("student", "teacher"):
        raise ValueError(f"pretraining target must be student or teacher, got {cfg.target!r}")
    for name in ("steps", "batch_size", "blocks_per_step", "checkpoint_every", "log_every", "di_regions",
                 "roi_samples", "queue_size"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
    if cfg.batch_size < 2:  # BatchNorm needs two samples, and a contrast needs a second window
        raise ValueError(f"batch_size must be at least 2, got {cfg.batch_size}")
    out_dir = Path(out_dir)
    state_path = out_dir / STATE_FILE
    existing = [n for n in OUTPUTS if (out_dir / n).exists()]
    if existing and not overwrite and not (resume and state_path.exists()):
        raise ValueError(f"{out_dir} already holds {', '.join(existing)}; choose another folder or overwrite")
    if state_path.exists() and not resume:
        state_path.unlink()  # a fresh run must not continue an older one
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    amp = bool(cfg.amp and device.type == "cuda")
    torch.manual_seed(cfg.seed)

    config, like_recipe = _architecture(cfg, like)
    sources = open_sources(sar_paths, recipe_for(sar_bands, like_recipe), overrides, cfg.view_size,
                           progress.sub(0.0, 0.02))
    channels = len(sources[0].resolved.bands.sar_bands)
    if config.sar_channels != channels:
        if like is not None:
            raise ValueError(f"{like} takes {config.sar_channels} SAR band(s), but {channels} are read")
        config = dataclasses.replace(config, sar_channels=channels)
    sampler = ViewPairSampler(sources, cfg)
    backbone = build_backbone(cfg.target, config)
    model = DI3CL(backbone, cfg).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, cfg.steps) / cfg.steps)))
    scaler = torch.amp.GradScaler("cuda") if amp else None

    start, records, resumed_from = 0, [], None
    out_dir.mkdir(parents=True, exist_ok=True)
    if resume and state_path.exists():
        start, extra = load_training_state(state_path, model, optimizer, scheduler, scaler)
        stored = extra.get("config", {})
        changed = [k for k, v in to_dict(cfg).items() if k not in ("steps", "device", "amp") and stored.get(k) != v]
        if changed:
            raise ValueError(f"{state_path} was written by a run with other settings ({', '.join(changed)}); "
                             "use the same settings, or start afresh (no resume)")
        records, resumed_from = list(extra.get("history", [])), start
        progress.info(f"resuming pretraining after step {start}")
    log = EpochLog(out_dir, [], records)
    probe_batch = {k: v.to(device) for k, v in sampler.batch(PROBE_STEP).items()}  # fixed, never trained on
    sums: Dict[str, float] = {}
    seen = 0
    for step in range(start, cfg.steps):
        progress.check()
        model.train()
        batch = {k: v.to(device, non_blocking=True) for k, v in sampler.batch(step).items()}
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            loss, terms = model(batch)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        model.momentum_update()
        for k, v in {"loss": float(loss.detach()), **terms}.items():
            sums[k] = sums.get(k, 0.0) + v
        seen += 1
        done = step + 1
        progress.report(0.02 + 0.96 * done / cfg.steps,
                        f"pretraining: step {done}/{cfg.steps}, loss {float(loss.detach()):.3f}")
        if done % cfg.log_every == 0 or done == cfg.steps:
            log.append({"step": done, "epoch": done, **{k: v / seen for k, v in sums.items()},
                        **model.probe(probe_batch)})
            sums, seen = {}, 0
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save_training_state(state_path, model, optimizer, scheduler, done,
                                {"config": to_dict(cfg), "history": log.records}, scaler)

    resolved = sources[0].resolved
    record = {"stage": "pretrain-sar", "method": "DI3CL", "config": to_dict(cfg),
              "rasters": [str(p) for p in sar_paths],
              "first_loss": log.records[0] if log.records else None,
              "last_loss": log.records[-1] if log.records else None, "device": str(device), "amp": amp}
    metadata = ModelMetadata(
        kind="sar_encoder", model={"target": cfg.target, "config": to_dict(config)}, train=record,
        engine_version=__version__, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **resolved.stored(),
    )
    encoder_path = save_encoder(out_dir / ENCODER_FILE, model.query.backbone.cpu(), metadata)
    plot = _plot(log.records, out_dir / "losses.png") if log.records else None
    seconds = round(time.perf_counter() - t0, 2)
    facts = {"target": cfg.target, "steps": cfg.steps, "resumed after step": resumed_from, "device": str(device),
             "seconds (this session)": seconds, "rasters": ", ".join(Path(p).name for p in sar_paths)}
    write_html_report(out_dir / "report.html", "SGCAD SAR pretraining (DI3CL)", [], {"losses": plot} if plot else {},
                      facts)
    progress.report(1.0, "pretraining done")
    warnings = [w for s in sources for w in s.resolved.warnings]
    return {"encoder": str(encoder_path), "report": str(out_dir / "report.html"), "steps": cfg.steps,
            "resumed_from": resumed_from, "seconds": seconds, "first": record["first_loss"],
            "last": record["last_loss"], "warnings": warnings}
