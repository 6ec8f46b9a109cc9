"""Vector inputs from the second bad-input sweep: arcs, collections, overlapping classes, polygons off the
imagery, areas of interest outside the scene or with a wrong CRS, many polygons, and GeoPackages with other
layers. All on the bundled Rotterdam pair (200 x 200, 4.5 m, EPSG:32631) and the Camargue dates.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
from osgeo import ogr, osr

from engine.cli import main
from engine.config import ClassSchema
from engine.inference.aoi import load_aoi
from engine.raster.grid import grid_of
from engine.raster.labels import read_label_polygons
from engine.validate import SgcadError

ROOT = Path(__file__).resolve().parents[2]
ROTTERDAM = ROOT / "resources" / "sample" / "rotterdam"
SAR = ROTTERDAM / "sar_masked.tif"
CAMARGUE = ROOT.parent / "shared" / "data" / "sentinel1_camargue"
LEFT, TOP = 592317.861581054, 5750102.160218578  # the Rotterdam grid's corner; 900 m a side


def layer_file(path: Path, features: Sequence[tuple], epsg: int = 32631, name: str = "labels", extra=()) -> Path:
    """A GeoPackage of (wkt, class) features (``extra``: more (layer name, wkt) layers)."""
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    for layer_name, rows in [(name, features), *[(n, [(w, "x")]) for n, w in extra]]:
        layer = ds.CreateLayer(layer_name, srs, ogr.wkbUnknown)
        layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
        for wkt, value in rows:
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
            feature.SetField("class", value)
            layer.CreateFeature(feature)
            feature = None
        layer = None
    ds = None
    return path


def box(x0: float, y0: float, size: float) -> str:
    """A square in metres from the grid's top-left corner (y down)."""
    a, b = LEFT + x0, TOP - y0
    return f"POLYGON(({a} {b},{a + size} {b},{a + size} {b - size},{a} {b - size},{a} {b}))"


def circle(x0: float, y0: float, radius: float) -> str:
    """A circle digitised as an arc (a CurvePolygon, as QGIS's circle tools write)."""
    a, b = LEFT + x0, TOP - y0
    return f"CURVEPOLYGON(CIRCULARSTRING({a - radius} {b},{a + radius} {b},{a - radius} {b}))"


def test_arcs_and_collections_are_read_as_their_areas(tmp_path):
    # before: a circle was "invalid and has no area" as a label and "no polygon with an area" as an AOI
    grid = grid_of(SAR)
    labels = layer_file(tmp_path / "labels.gpkg", [(circle(300, 300, 90), "forest"), (box(600, 600, 90), "water")])
    by_class, report = read_label_polygons(labels, "class", grid, ClassSchema())
    assert not report["skipped"] and sorted(report["per_class_features"]) == ["forest", "water"]
    shape = ogr.CreateGeometryFromJson(json.dumps(by_class[ClassSchema().names.index("forest")][0]))
    assert shape.GetArea() == pytest.approx(np.pi * 90**2, rel=0.01)
    collection = f"GEOMETRYCOLLECTION({box(100, 100, 45)}, LINESTRING({LEFT} {TOP}, {LEFT + 9} {TOP - 9}))"
    for name, wkt, area in (("arc", circle(300, 300, 90), np.pi * 90**2), ("collection", collection, 45**2)):
        aoi = load_aoi(str(layer_file(tmp_path / f"aoi_{name}.gpkg", [(wkt, "a")])), grid)
        assert aoi.geometry.GetArea() == pytest.approx(area, rel=0.01), name


def test_overlapping_classes_and_polygons_off_the_imagery_are_said(tmp_path):
    # before: a background forest polygon under the others left none of their pixels labelled, without a word
    grid = grid_of(SAR)
    small = [(box(100, 100, 90), "water"), (box(400, 400, 90), "city")]
    background = layer_file(tmp_path / "background.gpkg", small + [(box(-5000, -5000, 10000), "forest")])
    messages = []
    from engine.progress import CallbackProgress

    read_label_polygons(background, "class", grid, ClassSchema(),
                        progress=CallbackProgress(lambda *_: None, warning=messages.append))
    (said,) = messages
    assert "overlaps are left unlabelled; drawn area lost: water 100 %, city 100 %" in said, said
    assert "forest" not in said.split("lost:")[1].split("(")[0]  # the background lost a sliver of itself
    from engine.train.polygon_split import read_polygons

    off = layer_file(tmp_path / "off.gpkg", small + [(box(50000, 0, 90), "farmland")])
    _, report = read_polygons(off, "class", grid, ClassSchema())
    from engine.raster.labels import skipped_message

    assert "1 of 3 polygon(s) lie off the imagery and are not used" in skipped_message(off, report)


