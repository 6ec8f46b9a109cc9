"""Large-scene segmentation: seams, nodata, SAR-only answers, AOI, cancel, atomic outputs.

The network is a deterministic function with a 9x9 receptive field and zero padding at tile
edges (like a CNN), so un-blended tiling would show seams; the rasters, the preprocessing
(Lee filter with its halo), the warping, the blending and the GeoTIFF writing are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from scipy import ndimage

from engine.config import (
    BandNormalization,
    InferenceConfig,
    ModelMetadata,
    NormalizationRecord,
    OpticalPreprocessConfig,
    SarPreprocessConfig,
    StudentConfig,
    to_dict,
)
from engine.inference.backends import CallableBackend
from engine.inference.blending import BlendAccumulator, tile_weight
from engine.inference.pipeline import segment_scene
from engine.inference.products import SAR_ONLY_NON_WATER
from engine.inference.tiling import plan_tiles
from engine.models.checkpoint import save_model
from engine.progress import CallbackProgress, Canceled

K, WATER = 6, 3
ORIGIN = (500000.0, 5800000.0)


def _write(path: Path, data: np.ndarray, x0: int = 0, y0: int = 0, res: float = 5.0) -> Path:
    transform = from_origin(ORIGIN[0] + x0 * res, ORIGIN[1] - y0 * res, res, res)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype="float32",
        crs="EPSG:32631",
        transform=transform,
        nodata=float("nan"),
    ) as ds:
        ds.write(data.astype("float32"))
    return path


def _field(rng, h, w, sigma=7.0):
    f = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma)
    return (f - f.min()) / (f.max() - f.min())


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 360 x 400 optical (3 bands, 0..255) + SAR (dB) pair and a tiny student checkpoint."""
    d = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(7)
    h, w = 360, 400
    a, b = _field(rng, h, w), _field(rng, h, w)
    optical = np.stack([a * 255, b * 255, (a + b) * 127.5])
    sar = (-25.0 + 25.0 * b)[None]
    meta = ModelMetadata(
        kind="student",
        model=to_dict(StudentConfig(widths=(4, 8, 8, 8), decoder_channels=8, attention_dim=8)),
        # fixed ranges, so the expected maps below are simple functions of the rasters; the
        # optical floats 0..255 are detected as 8-bit values and divided by 255
        optical_normalization=NormalizationRecord(
            "optical", tuple(BandNormalization(i, 0.0, 1.0) for i in (1, 2, 3))
        ),
        optical_preprocess=OpticalPreprocessConfig(normalization="fixed"),
        sar_normalization=NormalizationRecord("sar", (BandNormalization(1, -25.0, 0.0),)),
        sar_preprocess=SarPreprocessConfig(units="db"),  # Lee 7x7: a 3-pixel halo per tile
    )
    from engine.models import build_model

    model = save_model(d / "student.safetensors", build_model(meta.model), meta)
    return {
        "dir": d,
        "optical": optical,
        "sar": sar,
        "model": model,
        "optical_path": _write(d / "optical.tif", optical),
        "sar_path": _write(d / "sar.tif", sar),
    }


def context_model(optical: np.ndarray, sar: np.ndarray):
    """Class and water probabilities from 9x9 means (zero padding, as a CNN sees tile edges)."""
    pool = lambda x: torch.nn.functional.avg_pool2d(torch.from_numpy(x), 9, 1, 4).numpy()  # noqa: E731
    f, s = pool(optical.mean(1, keepdims=True)), pool(sar)
    centres = np.linspace(0.1, 0.9, K, dtype=np.float32).reshape(1, K, 1, 1)
    logits = -((f - centres) ** 2) / 0.005
    probs = np.exp(logits - logits.max(1, keepdims=True))
    water = 1.0 / (1.0 + np.exp(-25.0 * (0.3 - s[:, 0])))
    return (probs / probs.sum(1, keepdims=True)).astype(np.float32), water.astype(np.float32)


def _backend(calls=None):
    def fn(o, s):
        if calls is not None:
            calls.append(o.shape[0])
        return context_model(o, s)

    return CallableBackend(fn, K, has_teacher=True)


def _read(path, band=1):
    with rasterio.open(path) as ds:
        return ds.read(band)


def _segment(scene, optical, sar, out, cfg=None, **kw):
    return segment_scene(
        optical,
        sar,
        scene["model"],
        out,
        cfg=cfg or InferenceConfig(tile_size=128, overlap=32),
        backend=kw.pop("backend", None) or _backend(),
        **kw,
    )


