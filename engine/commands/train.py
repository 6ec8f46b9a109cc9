"""``python -m engine train-teacher | train-student | distill``: the three training stages."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, Optional

from ..cli import add_json_flag, add_units_args, nonempty_int_list


def _data_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training data (rasters + labels, or an exported patch set)")
    group.add_argument("--optical", help="optical raster")
    group.add_argument("--sar", help="SAR raster")
    group.add_argument(
        "--labels", help="label raster (255 = unlabelled) or polygon layer (classes in --class-field)"
    )
    group.add_argument("--class-field", help="attribute of the polygon layer holding class ids or names (class)")
    group.add_argument("--layer", help="layer name inside a multi-layer vector file")
    group.add_argument("--patches", help="exported patch set folder (manifest.json) instead of the rasters")
    group.add_argument(
        "--scenes",
        help="folder of scene folders, each with optical.tif, sar.tif and label.tif (as `engine synth` "
        "writes them): one run over all of them, each scene's units and scaling resolved on its own",
    )
    group.add_argument("--optical-bands", type=nonempty_int_list,
                       help="1-based optical bands (default: red, green, blue where the band names say which, "
                       "else 1,2,3)")
    group.add_argument("--sar-bands", type=nonempty_int_list,
                       help="1-based SAR bands (default: the co-polarised band where the band names say, else 1)")
    group.add_argument(
        "--resolution", type=float, help="grid pixel size when labels are polygons (default: SAR's)"
    )
    group.add_argument("--tile-size", type=int, default=4096, help="split tile edge in pixels (4096)")
    group.add_argument("--patch-size", type=int, default=256, help="patch edge in pixels (256)")
    group.add_argument("--no-lee", action="store_true", help="skip the Lee speckle filter")
    group.add_argument("--lee-window", type=int, default=7, help="Lee filter window (7)")


def _train_args(parser: argparse.ArgumentParser, epochs: int, lr: float) -> None:
    add_units_args(parser)
    group = parser.add_argument_group("optimisation")
    group.add_argument("--out", required=True, help="run folder (checkpoint, logs, plots, report)")
    group.add_argument("--epochs", type=int, default=epochs, help=f"epochs ({epochs})")
    group.add_argument("--batch-size", type=int, default=16, help="patches per batch (16)")
    group.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate ({lr:g})")
    group.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (1e-4)")
    group.add_argument(
        "--patience", type=int, default=20, help="early-stopping patience in epochs, 0 = off (20)"
    )
    group.add_argument("--max-batches", type=int, default=0, help="batches per epoch, 0 = whole split")
    group.add_argument("--seed", type=int, default=42, help="random seed (42)")
    group.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    group.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    group.add_argument("--workers", type=int, help="data-loading processes (default: 0 on CPU, 4 on CUDA)")
    group.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    group.add_argument("--no-augment", action="store_true", help="no flips/rotations of training patches")
    group.add_argument("--optical-haze", type=float, default=0.0,
                       help="share of training patches given a random path reflectance, so the network "
                            "also reads top-of-atmosphere products such as Sentinel-2 L1C (0)")
    group.add_argument(
        "--no-class-weights", action="store_true", help="plain CE instead of inverse-frequency"
    )
    group.add_argument("--resume", action="store_true", help="continue the run in --out from its last epoch")
    group.add_argument("--keep-epochs", action="store_true",
                       help="also write every epoch's model into OUT/epochs (to choose one on other data later)")
    group.add_argument("--state-every", type=int, default=5,
                       help="epochs between writes of the resumable state (5; the last one and a cancel always write)")
    group.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    group.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_json_flag(parser)


def _model_arg(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--widths", type=nonempty_int_list, help=f"{what} stage widths, e.g. 32,64,128,256")
    parser.add_argument("--model-config", help=f"JSON file with the full {what} configuration")
    parser.add_argument("--init", help=f"continue from this {what} model file (its architecture and weights; "
                        "BatchNorm statistics stay frozen)")


def register(subparsers: argparse._SubParsersAction) -> None:
    teacher = subparsers.add_parser(
        "train-teacher",
        help="train the SAR-only HRNet water teacher",
        description="Binary water teacher on SAR only: CE + edge-aware BCE, AdamW, PolyLR.",
    )
    _data_args(teacher)
    _train_args(teacher, epochs=150, lr=1e-3)
    _model_arg(teacher, "teacher")
    teacher.add_argument("--edge-weight", type=float, default=0.3, help="weight of the edge-aware BCE (0.3)")
    teacher.add_argument("--edge-beta", type=float, default=0.5, help="SAR-gradient emphasis beta (0.5)")
    _rift_args(teacher)
    teacher.set_defaults(func=run_teacher)

    student = subparsers.add_parser(
        "train-student",
        help="stage 1: train the LightMCANet optical+SAR student",
        description="Stage 1: wCE + Dice + Lovász on optical + SAR patches, AdamW, PolyLR.",
    )
    _data_args(student)
    _train_args(student, epochs=150, lr=1e-3)
    _model_arg(student, "student")
    _seg_loss_args(student)
    student.add_argument(
        "--fusion",
        help="fusion of the optical and SAR features: lightmcam (default: optical attends to pooled SAR at the "
        "deepest stage), claire (optical and SAR attend to each other at --claire-stages, gated mix) or concat",
    )
    student.add_argument("--claire-stages", type=nonempty_int_list,
                         help="0-based encoder stages fused by CLAIRE attention (default 1,2,3)")
    student.add_argument("--claire-heads", type=int, help="CLAIRE attention heads (default 4)")
    student.add_argument("--schema", help="JSON file with the class schema (default: the six classes)")
    student.set_defaults(func=run_student)

    stage2 = subparsers.add_parser(
        "distill",
        help="stage 2: SGCAD fine-tuning of a stage-1 student with a teacher",
        description="Stage 2: the stage-1 loss plus lambda_kd x confidence-gated water distillation "
        "(off during the warm-up epochs); writes gates.tif and kd_ratio.tif over the training area.",
    )
    _data_args(stage2)
    _train_args(stage2, epochs=80, lr=1e-3)
    _seg_loss_args(stage2)
    stage2.add_argument("--student", required=True, help="stage-1 student checkpoint")
    stage2.add_argument("--teacher", required=True, help="teacher checkpoint")
    stage2.add_argument("--lambda-kd", type=float, default=0.1, help="distillation weight (0.1)")
    stage2.add_argument("--water-threshold", type=float, default=0.95, help="teacher water gate (0.95)")
    stage2.add_argument(
        "--non-water-threshold", type=float, default=0.15, help="teacher non-water gate (0.15)"
    )
    stage2.add_argument("--warmup-epochs", type=int, default=10, help="epochs without distillation (10)")
    stage2.add_argument("--dense", action="store_true", help="ungated distillation on every labelled pixel")
    stage2.add_argument("--lr-factor", type=float, default=0.1, help="stage-2 lr = --lr x this (0.1)")
    stage2.add_argument(
        "--no-gate-rasters", action="store_true", help="do not write gates.tif / kd_ratio.tif"
    )
    stage2.set_defaults(func=run_distill)


def _seg_loss_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ce-weight", type=float, default=1.0, help="weighted CE weight (1.0)")
    parser.add_argument("--dice-weight", type=float, default=0.5, help="Dice weight (0.5)")
    parser.add_argument("--lovasz-weight", type=float, default=0.5, help="Lovász-softmax weight (0.5)")
    _rift_args(parser)


def _rift_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("loss choice (docs/models.md, Losses)")
    group.add_argument(
        "--loss", choices=["sgcad", "rift", "focal_dice"], default="sgcad",
        help="sgcad: weighted CE + Dice + Lovász (teacher: CE + edge BCE); rift: class-weighted focal + Tversky "
        "(teacher: + edge BCE); focal_dice: focal + Dice with class weights raised to --alpha-scale",
    )
    group.add_argument("--alpha-scale", type=float, default=0.5,
                       help="focal_dice: power of the inverse-frequency class weights (0.5; 0 = unweighted)")
    group.add_argument("--focal-gamma", type=float, default=2.0, help="RIFT focal exponent gamma (2)")
    group.add_argument("--tversky-alpha", type=float, default=0.3, help="RIFT Tversky weight of false positives (0.3)")
    group.add_argument("--tversky-beta", type=float, default=0.7, help="RIFT Tversky weight of false negatives (0.7)")
    group.add_argument("--focal-weight", type=float, default=1.0, help="RIFT weight of the focal term (1.0)")
    group.add_argument("--tversky-weight", type=float, default=1.0, help="RIFT weight of the Tversky term (1.0)")


def _inputs(args: argparse.Namespace):
    from ..config import OpticalPreprocessConfig, PatchConfig, SarPreprocessConfig
    from ..inputs.bands import training_bands
    from ..train.data import TrainingInputs

    for name in ("epochs", "batch_size", "patch_size", "tile_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    bands = training_bands(args.optical, args.sar, args.optical_bands or (), args.sar_bands or ())
    one = TrainingInputs(
        optical=args.optical,
        sar=args.sar,
        labels=args.labels,
        class_field=args.class_field,
        layer=args.layer,
        patch_set=args.patches,
        bands=bands,
        resolution=args.resolution,
        patch=PatchConfig(
            tile_size=args.tile_size,
            patch_size=args.patch_size,
            seed=args.seed,
            rare_window=args.patch_size,
            rare_stride=max(args.patch_size // 2, 1),
        ),
        sar_preprocess=SarPreprocessConfig(lee_filter=not args.no_lee, lee_window=args.lee_window),
        optical_preprocess=OpticalPreprocessConfig(),
        optical_units=args.optical_units,
        sar_units=args.sar_units,
        sar_calibration=args.sar_calibration,
        sar_backscatter=args.sar_backscatter,
    )
    if not getattr(args, "scenes", None):
        return one
    import dataclasses

    folders = sorted(p for p in Path(args.scenes).iterdir() if (p / "label.tif").is_file())
    if not folders:
        raise ValueError(f"{args.scenes} holds no scene folder with optical.tif, sar.tif and label.tif")
    return [
        dataclasses.replace(one, optical=str(f / "optical.tif"), sar=str(f / "sar.tif"), labels=str(f / "label.tif"))
        for f in folders
    ]


def _guarded(args: argparse.Namespace, command: str, run, **models: Optional[str]) -> Dict[str, Any]:
    """Run ``run()`` holding the run folder's lock, after the checks every interface shares.

    No input may be one of the files the run writes into its folder (not even with --overwrite),
    polygons in a multi-layer file need --layer, and a second run into the same folder is refused
    while the first is going.
    """
    from ..validate import (
        TRAINING_RUN_FILES,
        RunLock,
        check_output_folder,
        check_outputs_not_inputs,
        labels_layer,
    )

    out = check_output_folder(args.out)
    inputs: Dict[str, Any] = {
        "optical": args.optical,
        "SAR": args.sar,
        "labels": args.labels,
        "model configuration": getattr(args, "model_config", None),
        "class schema": getattr(args, "schema", None),
        **models,
    }
    if args.patches:
        inputs["patch set manifest"] = Path(args.patches) / "manifest.json"
    check_outputs_not_inputs([out / name for name in TRAINING_RUN_FILES], inputs)
    if args.labels:
        args.layer = labels_layer(args.labels, args.layer)
    with RunLock(out, command):
        return run()


def _train_cfg(args: argparse.Namespace, lr_factor: float = 0.1):
    import torch

    from ..config import TrainConfig

    workers = (
        args.workers
        if args.workers is not None
        else (4 if torch.cuda.is_available() and args.device != "cpu" else 0)
    )
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        early_stopping_patience=args.patience,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        num_workers=workers,
        threads=args.threads,
        augment=not args.no_augment,
        optical_haze=args.optical_haze,
        max_batches_per_epoch=args.max_batches,
        keep_epochs=args.keep_epochs,
        state_every=args.state_every,
        stage2_lr_factor=lr_factor,
    )


def _model_cfg(cls, args: argparse.Namespace):
    from ..config import from_dict

    cfg = cls()
    if args.model_config:
        path = Path(args.model_config)
        try:
            cfg = from_dict(cls, json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read the model configuration: {exc}") from None
    if args.widths:
        cfg.widths = tuple(args.widths)
    if getattr(args, "fusion", None):
        cfg.fusion = args.fusion
    if getattr(args, "claire_stages", None):
        cfg.claire_stages = tuple(args.claire_stages)
    if getattr(args, "claire_heads", None):
        cfg.claire_heads = args.claire_heads
    return cfg


def _loss_cfg(args: argparse.Namespace):
    from ..config import LossConfig

    cfg = LossConfig(inverse_frequency_weights=not args.no_class_weights)
    for name in ("ce_weight", "dice_weight", "lovasz_weight"):
        if hasattr(args, name):
            setattr(cfg, name, getattr(args, name))
    if hasattr(args, "edge_weight"):
        cfg.teacher_edge_weight, cfg.teacher_edge_beta = args.edge_weight, args.edge_beta
    if hasattr(args, "loss"):
        from ..losses.rift import check_loss_config

        cfg.kind = args.loss
        cfg.focal_gamma, cfg.focal_weight = args.focal_gamma, args.focal_weight
        cfg.tversky_alpha, cfg.tversky_beta = args.tversky_alpha, args.tversky_beta
        cfg.tversky_weight = args.tversky_weight
        cfg.alpha_scale = args.alpha_scale
        check_loss_config(cfg)
    return cfg


def _progress(args: argparse.Namespace):
    from ..progress import ConsoleProgress

    return ConsoleProgress(quiet=args.quiet)


def _summary(result: Dict[str, Any]) -> Dict[str, Any]:
    """The command's printed result: paths and the headline figures, not whole matrices."""
    keys = ("oa", "kappa", "miou", "water_iou", "iou")
    out = {
        k: result[k]
        for k in ("stage", "model", "best_epoch", "epochs_run", "stopped_early", "report", "history")
        if k in result
    }
    out["validation"] = {k: result["validation"].get(k) for k in keys}
    if result.get("test"):
        out["test"] = {k: result["test"].get(k) for k in keys}
        if "fusion" in result["test"]:
            out["fusion"] = result["test"]["fusion"]
    if "gate_rasters" in result:
        out["gate_rasters"] = result["gate_rasters"]
    return {"ok": True, **out}


