"""sgcad:floodmap and sgcad:vectorize through Processing, the Modeler and the dock's Flood tab."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterRasterLayer,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "build" / "gui_screenshots"


@pytest.fixture(scope="module")
def flood_pair(tmp_path_factory):
    """A 256 x 256 synthetic before/after pair with a known flood and two report areas."""
    from osgeo import ogr, osr
    from sgcad_qgis.engine.flood.synthetic import make_flood_pair

    folder = tmp_path_factory.mktemp("flood_pair")
    pair = make_flood_pair(folder, size=256, seed=2)
    areas = folder / "areas.gpkg"
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(areas))
    layer = ds.CreateLayer("areas", srs=srs, geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    x0, y1 = 590000.0, 5760000.0  # synthetic scenes' origin; 256 px of 10 m
    for name, a, b in (("north", 0, 1280), ("south", 1280, 2560)):
        poly = ogr.CreateGeometryFromWkt(
            f"POLYGON(({x0} {y1 - a},{x0 + 2560} {y1 - a},{x0 + 2560} {y1 - b},{x0} {y1 - b},{x0} {y1 - a}))")
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("name", name)
        f.SetGeometry(poly)
        layer.CreateFeature(f)
    ds = None
    pair["areas"] = str(areas)
    return pair


def run(alg: str, params: dict, context=None, feedback=None) -> dict:
    import processing

    return processing.run(alg, params, context=context, feedback=feedback or QgsProcessingFeedback())


class TextRecorder(QgsProcessingFeedback):
    """Records the steps (progress texts) and the log lines (infos) a run reports."""

    def __init__(self):
        super().__init__()
        self.texts, self.infos = [], []

    def setProgressText(self, text):  # noqa: N802 - QGIS API
        self.texts.append(text)
        super().setProgressText(text)

    def pushInfo(self, info):  # noqa: N802 - QGIS API
        self.infos.append(info)
        super().pushInfo(info)


def test_floodmap_writes_styled_maps_and_a_report_per_area(flood_pair, tmp_path, sgcad_provider):
    from sgcad_qgis import layers

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    out = tmp_path / "flood"
    result = run("sgcad:floodmap", {
        "AFTER": flood_pair["after_sar"], "BEFORE": flood_pair["before_sar"], "METHOD": "threshold",
        "AOI_LAYER": flood_pair["areas"], "AOI_NAME_FIELD": "name", "VECTORIZE": True, "OUTPUT_FOLDER": str(out),
    }, context)
    for key in ("FLOOD_EXTENT", "FLOOD_LIKELIHOOD", "EXCLUSION", "WATER_AFTER", "WATER_BEFORE", "POLYGONS",
                "REPORT", "REPORT_JSON"):
        assert Path(result[key]).is_file(), key
    report = json.loads(Path(result["REPORT_JSON"]).read_text())
    assert [a["name"] for a in report["areas"]] == ["north", "south"]
    assert sum(a["flood_km2"] for a in report["areas"]) == pytest.approx(result["FLOOD_KM2"], rel=1e-6)
    assert result["FLOOD_KM2"] > 0.3  # about 15 % of 6.55 km²
    # styles saved beside the files: QGIS opens them styled later too
    assert Path(result["FLOOD_EXTENT"]).with_suffix(".qml").is_file()
    assert Path(result["POLYGONS"]).with_suffix(".qml").is_file()
    project = QgsProject.instance()
    items = layers.flood_results({"flood": result["FLOOD_EXTENT"], "exclusion": result["EXCLUSION"],
                                  "likelihood": result["FLOOD_LIKELIHOOD"], "water_after": result["WATER_AFTER"],
                                  "water_before": result["WATER_BEFORE"]}, "threshold")
    group, shown = layers.publish_results(project, "flood test", items)
    try:
        nodes = {n.layer().customProperty(layers.ROLE_PROPERTY): n for n in group.findLayers()}
        extent = nodes["flood_extent"].layer()
        assert nodes["flood_extent"].isVisible() and not nodes["flood_likelihood"].isVisible()
        assert extent.renderer().type() == "paletted"
        colours = {c.value: c.color.name() for c in extent.renderer().classes()}
        assert colours[1] == "#e31a1c" and colours[2] == "#1f78b4"  # flood red, permanent water blue
        assert nodes["flood_exclusion"].layer().renderer().opacity() == pytest.approx(layers.EXCLUSION_OPACITY)
        assert nodes["flood_likelihood"].layer().renderer().type() == "singlebandpseudocolor"
        polygons = layers.add_polygon_layer(project, result["POLYGONS"], "flood", "Flood polygons",
                                            [(1, "#e31a1c", "observed flood")], group.name())
        assert polygons.isValid() and polygons.featureCount() > 0
        assert polygons.renderer().type() == "categorizedSymbol"
    finally:
        for layer_id in list(shown.values()):
            project.removeMapLayer(layer_id)
        project.layerTreeRoot().removeChildNode(group)


def test_floodmap_early_errors(flood_pair, tmp_path, sgcad_provider):
    alg = sgcad_provider.algorithm("floodmap")
    context = QgsProcessingContext()
    base = {"AFTER": flood_pair["after_sar"], "BEFORE": flood_pair["before_sar"], "OUTPUT_FOLDER": str(tmp_path)}
    ok, message = alg.checkParameterValues(dict(base, METHOD="teacher", TEACHER=""), context)
    assert not ok and "teacher" in message
    ok, message = alg.checkParameterValues(dict(base, METHOD="threshold", AFTER_LOOK_AZIMUTH=80.0), context)
    assert not ok and "DEM" in message
    ok, message = alg.checkParameterValues(dict(base, METHOD="threshold"), context)
    assert ok, message


def test_vectorize_polygons_equal_the_engine(flood_pair, tmp_path, sgcad_provider):
    from sgcad_qgis.engine.vector.polygonize import vectorize_classes

    flood = tmp_path / "flood"
    run("sgcad:floodmap", {"AFTER": flood_pair["after_sar"], "BEFORE": flood_pair["before_sar"],
                           "METHOD": "threshold", "OUTPUT_FOLDER": str(flood)})
    extent = str(flood / "flood_extent.tif")
    out = tmp_path / "water.gpkg"
    result = run("sgcad:vectorize", {"CLASSES": extent, "CONFIDENCE": str(flood / "flood_likelihood.tif"),
                                     "KEEP_CLASSES": "flood, permanent_water", "MIN_AREA": 1000.0,
                                     "SIMPLIFY": 5.0, "OUTPUT": str(out)})
    engine = vectorize_classes(extent, tmp_path / "engine.gpkg", classes=["flood", "permanent_water"],
                               min_area=1000.0, simplify=5.0)
    assert result["POLYGONS"] == engine["polygons"] > 0
    layer = QgsVectorLayer(result["OUTPUT"], "p", "ogr")
    assert layer.isValid() and layer.featureCount() == engine["polygons"]
    assert {f["class_name"] for f in layer.getFeatures()} <= {"flood", "permanent_water"}
    assert Path(out).with_suffix(".qml").is_file()
    ok, message = sgcad_provider.algorithm("vectorize").checkParameterValues(
        {"CLASSES": extent, "OUTPUT": str(tmp_path / "x.shp")}, QgsProcessingContext())
    assert not ok and "GeoPackage" in message
    del layer


def with_defaults(child: QgsProcessingModelChildAlgorithm) -> QgsProcessingModelChildAlgorithm:
    """Static default values for the parameters not set, as the Modeler's dialog fills them in."""
    for definition in child.algorithm().parameterDefinitions():
        name = definition.name()
        if name not in child.parameterSources() and not definition.isDestination():
            child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(
                definition.defaultValue())])
    return child