def test_plan_covers_grid_with_equal_tiles_and_weights_blend_to_one():
    plan = plan_tiles(1000, 700, tile_size=256, overlap=32, strip_width=512)
    cover = np.zeros((700, 1000), np.int32)
    wsum = np.zeros((700, 1000), np.float32)
    for t in plan.tiles:
        assert (t.height, t.width) == plan.tile_shape == (256, 256)
        cover[t.y0 : t.y1, t.x0 : t.x1] += 1
        wsum[t.y0 : t.y1, t.x0 : t.x1] += tile_weight(t, plan)
    assert cover.min() >= 1 and len(plan.tiles) == plan.total == 5 * 3
    # facing cosine ramps sum to one: blending equal predictions returns them unchanged
    assert np.allclose(wsum[:444, :744], 1.0, atol=1e-5) and wsum.min() > 0  # up to the shifted last tiles
    # strips of 2 tile columns: the first 8 tiles are columns 0-1, row by row
    assert [(t.col, t.row) for t in plan.tiles[:4]] == [(0, 0), (1, 0), (0, 1), (1, 1)]
    small = plan_tiles(100, 60, tile_size=256, overlap=32)
    assert [(t.width, t.height) for t in small.tiles] == [(100, 60)]
    with pytest.raises(ValueError, match="overlap"):
        plan_tiles(100, 100, tile_size=64, overlap=32)


def test_blend_memory_stays_a_narrow_band_whatever_the_scene_width():
    peaks = []
    for width in (2048, 8192):
        plan = plan_tiles(width, 1536, tile_size=256, overlap=32, strip_width=1024)
        acc = BlendAccumulator(plan, 2, with_water=False)
        probs, flags = np.full((2, 256, 256), 0.5, np.float32), np.full((256, 256), 3, np.uint8)
        released = sum(c.flags.size for t in plan.tiles for c in acc.add(t, probs, None, flags))
        assert released == width * 1536 and acc.live_cells == 0
        peaks.append(acc.peak_live_pixels)
    # 4x the width: the live band grows only by the strip seam (overlap x height), not 4x
    assert peaks[1] < 1.25 * peaks[0], peaks


def test_seamless_on_a_crop_at_an_offset_not_on_the_tile_stride(scene, tmp_path):
    full = _segment(scene, scene["optical_path"], scene["sar_path"], tmp_path / "full")
    dx, dy, cw, ch = 37, 53, 300, 250  # stride is 96: the crop's tiles fall elsewhere
    crop = scene["dir"] / "crop"
    crop.mkdir(exist_ok=True)
    opt = _write(crop / "o.tif", scene["optical"][:, dy : dy + ch, dx : dx + cw], dx, dy)
    sar = _write(crop / "s.tif", scene["sar"][:, dy : dy + ch, dx : dx + cw], dx, dy)
    part = _segment(scene, opt, sar, tmp_path / "crop")
    m = 8  # the crop's own border lacks context (Lee halo 3 + receptive radius 4)
    a = _read(full["outputs"]["classes"])[dy + m : dy + ch - m, dx + m : dx + cw - m]
    b = _read(part["outputs"]["classes"])[m:-m, m:-m]
    assert len(np.unique(a)) >= 4  # a scene with several classes, not a constant map
    assert (a != b).mean() <= 1e-4
    ca = _read(full["outputs"]["confidence"])[dy + m : dy + ch - m, dx + m : dx + cw - m]
    cb = _read(part["outputs"]["confidence"])[m:-m, m:-m]
    assert np.nanmax(np.abs(ca - cb)) < 1e-4
    # the same comparison without overlap shows the tile seams this test is there to catch
    cfg = InferenceConfig(tile_size=128, overlap=0)
    seamy = _segment(scene, scene["optical_path"], scene["sar_path"], tmp_path / "seam", cfg=cfg)
    s = _read(seamy["outputs"]["classes"])[dy + m : dy + ch - m, dx + m : dx + cw - m]
    cs = _read(seamy["outputs"]["confidence"])[dy + m : dy + ch - m, dx + m : dx + cw - m]
    assert (s != b).mean() > 0.01
    assert np.nanmax(np.abs(cs - cb)) > 0.2


