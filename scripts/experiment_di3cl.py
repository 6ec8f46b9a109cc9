"""Label efficiency of SAR encoder initialisations: random, supervised (synthetic), DI3CL-pretrained.

    .venv/bin/python scripts/experiment_di3cl.py [--scenes india,nigeria] [--fractions 0.05,0.25,1]
        [--seeds 1,2] [--steps 120] [--pretrain-steps 150] [--out docs/experiments/di3cl.json]

Real scenes: the Sen1Floods11 chips (512 x 512, hand-labelled water). Training labels come from
the left half only, scoring from the right half only. A label fraction keeps random 32 x 32
blocks of the left half's labelled pixels until that share of them is reached (few labels,
drawn in patches as a user draws polygons). The network is the student's SAR encoder (ResNet,
widths 32-256) with the FPN decoder and a water head, all layers trained, fed VV through the
model-input contract (Lee filter, dB, fixed range). Encoder initialisations: random; the SAR
encoder of the bundled student (supervised on synthetic scenes); DI3CL pretrained without labels
on the SAR of all scenes of the run (whole chips, as a user pretrains on the scenes they map),
and the same without the Dynamic Instance term and without the Contour Consistency term.
Baselines on the same pixels: a per-pixel linear discriminant on VV dB fitted on the same
training pixels, and Otsu on VV dB.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
import torch.nn.functional as F  # noqa: N812

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from eval_finetune_real import iou, otsu  # noqa: E402

from engine.config import PretrainConfig, StudentConfig  # noqa: E402
from engine.inputs.contract import InputRecipe, resolve_inputs  # noqa: E402
from engine.inputs.reader import PairReader  # noqa: E402
from engine.models.checkpoint import load_model  # noqa: E402
from engine.models.registry import DECODERS, ENCODERS  # noqa: E402
from engine.pretrain import pretrain_sar  # noqa: E402
from engine.pretrain.transfer import load_encoder  # noqa: E402
from engine.raster.grid import grid_of  # noqa: E402
from engine.train.baseline import fit_lda  # noqa: E402

S1F = ROOT.parent / "shared" / "data" / "sen1floods11_s1"
SCENES = {"india": "India_900498", "nigeria": "Nigeria_812045"}
STUDENT = ROOT / "resources" / "models" / "sgcad_student.safetensors"
BLOCK = 32
CROP = 64


class SarWaterNet(torch.nn.Module):
    """The student's SAR encoder, the FPN decoder and a two-class head."""

    def __init__(self, config: StudentConfig) -> None:
        super().__init__()
        self.sar_encoder = ENCODERS.get(config.encoder)(config.sar_channels, config)
        self.decoder = DECODERS.get(config.decoder)(config, self.sar_encoder.channels)
        self.head = torch.nn.Conv2d(config.decoder_channels, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.decoder(self.sar_encoder(x)))
        return F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)


def read_scene(name: str):
    sar = S1F / f"{SCENES[name]}_S1Hand.tif"
    resolved = resolve_inputs(InputRecipe(), None, sar)
    grid = grid_of(sar)
    reader = PairReader(None, sar, grid, (), resolved.bands.sar_bands, [resolved.preprocessor])
    x = reader.read(0, 0, grid.width, grid.height).sar[0]
    with rasterio.open(S1F / f"{SCENES[name]}_LabelHand.tif") as src:
        label = src.read(1).astype(np.int64)
    label = np.where((label < 0) | ~np.isfinite(x[0]), 255, label)
    with rasterio.open(sar) as src:
        vv = src.read(1).astype(np.float64)
    return sar, np.nan_to_num(x).astype(np.float32), label, vv