def test_modeler_chains_floodmap_and_vectorize(flood_pair, tmp_path, sgcad_provider):
    """A model: flood map (threshold) -> its flood extent vectorised, as a user builds it in the Modeler."""
    model = QgsProcessingModelAlgorithm("flood polygons", "sgcad tests")
    for name in ("after", "before"):
        model.addModelParameter(QgsProcessingParameterRasterLayer(name, name), QgsProcessingModelParameter(name))
    model.addModelParameter(QgsProcessingParameterFolderDestination("folder", "folder"),
                            QgsProcessingModelParameter("folder"))
    flood = QgsProcessingModelChildAlgorithm("sgcad:floodmap")
    flood.setChildId("flood")
    flood.addParameterSources("AFTER", [QgsProcessingModelChildParameterSource.fromModelParameter("after")])
    flood.addParameterSources("BEFORE", [QgsProcessingModelChildParameterSource.fromModelParameter("before")])
    flood.addParameterSources("METHOD", [QgsProcessingModelChildParameterSource.fromStaticValue("threshold")])
    flood.addParameterSources("OUTPUT_FOLDER", [QgsProcessingModelChildParameterSource.fromModelParameter("folder")])
    model.addChildAlgorithm(with_defaults(flood))
    vec = QgsProcessingModelChildAlgorithm("sgcad:vectorize")
    vec.setChildId("vec")
    vec.addParameterSources("CLASSES", [QgsProcessingModelChildParameterSource.fromChildOutput("flood",
                                                                                              "FLOOD_EXTENT")])
    vec.addParameterSources("KEEP_CLASSES", [QgsProcessingModelChildParameterSource.fromStaticValue("flood")])
    output = QgsProcessingModelOutput("polygons")
    output.setChildOutputName("OUTPUT")
    vec.setModelOutputs({"polygons": output})
    model.addChildAlgorithm(with_defaults(vec))
    ok, errors = model.validate()
    assert ok, errors
    feedback = QgsProcessingFeedback()
    results, ok = model.run({"after": flood_pair["after_sar"], "before": flood_pair["before_sar"],
                             "folder": str(tmp_path / "f"), "vec:polygons": str(tmp_path / "polygons.gpkg")},
                            QgsProcessingContext(), feedback)
    assert ok
    layer = QgsVectorLayer(str(tmp_path / "polygons.gpkg"), "p", "ogr")
    assert layer.isValid() and layer.featureCount() > 0
    del layer