def test_outputs_are_tiled_geotiffs_with_legend_overviews_and_gates(scene, tmp_path):
    r = _segment(
        scene,
        scene["optical_path"],
        scene["sar_path"],
        tmp_path / "o",
        cfg=InferenceConfig(tile_size=256, overlap=32),
    )
    assert sorted(Path(p).name for p in r["outputs"].values()) == [
        "classes.tif",
        "confidence.tif",
        "gates.tif",
        "water_probability.tif",
    ]
    with rasterio.open(r["outputs"]["classes"]) as ds:
        assert ds.dtypes[0] == "uint8" and ds.nodata == 255 and ds.block_shapes[0] == (256, 256)
        assert ds.overviews(1) == [2]
        assert ds.colormap(1)[WATER][:3] == (0x2B, 0x83, 0xBA)
        assert json.loads(ds.tags()["class_names"])[str(WATER)] == "water"
        assert ds.descriptions == ("class",)
    with rasterio.open(r["outputs"]["gates"]) as ds:
        gates = ds.read()
        assert ds.descriptions == (
            "teacher_confident_water",
            "teacher_confident_non_water",
            "teacher_student_agree",
        )
    water = _read(r["outputs"]["water"])
    np.testing.assert_array_equal(gates[0] == 1, water > 0.95)
    np.testing.assert_array_equal(gates[1] == 1, water < 0.15)
    cls = _read(r["outputs"]["classes"])
    np.testing.assert_array_equal(gates[2] == 1, (cls == WATER) == (water >= 0.5))
    assert r["tiles"] == 4 and sum(r["class_pixels"].values()) == 360 * 400
    assert not list((tmp_path / "o").glob(".*"))  # no temporary file left


def test_nodata_in_nodata_out_and_sar_only_answers_where_optical_is_missing(scene, tmp_path):
    optical, sar = scene["optical"].copy(), scene["sar"].copy()
    optical[:, 100:200, 50:150] = np.nan  # optical gap (no coverage)
    sar[:, 250:300, :] = np.nan  # SAR gap
    cloud = np.zeros((1, 360, 400), np.float32)
    cloud[:, 20:60, 300:380] = 1  # user cloud mask over valid optical
    d = tmp_path / "in"
    d.mkdir()
    r = _segment(
        scene,
        _write(d / "o.tif", optical),
        _write(d / "s.tif", sar),
        tmp_path / "out",
        cloud_mask=_write(d / "c.tif", cloud),
    )
    cls, conf = _read(r["outputs"]["classes"]), _read(r["outputs"]["confidence"])
    water = _read(r["outputs"]["water"])
    assert (cls[250:300] == 255).all() and np.isnan(conf[250:300]).all() and np.isnan(water[250:300]).all()
    for gap in (np.s_[100:200, 50:150], np.s_[20:60, 300:380]):
        assert set(np.unique(cls[gap])) <= {WATER, SAR_ONLY_NON_WATER}
        assert (conf[gap] < 0).all() and (-conf[gap] >= 0.5).all()  # SAR-only: negative confidence
        np.testing.assert_array_equal(cls[gap] == WATER, water[gap] >= 0.5)
    both = np.ones_like(cls, bool)
    both[250:300], both[100:200, 50:150], both[20:60, 300:380] = False, False, False
    assert (cls[both] < K).all() and (conf[both] > 0).all()
    assert r["sar_only_pixels"] == int((conf < 0).sum()) == 100 * 100 + 40 * 80
    assert (cls == SAR_ONLY_NON_WATER).any() and (cls[conf < 0] == WATER).any()
    assert r["sar_without_optical_pixels"] == 100 * 100 + 40 * 80  # the teacher answered there: no warning
    assert not any("no optical data" in w for w in r["inputs"]["warnings"])

    # without a teacher those pixels get no answer, and the run says so, with the share and the remedy
    said = []
    plain = _segment(scene, d / "o.tif", d / "s.tif", tmp_path / "plain", cloud_mask=d / "c.tif",
                     backend=CallableBackend(lambda o, s: (context_model(o, s)[0], None), K, has_teacher=False),
                     progress=CallbackProgress(warning=said.append))
    gaps = _read(plain["outputs"]["classes"])
    assert (gaps[100:200, 50:150] == 255).all() and (gaps[20:60, 300:380] == 255).all()
    share = (100 * 100 + 40 * 80) / (360 * 400 - 50 * 400)
    line = f"{share:.1%} of the pixels with SAR have no optical data"
    assert any(line in w for w in said) and any(line in w for w in plain["inputs"]["warnings"])


