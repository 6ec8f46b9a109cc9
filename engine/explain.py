"""Explanations of a segmentation from its measured quantities (no language model).

For a segmented area (a whole ``engine segment`` run, an AOI inside it, or one pixel window
such as a tile clicked in the dock) :func:`explain_run` reads the run's rasters window by window
and writes a short text from numbers it measured:

* class shares and the mean confidence of each class (``classes.tif``, ``confidence.tif``);
* where the model is least sure: the compass sector of the area (a 3 x 3 division; north is
  the top of a north-up grid) holding most of a class's low-confidence pixels, and whether those
  lie on the class's edges (a shoreline for water);
* the share of pixels answered from SAR alone (optical missing or masked as cloud: negative
  confidence), where only water vs non-water is known;
* with a water expert (``gates.tif``, ``water_probability.tif``): the share inside its
  confident water and non-water gates, and where expert and model agree or disagree;
* with reference labels (raster or polygons): OA, mIoU and the most confused class pairs
  (:class:`engine.metrics.ConfusionMatrix`);
* what to do next, by fixed rules (e.g. "draw road polygons in the south-west, where the
  model is least confident").

The result holds the text, its sentences, every number it used (JSON) and ``cited``: each
number printed in the text with the key of its value, so a test checks all of them. The same
inputs always give the same text. Nothing here calls a language model; no model is downloaded.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import rasterio
from rasterio.windows import Window

from .config import ClassSchema
from .files import atomic_write_bytes
from .metrics import ConfusionMatrix
from .progress import NULL_PROGRESS, Progress
from .raster.grid import row_areas_m2
from .raster.io import iter_windows, read_bands
from .raster.measure import GroundMeasure

PathLike = Union[str, Path]
SAR_ONLY_NON_WATER = 254  # engine.inference.products (not imported: no torch needed here)
FILES = {"classes": "classes.tif", "confidence": "confidence.tif", "water": "water_probability.tif",
         "gates": "gates.tif"}
OUTPUT_JSON = "explanation.json"
REPORT = "report.html"
LOW_CONFIDENCE = 0.6  # a student's maximum class probability below this is "low confidence"
SECTORS = (("north-west", "north", "north-east"), ("west", "centre", "east"),
           ("south-west", "south", "south-east"))
MARK = "<!-- sgcad-explanation{tag}:{end} -->"  # one section per kind (whole run, _aoi, _window)
_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


# ---------------------------------------------------------------------- measuring
def _schema_of(classes_path: Path) -> ClassSchema:
    """Class names and water class from the tags ``engine segment`` writes into ``classes.tif``."""
    with rasterio.open(classes_path) as src:
        tags = src.tags()
    try:
        names = json.loads(tags["class_names"])
        ids = sorted(int(k) for k in names if int(k) < SAR_ONLY_NON_WATER)
        return ClassSchema(names=tuple(names[str(i)] for i in ids), water_class=int(tags.get("water_class", 3)))
    except (KeyError, ValueError, TypeError):
        return ClassSchema()


def _labels_reader(labels: PathLike, class_field: Optional[str], layer: Optional[str], grid, schema,
                   progress: Progress = NULL_PROGRESS):
    from .raster.grid import read_on_grid
    from .train.evaluate import is_raster

    labels = Path(labels)
    if not labels.exists():
        raise FileNotFoundError(f"reference labels {labels} do not exist")
    if is_raster(labels):
        def read(window: Window) -> np.ndarray:
            ref = read_on_grid(labels, [1], grid, window, resampling="nearest")[0]
            return np.where(np.isfinite(ref), ref, schema.ignore_index).astype(np.int64)
        return read
    from .raster.labels import class_field_of, rasterize_window, read_label_polygons

    class_field = class_field_of(labels, class_field, layer)
    by_class, _ = read_label_polygons(labels, class_field, grid, schema, layer=layer, progress=progress)
    return lambda window: rasterize_window(by_class, grid, window, schema.ignore_index)[0].astype(np.int64)


def _edges(classes: np.ndarray) -> np.ndarray:
    """True where a 4-neighbour holds another value (the array carries a 1-pixel halo)."""
    c = classes
    core = c[1:-1, 1:-1]
    edge = np.zeros(core.shape, bool)
    for nb in (c[:-2, 1:-1], c[2:, 1:-1], c[1:-1, :-2], c[1:-1, 2:]):
        edge |= (nb != core) & (nb != 255)
    return edge


def measure(
    run_dir: PathLike,
    labels: Optional[PathLike] = None,
    class_field: Optional[str] = None,
    layer: Optional[str] = None,
    aoi: Any = None,
    window: Optional[Tuple[int, int, int, int]] = None,
    low_confidence: float = LOW_CONFIDENCE,
    block: int = 512,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """The numbers of an explanation (see :func:`explain_run`), streamed by windows."""
    from .raster.grid import grid_of

    run_dir = Path(run_dir)
    paths = {k: run_dir / f for k, f in FILES.items()}
    for key in ("classes", "confidence"):
        if not paths[key].is_file():
            raise FileNotFoundError(
                f"{paths[key]} does not exist: --run must be the output folder of a segmentation (engine segment)"
            )
    has_teacher = paths["gates"].is_file() and paths["water"].is_file()
    schema = _schema_of(paths["classes"])
    grid = grid_of(paths["classes"])
    k = schema.num_classes
    x0, y0, x1, y1 = 0, 0, grid.width, grid.height
    region_kind, inside_mask = "run", None
    if window is not None:
        c, r, w, h = (int(v) for v in window)
        x0, y0, x1, y1 = max(c, 0), max(r, 0), min(c + w, grid.width), min(r + h, grid.height)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"window {tuple(window)} lies outside the {grid.width} x {grid.height} run")
        region_kind = "window"
    elif aoi is not None:
        from .inference.aoi import load_aoi

        area = load_aoi(aoi, grid)  # refuses a file of several layers, as segment and flood do
        x0, y0, x1, y1 = area.pixel_window()
        inside_mask = None if area.is_box else area
        region_kind = "aoi"
    width, height = x1 - x0, y1 - y0
    region = grid.window_grid(Window(x0, y0, width, height))
    read_labels = _labels_reader(labels, class_field, layer, grid, schema, progress) if labels else None

    pixels = np.zeros(k + 1, np.int64)  # last: SAR-only non-water
    conf_sum = np.zeros(k, np.float64)
    low = np.zeros(k, np.int64)
    low_edge = np.zeros(k, np.int64)
    edge_all = np.zeros(k, np.int64)
    low_sector = np.zeros((k, 3, 3), np.int64)
    sar_only = sar_only_water = nodata = answered_n = 0
    area_m2 = 0.0
    gate_water = gate_non = agree_n = agree_yes = 0
    disagree_sector = np.zeros((3, 3), np.int64)
    cm = ConfusionMatrix(k, schema.ignore_index)
    labelled_without_class = 0
    windows = list(iter_windows(width, height, block, halo=1))
    north_up = grid.transform.e < 0 and grid.transform.b == 0 and grid.transform.d == 0
    for i, (core, padded) in enumerate(windows):
        progress.check()
        gwin = Window(core.col_off + x0, core.row_off + y0, core.width, core.height)
        gpad = Window(padded.col_off + x0, padded.row_off + y0, padded.width, padded.height)
        cls_pad = read_bands(paths["classes"], [1], gpad)[0]
        cls_pad = np.where(np.isfinite(cls_pad), cls_pad, 255).astype(np.int64)
        # pixels outside the region count as nodata for the edge test too
        rr, cc = np.mgrid[gpad.row_off:gpad.row_off + gpad.height, gpad.col_off:gpad.col_off + gpad.width]
        cls_pad[(rr < y0) | (rr >= y1) | (cc < x0) | (cc >= x1)] = 255
        cls = cls_pad[1:-1, 1:-1]
        conf = read_bands(paths["confidence"], [1], gwin)[0]
        inside = np.ones(cls.shape, bool)
        if inside_mask is not None:
            m = inside_mask.mask(region, int(core.col_off), int(core.row_off), int(core.width), int(core.height))
            if m is not None:
                inside = m
        answered = inside & (cls != 255)
        nodata += int((inside & (cls == 255)).sum())
        both = answered & np.isfinite(conf) & (conf >= 0) & (cls < k)
        only = answered & ~both & ((cls == SAR_ONLY_NON_WATER) | (cls == schema.water_class))
        answered = both | only
        if north_up:  # metres on a projected grid; on a geographic one, each row's cell area on the ellipsoid
            area_m2 += float(answered.sum(axis=1) @ row_areas_m2(grid, int(gwin.row_off), int(gwin.height)))
        answered_n += int(answered.sum())
        sar_only += int(only.sum())
        sar_only_water += int((only & (cls == schema.water_class)).sum())
        pixels[:k] += np.bincount(cls[both], minlength=k)[:k]
        pixels[k] += int((answered & (cls == SAR_ONLY_NON_WATER)).sum())
        pixels[schema.water_class] += int((only & (cls == schema.water_class)).sum())
        conf_sum += np.bincount(cls[both], weights=conf[both].astype(np.float64), minlength=k)[:k]
        lowm = both & (conf < low_confidence)
        edge = _edges(cls_pad)
        low += np.bincount(cls[lowm], minlength=k)[:k]
        low_edge += np.bincount(cls[lowm & edge], minlength=k)[:k]
        edge_all += np.bincount(cls[both & edge], minlength=k)[:k]
        rows = np.minimum(((rr[1:-1, 1:-1] - y0) * 3) // height, 2)
        cols = np.minimum(((cc[1:-1, 1:-1] - x0) * 3) // width, 2)
        sector = rows * 3 + cols
        np.add.at(low_sector.reshape(k, 9), (cls[lowm], sector[lowm]), 1)
        if has_teacher:
            gates = read_bands(paths["gates"], [1, 2, 3], gwin)
            gate_water += int((answered & (gates[0] == 1)).sum())
            gate_non += int((answered & (gates[1] == 1)).sum())
            judged = both & np.isfinite(gates[2])
            agree_n += int(judged.sum())
            agree_yes += int((judged & (gates[2] == 1)).sum())
            dis = judged & (gates[2] == 0)
            np.add.at(disagree_sector.reshape(9), sector[dis], 1)
        if read_labels is not None:
            ref = read_labels(gwin)
            ref = np.where(inside, ref, schema.ignore_index)
            scored = ref != schema.ignore_index
            labelled_without_class += int((scored & ~(cls < k)).sum())
            ref = np.where(cls < k, ref, schema.ignore_index)
            cm.update(np.where(cls < k, cls, 0), ref)
        progress.report((i + 1) / len(windows), f"explaining window {i + 1}/{len(windows)}")

    total = answered_n + nodata
    numbers: Dict[str, Any] = {
        "region": {
            "kind": region_kind, "col_off": x0, "row_off": y0, "width": width, "height": height,
            "pixels": total, "answered": answered_n, "answered_share": _share(answered_n, total),
            # a rotated grid: the pixel area at the grid's centre (engine.raster.measure), on the ground
            "area_km2": (area_m2 if north_up else answered_n * (GroundMeasure(grid).pixel_area_m2() or 0.0)) / 1e6,
            "north_up": bool(north_up),
        },
        "low_confidence_threshold": low_confidence,
        "water_class": schema.names[schema.water_class],
        "classes": {},
        "sar_only": {"pixels": sar_only, "share": _share(sar_only, answered_n),
                     "water_pixels": sar_only_water, "non_water_pixels": int(pixels[k])},
    }
    for c, name in enumerate(schema.names):
        n_both = int(pixels[c]) - (sar_only_water if c == schema.water_class else 0)
        sec = low_sector[c]
        worst = int(np.argmax(sec)) if low[c] else None
        numbers["classes"][name] = {
            "pixels": int(pixels[c]),
            "share": _share(int(pixels[c]), answered_n),
            "mean_confidence": float(conf_sum[c] / n_both) if n_both else None,
            "low_confidence_pixels": int(low[c]),
            "low_confidence_share": _share(int(low[c]), n_both),
            "low_confidence_on_edges": _share(int(low_edge[c]), int(low[c])),
            "edge_share": _share(int(edge_all[c]), n_both),
            "low_confidence_sector": SECTORS[worst // 3][worst % 3] if worst is not None else None,
            "low_confidence_sector_share": _share(int(sec.max()), int(low[c])) if low[c] else None,
            "low_confidence_sector_window": _sector_window(worst, x0, y0, width, height) if worst is not None else None,
        }
    if has_teacher:
        worst = int(np.argmax(disagree_sector)) if agree_n - agree_yes else None
        numbers["teacher"] = {
            "water_gate_share": _share(gate_water, answered_n),
            "non_water_gate_share": _share(gate_non, answered_n),
            "gate_share": _share(gate_water + gate_non, answered_n),
            "compared_pixels": agree_n,
            "agreement": _share(agree_yes, agree_n),
            "disagreement_pixels": agree_n - agree_yes,
            "disagreement_sector": SECTORS[worst // 3][worst % 3] if worst is not None else None,
            "disagreement_sector_share": _share(int(disagree_sector.max()), agree_n - agree_yes)
            if worst is not None else None,
        }
    if read_labels is not None:
        m = cm.compute()
        confusions = []
        for t in range(k):
            row = cm.matrix[t].sum()
            for p in range(k):
                if t != p and cm.matrix[t, p] > 0:
                    confusions.append({"true": schema.names[t], "predicted": schema.names[p],
                                       "pixels": int(cm.matrix[t, p]), "share_of_true": _share(int(cm.matrix[t, p]),
                                                                                             int(row))})
        confusions.sort(key=lambda c: (-c["pixels"], c["true"], c["predicted"]))
        numbers["labels"] = {
            "source": str(labels), "pixels": m["pixels"], "oa": m["oa"], "miou": m["miou"],
            "iou": dict(zip(schema.names, m["iou"])), "confusions": confusions[:3],
            "labelled_without_class": labelled_without_class,
        }
    numbers["advice"] = _advice(numbers, schema)
    return numbers


def _share(part: int, whole: int) -> Optional[float]:
    return float(part) / float(whole) if whole else None


def _along_edges(c: Dict[str, Any]) -> bool:
    """Uncertain pixels mostly on the class's edges, clearly more than its pixels in general are
    (a one-pixel-wide road is all edge: that says nothing)."""
    on_edges, overall = c["low_confidence_on_edges"] or 0.0, c["edge_share"] or 0.0
    return on_edges > 0.5 and on_edges > 1.5 * overall


def _sector_window(index: int, x0: int, y0: int, width: int, height: int) -> Dict[str, List[int]]:
    """First and last run column and row (inclusive) of sector ``index`` (row-major 3 x 3)."""
    r, c = divmod(index, 3)
    return {"columns": [x0 + (c * width) // 3, x0 + ((c + 1) * width) // 3 - 1],
            "rows": [y0 + (r * height) // 3, y0 + ((r + 1) * height) // 3 - 1]}


def _advice(numbers: Dict[str, Any], schema: ClassSchema) -> List[Dict[str, Any]]:
    """Up to three actions, by fixed rules, most useful first."""
    out: List[Dict[str, Any]] = []
    candidates = [
        (name, c) for name, c in numbers["classes"].items()
        if c["mean_confidence"] is not None and c["share"] and c["share"] >= 0.005 and c["low_confidence_pixels"]
    ]
    if candidates:
        name, c = min(candidates, key=lambda item: (item[1]["mean_confidence"], item[0]))
        if c["mean_confidence"] < 0.85:
            out.append({"action": "draw", "class": name, "where": c["low_confidence_sector"],
                        "along_edges": _along_edges(c),
                        "mean_confidence": c["mean_confidence"], "window": c["low_confidence_sector_window"]})
    labels = numbers.get("labels")
    if labels and labels["confusions"]:
        top = labels["confusions"][0]
        if top["share_of_true"] and top["share_of_true"] >= 0.1:
            out.append({"action": "separate", "class": top["true"], "confused_with": top["predicted"],
                        "share_of_true": top["share_of_true"]})
    teacher = numbers.get("teacher")
    if teacher and teacher["agreement"] is not None and teacher["agreement"] < 0.95 and teacher["disagreement_sector"]:
        out.append({"action": "check_water", "where": teacher["disagreement_sector"],
                    "disagreement": 1 - teacher["agreement"]})
    sar = numbers["sar_only"]
    if sar["share"] is not None and sar["share"] >= 0.1:
        out.append({"action": "optical", "share": sar["share"]})
    return out[:3]


# ---------------------------------------------------------------------- writing
class _Writer:
    """Formats numbers and records each one printed (``cited``) with the key of its value."""

    def __init__(self, numbers: Dict[str, Any]) -> None:
        self.numbers = numbers
        self.cited: List[Dict[str, Any]] = []

    def value(self, key: str) -> Any:
        node: Any = self.numbers
        for part in key.split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        return node

    def pct(self, key: str) -> str:
        text = f"{100 * self.value(key):.1f} %"
        self.cited.append({"key": key, "value": self.value(key), "text": text[:-2], "format": "percent"})
        return text

    def num(self, key: str, digits: int = 2) -> str:
        text = f"{self.value(key):.{digits}f}"
        self.cited.append({"key": key, "value": self.value(key), "text": text, "format": f"fixed{digits}"})
        return text

    def count(self, key: str) -> str:
        text = f"{int(self.value(key)):,}"
        self.cited.append({"key": key, "value": self.value(key), "text": text, "format": "count"})
        return text


def _where(sector: Optional[str], north_up: bool) -> str:
    if sector is None:
        return ""
    if not north_up:  # a rotated or south-up grid: name the image side instead
        sector = sector.replace("north", "top").replace("south", "bottom").replace("west", "left").replace(
            "east", "right")
    return "in the centre" if sector == "centre" else f"in the {sector}"


def compose(numbers: Dict[str, Any]) -> Tuple[List[str], List[Dict[str, Any]]]:
    """Sentences of the explanation and the numbers cited in them."""
    w = _Writer(numbers)
    reg = numbers["region"]
    up = reg["north_up"]
    what = {"run": "The segmented scene", "aoi": "The area of interest", "window": "The selected tile"}[reg["kind"]]
    s: List[str] = []
    if not reg["answered"]:
        return [f"{what} holds no answered pixel (no SAR or optical data there)."], w.cited
    s.append(f"{what} covers {w.count('region/width')} × {w.count('region/height')} px; "
             f"{w.pct('region/answered_share')} of it has an answer ({w.num('region/area_km2', 2)} km²).")
    ranked = sorted(((n, c) for n, c in numbers["classes"].items() if c["pixels"]),
                    key=lambda i: (-i[1]["pixels"], i[0]))
    shares = ", ".join(f"{n} {w.pct(f'classes/{n}/share')}" for n, _ in ranked)
    s.append(f"Class shares: {shares}." if shares else "No land-cover class was predicted.")
    confident = [(n, c) for n, c in ranked if c["mean_confidence"] is not None]
    if confident:
        by_conf = sorted(confident, key=lambda i: (-i[1]["mean_confidence"], i[0]))
        parts = ", ".join(f"{n} {w.num(f'classes/{n}/mean_confidence')}" for n, _ in by_conf)
        s.append(f"Mean confidence (probability of the chosen class): {parts}.")
    sar = numbers["sar_only"]
    if sar["pixels"]:
        s.append(f"{w.pct('sar_only/share')} of the answered pixels ({w.count('sar_only/pixels')} px) came from SAR "
                 "alone, because the optical image is missing or masked as cloud there; only water versus "
                 "non-water is known for them.")
    else:
        s.append("Every answered pixel used both the optical image and SAR (no cloud-masked or missing optical).")
    teacher = numbers.get("teacher")
    if teacher:
        text = (f"The SAR water expert is confident on {w.pct('teacher/gate_share')} of the area "
                f"({w.pct('teacher/water_gate_share')} water, {w.pct('teacher/non_water_gate_share')} non-water)")
        if teacher["agreement"] is not None:
            text += f"; expert and model agree on water versus non-water on {w.pct('teacher/agreement')} of the pixels"
            if teacher["disagreement_sector"]:
                text += (f", and {w.pct('teacher/disagreement_sector_share')} of the disagreements lie "
                         f"{_where(teacher['disagreement_sector'], up)}")
        s.append(text + ".")
    worst = [(n, c) for n, c in confident if c["low_confidence_pixels"]]
    if worst:
        n, c = min(worst, key=lambda i: (i[1]["mean_confidence"], i[0]))
        place = _where(c["low_confidence_sector"], up)
        edge = ""
        if _along_edges(c):
            edge = " mostly along the shoreline" if n == numbers["water_class"] else " mostly along its edges"
        s.append(f"The model is least sure about {n}: {w.pct(f'classes/{n}/low_confidence_share')} of its pixels "
                 f"are below {w.num('low_confidence_threshold', 1)}, "
                 f"{w.pct(f'classes/{n}/low_confidence_sector_share')} "
                 f"of those {place}{edge}.")
    labels = numbers.get("labels")
    if labels:
        if labels["pixels"]:
            text = (f"Against the reference labels ({w.count('labels/pixels')} labelled px): OA {w.pct('labels/oa')}"
                    + (f", mIoU {w.pct('labels/miou')}" if labels["miou"] is not None else ""))
            conf = labels["confusions"]
            if conf:
                pairs = "; ".join(
                    f"{c['true']} taken for {c['predicted']} ({w.count(f'labels/confusions/{i}/pixels')} px, "
                    f"{w.pct(f'labels/confusions/{i}/share_of_true')} of {c['true']})"
                    for i, c in enumerate(conf[:2])
                )
                text += f". Most confused: {pairs}"
            s.append(text + ".")
        else:
            s.append("The reference labels do not cover an answered pixel of this area.")
    s.append(_advice_sentence(numbers, w))
    return s, w.cited


def _advice_sentence(numbers: Dict[str, Any], w: _Writer) -> str:
    up = numbers["region"]["north_up"]
    items = []
    for i, a in enumerate(numbers["advice"]):
        if a["action"] == "draw":
            edge = ""
            if a["along_edges"]:
                edge = (" along the shoreline" if a["class"] == numbers["water_class"]
                        else f" along the edges of {a['class']} areas")
            box = f"advice/{i}/window"
            items.append(f"draw {a['class']} polygons{edge} {_where(a['where'], up)} (columns "
                         f"{w.count(box + '/columns/0')}–{w.count(box + '/columns/1')}, rows "
                         f"{w.count(box + '/rows/0')}–{w.count(box + '/rows/1')}), where the model is least "
                         "confident (mean "
                         f"{w.num(f'advice/{i}/mean_confidence')})")
        elif a["action"] == "separate":
            items.append(f"draw {a['class']} polygons where it is mapped as {a['confused_with']} "
                         f"({w.pct(f'advice/{i}/share_of_true')} of the labelled {a['class']})")
        elif a["action"] == "check_water":
            items.append(f"check water {_where(a['where'], up)}, where the water expert and the model disagree "
                         f"({w.pct(f'advice/{i}/disagreement')} of compared pixels overall), and draw water or "
                         "land polygons there")
        elif a["action"] == "optical":
            items.append(f"add a cloud-free optical image for the {w.pct(f'advice/{i}/share')} answered from SAR "
                         "alone, or use a model trained with optical dropout")
    if not items:
        return "Nothing stands out: no class is both common and uncertain."
    return "What to do: " + "; ".join(items) + "."


def explain_numbers(numbers: Dict[str, Any]) -> Dict[str, Any]:
    """Text, sentences and citations for measured ``numbers`` (deterministic)."""
    sentences, cited = compose(numbers)
    return {"text": " ".join(sentences), "sentences": sentences, "numbers": numbers, "cited": cited}


def numbers_in_text(text: str) -> List[str]:
    """Every number written in ``text`` (as written), for checking against ``cited``."""
    return _NUMBER.findall(text)


# ---------------------------------------------------------------------- files
def explanation_html(result: Dict[str, Any], tag: str = "") -> str:
    """An HTML section (between markers) with the sentences and the per-class numbers."""
    titles = {"run": "Why the map looks like this", "aoi": "The area of interest explained",
              "window": "The selected tile explained"}
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{_fmt_pct(c['share'])}</td><td>{_fmt(c['mean_confidence'])}</td>"
        f"<td>{_fmt_pct(c['low_confidence_share'])}</td><td>{html.escape(c['low_confidence_sector'] or '')}</td></tr>"
        for name, c in result["numbers"]["classes"].items()
    )
    paragraphs = "".join(f"<p>{html.escape(s)}</p>" for s in result["sentences"])
    return (
        f"{MARK.format(tag=tag, end='start')}<section id='sgcad-explanation{tag}'>"
        f"<h2>{titles[result['numbers']['region']['kind']]}</h2>{paragraphs}"
        "<table><tr><th>class</th><th>share</th><th>mean confidence</th><th>low-confidence share</th>"
        f"<th>where least sure</th></tr>{rows}</table>"
        "<p><small>Written from measured quantities by engine.explain (no language model); every number is in "
        f"explanation{tag}.json.</small></p></section>{MARK.format(tag=tag, end='end')}"
    )


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _fmt_pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _write_report(path: Path, section: str, tag: str, overwrite: bool) -> None:
    """Put the section into ``report.html``: a new page, or replace/insert it in an existing one."""
    start, end = MARK.format(tag=tag, end="start"), MARK.format(tag=tag, end="end")
    if path.exists():
        page = path.read_text(encoding="utf-8")
        if start in page and end in page:
            if not overwrite:
                raise ValueError(
                    f"{path} already holds an explanation; pass overwrite=True (--overwrite) to replace it"
                )
            head, rest = page.split(start, 1)
            page = head + section + rest.split(end, 1)[1]
        elif "</body>" in page:
            page = page.replace("</body>", section + "</body>", 1)
        else:
            page += section
    else:
        page = ("<!doctype html><html><head><meta charset='utf-8'><title>SGCAD segmentation explained</title>"
                "<style>body{font-family:sans-serif;max-width:960px;margin:auto}td,th{padding:2px 8px}"
                "table{border-collapse:collapse}td{border:1px solid #ccc}</style></head><body>"
                f"<h1>SGCAD segmentation</h1>{section}</body></html>")
    atomic_write_bytes(path, page.encode("utf-8"), overwrite=True)


def explain_run(
    run_dir: PathLike,
    labels: Optional[PathLike] = None,
    class_field: Optional[str] = None,
    layer: Optional[str] = None,
    aoi: Any = None,
    window: Optional[Sequence[int]] = None,
    low_confidence: float = LOW_CONFIDENCE,
    write: bool = True,
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Dict[str, Any]:
    """Explain a segmentation run (the folder ``engine segment`` wrote) from its rasters.

    Args:
        run_dir: folder holding ``classes.tif`` and ``confidence.tif`` (and, with a teacher,
            ``water_probability.tif`` and ``gates.tif``).
        labels, class_field, layer: optional reference labels (raster, or polygons with the
            field holding class ids or names) for accuracy and confusions.
        aoi: polygon file or box (see :func:`engine.inference.aoi.load_aoi`): explain that area only.
        window: ``(col, row, width, height)`` in run pixels (a clicked tile): explain that only.
        low_confidence: confidence below which a pixel counts as uncertain.
        write: write ``explanation.json`` and the explanation section of ``report.html`` into
            ``run_dir`` (whole run) or ``explanation_<kind>.json`` (AOI, window).
        overwrite: replace an earlier explanation.
        progress: progress and cancellation.

    Returns:
        ``text``, ``sentences``, ``numbers`` (every measured value), ``cited`` (each number in
        the text with its key) and, when written, ``json`` and ``report`` paths.
    """
    if not 0 < low_confidence < 1:
        raise ValueError(f"the low-confidence threshold must lie between 0 and 1, got {low_confidence}")
    if aoi is not None and window is not None:
        raise ValueError("give an AOI or a pixel window, not both")
    run_dir = Path(run_dir)
    suffix = "" if aoi is None and window is None else ("_aoi" if aoi is not None else "_window")
    json_path = run_dir / f"explanation{suffix}.json"
    if write and json_path.exists() and not overwrite:
        raise ValueError(f"{json_path} already exists; pass overwrite=True (--overwrite) to replace it")
    numbers = measure(run_dir, labels, class_field, layer, aoi, tuple(window) if window is not None else None,
                      low_confidence, progress=progress)
    result = explain_numbers(numbers)
    if write:
        payload = {k: result[k] for k in ("text", "sentences", "numbers", "cited")}
        atomic_write_bytes(json_path, json.dumps(payload, indent=1).encode("utf-8"), overwrite=overwrite)
        report = run_dir / REPORT
        _write_report(report, explanation_html(result, suffix), suffix, overwrite)
        result.update(json=str(json_path), report=str(report))
    return result
