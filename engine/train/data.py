"""Training inputs: aligned rasters + labels (raster or polygons), or an exported patch set.

Everything derived from the inputs (label raster on the grid, normalisation records,
patch manifest) is written into the run folder once, so a resumed run reads exactly the
same data instead of recomputing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from torch.utils.data import Dataset

from ..config import (
    BandMapping,
    ClassSchema,
    NormalizationRecord,
    OpticalPreprocessConfig,
    PatchConfig,
    SarPreprocessConfig,
    from_dict,
    to_dict,
)
from ..files import atomic_write_bytes
from ..inputs.contract import InputOverrides, InputRecipe, resolve_inputs
from ..preprocess.pipeline import InputPreprocessor
from ..progress import NULL_PROGRESS, Progress
from ..raster.grid import Grid, grid_of
from .evaluate import is_raster

DATA_FILE = "data.json"


@dataclass
class TrainingInputs:
    """Where the training data comes from and how it is read.

    Either ``optical`` + ``sar`` + ``labels`` (a label raster, or a polygon layer with
    ``class_field``), or ``patch_set``: a folder exported earlier (``manifest.json`` beside
    the rasters it names). With no optical bands (``bands.optical_bands == ()``, a SAR-only
    model) no optical raster is read and ``optical`` stays None.
    """

    optical: Optional[str] = None
    sar: Optional[str] = None
    labels: Optional[str] = None
    class_field: Optional[str] = None
    layer: Optional[str] = None
    patch_set: Optional[str] = None
    bands: BandMapping = field(default_factory=BandMapping)
    patch: PatchConfig = field(default_factory=PatchConfig)
    sar_preprocess: SarPreprocessConfig = field(default_factory=SarPreprocessConfig)
    optical_preprocess: OpticalPreprocessConfig = field(default_factory=OpticalPreprocessConfig)
    resolution: Optional[float] = None
    # units of these files: "auto" (detected, as segmentation does) or the user's choice
    optical_units: str = "auto"
    sar_units: str = "auto"
    sar_calibration: float = 0.0
    sar_backscatter: str = "auto"  # config.SAR_BACKSCATTER: sigma or gamma nought (auto: named by the file)


@dataclass
class PreparedData:
    """The datasets of a run and what the checkpoint must remember about them."""

    datasets: Dict[str, Dataset]
    preprocessor: InputPreprocessor
    stored: Dict[str, Any]  # ModelMetadata fields: bands, chains, records, input statistics
    histogram: List[int]  # labelled pixels per class in the training split
    optical: Optional[Path]  # None for a SAR-only model
    sar: Path
    label: Path
    grid: Grid
    manifest: Dict[str, Any]


def _resolve_sources(
    inputs: TrainingInputs,
) -> Tuple[Optional[Path], Path, Optional[Path], Optional[Dict[str, Any]]]:
    """(optical or None for SAR-only, sar, labels, manifest-or-None) from rasters or a patch set."""
    sar_only = inputs.bands.optical_channels == 0
    if inputs.patch_set:
        from ..data.patches import load_manifest

        folder = Path(inputs.patch_set)
        manifest_path = folder / "manifest.json" if folder.is_dir() else folder
        if not manifest_path.is_file():
            raise ValueError(f"{folder} is not a patch set: no manifest.json in it")
        manifest = load_manifest(manifest_path)
        base = manifest_path.parent
        paths = []
        given = {"optical": inputs.optical, "sar": inputs.sar, "label": None}
        for key in ("optical", "sar", "label"):
            if key == "optical" and sar_only:
                paths.append(None)
                continue
            # --optical/--sar given with --patches name rasters a label-only manifest lacks
            value = given[key] or manifest.get("sources", {}).get(key)
            if not value:
                raise ValueError(f"{manifest_path} does not name its {key} raster; give --{key}")
            path = Path(value) if Path(value).is_absolute() or given[key] else base / value
            if not path.exists():
                raise FileNotFoundError(f"{key} raster {path} of the patch set {manifest_path} does not exist")
            paths.append(path)
        return paths[0], paths[1], paths[2], manifest
    needed = ("sar", "labels") if sar_only else ("optical", "sar", "labels")
    missing = [n for n in needed if not getattr(inputs, n)]
    if missing:
        flags = ", ".join(f"--{n}" for n in needed)
        raise ValueError(f"training needs {flags} (or --patches); missing: {missing}")
    for name in needed:
        if not Path(getattr(inputs, name)).exists():
            raise FileNotFoundError(f"{name} input {getattr(inputs, name)} does not exist")
    optical = None if sar_only else Path(inputs.optical)
    return optical, Path(inputs.sar), Path(inputs.labels), None


def _label_raster(
    inputs: TrainingInputs,
    labels: Path,
    optical: Optional[Path],
    sar: Path,
    schema: ClassSchema,
    run_dir: Path,
    progress: Progress,
) -> Tuple[Path, Grid]:
    """A label raster on the training grid: the given one, or the polygons rasterised."""
    if is_raster(labels):
        return labels, grid_of(labels)
    from ..raster.grid import default_grid
    from ..raster.labels import class_field_of, rasterize_labels_to_file

    class_field = class_field_of(labels, inputs.class_field, inputs.layer)

    # SAR-only: the SAR's own grid (its footprint, in its CRS when projected)
    grid = default_grid(optical or sar, sar, resolution=inputs.resolution, min_size=inputs.patch.patch_size)
    out = run_dir / "labels.tif"
    report = rasterize_labels_to_file(
        labels, class_field, grid, schema, out, layer=inputs.layer, overwrite=True, progress=progress
    )
    progress.info(
        f"rasterised {labels} onto a {grid.width}x{grid.height} grid: "
        f"{report['labelled_pixels']} labelled pixels, {report['conflict_pixels']} in conflict"
    )
    return out, grid


def train_histogram(manifest: Dict[str, Any], num_classes: int) -> List[int]:
    """Labelled pixels per class over the training patches of a manifest."""
    hist = np.zeros(num_classes, dtype=np.int64)
    for patch in manifest["patches"]:
        if patch["split"] == "train":
            counts = patch["class_counts"]
            items = counts.items() if isinstance(counts, dict) else enumerate(counts)
            for cls, n in items:
                if int(cls) < num_classes:
                    hist[int(cls)] += int(n)
    return hist.tolist()


def _overrides(inputs: TrainingInputs) -> InputOverrides:
    return InputOverrides(
        tuple(inputs.bands.optical_bands),
        tuple(inputs.bands.sar_bands),
        inputs.optical_units,
        inputs.sar_units,
        inputs.sar_calibration,
        sar_backscatter=inputs.sar_backscatter,
    )


def _stored_from_json(info: Dict[str, Any]) -> Dict[str, Any]:
    types = {
        "bands": BandMapping,
        "optical_preprocess": OpticalPreprocessConfig,
        "sar_preprocess": SarPreprocessConfig,
        "optical_normalization": NormalizationRecord,
        "sar_normalization": NormalizationRecord,
    }
    out = {k: (from_dict(t, info[k]) if info.get(k) is not None else None) for k, t in types.items()}
    out["input_stats"] = info.get("input_stats") or {}
    out["runtime_sar"] = from_dict(SarPreprocessConfig, info["runtime_sar"])
    return out


def prepare_data(
    inputs: TrainingInputs,
    schema: ClassSchema,
    run_dir: Path,
    recipe: Optional[InputRecipe] = None,
    augment: bool = True,
    seed: int = 42,
    reuse: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> PreparedData:
    """Build the train/val/test datasets of a run.

    The inputs are resolved by the input contract exactly as segmentation resolves them
    (units detected per file, the recipe's normalisation); the decisions and warnings are
    reported through ``progress``.

    Args:
        inputs: the data sources.
        schema: the classes.
        run_dir: the run folder (receives ``data.json``, ``manifest.json``, maybe ``labels.tif``).
        recipe: the input recipe of the model being trained further (stage 2, fine-tuning);
            default: a new model's, from ``inputs``' bands and chains.
        augment: augment the training split.
        seed: seeds the normalisation sample and the augmentation.
        reuse: read what an earlier start of this run saved (resume) instead of recomputing.
        progress: progress and cancellation.
    """
    from ..data.dataset import PatchDataset
    from ..data.patches import build_manifest, load_manifest, save_manifest

    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / DATA_FILE
    if reuse and saved.is_file():
        info = json.loads(saved.read_text())
        optical = Path(info["optical"]) if info.get("optical") else None
        sar, label = Path(info["sar"]), Path(info["label"])
        manifest = load_manifest(run_dir / "manifest.json")
        stored = _stored_from_json(info["stored"])
        grid = grid_of(label)
    else:
        optical, sar, label, manifest = _resolve_sources(inputs)
        recipe = recipe or InputRecipe(inputs.bands, inputs.optical_preprocess, inputs.sar_preprocess)
        resolved = resolve_inputs(recipe, optical, sar, _overrides(inputs), progress, seed=seed)
        resolved.report(progress)
        stored = resolved.stored()
        stored["runtime_sar"] = resolved.sar_cfg  # with per-band constants of uncalibrated SAR
        if manifest is None:
            label, grid = _label_raster(inputs, label, optical, sar, schema, run_dir, progress)
            progress.info("cutting the labelled area into tiles and patches (split first, crop later)")
            manifest = build_manifest(label, inputs.patch, schema)
        else:
            grid = grid_of(label)
        # naming all three rasters makes the run folder itself a patch set (--patches RUN_DIR)
        optical_text = str(optical) if optical is not None else None
        manifest.setdefault("sources", {}).update(optical=optical_text, sar=str(sar), label=str(label))
        save_manifest(manifest, run_dir / "manifest.json")
        info = {
            "optical": optical_text,
            "sar": str(sar),
            "label": str(label),
            "stored": to_dict(stored),
            "inputs": to_dict(inputs),
        }
        atomic_write_bytes(saved, json.dumps(info, indent=1).encode("utf-8"))
    bands = stored["bands"]
    runtime_sar, optical_cfg = stored["runtime_sar"], stored["optical_preprocess"]
    pre = InputPreprocessor(runtime_sar, optical_cfg, stored["sar_normalization"], stored["optical_normalization"])
    datasets = {
        split: PatchDataset(
            optical,
            sar,
            label,
            manifest,
            split,
            pre,
            augment=augment and split == "train",
            seed=seed,
            optical_bands=bands.optical_bands,
            sar_bands=bands.sar_bands,
        )
        for split in ("train", "val", "test")
    }
    stored = {k: v for k, v in stored.items() if k != "runtime_sar"}
    return PreparedData(
        datasets,
        pre,
        stored,
        train_histogram(manifest, schema.num_classes),
        optical,
        sar,
        label,
        grid,
        manifest,
    )


def _merged_stats(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Training statistics of several scenes: per band the widest 2-98 % range, the median median."""
    out: Dict[str, Any] = {}
    for modality in ("optical", "sar"):
        found = [p[modality] for p in parts if p.get(modality)]
        if not found:
            continue
        bands = []
        for i, first in enumerate(found[0]["bands"]):
            same = [f["bands"][i] for f in found if i < len(f["bands"]) and f["bands"][i].get("n")]
            band = dict(first)
            if same:
                band.update(p2=min(b["p2"] for b in same), p98=max(b["p98"] for b in same),
                            p50=float(np.median([b["p50"] for b in same])), n=sum(b["n"] for b in same))
            bands.append(band)
        units = sorted({f["units"] for f in found})
        out[modality] = {"units": units[0] if len(units) == 1 else "mixed", "bands": bands, "scenes": len(found)}
    return out


def combine_data(parts: List[PreparedData]) -> PreparedData:
    """One run over several scenes: the splits concatenated, class counts summed; the model
    stores the first scene's recipe and the statistics of all of them."""
    from torch.utils.data import ConcatDataset

    datasets = {split: ConcatDataset([p.datasets[split] for p in parts]) for split in ("train", "val", "test")}
    stored = dict(parts[0].stored, input_stats=_merged_stats([p.stored["input_stats"] for p in parts]))
    histogram = np.sum([p.histogram for p in parts], axis=0).tolist()
    first = parts[0]
    return PreparedData(datasets, first.preprocessor, stored, histogram, first.optical, first.sar, first.label,
                        first.grid, first.manifest)
