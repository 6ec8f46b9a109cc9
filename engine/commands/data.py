"""Data commands: ``synth``, ``preprocess``, ``align``, ``rasterize``, ``patches``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Dict

from ..cli import add_json_flag, int_list
from ..config import ClassSchema, OpticalPreprocessConfig, PatchConfig, SarPreprocessConfig, from_dict
from ..files import output_folder
from ..progress import ConsoleProgress
from ..validate import (
    RunLock,
    check_distinct_outputs,
    check_output_folder,
    check_outputs_not_inputs,
    choose_vector_layer,
)


def _schema(path: str) -> ClassSchema:
    if not path:
        return ClassSchema()
    import json

    return from_dict(ClassSchema, json.loads(Path(path).read_text()))


def _progress(args) -> ConsoleProgress:
    return ConsoleProgress(quiet=bool(getattr(args, "json", False)))


def run_synth(args) -> Dict[str, Any]:
    from ..data.synthetic import generate_scene

    check_output_folder(args.out)
    result = generate_scene(
        args.out, size=args.size, seed=args.seed, looks=args.looks,
        misregistration=(args.shift, args.shift), clouds=not args.no_clouds,
        confusers=not args.no_confusers, resolution=args.resolution,
        overwrite=args.overwrite, progress=_progress(args),
    )
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in result.items()}


def run_preprocess(args) -> Dict[str, Any]:
    from ..data.raster_ops import preprocess_raster

    if args.modality == "sar":
        cfg = SarPreprocessConfig(
            units=args.units, calibration_constant=args.calibration_constant or 0.0, backscatter=args.backscatter,
            incidence_normalize=args.incidence_angle is not None or args.incidence_band is not None,
            incidence_angle_deg=args.incidence_angle, incidence_band=args.incidence_band,
            lee_filter=not args.no_lee, lee_window=args.lee_window, lee_looks=args.looks,
            to_db=not args.no_db, robust_normalize=not args.no_normalize, normalization="scene",
        )
    else:
        custom = args.scale != 1.0 or args.offset != 0.0
        cfg = OpticalPreprocessConfig(units="custom" if custom else args.units, scale=args.scale, offset=args.offset,
                                      robust_normalize=not args.no_normalize)
    record = args.record or str(Path(args.output).with_suffix(".normalization.json"))
    check_outputs_not_inputs([args.output, record], {"raster": args.input})
    check_distinct_outputs({"output": args.output, "normalisation record": record})
    bands = int_list(args.bands) or None
    if bands is None:
        import rasterio

        with rasterio.open(args.input) as src:
            bands = list(range(1, src.count + 1))
    return preprocess_raster(args.input, args.output, bands, cfg, record_path=record,
                             overwrite=args.overwrite, progress=_progress(args))


def run_align(args) -> Dict[str, Any]:
    from ..data.raster_ops import align_pair

    bounds = tuple(float(v) for v in args.bounds.split(",")) if args.bounds else None
    out = check_output_folder(args.out)
    check_outputs_not_inputs([out / "optical_aligned.tif", out / "sar_aligned.tif"],
                             {"optical": args.optical, "SAR": args.sar})
    with output_folder(out):  # a refused pair leaves no empty folder behind
        return align_pair(args.optical, args.sar, out / "optical_aligned.tif", out / "sar_aligned.tif",
                          optical_bands=int_list(args.optical_bands) or None,
                          sar_bands=int_list(args.sar_bands) or None, resolution=args.resolution, crs=args.crs,
                          bounds=bounds, overwrite=args.overwrite, progress=_progress(args))


def run_rasterize(args) -> Dict[str, Any]:
    from ..raster.grid import grid_of
    from ..raster.labels import rasterize_labels_to_file

    check_outputs_not_inputs([args.output], {"polygon": args.vector, "grid raster": args.grid, "schema": args.schema})
    layer = choose_vector_layer(args.vector, args.layer)
    report = rasterize_labels_to_file(args.vector, args.class_field, grid_of(args.grid), _schema(args.schema),
                                      args.output, layer=layer, overwrite=args.overwrite,
                                      progress=_progress(args))
    return {"output": str(args.output), **report}


def run_patches(args) -> Dict[str, Any]:
    from ..data.patches import build_manifest, save_manifest
    from ..train.evaluate import is_raster

    cfg = PatchConfig(tile_size=args.tile_size, patch_size=args.patch_size, seed=args.seed)
    if Path(args.label).is_file() and not is_raster(args.label):  # was "corrupt ... re-download it"
        raise ValueError(f"{args.label}: a vector file, but --label takes a label raster; rasterize the polygons onto "
                         "the imagery's grid first (python -m engine rasterize --vector ... --grid SAR.tif --output "
                         "labels.tif, or sgcad:rasterizelabels)")
    out = check_output_folder(args.out)
    manifest_path = out / "manifest.json"
    sources = {"label": Path(args.label)}
    if args.optical and args.sar:
        sources.update(optical=Path(args.optical), sar=Path(args.sar))
    copies = {key: out / f"{key}{src.suffix}" for key, src in sources.items()} if args.copy_rasters else {}
    check_outputs_not_inputs([manifest_path, *copies.values()], {**sources, "schema": args.schema})
    with RunLock(out, "patches"):
        if manifest_path.exists() and not args.overwrite:
            raise ValueError(f"{manifest_path} exists; pass --overwrite to replace it")
        manifest = build_manifest(args.label, cfg, _schema(args.schema), progress=_progress(args))
        for key, dst in copies.items():  # a self-contained patch set: the rasters travel with the manifest
            if dst.exists() and not args.overwrite:
                raise ValueError(f"{dst} exists; pass --overwrite to replace it")
            tmp = dst.with_name(f".{dst.stem}.part{dst.suffix}")
            try:
                shutil.copyfile(sources[key], tmp)
                tmp.replace(dst)
            finally:
                tmp.unlink(missing_ok=True)
            sources[key] = Path(dst.name)
        manifest["sources"] = {k: str(v) for k, v in sources.items()}
        save_manifest(manifest, manifest_path)
    return {"manifest": str(manifest_path), "tile_size": manifest["tile_size"],
            "summary": manifest["summary"], "warnings": manifest["warnings"]}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a seeded synthetic optical+SAR scene with labels")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--size", type=int, default=512, help="width and height in pixels")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--looks", type=float, default=4.0, help="SAR equivalent number of looks")
    p.add_argument("--shift", type=float, default=0.0, help="SAR misregistration in pixels (x and y)")
    p.add_argument("--resolution", type=float, default=2.0, help="pixel size in metres")
    p.add_argument("--no-clouds", action="store_true")
    p.add_argument("--no-confusers", action="store_true", help="no water-like dark areas in the optical")
    p.add_argument("--overwrite", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run_synth)

    p = sub.add_parser("preprocess", help="SAR or optical chain + robust normalisation, raster to raster")
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--modality", choices=["sar", "optical"], required=True)
    p.add_argument("--bands", default="", help="1-based bands, comma-separated (default all)")
    p.add_argument("--record", default="", help="normalisation record JSON (default beside the output)")
    p.add_argument("--units", default="auto",
                   help="units of the input: auto (detected); SAR linear, db, amplitude, dn; "
                   "optical uint8, reflectance10000, reflectance, dn, landsat_c2")
    p.add_argument("--calibration-constant", type=float, default=None,
                   help="SAR units dn: sigma0 = DN^2 / constant")
    p.add_argument("--backscatter", choices=("auto", "sigma0", "gamma0"), default="auto",
                   help="SAR: auto (named by the file, else sigma0), sigma0, gamma0 (read as sigma0 x cos 37 deg)")
    p.add_argument("--incidence-angle", type=float, default=None, help="SAR: constant incidence angle (deg)")
    p.add_argument("--incidence-band", type=int, default=None, help="SAR: band holding the angle (deg)")
    p.add_argument("--no-lee", action="store_true")
    p.add_argument("--lee-window", type=int, default=7)
    p.add_argument("--looks", type=float, default=1.0, help="SAR: looks for the Lee filter")
    p.add_argument("--no-db", action="store_true")
    p.add_argument("--scale", type=float, default=1.0, help="optical: custom linear scale (instead of --units)")
    p.add_argument("--offset", type=float, default=0.0, help="optical: custom offset after scaling")
    p.add_argument("--no-normalize", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run_preprocess)

    p = sub.add_parser("align", help="bring an optical and a SAR raster onto one grid")
    p.add_argument("--optical", required=True)
    p.add_argument("--sar", required=True)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--optical-bands", default="")
    p.add_argument("--sar-bands", default="")
    p.add_argument("--resolution", type=float, default=None)
    p.add_argument("--crs", default=None, help="target CRS, e.g. EPSG:32631 (projected)")
    p.add_argument("--bounds", default="", help="left,bottom,right,top in the target CRS")
    p.add_argument("--overwrite", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run_align)

    p = sub.add_parser("rasterize", help="label polygons onto a raster's grid (255 = unlabelled)")
    p.add_argument("--vector", required=True)
    p.add_argument("--class-field", required=True, help="field holding class ids or names")
    p.add_argument("--grid", required=True, help="raster whose grid the labels take")
    p.add_argument("--output", required=True)
    p.add_argument("--layer", default=None)
    p.add_argument("--schema", default="", help="class schema JSON (default: the six classes)")
    p.add_argument("--overwrite", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run_rasterize)

    p = sub.add_parser("patches", help="split-first-crop-later patch manifest (optionally a patch set)")
    p.add_argument("--label", required=True, help="label raster (255 = unlabelled)")
    p.add_argument("--out", required=True, help="output folder (manifest.json)")
    p.add_argument("--optical", default="")
    p.add_argument("--sar", default="")
    p.add_argument("--tile-size", type=int, default=4096)
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--schema", default="")
    p.add_argument("--copy-rasters", action="store_true", help="copy the rasters into the folder")
    p.add_argument("--overwrite", action="store_true")
    add_json_flag(p)
    p.set_defaults(func=run_patches)
