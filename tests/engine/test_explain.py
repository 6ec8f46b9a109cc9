"""Explanations from measured numbers: every number in the text is cited and recomputed here.

A hand-made 9 x 9 run (classes, confidence with SAR-only pixels, gates) checks each quantity
against values worked out in the test; the bundled samples are segmented with the default
models and their explanations are checked number by number against an independent numpy
computation from the written rasters.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from engine.cli import main as cli_main
from engine.explain import SECTORS, explain_run, numbers_in_text

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("farmland", "city", "village", "water", "forest", "road")
WATER = 3


def _write(path: Path, array: np.ndarray, dtype: str, nodata, tags=None) -> None:
    array = array if array.ndim == 3 else array[None]
    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0], dtype=dtype,
                   nodata=nodata, crs="EPSG:32631", transform=from_origin(500000, 5000090, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array.astype(dtype))
        if tags:
            dst.update_tags(**tags)


def _hand_run(folder: Path, teacher: bool = True) -> dict:
    """9 x 9 px: farmland left, water right, a road column; SAR-only pixels bottom-right."""
    folder.mkdir(parents=True, exist_ok=True)
    cls = np.zeros((9, 9), np.uint8)  # farmland
    cls[:, 6:] = WATER
    cls[:, 3] = 5  # road column, 9 px
    cls[0, 0] = 255  # one pixel without an answer
    conf = np.full((9, 9), 0.9, np.float32)
    conf[:, 3] = 0.5  # every road pixel is uncertain
    conf[0:3, 3] = 0.4  # ...most in the north
    conf[7:, 7:] = -0.8  # 4 SAR-only pixels (water by the teacher)
    cls[8, 8] = 254  # one of them: non-water from SAR only
    conf[0, 0] = np.nan
    gates = np.zeros((3, 9, 9), np.uint8)
    gates[0][:, 6:] = 1  # confident water
    gates[1][:, :3] = 1  # confident non-water
    gates[2][:] = 1
    gates[2][0:2, 6] = 0  # two disagreements, north-east
    gates[2][7:, 7:] = 255  # no student answer where SAR-only
    gates[:, 0, 0] = 255
    gates[0:2, 8, 8] = (0, 1)  # the SAR-only non-water pixel: the teacher is confident it is not water
    names = {str(i): n for i, n in enumerate(NAMES)}
    names["254"] = "non-water (SAR only)"
    _write(folder / "classes.tif", cls, "uint8", 255, {"class_names": json.dumps(names), "water_class": "3"})
    _write(folder / "confidence.tif", conf, "float32", float("nan"))
    if teacher:
        _write(folder / "gates.tif", gates, "uint8", 255)
        _write(folder / "water_probability.tif", np.where(cls == WATER, 0.99, 0.05).astype(np.float32), "float32",
               float("nan"))
    label = np.full((9, 9), 255, np.uint8)
    label[4, :] = cls[4, :]
    label[4, 3] = 0  # the road pixel of row 4 is farmland in truth
    label[5, 0:2] = 1  # two farmland pixels are city in truth
    _write(folder / "label.tif", label, "uint8", 255)
    return {"classes": cls, "confidence": conf, "gates": gates, "label": label}


def _check_cited(result: dict) -> None:
    """Every number written in the text is a cited one, and every cited one is the measured value."""
    numbers = result["numbers"]
    for c in result["cited"]:
        node = numbers
        for part in c["key"].split("/"):
            node = node[int(part)] if isinstance(node, list) else node[part]
        assert node == c["value"], c
        expected = {"percent": f"{100 * node:.1f}", "count": f"{int(node):,}",
                    "fixed1": f"{node:.1f}", "fixed2": f"{node:.2f}"}[c["format"]]
        assert c["text"] == expected, c
    assert Counter(numbers_in_text(result["text"])) == Counter(c["text"] for c in result["cited"])


def test_each_number_of_a_hand_made_run_is_what_the_test_works_out(tmp_path):
    _hand_run(tmp_path / "run")
    result = explain_run(tmp_path / "run", labels=tmp_path / "run" / "label.tif")
    n = result["numbers"]
    answered = 80  # 81 pixels, one without answer
    assert n["region"]["pixels"] == 81 and n["region"]["answered"] == answered
    assert n["region"]["area_km2"] == pytest.approx(80 * 100 / 1e6)
    c = n["classes"]
    # farmland: columns 0-2 and 4-5 (45 px) minus the empty corner = 44; road 9; water 27 (3 SAR-only water
    # plus 24 with both), and 1 SAR-only non-water
    assert (c["farmland"]["pixels"], c["road"]["pixels"], c["water"]["pixels"]) == (44, 9, 26)
    assert n["sar_only"] == {"pixels": 4, "share": 4 / 80, "water_pixels": 3, "non_water_pixels": 1}
    assert c["farmland"]["share"] == pytest.approx(44 / 80) and c["road"]["share"] == pytest.approx(9 / 80)
    assert c["road"]["mean_confidence"] == pytest.approx((3 * 0.4 + 6 * 0.5) / 9, rel=1e-6)
    assert c["water"]["mean_confidence"] == pytest.approx(0.9, rel=1e-6)
    assert c["road"]["low_confidence_share"] == 1.0 and c["farmland"]["low_confidence_pixels"] == 0
    # road's uncertain pixels: 3 per sector row (north, centre, south), first maximum = north
    assert c["road"]["low_confidence_sector"] == "north" and c["road"]["low_confidence_sector_share"] == 1 / 3
    assert c["road"]["low_confidence_sector_window"] == {"columns": [3, 5], "rows": [0, 2]}
    t = n["teacher"]
    assert t["water_gate_share"] == pytest.approx(26 / 80)  # columns 6-8 (27 px) less the non-water (8, 8)
    assert t["non_water_gate_share"] == pytest.approx(27 / 80)  # columns 0-2 less the empty corner, plus (8, 8)
    assert t["compared_pixels"] == 76 and t["agreement"] == pytest.approx(74 / 76)
    assert t["disagreement_sector"] == "north-east" and t["disagreement_sector_share"] == 1.0
    lab = n["labels"]
    # row 4 (9 px, road pixel wrong) + 2 city pixels mapped as farmland: 11 labelled, 8 right
    assert lab["pixels"] == 11 and lab["oa"] == pytest.approx(8 / 11)
    assert lab["confusions"][0] == {"true": "city", "predicted": "farmland", "pixels": 2, "share_of_true": 1.0}
    assert lab["confusions"][1]["true"] == "farmland" and lab["confusions"][1]["predicted"] == "road"
    # IoU: farmland 5 / (5 + 2 + 1) ... computed by the confusion matrix: farmland TP 5, FP 2 (city), FN 1 (road)
    assert lab["iou"]["farmland"] == pytest.approx(5 / 8) and lab["iou"]["city"] == 0.0
    assert lab["iou"]["road"] == 0.0 and lab["iou"]["water"] == 1.0
    assert lab["miou"] == pytest.approx((5 / 8 + 0 + 0 + 1) / 4)
    advice = [a["action"] for a in n["advice"]]
    assert advice[:2] == ["draw", "separate"] and n["advice"][0]["class"] == "road"
    _check_cited(result)
    text = result["text"]
    assert "least sure about road" in text and "in the north" in text and "city taken for farmland" in text
    assert "draw road polygons in the north (columns 3–5, rows 0–2)" in text
    assert explain_run(tmp_path / "run", labels=tmp_path / "run" / "label.tif", write=False)["text"] == text


def test_the_area_of_a_run_on_a_geographic_grid_is_in_square_kilometres_not_degrees(tmp_path):
    # Sentinel-1 chips come in EPSG:4326 (Sen1Floods11): 0.0001 degree pixels at 60 N are about
    # 11.1 m x 5.6 m, which the report once multiplied as 1e-8 "m2" (0.00 km2)
    _hand_run(tmp_path / "run")
    for name in ("classes", "confidence", "gates", "water_probability"):
        with rasterio.open(tmp_path / "run" / f"{name}.tif", "r+") as dst:
            dst.crs, dst.transform = "EPSG:4326", from_origin(10.0, 60.0, 1e-4, 1e-4)
    result = explain_run(tmp_path / "run")
    a, e2, step = 6_378_137.0, 0.0066943799901, np.radians(1e-4)
    top = np.radians(60.0 - 1e-4 * np.arange(9))
    mid = top - step / 2  # a 0.0001-degree row: its middle's radii of curvature give its area to 1e-9
    row_area = step * step * a * np.cos(mid) / np.sqrt(1 - e2 * np.sin(mid) ** 2) * a * (1 - e2) / (
        1 - e2 * np.sin(mid) ** 2) ** 1.5
    answered = np.full(9, 9)
    answered[0] = 8  # the pixel without an answer
    assert result["numbers"]["region"]["area_km2"] == pytest.approx(float(answered @ row_area) / 1e6, rel=1e-9)
    assert 80 * 60e-6 < result["numbers"]["region"]["area_km2"] < 80 * 63e-6  # about 61.8 m2 a pixel


def test_the_area_of_a_run_on_a_rotated_grid_counts_whole_pixels(tmp_path):
    # 10 m pixels turned by 30 degrees: 100 m2 each (once |a * e| = 75 m2, the rotation ignored)
    from affine import Affine

    _hand_run(tmp_path / "run")
    for name in ("classes", "confidence", "gates", "water_probability"):
        with rasterio.open(tmp_path / "run" / f"{name}.tif", "r+") as dst:
            dst.crs, dst.transform = "EPSG:32631", Affine.translation(500000, 5000000) * Affine.rotation(30) \
                * Affine.scale(10, -10)
    region = explain_run(tmp_path / "run")["numbers"]["region"]
    assert not region["north_up"] and region["area_km2"] == pytest.approx(80 * 100 / 1e6, rel=1e-9)


def test_a_window_or_an_aoi_explains_only_that_part_and_files_are_written_once(tmp_path):
    arrays = _hand_run(tmp_path / "run", teacher=False)
    win = explain_run(tmp_path / "run", window=(6, 0, 3, 9))  # the water columns
    n = win["numbers"]
    assert n["region"]["kind"] == "window" and n["region"]["pixels"] == 27 and "teacher" not in n
    assert n["classes"]["water"]["pixels"] == 26 and n["sar_only"]["pixels"] == 4
    assert win["text"].startswith("The selected tile covers 3 × 9 px")
    _check_cited(win)
    # an AOI box over the left three columns (farmland), in the grid's CRS
    aoi = explain_run(tmp_path / "run", aoi="500000,5000000,500030,5000090")
    assert aoi["numbers"]["region"]["kind"] == "aoi" and aoi["numbers"]["region"]["pixels"] == 27
    assert aoi["numbers"]["classes"]["farmland"]["pixels"] == int((arrays["classes"][:, :3] == 0).sum())
    _check_cited(aoi)
    report = (tmp_path / "run" / "report.html").read_text()
    assert report.count("sgcad-explanation_window:start") == 1 and report.count("sgcad-explanation_aoi:start") == 1
    with pytest.raises(ValueError, match="already exists"):
        explain_run(tmp_path / "run", window=(6, 0, 3, 9))
    with pytest.raises(ValueError, match="outside"):
        explain_run(tmp_path / "run", window=(20, 20, 3, 3), write=False)
    with pytest.raises(FileNotFoundError, match="engine segment"):
        explain_run(tmp_path, write=False)


def test_the_command_writes_json_and_a_report_section_and_keeps_a_foreign_report(tmp_path, capsys):
    _hand_run(tmp_path / "run")
    (tmp_path / "run" / "report.html").write_text("<html><body><h1>Demo</h1></body></html>")
    assert cli_main(["explain", "--run", str(tmp_path / "run"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["ok"] and out["text"] == json.loads((tmp_path / "run" / "explanation.json").read_text())["text"]
    page = (tmp_path / "run" / "report.html").read_text()
    assert "<h1>Demo</h1>" in page and page.index("sgcad-explanation:start") < page.index("</body>")
    assert cli_main(["explain", "--run", str(tmp_path / "run")]) == 2  # exists: refused
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["explain", "--run", str(tmp_path / "run"), "--overwrite"]) == 0
    assert (tmp_path / "run" / "report.html").read_text().count("sgcad-explanation:start") == 1


# ------------------------------------------------------------------ the bundled samples
SAMPLES = {
    "synthetic": dict(optical=ROOT / "resources/sample/synthetic/optical.tif",
                      sar=ROOT / "resources/sample/synthetic/sar.tif",
                      labels=ROOT / "resources/sample/synthetic/label.tif", class_field=None, sar_bands=None),
    "rotterdam": dict(optical=ROOT / "resources/sample/rotterdam/rgb_unmasked.tif",
                      sar=ROOT / "resources/sample/rotterdam/sar_masked.tif",
                      labels=ROOT / "resources/sample/rotterdam/labels_digitised.gpkg", class_field="class",
                      sar_bands=(4,)),
}


def _reference(folder: Path, labels: np.ndarray, low: float) -> dict:
    """The explanation's quantities, recomputed with plain numpy from the whole rasters."""
    with rasterio.open(folder / "classes.tif") as src:
        cls = src.read(1).astype(np.int64)
    with rasterio.open(folder / "confidence.tif") as src:
        conf = src.read(1)
    with rasterio.open(folder / "gates.tif") as src:
        gates = src.read()
    answered = cls != 255
    both, only = answered & (conf >= 0), answered & (conf < 0)
    assert not (answered & np.isnan(conf)).any()
    h, w = cls.shape
    sector = np.minimum((np.arange(h)[:, None] * 3) // h, 2) * 3 + np.minimum((np.arange(w)[None, :] * 3) // w, 2)
    ref = {"answered": int(answered.sum()), "sar_only": only.sum() / answered.sum(), "classes": {}}
    for c, name in enumerate(NAMES):
        m = both & (cls == c)
        lowm = m & (conf < low)
        counts = np.bincount(sector[lowm], minlength=9)
        ref["classes"][name] = {
            "pixels": int((answered & (cls == c)).sum()),
            "mean_confidence": float(conf[m].astype(np.float64).mean()) if m.any() else None,
            "low_share": lowm.sum() / m.sum() if m.any() else None,
            "sector": SECTORS[int(np.argmax(counts)) // 3][int(np.argmax(counts)) % 3] if lowm.any() else None,
        }
    ref["water_gate"] = (answered & (gates[0] == 1)).sum() / answered.sum()
    ref["non_water_gate"] = (answered & (gates[1] == 1)).sum() / answered.sum()
    judged = both & (gates[2] != 255)
    ref["agreement"] = (judged & (gates[2] == 1)).sum() / judged.sum()
    scored = (labels != 255) & (cls < 6)
    ref["label_pixels"] = int(scored.sum())
    ref["oa"] = float((cls[scored] == labels[scored]).mean())
    ious = []
    for c in range(6):
        tp = ((cls == c) & (labels == c) & scored).sum()
        union = (((cls == c) | (labels == c)) & scored).sum()
        if union:
            ious.append(tp / union)
    ref["miou"] = float(np.mean(ious))
    return ref


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    from engine.config import ClassSchema, InferenceConfig
    from engine.inference.pipeline import segment_scene
    from engine.raster.grid import grid_of
    from engine.raster.labels import rasterize_labels

    models = ROOT / "resources" / "models"
    out = {}
    for name, s in SAMPLES.items():
        folder = tmp_path_factory.mktemp(f"explain_{name}")
        segment_scene(s["optical"], s["sar"], models / "sgcad_student.safetensors", folder,
                      teacher_path=models / "sgcad_teacher.safetensors", sar_bands=s["sar_bands"],
                      cfg=InferenceConfig(backend="torch", threads=1), overwrite=True)
        grid = grid_of(folder / "classes.tif")
        if s["class_field"]:
            labels, _ = rasterize_labels(s["labels"], s["class_field"], grid, ClassSchema())
        else:
            with rasterio.open(s["labels"]) as src:
                labels = src.read(1)
        out[name] = (folder, labels.astype(np.int64))
    return out


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_bundled_samples_are_explained_and_every_number_is_checked(bundled, name):
    folder, labels = bundled[name]
    s = SAMPLES[name]
    result = explain_run(folder, labels=s["labels"], class_field=s["class_field"], overwrite=True)
    _check_cited(result)  # every number in the text is one of the measured numbers below
    n, ref = result["numbers"], _reference(folder, labels, 0.6)
    assert n["region"]["answered"] == ref["answered"]
    assert n["sar_only"]["share"] == pytest.approx(ref["sar_only"])
    for cname, c in n["classes"].items():
        r = ref["classes"][cname]
        assert c["pixels"] == r["pixels"], cname
        assert c["share"] == pytest.approx(r["pixels"] / ref["answered"]), cname
        assert c["mean_confidence"] == pytest.approx(r["mean_confidence"], rel=1e-5), cname
        assert c["low_confidence_share"] == pytest.approx(r["low_share"]), cname
        assert c["low_confidence_sector"] == r["sector"], cname
    t = n["teacher"]
    assert t["water_gate_share"] == pytest.approx(ref["water_gate"])
    assert t["non_water_gate_share"] == pytest.approx(ref["non_water_gate"])
    assert t["agreement"] == pytest.approx(ref["agreement"])
    assert n["labels"]["pixels"] == ref["label_pixels"]
    assert n["labels"]["oa"] == pytest.approx(ref["oa"]) and n["labels"]["miou"] == pytest.approx(ref["miou"])
    # readable: a handful of sentences, each a full one, ending with what to do
    assert 5 <= len(result["sentences"]) <= 10 and all(x.endswith(".") for x in result["sentences"])
    assert result["sentences"][-1].startswith(("What to do:", "Nothing stands out"))
    if name == "rotterdam":  # SAR covers only the southern part: the rest has no answer
        assert n["region"]["answered_share"] < 0.8
