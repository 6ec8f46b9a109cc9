"""The main job on the bundled samples: segment, evaluate, build a styled QGIS project, report.

Runs ``sgcad:segment`` and ``sgcad:evaluate`` through ``scripts/qgis_process`` (the same
path as the Toolbox and the Modeler) on each bundled sample pair with the default models,
then writes ``demo_output/sgcad_demo.qgz`` (all layers styled over the inputs), a PNG
preview of each map and one HTML report with figures, timings and metrics.

Usage: ``.venv/bin/python scripts/demo.py [--out demo_output] [--setup-seconds S]``
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "resources" / "sample"
MODELS = ROOT / "resources" / "models"
STUDENT = MODELS / "sgcad_student.safetensors"
TEACHER = MODELS / "sgcad_teacher.safetensors"
SAR_ONLY = MODELS / "sgcad_student_sar_only.safetensors"  # SAR-only land cover (docs/sar_only.md)
QGIS_PROCESS = ROOT / "scripts" / "qgis_process"


@dataclass
class Case:
    """One sample pair with its reference labels."""

    name: str
    title: str
    optical: Path
    sar: Path
    reference: Path
    class_field: Optional[str] = None
    sar_bands: str = ""
    optical_bands: str = ""
    notes: str = ""
    outputs: Dict[str, str] = field(default_factory=dict)
    metrics: Dict[str, float] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)  # what sgcad:segment said about the inputs
    preview: Optional[Path] = None


CASES = [
    Case(
        "synthetic",
        "Synthetic six-class scene (seed 6, 512 × 512 px, 2 m)",
        SAMPLE / "synthetic" / "optical.tif",
        SAMPLE / "synthetic" / "sar.tif",
        SAMPLE / "synthetic" / "label.tif",
        notes="Held out from training: the default models never saw this seed.",
    ),
    Case(
        "rotterdam",
        "SpaceNet 6 Rotterdam, real X-band SAR (VV) + RGB (200 × 200 px, 4.5 m)",
        SAMPLE / "rotterdam" / "rgb_unmasked.tif",
        SAMPLE / "rotterdam" / "sar_masked.tif",
        SAMPLE / "rotterdam" / "labels_digitised.gpkg",
        class_field="class",
        sar_bands="4",
        notes=(
            "Real sensor the default models were not trained on; the reference is the project's "
            "hand-digitised polygons. SAR covers only the southern 61 % of the tile."
        ),
    ),
]


def run_algorithm(alg: str, params: Dict[str, str], profile: Path) -> Dict:
    """Run one algorithm through scripts/qgis_process with --json; return its results."""
    args = [str(QGIS_PROCESS), "run", alg, "--json", "--"]
    args += [f"{key}={value}" for key, value in params.items() if value not in ("", None)]
    env = dict(os.environ, SGCAD_QGIS_PROFILE=str(profile))
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
        raise SystemExit(f"demo: {alg} failed (exit {out.returncode}); its log is above")
    return json.loads(out.stdout[out.stdout.index("{"):])["results"]


def segment_and_evaluate(case: Case, out: Path, profile: Path) -> None:
    folder = out / case.name
    t0 = time.monotonic()
    results = run_algorithm(
        "sgcad:segment",
        {
            "OPTICAL": str(case.optical),
            "SAR": str(case.sar),
            "OPTICAL_BANDS": case.optical_bands,
            "SAR_BANDS": case.sar_bands,
            "MODEL": str(STUDENT),
            "TEACHER": str(TEACHER),
            "OUTPUT_FOLDER": str(folder),
        },
        profile,
    )
    case.seconds["segment (qgis_process, incl. start-up)"] = time.monotonic() - t0
    case.seconds["segment (engine)"] = float(results.get("SECONDS", 0.0))
    case.outputs = {k: v for k, v in results.items() if isinstance(v, str) and v.endswith(".tif")}
    case.warnings = [w for w in str(results.get("WARNINGS") or "").splitlines() if w]
    t0 = time.monotonic()
    params = {
        "PREDICTION": results["CLASSES"],
        "MODEL": str(STUDENT),
        "OUTPUT_HTML": str(folder / "accuracy.html"),
        "OUTPUT_JSON": str(folder / "accuracy.json"),
    }
    if case.class_field:
        params.update(REFERENCE_VECTOR=str(case.reference), CLASS_FIELD=case.class_field)
    else:
        params["REFERENCE_RASTER"] = str(case.reference)
    evaluation = run_algorithm("sgcad:evaluate", params, profile)
    case.seconds["evaluate"] = time.monotonic() - t0
    case.metrics = json.loads((folder / "accuracy.json").read_text())
    case.metrics.setdefault("oa", evaluation.get("OA"))


def finetune_rotterdam(case: Case, out: Path, profile: Path) -> Dict[str, float]:
    """The product's loop on the real sample: fine-tune on the 10 digitised training polygons,
    re-segment, and score zero-shot and fine-tuned maps on the 9 independent evaluation polygons."""
    evaluation = ROOT / "resources" / "labels" / "rotterdam_eval.gpkg"
    folder = out / "rotterdam_finetune"
    t0 = time.monotonic()
    tuned = run_algorithm(
        "sgcad:finetune",
        {"OPTICAL": str(case.optical), "SAR": str(case.sar), "SAR_BANDS": case.sar_bands,
         "STUDENT": str(STUDENT), "TEACHER": str(TEACHER), "LABEL_POLYGONS": str(case.reference),
         "CLASS_FIELD": "class", "OUTPUT_FOLDER": str(folder)},
        profile,
    )
    case.seconds["fine-tune on 10 polygons"] = time.monotonic() - t0
    figures: Dict[str, float] = {}
    for label, model, classes in (("zero-shot", STUDENT, case.outputs["CLASSES"]),
                                  ("fine-tuned", tuned["OUTPUT_MODEL"], None)):
        if classes is None:
            seg = run_algorithm("sgcad:segment", {"OPTICAL": str(case.optical), "SAR": str(case.sar),
                                                  "SAR_BANDS": case.sar_bands, "MODEL": str(model), "TEACHER": "",
                                                  "OUTPUT_FOLDER": str(folder / "map")}, profile)
            classes = seg["CLASSES"]
        result = run_algorithm("sgcad:evaluate", {"PREDICTION": classes, "MODEL": str(STUDENT),
                                                  "REFERENCE_VECTOR": str(evaluation), "CLASS_FIELD": "class",
                                                  "OUTPUT_HTML": str(folder / f"{label}.html"),
                                                  "OUTPUT_JSON": str(folder / f"{label}.json")}, profile)
        metrics = json.loads((folder / f"{label}.json").read_text())
        figures[label] = {"oa": metrics.get("oa", result.get("OA")), "miou": metrics.get("miou"),
                          "water_iou": metrics.get("water_iou")}
    figures["held_out_polygons"] = tuned.get("HELD_OUT_MIOU")
    figures["linear_baseline"] = tuned.get("BASELINE_MIOU")
    return figures


def sar_only_rotterdam(case: Case, out: Path, profile: Path) -> Dict[str, Dict[str, float]]:
    """The SAR-only model on the real sample, no optical image: zero-shot, then fine-tuned on the
    10 training polygons, both scored on the 9 independent evaluation polygons."""
    evaluation = ROOT / "resources" / "labels" / "rotterdam_eval.gpkg"
    folder = out / "rotterdam_sar_only"
    tuned = run_algorithm(
        "sgcad:finetune",
        {"SAR": str(case.sar), "SAR_BANDS": case.sar_bands, "STUDENT": str(SAR_ONLY),
         "LABEL_POLYGONS": str(case.reference), "CLASS_FIELD": "class", "OUTPUT_FOLDER": str(folder / "tuned")},
        profile,
    )
    figures: Dict[str, Dict[str, float]] = {}
    for label, model in (("zero-shot", SAR_ONLY), ("fine-tuned", Path(tuned["OUTPUT_MODEL"]))):
        seg = run_algorithm("sgcad:segment", {"SAR": str(case.sar), "SAR_BANDS": case.sar_bands,
                                              "MODEL": str(model), "OUTPUT_FOLDER": str(folder / label)}, profile)
        run_algorithm("sgcad:evaluate", {"PREDICTION": seg["CLASSES"], "MODEL": str(SAR_ONLY),
                                         "REFERENCE_VECTOR": str(evaluation), "CLASS_FIELD": "class",
                                         "OUTPUT_HTML": str(folder / f"{label}.html"),
                                         "OUTPUT_JSON": str(folder / f"{label}.json")}, profile)
        metrics = json.loads((folder / f"{label}.json").read_text())
        figures[label] = {"oa": metrics.get("oa"), "miou": metrics.get("miou"), "water_iou": metrics.get("water_iou")}
    return figures


def build_project(cases: List[Case], out: Path) -> Path:
    """Write the .qgz with inputs and styled outputs per case; render a PNG preview of each."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import (
        QgsApplication,
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsMultiBandColorRenderer,
        QgsProject,
        QgsRasterLayer,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSize

    app = QgsApplication([], False)
    app.initQgis()
    project = QgsProject.instance()
    project.setFileName(str(out / "sgcad_demo.qgz"))
    root = project.layerTreeRoot()
    names = {
        "GATES": "Teacher confidence gates",
        "WATER_PROBABILITY": "Water probability (SAR teacher)",
        "CONFIDENCE": "Confidence (negative = SAR only)",
        "CLASSES": "Land cover (SGCAD student)",
    }
    for case in cases:
        group = root.addGroup(case.title)
        layers = []
        for key in ("GATES", "CLASSES", "WATER_PROBABILITY", "CONFIDENCE"):
            path = case.outputs.get(key)
            if not path:
                continue
            layer = QgsRasterLayer(path, f"{names[key]} — {case.name}", "gdal")
            layer.loadDefaultStyle()  # the .qml written beside each output by sgcad:segment
            project.addMapLayer(layer, False)
            node = group.addLayer(layer)
            node.setItemVisibilityChecked(key in ("CLASSES", "GATES"))
            layers.append(layer)
        reference = QgsVectorLayer(str(case.reference), f"Reference labels — {case.name}", "ogr")
        if reference.isValid():
            project.addMapLayer(reference, False)
            group.addLayer(reference).setItemVisibilityChecked(False)
        sar = QgsRasterLayer(str(case.sar), f"SAR — {case.name}", "gdal")
        project.addMapLayer(sar, False)
        group.addLayer(sar).setItemVisibilityChecked(False)
        optical = QgsRasterLayer(str(case.optical), f"Optical — {case.name}", "gdal")
        if optical.bandCount() >= 3:
            optical.setRenderer(QgsMultiBandColorRenderer(optical.dataProvider(), 1, 2, 3))
        project.addMapLayer(optical, False)
        group.addLayer(optical)

        settings = QgsMapSettings()
        settings.setLayers([lyr for lyr in layers if "Land cover" in lyr.name()] + [optical])
        settings.setDestinationCrs(optical.crs())
        settings.setExtent(optical.extent())
        settings.setOutputSize(QSize(600, 600))
        job = QgsMapRendererParallelJob(settings)
        job.start()
        job.waitForFinished()
        case.preview = out / f"preview_{case.name}.png"
        job.renderedImage().save(str(case.preview), "PNG")
        del layers, optical, sar, reference
    if not project.write():
        raise SystemExit(f"demo: could not write {project.fileName()}")
    path = Path(project.fileName())
    project.clear()
    return path