def _wait_for(tab) -> None:
    """Wait (at most 4 min) until the tab's background run ends; it must have succeeded."""
    from qgis.PyQt.QtCore import QEventLoop, QTimer
    from qgis.PyQt.QtWidgets import QApplication

    finished = []
    tab.runner.finished.connect(lambda *a: finished.append(a))
    loop = QEventLoop()
    tab.runner.finished.connect(loop.quit)
    QTimer.singleShot(240_000, loop.quit)
    while not finished and tab.runner.busy():
        loop.exec_()
    QApplication.processEvents()
    assert finished and finished[0][1], finished


def test_dock_flood_tab_runs_and_shows_layers(flood_pair, recording_iface, qgis_new_project, tmp_path,
                                              sgcad_provider):
    from qgis.PyQt.QtWidgets import QApplication

    from sgcad_qgis.gui.dock import SgcadDock

    project = QgsProject.instance()
    before = QgsRasterLayer(flood_pair["before_sar"], "s1_2020-01-before")
    after = QgsRasterLayer(flood_pair["after_sar"], "s1_2020-02-after")
    areas = QgsVectorLayer(flood_pair["areas"], "districts", "ogr")
    project.addMapLayers([before, after, areas])
    dock = SgcadDock(recording_iface)
    try:
        dock.output.setFilePath(str(tmp_path / "runs"))
        dock.resize(400, 1000)
        dock.show()
        tab = dock.flood_tab
        tab._pick_defaults()
        assert tab.before.currentLayer().id() == before.id() and tab.after.currentLayer().id() == after.id()
        tab.method.setCurrentIndex(1)  # threshold: no network needed
        tab.areas.setLayer(areas)
        tab.name_field.setField("name")
        tab.polygons.setChecked(True)
        dock.show_tab(3)
        params = tab.parameters()
        assert params["METHOD"] == "threshold" and params["AOI_NAME_FIELD"] == "name"
        assert tab.start() is True and tab.runner.busy() and not tab.run_button.isEnabled()
        _wait_for(tab)
        group = project.layerTreeRoot().findGroup(dock.flood_tab.layer_ids and
                                                  [g.name() for g in project.layerTreeRoot().findGroups()
                                                   if g.name().startswith("SGCAD Flood map")][0])
        names = [(n.layer().name(), n.isVisible()) for n in group.findLayers()]
        assert names[0] == ("Flood polygons", True)
        assert ("Flood extent (threshold)", True) in names and ("Exclusion: SAR cannot see water", True) in names
        assert ("Flood likelihood p_after x (1 - p_before)", False) in names
        assert "km²" in tab.summary.text() and tab.report_button.isEnabled()
        SHOTS.mkdir(parents=True, exist_ok=True)
        assert dock.grab().save(str(SHOTS / "dock_flood_tab.png"))
        assert dock.fit_width() <= 420  # the tab fits a side panel
    finally:
        dock.shutdown()
        dock.close()
        dock.deleteLater()
        QApplication.processEvents()
        for layer in (before, after, areas):
            project.removeMapLayer(layer.id())
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)


