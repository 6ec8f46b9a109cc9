"""Layers -> engine files (plain files, exported windows, refused web maps) and styled outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterDataProvider,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
)
from rasterio.transform import from_origin
from sgcad_qgis.engine.config import ClassSchema

from sgcad_qgis import layers

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"


def _write(path: Path, array: np.ndarray, dtype: str = "float32") -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=dtype,
        crs="EPSG:32631",
        transform=from_origin(500000, 5700000, 10, 10),
    ) as dst:
        dst.write(array.astype(dtype))
    return path


@pytest.fixture()
def raster(tmp_path):
    return _write(tmp_path / "two_bands.tif", np.arange(2 * 30 * 40).reshape(2, 30, 40))


def _virtual(path: Path) -> QgsRasterLayer:
    """A virtual-raster layer (no file behind it) computing 2 x band 1 of ``path``."""
    source = QgsRasterLayer(str(path), "src")
    params = QgsRasterDataProvider.VirtualRasterParameters()
    params.crs, params.extent, params.width, params.height = source.crs(), source.extent(), 40, 30
    params.formula = '"src@1" * 2'
    item = QgsRasterDataProvider.VirtualRasterInputLayers()
    item.name, item.provider, item.uri = "src", "gdal", str(path)
    params.rInputLayers = [item]
    return QgsRasterLayer(QgsRasterDataProvider.encodeVirtualRasterProviderUri(params), "doubled", "virtualraster")


def test_plain_file_is_used_in_place_and_web_maps_are_refused(qgis_app, raster):
    layer = QgsRasterLayer(str(raster), "optical")
    assert layers.raster_source(layer, "optical raster") == str(raster)

    xyz = QgsRasterLayer(
        "type=xyz&url=http://127.0.0.1:9/%7Bz%7D/%7Bx%7D/%7By%7D.png&zmax=19&zmin=0", "OSM tiles", "wms"
    )
    assert xyz.isValid()
    with pytest.raises(QgsProcessingException, match="'OSM tiles' is a web map.*not sensor values"):
        layers.raster_source(xyz, "optical raster")
    with pytest.raises(QgsProcessingException, match="SAR raster is missing"):
        layers.raster_source(None, "SAR raster")


def test_layer_without_a_file_is_exported_over_the_needed_window_only(qgis_app, raster, tmp_path):
    virtual = _virtual(raster)
    assert virtual.isValid() and virtual.providerType() == "virtualraster"
    feedback = QgsProcessingFeedback()
    # a window that is not on pixel edges: it grows to whole pixels, values are not resampled
    window = QgsRectangle(500100, 5699800, 500205, 5699905)
    out = layers.raster_source(virtual, "optical raster", feedback, window, temp_dir=str(tmp_path / "t"))
    assert out != str(raster) and Path(out).is_file()
    with rasterio.open(out) as src:
        assert src.shape == (11, 11)
        assert src.transform.c == 500100 and src.transform.f == 5699910
        values = src.read(1)
    expected = 2 * np.arange(30 * 40).reshape(30, 40)[9:20, 10:21]
    np.testing.assert_array_equal(values, expected)
    assert not list((tmp_path / "t").glob("*.part*"))  # nothing half-written left behind

    outside = QgsRectangle(0, 0, 10, 10)
    with pytest.raises(QgsProcessingException, match="does not cover the area of interest"):
        layers.raster_source(virtual, "optical raster", feedback, outside, temp_dir=str(tmp_path / "t"))


def test_a_zipped_sentinel2_stack_is_exported_with_its_band_names_and_read_by_role(qgis_app, shared_data, tmp_path):
    """A layer GDAL reads from a zip is exported before a run; the export keeps the band names, so
    the engine still reads B04, B03, B02 of a real 12-band stack as red, green, blue."""
    import zipfile

    from sgcad_qgis.engine.config import BandMapping
    from sgcad_qgis.engine.inputs.bands import choose_bands
    from sgcad_qgis.engine.raster.stack import stack_bands

    s2 = next((shared_data / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    stack_bands([(p, 1) for p in sorted(s2.glob("*_B*.tif"))], tmp_path / "s2_all.tif")
    with zipfile.ZipFile(tmp_path / "s2.zip", "w") as archive:
        archive.write(tmp_path / "s2_all.tif", "s2_all.tif")
    layer = QgsRasterLayer(f"/vsizip/{tmp_path / 's2.zip'}/s2_all.tif", "zipped")
    assert layer.isValid()
    out = layers.raster_source(layer, "optical raster", temp_dir=str(tmp_path / "t"))
    assert out.startswith(str(tmp_path / "t"))  # exported, not read in place
    with rasterio.open(tmp_path / "s2_all.tif") as src, rasterio.open(out) as exported:
        assert exported.descriptions == src.descriptions and exported.descriptions[3].endswith("_B04_b1")
    model = BandMapping(optical_names=("optical_b1", "optical_b2", "optical_b3"))
    assert choose_bands(out, model, "optical").bands == (4, 3, 2)


def test_a_zipped_gamma_nought_raster_is_exported_still_saying_gamma_nought(qgis_app, shared_data, tmp_path):
    """The export is named after the layer; the source's file name goes along as a tag, so the zipped
    pyroSAR RTC scene of the lower Rhone is still read as gamma nought (else as sigma nought, 1 dB too bright)."""
    import zipfile

    from sgcad_qgis.engine.inputs.backscatter import detect_backscatter

    sar = next((shared_data / "sentinel1_camargue").glob("*20171210*.tif"))
    with zipfile.ZipFile(tmp_path / "scene.zip", "w") as archive:
        archive.write(sar, sar.name)
    layer = QgsRasterLayer(f"/vsizip/{tmp_path / 'scene.zip'}/{sar.name}", "flood scene")
    assert layer.isValid()
    out = layers.raster_source(layer, "SAR raster", temp_dir=str(tmp_path / "t"))
    assert out.startswith(str(tmp_path / "t")) and sar.stem not in out  # exported under another name
    decision = detect_backscatter(out, [1])
    assert decision.convention == "gamma0" and "tags" in decision.reason, decision


def test_a_no_data_value_set_in_qgis_reaches_the_engine(qgis_app, shared_data, tmp_path):
    """SNAP writes 0 where a dB band has no data, and an export may lose the nodata tag: 0 dB is bright land.
    The value a user sets in Layer Properties > Transparency (what the runs' warnings advise) is declared in
    a virtual raster over the file, so the border is no data in the water map; ranges are refused by name."""
    from qgis.core import QgsRasterRange
    from sgcad_qgis.engine.inference import sar_only

    with rasterio.open(shared_data / "sen1floods11_s1" / "India_900498_S1Hand.tif") as src:
        profile, db = dict(src.profile, nodata=None), src.read()
    db[:, :, :40] = 0
    path = tmp_path / "subset_Sigma0_db.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(db)
        dst.descriptions = ("Sigma0_VV_db", "Sigma0_VH_db")
    layer = QgsRasterLayer(str(path), "flood scene")
    assert layers.raster_source(layer, "SAR raster") == str(path)  # nothing set: the file itself
    for band in (1, 2):
        layer.dataProvider().setUserNoDataValue(band, [QgsRasterRange(0, 0)])
    declared = layers.raster_source(layer, "SAR raster", temp_dir=str(tmp_path / "t"))
    assert declared.endswith(".vrt") and Path(declared).name.startswith("subset_Sigma0_db")
    nan_border = tmp_path / "nan_border.tif"  # what a file that said it would hold
    with rasterio.open(nan_border, "w", **dict(profile, nodata=float("nan"))) as dst:
        dst.write(np.where(db == 0, np.nan, db))
        dst.descriptions = ("Sigma0_VV_db", "Sigma0_VH_db")
    import zipfile

    with zipfile.ZipFile(tmp_path / "scene.zip", "w") as archive:  # a layer that is exported before a run
        archive.write(path, path.name)
    zipped = QgsRasterLayer(f"/vsizip/{tmp_path / 'scene.zip'}/{path.name}", "zipped scene")
    for band in (1, 2):
        zipped.dataProvider().setUserNoDataValue(band, [QgsRasterRange(0, 0)])
    exported = layers.raster_source(zipped, "SAR raster", temp_dir=str(tmp_path / "t"))
    maps = {}
    for name, sar in (("file", path), ("declared", declared), ("nan", nan_border), ("exported", exported)):
        sar_only.water_probability(sar, MODELS / "sgcad_teacher.safetensors", tmp_path / f"{name}.tif")
        with rasterio.open(tmp_path / f"{name}.tif") as src:
            maps[name] = src.read(1)
    # the file alone: its 0 dB area is read as a fill too (since 2026-12-05), with a warning the declared value silences
    assert np.isnan(maps["file"][:, :40]).all() and np.isnan(maps["declared"][:, :40]).all()
    np.testing.assert_allclose(maps["file"], maps["nan"], atol=1e-5)
    np.testing.assert_allclose(maps["declared"], maps["nan"], atol=1e-5)
    np.testing.assert_allclose(maps["exported"], maps["nan"], atol=1e-5)
    layer.dataProvider().setUserNoDataValue(1, [QgsRasterRange(-1, 0)])
    with pytest.raises(QgsProcessingException, match="has the no-data range -1 to 0 set in QGIS"):
        layers.raster_source(layer, "SAR raster")


def test_class_map_is_paletted_with_schema_names_and_colours_also_from_its_sidecar(qgis_app, tmp_path):
    schema = ClassSchema(
        names=("land", "water", "urban"),
        ids=(0, 1, 2),
        colors=("#00ff00", "#0000ff", "#ff0000"),
        water_class=1,
    )
    path = _write(tmp_path / "classes.tif", np.array([[[0, 1], [2, 255]]]), "uint8")
    qml = layers.save_style_sidecar(str(path), layers.KIND_CLASSES, schema)
    assert qml == str(tmp_path / "classes.qml")
    reopened = QgsRasterLayer(str(path), "reopened")  # QGIS reads <name>.qml as default style
    renderer = reopened.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    classes = {c.value: (c.label, c.color.name()) for c in renderer.classes()}
    assert classes[1] == ("1 water", "#0000ff") and classes[2] == ("2 urban", "#ff0000")
    assert 255 not in classes  # nodata stays transparent
    with pytest.raises(ValueError, match="needs the class schema"):
        layers.apply_style(reopened, layers.KIND_CLASSES)


def test_post_processor_names_and_styles_loaded_outputs(qgis_app, tmp_path):
    probability = _write(tmp_path / "water_probability.tif", np.random.default_rng(0).random((1, 8, 8)))
    gates = _write(tmp_path / "gates.tif", np.array([[[0, 1], [2, 1]]]), "uint8")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    context.addLayerToLoadOnCompletion(
        str(probability), QgsProcessingContext.LayerDetails("x", QgsProject.instance(), "WATER")
    )
    layers.publish_output(context, str(probability), "Water probability (teacher)", layers.KIND_PROBABILITY)
    layers.publish_output(context, str(gates), "KD gate masks", layers.KIND_GATES, "GATES", add_to_load=True)
    assert context.willLoadLayerOnCompletion(str(gates))

    loaded = {}
    for path, details in context.layersToLoadOnCompletion().items():
        layer = QgsRasterLayer(path, "unnamed")
        details.postProcessor().postProcessLayer(layer, context, QgsProcessingFeedback())
        loaded[Path(path).name] = layer
    prob, gate = loaded["water_probability.tif"], loaded["gates.tif"]
    assert prob.name() == "Water probability (teacher)"
    assert isinstance(prob.renderer(), QgsSingleBandPseudoColorRenderer)
    assert (prob.renderer().classificationMin(), prob.renderer().classificationMax()) == (0.0, 1.0)
    assert gate.name() == "KD gate masks"
    assert gate.renderer().opacity() == pytest.approx(layers.GATE_OPACITY)
    assert {c.value for c in gate.renderer().classes()} == {1, 2}
    del loaded, prob, gate