def _img(path: Optional[Path]) -> str:
    if not path or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}" width="420">'


def write_report(cases: List[Case], out: Path, timings: Dict[str, float]) -> Path:
    rows = []
    for case in cases:
        m = case.metrics
        per_class = m.get("per_class", {})
        iou_cells = "".join(
            f"<td>{html.escape(name)}: {100 * v['iou']:.1f}</td>" if v.get("iou") is not None
            else f"<td>{html.escape(name)}: n/a</td>" for name, v in per_class.items()
        )
        figures = " · ".join(
            f"{label} {100 * float(m[key]):.1f} %" for key, label in
            (("oa", "OA"), ("miou", "mIoU"), ("water_iou", "water IoU")) if m.get(key) is not None
        )
        kappa = f" · Kappa {float(m['kappa']):.3f}" if m.get("kappa") is not None else ""
        times = "".join(f"<li>{html.escape(k)}: {v:.1f} s</li>" for k, v in case.seconds.items())
        rows.append(
            f"<h2>{html.escape(case.title)}</h2><p>{html.escape(case.notes)}</p>"
            f"{_img(case.preview)}<p><b>{figures}{kappa}</b></p>"
            f"<table><tr><th>IoU %</th>{iou_cells}</tr></table><ul>{times}</ul>"
            f"<p>Outputs: {', '.join(html.escape(Path(p).name) for p in case.outputs.values())} "
            f"in <code>{html.escape(case.name)}/</code>; accuracy report "
            f"<a href='{case.name}/accuracy.html'>{case.name}/accuracy.html</a>.</p>"
        )
    steps = "".join(f"<li>{html.escape(k)}: {v:.1f} s</li>" for k, v in timings.items())
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>SGCAD demo</title>"
        "<style>body{font-family:sans-serif;max-width:960px;margin:auto}td,th{padding:2px 8px}"
        "table{border-collapse:collapse}td{border:1px solid #ccc}</style></head><body>"
        "<h1>SGCAD demo: default models on the bundled samples</h1>"
        "<p>Land-cover maps by the default student (LightMCANet) with the SAR-only water teacher "
        "(HRNet), through <code>sgcad:segment</code> and <code>sgcad:evaluate</code>. Open "
        "<code>sgcad_demo.qgz</code> in QGIS to see every layer styled over the inputs.</p>"
        f"{''.join(rows)}<h2>Timings</h2><ul>{steps}</ul></body></html>"
    )
    path = out / "report.html"
    path.write_text(page)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "demo_output"))
    parser.add_argument("--setup-seconds", type=float, default=None)
    args = parser.parse_args(argv)
    for required in (STUDENT, TEACHER):
        if not required.is_file():
            raise SystemExit(f"demo: default model {required} is missing; `make demo-train` retrains it")
    out = Path(args.out).resolve()
    if out.exists():  # the demo's own folder: each run starts from a clean slate
        shutil.rmtree(out)
    out.mkdir(parents=True)
    profile = out / ".qgis-profile"
    timings: Dict[str, float] = {}
    if args.setup_seconds is not None:
        timings["setup"] = args.setup_seconds
    for case in CASES:
        t0 = time.monotonic()
        print(f"demo: segmenting {case.name} …", flush=True)
        segment_and_evaluate(case, out, profile)
        timings[f"{case.name}: segment + evaluate"] = time.monotonic() - t0
    t0 = time.monotonic()
    rotterdam = next(c for c in CASES if c.name == "rotterdam")
    print("demo: fine-tuning on the Rotterdam polygons …", flush=True)
    tuned = finetune_rotterdam(rotterdam, out, profile)
    timings["rotterdam: fine-tune, re-segment, evaluate"] = time.monotonic() - t0
    sar_only = None
    if SAR_ONLY.is_file():
        t0 = time.monotonic()
        print("demo: SAR-only model on Rotterdam (no optical image) …", flush=True)
        sar_only = sar_only_rotterdam(rotterdam, out, profile)
        timings["rotterdam SAR-only: fine-tune, segment, evaluate"] = time.monotonic() - t0
    t0 = time.monotonic()
    project = build_project(CASES, out)
    timings["QGIS project and previews"] = time.monotonic() - t0
    report = write_report(CASES, out, timings)
    shutil.rmtree(profile, ignore_errors=True)

    print("\n== SGCAD demo results ==")
    for case in CASES:
        m = case.metrics
        print(f"{case.name}: OA {100 * m.get('oa', 0):.1f} %  mIoU {100 * m.get('miou', 0):.1f} %  "
              f"water IoU {100 * (m.get('water_iou') or 0):.1f} %")
        for key, path in sorted(case.outputs.items()):
            print(f"  {key.lower():<18} {path}")
        for warning in case.warnings:
            print(f"  warning: {warning}")
    print("rotterdam, scored on 9 evaluation polygons no model saw (resources/labels/rotterdam_eval.gpkg):")
    for label in ("zero-shot", "fine-tuned"):
        f = tuned[label]
        print(f"  {label:<11} OA {100 * (f['oa'] or 0):.1f} %  mIoU {100 * (f['miou'] or 0):.1f} %  "
              f"water IoU {100 * (f['water_iou'] or 0):.1f} %")
    if sar_only:
        print("rotterdam, SAR-only model (no optical image), same evaluation polygons:")
        for label, f in sar_only.items():
            print(f"  {label:<11} OA {100 * (f['oa'] or 0):.1f} %  mIoU {100 * (f['miou'] or 0):.1f} %  "
                  f"water IoU {100 * (f['water_iou'] or 0):.1f} %")
    print(f"QGIS project: {project}")
    print(f"HTML report:  {report}")
    for step, seconds in timings.items():
        print(f"time  {step:<40} {seconds:6.1f} s")
    sys.stdout.flush()
    os._exit(0)  # skip QGIS/GDAL teardown, which can segfault at exit (PLATFORM notes)


if __name__ == "__main__":
    sys.exit(main())