def test_floodmap_maps_vv_vh_dates_with_the_vv_vh_water_expert(shared_data, tmp_path, sgcad_provider):
    # a real Sentinel-1 chip whose bands are named VV and VH, the bundled teacher by default: each date
    # is mapped by the VV + VH pair, found beside the bundled teacher in the plugin's models
    chip = str(shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif")
    result = run("sgcad:floodmap", {"AFTER": chip, "BEFORE": chip, "METHOD": "teacher", "DEVICE": 1,
                                    "OUTPUT_FOLDER": str(tmp_path / "flood")})
    dates = json.loads(Path(result["REPORT_JSON"]).read_text())["dates"]
    for name in ("after", "before"):
        assert dates[name]["teacher"] == "sgcad_teacher_vvvh.safetensors", dates[name]
        assert dates[name]["cross_polarised"] is None  # VH was read: nothing to check it against
        assert 0.4 < dates[name]["teacher_water_fraction"] < 0.6  # its hand label: 50.7 % water


def test_watermap_maps_one_date_and_loads_styled_layers(shared_data, tmp_path, sgcad_provider):
    import rasterio

    chip = str(shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif")
    alg = sgcad_provider.algorithm("watermap")
    context = QgsProcessingContext()
    teacher = alg.parameterDefinition("TEACHER").defaultValue()  # the bundled one
    assert Path(teacher).name == "sgcad_teacher.safetensors"
    ok, message = alg.checkParameterValues({"SAR": chip, "SAR_BANDS": [1, 2, 1], "TEACHER": teacher,
                                            "OUTPUT_FOLDER": str(tmp_path / "w")}, context)
    assert not ok and "Choose one SAR band" in message
    context.setProject(QgsProject.instance())
    feedback = TextRecorder()
    result = run("sgcad:watermap", {"SAR": chip, "DEVICE": 1, "OUTPUT_FOLDER": str(tmp_path / "w")}, context, feedback)
    assert result["MODEL_USED"] == "sgcad_teacher_vvvh.safetensors"
    # the log shows each step once, not once per window read (it did: "sampling ..." four times)
    assert feedback.texts and all(a != b for a, b in zip(feedback.texts, feedback.texts[1:])), feedback.texts
    assert 0.4 < result["WATER_SHARE"] < 0.6 and result["WATER_KM2"] > 5  # its hand label: 50.7 % water
    with rasterio.open(result["WATER"]) as src:
        assert src.nodata == 255 and {0, 1} < set(src.read(1).ravel().tolist()) <= {0, 1, 255}
    report = json.loads(Path(result["REPORT_JSON"]).read_text())
    assert report["teacher"] == result["MODEL_USED"]
    # a second run into the same folder is refused before anything runs, naming the file
    ok, message = alg.checkParameterValues({"SAR": chip, "TEACHER": teacher, "OUTPUT_FOLDER": str(tmp_path / "w")},
                                           context)
    assert not ok and "water_probability.tif" in message


def test_watermap_reads_gamma_nought_as_sigma_nought_unless_told(shared_data, tmp_path, sgcad_provider):
    """The lower Rhône is pyroSAR RTC gamma nought (its file name says so): read as sigma nought x cos 37 deg
    it calls 37 % of the footprint water, 29 % when SAR_BACKSCATTER says sigma0 (Otsu on its band: 37.5 %)."""
    rhone = str(shared_data / "sentinel1_camargue" / "S1A__IW___D_20171210T054359_VV_grd_mli_geo_norm_db.tif")
    shares = {}
    for reading in ("auto", "sigma0"):
        result = run("sgcad:watermap", {"SAR": rhone, "DEVICE": 1, "SAR_BACKSCATTER": reading,
                                        "OUTPUT_FOLDER": str(tmp_path / reading)})
        shares[reading] = result["WATER_SHARE"]
    assert shares["auto"] > 0.33 and shares["sigma0"] < 0.31, shares


def test_watermap_takes_the_vh_noise_floor_off_unless_told(tmp_path, sgcad_provider):
    """TerraMesh 282D keeps thermal noise in VH (its darkest 1 % at -27 dB as sigma nought): with the floor taken
    off the VV + VH expert calls 56 % of the chip water (its land cover: 52 %), with it kept 31 %."""
    coast = str(ROOT / "tests" / "data" / "terramesh_coast" / "282D_485L_3_3_S1RTC.tif")
    shares = {}
    for floor in ("auto", "off"):
        feedback = TextRecorder()
        result = run("sgcad:watermap", {"SAR": coast, "DEVICE": 1, "SAR_NOISE_FLOOR": floor,
                                        "OUTPUT_FOLDER": str(tmp_path / floor)}, feedback=feedback)
        shares[floor] = result["WATER_SHARE"]
        said = " ".join(feedback.infos)
        assert ("taken off before the VV + VH water expert" in said) == (floor == "auto"), feedback.infos
        assert ("noise floor kept, as asked" in said) == (floor == "off"), feedback.infos
    assert shares["auto"] > 0.5 and shares["off"] < 0.35, shares


def test_dock_flood_tab_without_a_before_layer_maps_the_water_of_one_date(shared_data, recording_iface,
                                                                           qgis_new_project, tmp_path,
                                                                           sgcad_provider):
    from qgis.PyQt.QtWidgets import QApplication

    from sgcad_qgis.gui.dock import SgcadDock

    project = QgsProject.instance()
    after = QgsRasterLayer(str(shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"), "s1_after")
    project.addMapLayer(after)
    dock = SgcadDock(recording_iface)
    try:
        dock.output.setFilePath(str(tmp_path / "runs"))
        tab = dock.flood_tab
        tab._pick_defaults()  # the only SAR-like layer, two bands (VV + VH): 'After', for one date
        assert tab.before.currentLayer() is None and tab.after.currentLayer().id() == after.id()
        assert tab.run_button.text() == "Map water"
        tab.method.setCurrentIndex(1)  # the threshold needs a before date: said, nothing starts
        assert tab.start() is False and not tab.runner.busy()
        tab.method.setCurrentIndex(0)
        assert set(tab.parameters()) == {"SAR", "TEACHER", "DEVICE", "OUTPUT_FOLDER"}
        assert tab.start() is True
        _wait_for(tab)
        group = [g for g in project.layerTreeRoot().findGroups() if g.name().startswith("SGCAD Water map")][0]
        assert "sgcad_teacher_vvvh" in group.name()
        names = [(n.layer().name(), n.isVisible()) for n in group.findLayers()]
        assert names == [("Water", True), ("Water probability", False)], names
        assert "km²" in tab.summary.text() and "sgcad_teacher_vvvh.safetensors" in tab.summary.text()
    finally:
        dock.shutdown()
        dock.close()
        dock.deleteLater()
        QApplication.processEvents()
        project.removeMapLayer(after.id())
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)


def test_watermap_refuses_a_picture_given_as_sar_in_one_sentence(shared_data, tmp_path, sgcad_provider):
    from qgis.core import QgsProcessingException

    picture = str(shared_data / "landsat_rgb" / "RGB.byte.tif")
    with pytest.raises(QgsProcessingException) as caught:
        run("sgcad:watermap", {"SAR": picture, "DEVICE": 1, "OUTPUT_FOLDER": str(tmp_path / "w")})
    assert "RGB.byte.tif says its bands are red, green, blue" in str(caught.value)
    assert "Traceback" not in str(caught.value)
    assert not any((tmp_path / "w").glob("*"))  # Processing makes the folder itself; nothing is written in it