def test_aoi_polygon_limits_tiles_and_masks_outside(scene, tmp_path):
    from osgeo import ogr, osr

    x0, y0 = ORIGIN[0] + 5 * 30, ORIGIN[1] - 5 * 40  # pixel (30, 40); a triangle 150 px wide
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    path = tmp_path / "aoi.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("aoi", srs, ogr.wkbPolygon)
    f = ogr.Feature(layer.GetLayerDefn())
    f.SetGeometry(
        ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x0 + 750} {y0},{x0} {y0 - 750},{x0} {y0}))")
    )
    layer.CreateFeature(f)
    ds = layer = f = None
    calls = []
    r = _segment(
        scene,
        scene["optical_path"],
        scene["sar_path"],
        tmp_path / "aoi",
        aoi=str(path),
        cfg=InferenceConfig(tile_size=64, overlap=16, batch_size=1),
        backend=_backend(calls),
    )
    assert r["grid"]["width"] == r["grid"]["height"] == 150
    assert r["tiles"] == sum(calls) < r["tiles_total"] == 9  # the far corner tile is skipped
    cls = _read(r["outputs"]["classes"])
    assert (cls[5, 5:140] < K).all() and (cls[140:, 140:] == 255).all()  # in / outside the triangle
    box = _segment(
        scene,
        scene["optical_path"],
        scene["sar_path"],
        tmp_path / "box",
        aoi=f"{x0},{y0 - 100},{x0 + 100},{y0}",
    )
    assert box["grid"]["width"] == box["grid"]["height"] == 20 and box["tiles"] == 1
    with pytest.raises(ValueError, match="does not overlap"):
        _segment(scene, scene["optical_path"], scene["sar_path"], tmp_path / "none", aoi="0,0,10,10")


def test_cancel_and_errors_leave_no_file_and_outputs_are_not_overwritten(scene, tmp_path):
    out = tmp_path / "c"
    reports = []
    # cancel once the tiles stream (after the inputs were resolved and the outputs opened)
    progress = CallbackProgress(
        report=lambda f, m: reports.append(f), is_canceled=lambda: max(reports, default=0) > 0.1
    )
    with pytest.raises(Canceled):
        _segment(
            scene,
            scene["optical_path"],
            scene["sar_path"],
            out,
            progress=progress,
            cfg=InferenceConfig(tile_size=64, overlap=16, batch_size=1),
        )
    assert not out.exists()  # the run made the folder, and removed it

    def broken(o, s):
        raise RuntimeError("network failed")

    with pytest.raises(RuntimeError, match="network failed"):
        _segment(
            scene, scene["optical_path"], scene["sar_path"], out, backend=CallableBackend(broken, K, True)
        )
    assert not out.exists()  # the run made the folder, and removed it

    first = _segment(scene, scene["optical_path"], scene["sar_path"], out)
    stamp = Path(first["outputs"]["classes"]).stat().st_mtime_ns
    with pytest.raises(ValueError, match="output exists; choose another name"):
        _segment(scene, scene["optical_path"], scene["sar_path"], out)
    assert Path(first["outputs"]["classes"]).stat().st_mtime_ns == stamp
    again = _segment(scene, scene["optical_path"], scene["sar_path"], out, overwrite=True)
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".aux.xml")) == sorted(
        Path(p).name for p in again["outputs"].values()
    )


def test_bad_inputs_raise_clear_errors(scene, tmp_path):
    with pytest.raises(ValueError, match="SAR band"):
        _segment(scene, scene["optical_path"], scene["sar_path"], tmp_path / "x", sar_bands=[1, 2])
    with pytest.raises(ValueError, match="band 4 does not exist"):
        _segment(scene, scene["optical_path"], scene["sar_path"], tmp_path / "x", optical_bands=[1, 2, 4])
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        _segment(scene, tmp_path / "missing.tif", scene["sar_path"], tmp_path / "x")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------- ONNX export
def _tiny_networks():
    from engine.config import TeacherConfig
    from engine.models import build_model

    torch.manual_seed(0)
    student = build_model(StudentConfig(widths=(4, 8, 8, 8), decoder_channels=8, attention_dim=8)).eval()
    teacher = build_model(TeacherConfig(widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1),
                                        modules_per_stage=(1, 1, 1, 1))).eval()
    return student, teacher


@pytest.mark.parametrize("size,out", [((13, 29), 8), ((8, 8), 8), ((3, 5), 4), ((64, 48), (8, 6)), ((7, 9), (None, 4))])
def test_adaptive_pooling_by_matmul_is_exactly_adaptive_avg_pool2d(size, out):
    from engine.inference.backends import adaptive_avg_pool2d_by_matmul

    x = torch.rand(2, 3, *size)
    want = torch.nn.functional.adaptive_avg_pool2d(x, out)
    got = adaptive_avg_pool2d_by_matmul(x, out)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("tile_shape", [(200, 200), (96, 96), (130, 77)])
