"""``python -m engine finetune``: fine-tune the student and its teacher on a few drawn polygons."""

from __future__ import annotations

import argparse
from typing import Any, Dict

from ..cli import add_json_flag, add_noise_floor_arg, add_sar_levels_arg, add_units_args, int_list
from ..cores import apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..config import PSEUDO_LABEL_LAYERS, FinetuneConfig

    d = FinetuneConfig()
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a student (and its SAR teacher) on polygons drawn where the map is wrong",
        description="Holds out whole polygon groups for an honest accuracy, reports it next to a per-pixel "
        "linear classifier fitted on the same training polygons, keeps BatchNorm statistics frozen, and "
        "distils the teacher's confident water knowledge (docs/finetune.md). Without --optical only the "
        "teacher is fine-tuned (SAR-only), unless the student is a SAR-only model.",
    )
    parser.add_argument("--optical", help="optical raster (leave out to fine-tune the teacher on SAR alone, "
                        "or with a SAR-only --student from engine train-sar)")
    parser.add_argument("--sar", required=True, help="SAR raster")
    parser.add_argument("--polygons", help="polygon layer (GeoPackage, Shapefile, GeoJSON); leave out to adapt "
                        "the teacher to the scene from automatic water pseudo-labels (no labels needed)")
    parser.add_argument("--class-field", default="class", help="field holding class ids or names (class)")
    parser.add_argument("--layer", help="layer name inside a multi-layer vector file")
    parser.add_argument("--student", help="student model to fine-tune")
    parser.add_argument("--teacher", help="SAR water teacher model")
    parser.add_argument("--sar-encoder", help="pretrained SAR encoder (engine pretrain-sar) replacing the SAR "
                        "encoder of the student or teacher it was pretrained for")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--optical-bands", type=int_list, help="1-based optical bands (default: the model's)")
    parser.add_argument("--sar-bands", type=int_list, help="1-based SAR bands (default: the model's)")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"student steps ({d.steps})")
    parser.add_argument("--teacher-steps", type=int, default=d.teacher_steps, help=f"teacher steps ({d.teacher_steps})")
    parser.add_argument("--no-teacher-update", action="store_true", help="keep the teacher as it is")
    parser.add_argument("--no-pseudo-labels", action="store_true",
                        help="without a water polygon, do not adapt the teacher from automatic pseudo-labels")
    parser.add_argument("--pseudo-label-layers", choices=PSEUDO_LABEL_LAYERS, default=d.pseudo_label_layers,
                        help="teacher layers that learn from pseudo-labels: its water classifier (head) or every "
                        f"layer (all) ({d.pseudo_label_layers})")
    parser.add_argument("--kd", choices=("unlabelled", "labelled", "none"), default=d.kd,
                        help="distillation: teacher's confident pixels of the whole area (unlabelled), the paper's "
                        f"gates on labelled pixels (labelled), or none ({d.kd})")
    parser.add_argument("--lambda-kd", type=float, default=d.lambda_kd, help=f"distillation weight ({d.lambda_kd})")
    parser.add_argument("--keep-undrawn", type=float, default=d.keep_undrawn,
                        help="weight of the term keeping the starting model's answers for classes no polygon holds, "
                        f"where nothing was drawn (0: off) ({d.keep_undrawn})")
    parser.add_argument("--teacher-keep", type=float, default=d.teacher_keep,
                        help="weight of the term keeping the starting water expert's sure answers where nothing was "
                        "drawn, while drawn polygons train it (0: off; docs/finetune.md) "
                        f"({d.teacher_keep})")
    parser.add_argument("--teacher-contradiction", type=float, default=d.teacher_contradiction,
                        help="the water expert's water is not distilled outside the polygons when it calls more than "
                        "this share of the drawn non-water pixels water (wet snow, dry sand; 1: never withheld) "
                        f"({d.teacher_contradiction})")
    parser.add_argument("--crop-size", type=int, default=d.crop_size, help=f"training crop edge ({d.crop_size})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size, help=f"crops per step ({d.batch_size})")
    parser.add_argument("--train-encoders", action="store_true", default=d.train_encoders,
                        help="let the student's encoders learn too (slower; default: fusion, decoder and head)")
    parser.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate ({d.lr:g})")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction,
                        help=f"share of each class's polygon area held out ({d.val_fraction})")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: default)")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier outputs in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    add_units_args(parser)
    add_sar_levels_arg(parser)
    add_noise_floor_arg(parser)
    add_json_flag(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> Dict[str, Any]:

    from ..config import FinetuneConfig
    from ..inputs.contract import InputOverrides
    from ..validate import (
        FINETUNE_RUN_FILES,
        RunLock,
        check_output_folder,
        check_outputs_not_inputs,
        choose_vector_layer,
    )

    if not args.student and not args.teacher:
        from .bundled import BUNDLED_STUDENT, BUNDLED_TEACHER

        raise ValueError(f"no model to fine-tune: give --student (with --optical) and --teacher; the bundled ones are "
                         f"{BUNDLED_STUDENT} and {BUNDLED_TEACHER}")
    if args.polygons is None and not args.teacher:
        raise ValueError("without --polygons only the teacher can adapt to the scene: give --teacher")
    apply_threads(args.threads)
    for name in ("keep_undrawn", "teacher_keep"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(args, name)}")
    if not 0 <= args.teacher_contradiction <= 1:
        raise ValueError(f"--teacher-contradiction is a share from 0 to 1, got {args.teacher_contradiction}")
    for name in ("steps", "batch_size", "crop_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    cfg = FinetuneConfig(
        steps=args.steps, teacher_steps=args.teacher_steps, train_encoders=args.train_encoders,
        update_teacher=not args.no_teacher_update, kd=args.kd, pseudo_labels=not args.no_pseudo_labels,
        pseudo_label_layers=args.pseudo_label_layers,
        lambda_kd=args.lambda_kd, keep_undrawn=args.keep_undrawn, teacher_keep=args.teacher_keep,
        teacher_contradiction=args.teacher_contradiction,
        crop_size=args.crop_size, batch_size=args.batch_size, lr=args.lr,
        val_fraction=args.val_fraction, seed=args.seed,
    )
    overrides = InputOverrides(tuple(args.optical_bands or ()), tuple(args.sar_bands or ()), args.optical_units,
                               args.sar_units, args.sar_calibration, args.sar_levels, args.sar_backscatter,
                               args.sar_noise_floor)
    out = check_output_folder(args.out)  # the checks every interface shares (engine.validate)
    check_outputs_not_inputs([out / name for name in FINETUNE_RUN_FILES], {
        "optical": args.optical, "SAR": args.sar, "polygons": args.polygons, "student": args.student,
        "teacher": args.teacher})
    if args.polygons:
        args.layer = choose_vector_layer(args.polygons, args.layer)
    with RunLock(out, "finetune"):
        result = _run_finetune(args, cfg, overrides)
    keys = ("model", "teacher", "teacher_companion", "report", "seconds", "timings", "split", "warnings", "gates",
            "pseudo_labels", "pseudo_labels_raster", "water_change_raster", "undrawn_classes")
    out_json = {k: result.get(k) for k in keys}
    out_json["held_out"] = summary(result)
    return {"ok": True, **out_json}


def _run_finetune(args: argparse.Namespace, cfg, overrides) -> Dict[str, Any]:
    from ..progress import ConsoleProgress
    from ..train.finetune import finetune_from_polygons

    return finetune_from_polygons(
        args.optical, args.sar, args.polygons, args.class_field, args.student, args.out, teacher_path=args.teacher,
        cfg=cfg, overrides=overrides, layer=args.layer, device=args.device, progress=ConsoleProgress(quiet=args.quiet),
        overwrite=args.overwrite, sar_encoder=args.sar_encoder,
    )


def summary(result: Dict[str, Any]) -> Dict[str, Any]:
    """The honest figures: held-out mIoU / water IoU of each network and of its linear baseline.

    A figure the held-out polygons cannot give (no held-out water) is None with ``not_measured``
    saying why; mIoU averages the classes the held-out polygons hold, the same for every column.
    """
    def pick(metrics, water_index, names):
        if not metrics:
            return None
        out = {"miou": metrics.get("miou"), "water_iou": metrics["iou"][water_index], "pixels": metrics.get("pixels")}
        unmeasured = metrics.get("unmeasured") or []
        if unmeasured:
            out["miou_classes"] = [n for c, n in enumerate(names) if c not in unmeasured]
        if out["water_iou"] is None:
            out["not_measured"] = "water IoU: the held-out polygons hold no water"
        return out

    baseline = result.get("baseline") or {}
    water = result.get("water_class", 3)
    names, binary = result.get("classes") or [], ["not water", "water"]
    return {
        "measured": result.get("validation") is not None or result.get("teacher_validation") is not None,
        "student": pick(result.get("validation"), water, names),
        "student_baseline": pick(baseline.get("student"), water, names),
        "teacher": pick(result.get("teacher_validation"), 1, binary),
        "teacher_baseline": pick(baseline.get("teacher"), 1, binary),
    }