def run_teacher(args: argparse.Namespace) -> Dict[str, Any]:
    from ..config import TeacherConfig
    from ..train.stages import train_teacher

    result = _guarded(args, "train-teacher", lambda: train_teacher(
        _inputs(args),
        args.out,
        _model_cfg(TeacherConfig, args),
        _train_cfg(args),
        _loss_cfg(args),
        progress=_progress(args),
        resume=args.resume,
        overwrite=args.overwrite,
        init_from=args.init,
    ))
    return _summary(result)


def _schema(path: Optional[str]):
    from ..config import ClassSchema, from_dict

    if not path:
        return ClassSchema()
    try:
        return from_dict(ClassSchema, json.loads(Path(path).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the class schema: {exc}") from None


def run_student(args: argparse.Namespace) -> Dict[str, Any]:
    from ..config import StudentConfig
    from ..train.stages import train_student

    result = _guarded(args, "train-student", lambda: train_student(
        _inputs(args),
        args.out,
        _model_cfg(StudentConfig, args),
        _train_cfg(args),
        _loss_cfg(args),
        _schema(args.schema),
        progress=_progress(args),
        resume=args.resume,
        overwrite=args.overwrite,
        init_from=args.init,
    ))
    return _summary(result)


def run_distill(args: argparse.Namespace) -> Dict[str, Any]:
    from ..config import DistillConfig
    from ..train.stages import distill

    cfg = DistillConfig(
        lambda_kd=args.lambda_kd,
        water_threshold=args.water_threshold,
        non_water_threshold=args.non_water_threshold,
        warmup_epochs=args.warmup_epochs,
        gated=not args.dense,
    )
    if not 0 <= cfg.non_water_threshold < cfg.water_threshold <= 1:
        raise ValueError("expected 0 <= --non-water-threshold < --water-threshold <= 1")
    result = _guarded(args, "distill", lambda: distill(
        _inputs(args),
        args.out,
        args.student,
        args.teacher,
        _train_cfg(args, args.lr_factor),
        _loss_cfg(args),
        cfg,
        progress=_progress(args),
        resume=args.resume,
        overwrite=args.overwrite,
        write_gate_rasters=not args.no_gate_rasters,
    ), student=args.student, teacher=args.teacher)
    return _summary(result)