def test_onnx_export_works_for_any_tile_shape_and_matches_torch(tile_shape, tmp_path, monkeypatch):
    """The pipeline's tile shape is min(tile size, scene size): any height and width occur."""
    from engine.inference.backends import OnnxBackend, TorchBackend, make_backend

    monkeypatch.setenv("SGCAD_CACHE_DIR", str(tmp_path))
    messages = []
    student, teacher = _tiny_networks()
    backend = make_backend("auto", student, teacher, 6, 3, 1, tile_shape, "cpu", info=messages.append)
    assert isinstance(backend, OnnxBackend) and messages == []
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2 and not list(tmp_path.glob("onnx/*.failed"))
    rng = np.random.default_rng(1)
    optical = rng.random((2, 3, *tile_shape), dtype=np.float32)
    sar = rng.random((2, 1, *tile_shape), dtype=np.float32)
    probs, water = backend.predict(optical, sar)
    ref_probs, ref_water = TorchBackend(student, teacher, 6).predict(optical, sar)
    assert probs.shape == (2, 6, *tile_shape) and water.shape == (2, *tile_shape)
    assert np.abs(probs - ref_probs).max() < 1e-4 and np.abs(water - ref_water).max() < 1e-4
    # the original pooling is back once the export is done
    assert torch.nn.functional.adaptive_avg_pool2d.__module__ == "torch.nn.functional"


def test_onnx_failure_is_decided_once_and_small_runs_skip_the_export(tmp_path, monkeypatch):
    from engine.inference import backends

    monkeypatch.setenv("SGCAD_CACHE_DIR", str(tmp_path))
    student, _ = _tiny_networks()
    calls = []

    def broken_export(*args, **kwargs):
        calls.append(args[-1])
        raise backends.OnnxExportError("ONNX export failed: operator nobody has")

    monkeypatch.setattr(backends, "export_onnx", broken_export)
    messages = []
    for _ in range(3):
        got = backends.make_backend("auto", student, None, 6, 3, 2, (64, 64), "cpu", info=messages.append)
        assert isinstance(got, backends.TorchBackend)
    assert len(calls) == 1  # tried once; the next runs read the note and fall back at once
    assert messages == ["ONNX export failed: operator nobody has; running with torch instead"] * 3
    with pytest.raises(ValueError, match="operator nobody has; use --backend torch"):
        backends.make_backend("onnx", student, None, 6, 3, 2, (64, 64), "cpu")
    assert len(calls) == 1

    # a small run on CPU keeps torch without exporting; a big one exports
    calls.clear()
    small = backends.make_backend("auto", student, None, 6, 3, 2, (80, 80), "cpu", work_pixels=80 * 80)
    assert isinstance(small, backends.TorchBackend) and calls == []
    backends.make_backend("auto", student, None, 6, 3, 2, (80, 80), "cpu", work_pixels=10**7)
    assert len(calls) == 1


def test_tiles_are_read_while_the_model_loads_and_a_failed_load_leaves_nothing(scene, tmp_path, monkeypatch):
    """The reader starts before the backend is built (the network's first batch is ready when the
    model is); a load that fails stops the reader and leaves no file."""
    import threading

    from engine.inference.pipeline import SceneJob
    from engine.inference.reader import TileReader

    first_read = threading.Event()
    original_read = TileReader.read

    def read(self, tiles):
        first_read.set()
        return original_read(self, tiles)

    def slow_load(self, device, progress, work_pixels=None):
        assert first_read.wait(10), "no tile was read while the model loaded"
        return _backend()

    monkeypatch.setattr(TileReader, "read", read)
    monkeypatch.setattr(SceneJob, "make_backend", slow_load)
    cfg = InferenceConfig(tile_size=128, overlap=32)
    ahead = segment_scene(scene["optical_path"], scene["sar_path"], scene["model"], tmp_path / "a", cfg=cfg)
    plain = _segment(scene, scene["optical_path"], scene["sar_path"], tmp_path / "b", cfg=cfg)
    for key in ("classes", "confidence"):
        with rasterio.open(ahead["outputs"][key]) as a, rasterio.open(plain["outputs"][key]) as b:
            assert np.array_equal(a.read(), b.read(), equal_nan=True)

    def failed_load(self, device, progress, work_pixels=None):
        raise RuntimeError("cannot load the model")

    monkeypatch.setattr(SceneJob, "make_backend", failed_load)
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="cannot load the model"):
        segment_scene(scene["optical_path"], scene["sar_path"], scene["model"], tmp_path / "c", cfg=cfg)
    assert not (tmp_path / "c").exists() and threading.active_count() == before