def label_subset(label: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Left-half labels reduced to random 32 x 32 blocks holding ``fraction`` of its labelled pixels."""
    half = label.shape[1] // 2
    train = np.full_like(label, 255)
    train[:, :half] = label[:, :half]
    if fraction >= 1:
        return train
    total = (train != 255).sum()
    rng = np.random.default_rng(seed)
    cells = [(r, c) for r in range(0, label.shape[0], BLOCK) for c in range(0, half, BLOCK)]
    out = np.full_like(label, 255)
    for i in rng.permutation(len(cells)):
        r, c = cells[i]
        out[r:r + BLOCK, c:c + BLOCK] = train[r:r + BLOCK, c:c + BLOCK]
        if (out != 255).sum() >= fraction * total:
            break
    return out


def train_and_score(x, train, truth, init, steps, seed, freeze_encoder: bool = False) -> float:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SarWaterNet(StudentConfig())
    if init is not None:
        net.sar_encoder.load_state_dict(init)
    if freeze_encoder:  # a probe of the encoder's features: only the decoder and head learn
        net.sar_encoder.requires_grad_(False)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    rows, cols = np.nonzero(train != 255)
    xt, yt = torch.from_numpy(x), torch.from_numpy(train)
    h, w = train.shape
    counts = np.bincount(train[train != 255], minlength=2).astype(np.float64)
    weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / 2, dtype=torch.float32)
    for _ in range(steps):
        idx = rng.integers(len(rows), size=8)
        r0 = np.clip(rows[idx] - CROP // 2, 0, h - CROP)
        c0 = np.clip(cols[idx] - CROP // 2, 0, w - CROP)
        xb = torch.stack([xt[:, r:r + CROP, c:c + CROP] for r, c in zip(r0, c0)])
        yb = torch.stack([yt[r:r + CROP, c:c + CROP] for r, c in zip(r0, c0)])
        if rng.random() < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        net.train()
        if freeze_encoder:
            net.sar_encoder.eval()  # its BatchNorm statistics stay as initialised
        loss = F.cross_entropy(net(xb), yb, weight=weight, ignore_index=255)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(xt[None]).argmax(1)[0].numpy()
    return iou(pred, truth)


def to_db(vv: np.ndarray) -> np.ndarray:
    """VV in dB (the Sen1Floods11 chips already hold dB; linear power is converted)."""
    return vv if np.nanmedian(vv) < 0 else 10 * np.log10(np.maximum(vv, 1e-10))


def otsu_score(vv: np.ndarray, truth: np.ndarray) -> float:
    db = to_db(vv)
    return iou(db < otsu(db[(truth != 255) & np.isfinite(db)]), truth)


def lda_score(vv: np.ndarray, train: np.ndarray, truth: np.ndarray) -> float:
    db = to_db(vv)
    keep = (train != 255).ravel() & np.isfinite(db).ravel()
    lda = fit_lda(db.ravel()[keep][:, None], train.ravel()[keep])
    return iou(lda.predict(np.nan_to_num(db, nan=float(np.nanmedian(db))).ravel()[:, None]).reshape(db.shape), truth)


def rebaseline(path: Path, seeds) -> None:
    """Recompute the Otsu and linear baselines of a results file (they need no network)."""
    results = json.loads(path.read_text())
    for name, row in results["scenes"].items():
        _, _, label, vv = read_scene(name)
        truth = label.copy()
        truth[:, : label.shape[1] // 2] = 255
        row["otsu_vv"] = otsu_score(vv, truth)
        for fraction, cell in row["fractions"].items():
            cell["lda_vv"] = [lda_score(vv, label_subset(label, float(fraction), s), truth) for s in seeds]
    path.write_text(json.dumps(results, indent=1))


INITS = ("random", "supervised_synthetic", "di3cl", "di3cl_no_di", "di3cl_no_cc", "lda_vv")


def table(results: dict) -> str:
    """Markdown: water IoU (%) per scene, label fraction and initialisation, mean over seeds [min-max]."""
    lines = ["| scene | labels (pixels) | " + " | ".join(INITS) + " |", "|---|---:|" + "---:|" * len(INITS)]
    for name, row in results["scenes"].items():
        for fraction, cell in row["fractions"].items():
            values = []
            for init in INITS:
                v = 100 * np.array(cell[init])
                values.append(f"{v.mean():.1f} [{v.min():.1f}-{v.max():.1f}]")
            share = f"{100 * float(fraction):g} % ({cell['labelled_pixels']})"
            lines.append(f"| {name} | {share} | " + " | ".join(values) + " |")
        lines.append(f"| {name} | Otsu on VV (no labels) | {100 * row['otsu_vv']:.1f} |" + " |" * (len(INITS) - 1))
    lines += ["", "Paired by seed (same labels) against `random`: mean difference in IoU points, and seeds "
              "where the initialisation is better.", ""]
    others = [i for i in INITS if i != "random"]
    lines += ["| scene | labels | " + " | ".join(others) + " |", "|---|---:|" + "---:|" * len(others)]
    for name, row in results["scenes"].items():
        for fraction, cell in row["fractions"].items():
            base = 100 * np.array(cell["random"])
            diffs = [100 * np.array(cell[i]) - base for i in others]
            values = [f"{d.mean():+.1f} ({(d > 0).sum()}/{len(d)})" for d in diffs]
            lines.append(f"| {name} | {100 * float(fraction):g} % | " + " | ".join(values) + " |")
    return "\n".join(lines)


def merge(paths) -> dict:
    """One results file from runs of the same settings: other seeds of a label fraction are
    concatenated, other fractions (or scenes) are added, fractions kept in increasing order."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    out = runs[0]
    for path, other in zip(paths[1:], runs[1:]):
        for key, default in (("steps", None), ("pretrain_steps", None), ("frozen_encoder", False)):
            if other.get(key, default) != out.get(key, default):  # files of other settings do not mix
                raise SystemExit(f"{path}: {key} is {other.get(key, default)}, {paths[0]} has {out.get(key, default)}")
        for name, row in other["scenes"].items():
            if name not in out["scenes"]:
                out["scenes"][name] = row
                continue
            fractions = out["scenes"][name]["fractions"]
            for fraction, cell in row["fractions"].items():
                if fraction not in fractions:
                    fractions[fraction] = cell
                    continue
                for key, values in cell.items():
                    if isinstance(values, list):
                        fractions[fraction][key] = fractions[fraction][key] + values
            out["scenes"][name]["fractions"] = dict(sorted(fractions.items(), key=lambda item: float(item[0])))
        out["seconds"] = out.get("seconds", 0) + other.get("seconds", 0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", default="india,nigeria")
    parser.add_argument("--fractions", default="0.05,0.25,1")
    parser.add_argument("--seeds", default="1,2")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--work", default=str(ROOT / "build" / "di3cl_experiment"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "experiments" / "di3cl.json"))
    parser.add_argument("--freeze-encoder", action="store_true", help="train only the decoder and head")
    parser.add_argument("--reuse", action="store_true", help="reuse encoders already pretrained in --work")
    parser.add_argument("--table", help="print the markdown table of a results file and stop")
    parser.add_argument("--merge", nargs="+", help="merge results files (other seeds or fractions) into --out and stop")
    parser.add_argument("--rebaseline", action="store_true", help="recompute the baselines of --out and stop")
    args = parser.parse_args()
    if args.rebaseline:
        rebaseline(Path(args.out), [int(s) for s in args.seeds.split(",")])
        return
    if args.merge:
        Path(args.out).write_text(json.dumps(merge(args.merge), indent=1))
        return
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    supervised = load_model(STUDENT, "student")[0].sar_encoder.state_dict()
    results = {"protocol": __doc__.split("\n\n", 2)[1], "steps": args.steps, "pretrain_steps": args.pretrain_steps,
               "frozen_encoder": args.freeze_encoder,
               "scenes": {}}
    names = args.scenes.split(",")
    scenes = {name: read_scene(name) for name in names}
    inits = {"random": None, "supervised_synthetic": supervised}
    results["pretrain"] = {}
    for variant, weights in (("di3cl", {}), ("di3cl_no_di", {"di_weight": 0.0}), ("di3cl_no_cc", {"cc_weight": 0.0})):
        cfg = PretrainConfig(steps=args.pretrain_steps, view_size=64, block_size=128, blocks_per_step=16,
                             queue_size=1024, device="cpu", **weights)
        ts = time.perf_counter()
        encoder = Path(args.work) / variant / "sar_encoder.safetensors"
        if not (args.reuse and encoder.exists()):
            encoder = pretrain_sar([scenes[n][0] for n in names], Path(args.work) / variant, cfg, overwrite=True,
                                   resume=False)["encoder"]
        inits[variant] = load_encoder(encoder)[0]
        history = json.loads((Path(args.work) / variant / "history.json").read_text())["epochs"]
        results["pretrain"][variant] = {"seconds": round(time.perf_counter() - ts, 1), "first": history[0],
                                        "last": history[-1]}
        print(variant, "pretrained", results["pretrain"][variant], flush=True)
    for name in names:
        sar, x, label, vv = scenes[name]
        truth = label.copy()
        truth[:, : label.shape[1] // 2] = 255
        row = {"fractions": {}, "otsu_vv": otsu_score(vv, truth)}
        for fraction in [float(f) for f in args.fractions.split(",")]:
            cell = {}
            for seed in [int(s) for s in args.seeds.split(",")]:
                train = label_subset(label, fraction, seed)
                cell.setdefault("lda_vv", []).append(lda_score(vv, train, truth))
                for init_name, init in inits.items():
                    score = train_and_score(x, train, truth, init, args.steps, seed, args.freeze_encoder)
                    cell.setdefault(init_name, []).append(score)
                    print(name, fraction, seed, init_name, round(score, 4), flush=True)
            cell["labelled_pixels"] = int((label_subset(label, fraction, 1) != 255).sum())
            row["fractions"][str(fraction)] = cell
            results["scenes"][name] = row
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(results, indent=1))  # partial results survive a stop
    results["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print("written", args.out, results["seconds"], "s")


if __name__ == "__main__":
    main()