def test_an_aoi_with_a_wrong_crs_or_no_file_says_so(tmp_path):
    grid = grid_of(SAR)
    utm_as_degrees = layer_file(tmp_path / "utm_as_4326.gpkg", [(box(100, 100, 90), "a")], epsg=4326)
    with pytest.raises(SgcadError, match=r"cannot be brought into the grid's CRS: its coordinates do not fit the CRS "
                                         r"the layer declares \(WGS 84; projected metres declared as degrees\?\)"):
        load_aoi(str(utm_as_degrees), grid)  # before: internal error: RuntimeError: Invalid coordinate
    from engine.flood.report import load_zones

    with pytest.raises(SgcadError, match=r"feature 1 cannot be brought into the after date's CRS: its coordinates do "
                                         r"not fit the CRS the layer declares \(WGS 84"):
        load_zones(utm_as_degrees, grid)  # flood zones: the same sentence
    with pytest.raises(FileNotFoundError, match="file not found; give an existing polygon file or a box"):
        load_aoi(str(tmp_path / "missing.gpkg"), grid)  # before: "expected a polygon file or a box"


def test_an_aoi_of_many_polygons_is_merged_at_once(tmp_path):
    # before: merged one by one, 10,000 polygons took over 5 minutes (1,000: 5.6 s)
    grid = grid_of(SAR)
    squares = [(box(10 + 9 * (i % 90), 10 + 9 * (i // 90), 4.5), "a") for i in range(2000)]
    path = layer_file(tmp_path / "many.gpkg", squares)
    start = time.perf_counter()
    aoi = load_aoi(str(path), grid)
    seconds = time.perf_counter() - start
    assert aoi.geometry.GetArea() == pytest.approx(2000 * 4.5**2, rel=1e-6)
    print(f"2,000-polygon AOI read in {seconds:.2f} s")  # a figure, not a bound


def test_flood_zones_outside_the_scene_are_said_and_not_mapped(tmp_path, capsys):
    # before: a zone outside was reported as 0 km² flooded and widened the map to the scene's edge
    before = CAMARGUE / "S1A__IW___A_20150309T173017_VV_grd_mli_geo_norm_db.tif"
    after = CAMARGUE / "S1A__IW___D_20170309T054356_VV_grd_mli_geo_norm_db.tif"
    g = grid_of(after)
    left, top = g.transform.c, g.transform.f

    def square(x, y, size):
        return (f"POLYGON(({left + x} {top - y},{left + x + size} {top - y},{left + x + size} {top - y - size},"
                f"{left + x} {top - y - size},{left + x} {top - y}))")

    zones = layer_file(tmp_path / "zones.gpkg", [(square(1000, 1000, 1000), "inside"),
                                                 (square(-1500, 1000, 2000), "partly"),
                                                 (square(-90000, 1000, 1000), "outside")], name="zones")
    assert main(["flood", "--before", str(before), "--after", str(after), "--out", str(tmp_path / "out"),
                 "--aoi", str(zones), "--aoi-name-field", "class", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    areas = {a["name"]: a for a in result["areas"]}
    assert sorted(areas) == ["inside", "partly"]
    assert areas["partly"]["outside_scene_share"] == pytest.approx(0.75, abs=0.01)
    assert areas["inside"]["outside_scene_share"] == 0
    said = " ".join(result["warnings"])
    assert "1 area(s) of interest lie outside the after date" in said and "not mapped: outside" in said
    assert "area of interest partly: 75 % of it lies outside the after date" in said


def test_vectorize_never_deletes_other_layers_of_a_geopackage(tmp_path, capsys):
    project = layer_file(tmp_path / "project.gpkg", [(box(100, 100, 90), "water")], name="my labels",
                         extra=[("aoi", box(0, 0, 500))])
    classes = tmp_path / "seg"
    assert main(["segment", "--optical", str(ROTTERDAM / "rgb_unmasked.tif"), "--sar", str(SAR), "--out",
                 str(classes), "--device", "cpu", "--quiet"]) == 0
    code = main(["vectorize", "--classes", str(classes / "classes.tif"), "--out", str(project), "--overwrite"])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "holds other layers (my labels, aoi) that writing the polygons there would delete" in line
    ds = ogr.Open(str(project))
    assert sorted(ds.GetLayer(i).GetName() for i in range(ds.GetLayerCount())) == ["aoi", "my labels"]


def test_label_values_and_places_that_do_not_fit_say_why(tmp_path):
    from engine.progress import CallbackProgress
    from engine.train.polygon_split import read_polygons

    grid = grid_of(SAR)
    said = []
    progress = CallbackProgress(lambda *_: None, warning=said.append)
    # codes counted from 1 without a 6: before, every class was shifted by one without a word
    ones = layer_file(tmp_path / "codes.gpkg", [(box(100, 100, 90), "1"), (box(400, 400, 90), "4")])
    read_label_polygons(ones, "class", grid, ClassSchema(), progress=progress)
    assert "holds class codes [1, 4], read as the schema's ids; none is 0. ids count from 0: 0 farmland" in said[-1]
    nulls = layer_file(tmp_path / "null.gpkg", [(box(100, 100, 90), None), (box(400, 400, 90), "7")])
    with pytest.raises(ValueError) as info:
        read_label_polygons(nulls, "class", grid, ClassSchema())
    assert "'NULL': [1]" in str(info.value) and "ids count from 0: 0 farmland" in str(info.value)
    # latitude and longitude swapped: the message shows both extents (before: "no overlap?")
    swapped = layer_file(tmp_path / "swapped.gpkg", [("POLYGON((51.89 4.35,51.89 4.36,51.90 4.36,51.90 4.35,"
                                                      "51.89 4.35))", "water")], epsg=4326)
    with pytest.raises(ValueError) as info:
        read_polygons(swapped, "class", grid, ClassSchema())
    assert "none of the polygons lies on the imagery (polygons over x" in str(info.value)
    assert "the raster over x 592318..593218" in str(info.value) and "latitude and longitude swapped" in str(info.value)
    zipped = tmp_path / "labels.zip"
    zipped.write_bytes(b"PK\x05\x06" + bytes(18))  # an empty zip archive
    from engine.validate import vector_layers

    with pytest.raises(SgcadError, match="it is a zip archive: unzip it and give the .shp or .gpkg inside"):
        vector_layers(zipped)


def test_an_aoi_box_in_qgis_extent_order_is_refused_with_the_right_order():
    grid = grid_of(SAR)
    with pytest.raises(SgcadError) as info:  # before: mapped 18,310 pixels instead of 7,324
        load_aoi("592542.85,592992.8,5749427.2,5749877.2", grid)
    assert "looks like QGIS's xmin,xmax,ymin,ymax order: give '592542.85,5749427.2,592992.8,5749877.2'" in str(
        info.value)
    assert load_aoi("592542.85,5749427.2,592992.8,5749877.2", grid).pixel_window() == (50, 49, 150, 151)
    assert load_aoi("500000,5700000,700000,5800000", grid).pixel_window() == (0, 0, 200, 200)  # a large box is fine


def test_explain_says_what_it_made_of_the_label_polygons(tmp_path, capsys):
    # before: explain --labels never said which polygons it skipped, repaired or lost to overlaps
    run = tmp_path / "seg"
    assert main(["segment", "--optical", str(ROTTERDAM / "rgb_unmasked.tif"), "--sar", str(SAR), "--out", str(run),
                 "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    labels = layer_file(tmp_path / "labels.gpkg", [(box(100, 100, 90), "water"), (box(130, 130, 90), "city"),
                                                   ("POINT(592400 5750000)", "road")])
    assert main(["explain", "--run", str(run), "--no-write", "--labels", str(labels)]) == 0
    err = capsys.readouterr().err
    assert "warning: labels.gpkg: polygons of different classes overlap" in err and "1 of 3 polygon(s) skipped" in err


def test_flood_and_explain_refuse_an_aoi_file_of_several_layers_naming_them(tmp_path):
    # before: they read the first layer ("roads") and said it held no polygons
    from engine.explain import explain_run
    from engine.flood.report import load_zones

    two = layer_file(tmp_path / "two.gpkg", [("LINESTRING(592400 5750000, 592500 5749900)", "a")], name="roads",
                     extra=[("zones", box(100, 100, 90))])
    with pytest.raises(SgcadError, match=r"holds layers \['roads', 'zones'\]; the areas of interest must come from "
                                         "a file with one polygon layer"):
        load_zones(two, grid_of(SAR))
    with pytest.raises(SgcadError, match="the area of interest must come from a file with one polygon layer"):
        load_aoi(str(two), grid_of(SAR))  # the reader itself, whoever calls it
    run = tmp_path / "seg"
    assert main(["segment", "--optical", str(ROTTERDAM / "rgb_unmasked.tif"), "--sar", str(SAR), "--out", str(run),
                 "--device", "cpu", "--quiet"]) == 0
    with pytest.raises(SgcadError, match="the area of interest must come from a file with one polygon layer"):
        explain_run(run, aoi=str(two), write=False)


def test_patches_given_label_polygons_says_to_rasterize_them(tmp_path, capsys):
    code = main(["patches", "--label", str(ROTTERDAM / "labels_digitised.gpkg"), "--out", str(tmp_path / "p")])
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "a vector file, but --label takes a label raster; rasterize the polygons" in line, line
    assert not (tmp_path / "p").exists()  # before: "corrupt, truncated ... re-download it"
