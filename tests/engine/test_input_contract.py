"""The model-input contract: the same scene in any units reaches the networks identically.

One scene is written as optical uint8, uint16 reflectance x 10000 and float reflectance 0-1,
and its SAR as linear power, dB and amplitude; all nine pairs are segmented with the bundled
models and with a freshly trained one, on the synthetic sample and on two real pairs
(SpaceNet 6 Rotterdam; a BigEarthNet Sentinel-1/2 pair stacked with the project's tools).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from engine.config import InferenceConfig, TeacherConfig, TrainConfig
from engine.inference.backends import TorchBackend
from engine.inference.pipeline import segment_scene
from engine.inputs.contract import InputOverrides, InputRecipe, resolve_inputs
from engine.inputs.units import detect_optical_units, detect_sar_units
from engine.models.checkpoint import load_model, read_metadata
from engine.raster.stack import stack_bands
from engine.train.data import TrainingInputs

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "resources" / "models"
SAMPLE = ROOT / "resources" / "sample"
OPTICAL_UNITS = ("uint8", "reflectance10000", "reflectance")
REFLECTANCE_COPIES = ("reflectance10000", "reflectance")  # one surface reflectance, two encodings
SAR_UNITS = ("linear", "db", "amplitude")


def _write(path: Path, data: np.ndarray, like: Path, dtype: str, nodata=None, descriptions=None) -> Path:
    with rasterio.open(like) as src:
        profile = src.profile
    profile.update(count=data.shape[0], dtype=dtype, nodata=nodata, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
        for i, name in enumerate(descriptions or []):
            dst.set_band_description(i + 1, name)
    return path


def unit_variants(folder: Path, optical: Path, sar: Path, optical_is_uint8: bool, sar_is_db: bool) -> dict:
    """The pair in every optical and SAR unit, from the source's own units (NaN nodata kept)."""
    with rasterio.open(optical) as src:
        o = src.read(masked=True).astype(np.float64).filled(np.nan)
    with rasterio.open(sar) as src:
        s = src.read(masked=True).astype(np.float64).filled(np.nan)
    reflectance = o / 255.0 if optical_is_uint8 else o / 10000.0
    power = 10.0 ** (s / 10.0) if sar_is_db else s
    # an 8-bit rendition of a 16-bit scene spans the 8-bit range (as exported quicklooks and
    # true-colour products do); an 8-bit source is written back exactly
    top = 1.0 if optical_is_uint8 else float(np.nanpercentile(reflectance, 99.9))
    eight = np.where(np.isfinite(reflectance), np.round(np.clip(reflectance / top, 0, 1) * 255), 0)
    optical_out = {
        "uint8": (eight, "uint8", 0),
        "reflectance10000": (np.where(np.isfinite(reflectance), np.round(reflectance * 10000), 0), "uint16", 0),
        "reflectance": (reflectance, "float32", float("nan")),
    }
    sar_out = {"linear": power, "db": 10.0 * np.log10(power), "amplitude": np.sqrt(power)}
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for units, (data, dtype, nodata) in optical_out.items():
        paths[("optical", units)] = _write(folder / f"optical_{units}.tif", data, optical, dtype, nodata)
    for units, data in sar_out.items():
        # no band names: the units must be recognised from the values alone
        paths[("sar", units)] = _write(folder / f"sar_{units}.tif", data, sar, "float32", float("nan"))
    return paths


def _maps(paths: dict, model: Path, teacher, out: Path, **kwargs) -> dict:
    student_net, meta = load_model(model, "student")
    teacher_net = load_model(teacher, "teacher")[0] if teacher else None
    backend = TorchBackend(student_net, teacher_net, meta.schema.num_classes)
    maps = {}
    for o_units, s_units in itertools.product(OPTICAL_UNITS, SAR_UNITS):
        result = segment_scene(
            paths[("optical", o_units)], paths[("sar", s_units)], model, out / f"{o_units}-{s_units}",
            teacher_path=teacher, cfg=InferenceConfig(tile_size=256, overlap=32, backend="torch"),
            backend=backend, **kwargs,
        )
        assert (result["inputs"]["optical_units"], result["inputs"]["sar_units"]) == (o_units, s_units)
        with rasterio.open(result["outputs"]["classes"]) as src:
            maps[(o_units, s_units)] = src.read(1)
    return maps


def _agreement(maps: dict, optical_units=OPTICAL_UNITS) -> float:
    """Least agreement, over every SAR unit, of the maps of these optical units with the first
    one's map on linear SAR."""
    reference = maps[(optical_units[0], "linear")]
    valid = reference != 255
    return min(float((m[valid] == reference[valid]).mean()) for (o, _), m in maps.items() if o in optical_units)


def _agreements(maps: dict) -> tuple:
    """Agreement among the 8-bit maps and among the surface-reflectance maps (uint16 x 10000 and
    float 0-1 hold the same reflectance). An 8-bit rendition has no physical scale, so it keeps
    per-raster percentiles where reflectance is read in a fixed range: the two groups differ by
    design on scenes whose own 2-98 % range is far from that range (docs/inputs.md)."""
    return _agreement(maps, ("uint8",)), _agreement(maps, REFLECTANCE_COPIES)


@pytest.fixture(scope="module")
def real_pairs(tmp_path_factory, shared_data):
    """The Rotterdam pair (HH + RGB) and a BigEarthNet pair stacked with ``stack_bands``."""
    d = tmp_path_factory.mktemp("pairs")
    s2 = next((shared_data / "bigearthnet").rglob("S2A_MSIL2A_20170613T101031_87_48"))
    s1 = next((shared_data / "bigearthnet").rglob("*87_48_VV.tif"))
    rgb = [(next(s2.glob(f"*_{b}.tif")), 1) for b in ("B04", "B03", "B02")]
    stack_bands(rgb, d / "s2_rgb.tif")
    return {
        "rotterdam": (SAMPLE / "rotterdam" / "rgb_unmasked.tif", SAMPLE / "rotterdam" / "sar_masked.tif", True),
        "bigearthnet": (d / "s2_rgb.tif", s1, False),
    }


def test_detection_of_every_unit_on_the_real_pairs(real_pairs, tmp_path):
    for name, (optical, sar, is_uint8) in real_pairs.items():
        band = [1]
        if name == "rotterdam":
            with rasterio.open(sar) as src:
                hh = src.read(1)
            sar = _write(tmp_path / "hh.tif", hh[None], sar, "float32", float("nan"))
        paths = unit_variants(tmp_path / name, optical, sar, is_uint8, sar_is_db=True)
        for units in OPTICAL_UNITS:
            assert detect_optical_units(paths[("optical", units)], [1, 2, 3]).units == units, (name, units)
        for units in SAR_UNITS:
            assert detect_sar_units(paths[("sar", units)], band).units == units, (name, units)
    # the file's own words win over the values, and a user's choice wins over both
    assert detect_sar_units(paths[("sar", "linear")], [1], given="amplitude").how == "given"
    with pytest.raises(ValueError, match="SAR units must be one of"):
        detect_sar_units(paths[("sar", "linear")], [1], given="decibel")


def test_nine_unit_combinations_agree_with_the_bundled_models(tmp_path):
    paths = unit_variants(tmp_path / "v", SAMPLE / "synthetic" / "optical.tif", SAMPLE / "synthetic" / "sar.tif",
                          optical_is_uint8=True, sar_is_db=False)
    maps = _maps(paths, MODELS / "sgcad_student.safetensors", MODELS / "sgcad_teacher.safetensors", tmp_path)
    assert min(_agreements(maps)) >= 0.98, _agreements(maps)


def test_nine_unit_combinations_agree_on_real_pairs_and_a_freshly_trained_model(real_pairs, tmp_path):
    from engine.train.stages import train_student

    run = train_student(
        TrainingInputs(optical=str(SAMPLE / "synthetic" / "optical.tif"), sar=str(SAMPLE / "synthetic" / "sar.tif"),
                       labels=str(SAMPLE / "synthetic" / "label.tif")),
        tmp_path / "fresh",
        train_cfg=TrainConfig(epochs=1, batch_size=4, max_batches_per_epoch=3, threads=2),
    )
    fresh = Path(run["model"])
    bundled = MODELS / "sgcad_student.safetensors"
    for name, (optical, sar, is_uint8) in real_pairs.items():
        paths = unit_variants(tmp_path / name, optical, sar, is_uint8, sar_is_db=True)
        for label, model in (("fresh", fresh), ("bundled", bundled)):
            maps = _maps(paths, model, None, tmp_path / f"{name}-{label}", sar_bands=[1])
            assert min(_agreements(maps)) >= 0.98, (name, label, _agreements(maps))


def test_training_a_teacher_on_db_stores_the_statistics_of_the_linear_scene(tmp_path):
    from engine.train.stages import train_teacher

    paths = unit_variants(tmp_path / "v", SAMPLE / "synthetic" / "optical.tif", SAMPLE / "synthetic" / "sar.tif",
                          optical_is_uint8=True, sar_is_db=False)
    metas = {}
    for units in ("linear", "db"):
        run = train_teacher(
            TrainingInputs(optical=str(paths[("optical", "uint8")]), sar=str(paths[("sar", units)]),
                           labels=str(SAMPLE / "synthetic" / "label.tif")),  # no units flag anywhere
            tmp_path / units,
            TeacherConfig(widths=(4, 8, 8, 8), blocks_per_branch=(1, 1, 1, 1), modules_per_stage=(1, 1, 1, 1)),
            TrainConfig(epochs=1, batch_size=4, max_batches_per_epoch=1, threads=2),
        )
        metas[units] = read_metadata(run["model"])
    linear, db = metas["linear"], metas["db"]
    assert (linear.sar_preprocess.units, db.sar_preprocess.units) == ("linear", "db")
    assert linear.sar_normalization == db.sar_normalization
    assert linear.input_stats["sar"]["bands"] == db.input_stats["sar"]["bands"]
    assert -25 < linear.input_stats["sar"]["bands"][0]["p50"] < -5  # dB after the speckle filter


def _warnings(optical: Path, sar: Path, **overrides) -> list:
    recipe = InputRecipe.of(read_metadata(MODELS / "sgcad_student.safetensors"))
    return resolve_inputs(recipe, optical, sar, InputOverrides(**overrides)).warnings


def test_domain_shift_warnings_say_what_is_wrong_with_numbers(tmp_path):
    optical, sar = SAMPLE / "synthetic" / "optical.tif", SAMPLE / "synthetic" / "sar.tif"
    with rasterio.open(optical) as src:
        rgb = src.read()
    assert _warnings(optical, sar) == []
    constant = rgb.copy()
    constant[1] = 117
    text = " ".join(_warnings(_write(tmp_path / "const.tif", constant, optical, "uint8"), sar))
    assert "optical band 2" in text and "is constant" in text and "0.4588" in text  # 117 / 255
    one_black = rgb.copy()
    one_black[0] = 0
    text = " ".join(_warnings(_write(tmp_path / "red0.tif", one_black, optical, "uint8"), sar))
    assert "holds only zeros" in text and "optical band 1" in text
    zeros = _write(tmp_path / "zero.tif", np.zeros_like(rgb), optical, "uint8")
    with pytest.raises(ValueError, match=r"band\(s\) \[1, 2, 3\] hold only zeros"):  # every band: nothing to read
        _warnings(zeros, sar)
    with rasterio.open(sar) as src:
        amplitude = np.sqrt(src.read(1))[None]
    amp = _write(tmp_path / "amp.tif", amplitude, sar, "float32", float("nan"))
    text = " ".join(_warnings(optical, amp, sar_units="db"))
    assert "read as dB" in text and "0 % of its values are negative" in text and "--sar-units" in text
    assert "the model's range" in text or "median" in text


def test_a_small_8bit_clip_is_told_its_stretch_is_its_own(real_pairs):
    # the 200 x 200 Rotterdam sample (8-bit, no physical scale) is stretched by its own
    # percentiles: the user is told once and pointed to the AOI; the 1.2 km BigEarthNet chip
    # (surface reflectance x 10000) is read in the fixed reflectance range, so its size does not
    # matter and nothing is said (the 512 x 512 sample is not a clip: see the test above)
    said = [w for w in _warnings(*real_pairs["rotterdam"][:2]) if "small clip" in w]
    assert len(said) == 1 and "area of interest (AOI)" in said[0] and "(40,000 valid pixels)" in said[0], said
    assert not [w for w in _warnings(*real_pairs["bigearthnet"][:2]) if "small clip" in w]


def test_reflectance_keeps_its_brightness_and_8bit_keeps_its_own_stretch(real_pairs, tmp_path):
    recipe = InputRecipe.of(read_metadata(MODELS / "sgcad_student.safetensors"))
    assert recipe.optical.normalization == "physical"
    low, high = recipe.optical.reflectance_range
    optical, sar, _ = real_pairs["bigearthnet"]
    paths = unit_variants(tmp_path / "ben", optical, sar, optical_is_uint8=False, sar_is_db=True)
    for units in REFLECTANCE_COPIES:
        resolved = resolve_inputs(recipe, paths[("optical", units)], sar)
        assert [(b.p_low, b.p_high) for b in resolved.optical_record.bands] == [(low, high)] * 3, units
        assert f"optical stretch: fixed surface reflectance {low:g}-{high:g} ({units})" in resolved.lines
    # Landsat Collection 2 surface reflectance (x 2.75e-5 - 0.2) is recognised by its product name
    # and read as reflectance in the same range
    with rasterio.open(paths[("optical", "reflectance")]) as src:
        reflectance = src.read().astype(np.float64)
    landsat = _write(tmp_path / "LC09_L2SP_198024_20230610_20230612_02_T1_SR.tif",
                     np.round((reflectance + 0.2) / 2.75e-5), optical, "uint16", 0)
    resolved = resolve_inputs(recipe, landsat, sar)
    assert (resolved.optical_units.units, resolved.optical_units.how) == ("landsat_c2", "metadata")
    assert "optical stretch: fixed surface reflectance 0-0.35 (landsat_c2)" in resolved.lines
    with rasterio.open(landsat) as src:
        read = resolved.preprocessor.optical(src.read().astype(np.float32))
    halo = (reflectance.shape[-1] - read.shape[-1]) // 2  # the preprocessor crops the SAR filter's halo
    expected = np.clip(reflectance / high, 0, 1)[:, halo:reflectance.shape[1] - halo, halo:reflectance.shape[2] - halo]
    assert float(np.nanmax(np.abs(read - expected))) < 1e-3
    # Sentinel-2's +1000 offset (baseline 04.00) in a file that does not say so brightens the whole
    # input read in a fixed range: said, with what to do; the plain chip says nothing
    with rasterio.open(paths[("optical", "reflectance10000")]) as src:
        shifted = _write(tmp_path / "offset.tif", src.read().astype(np.float64) + 1000, optical, "uint16", 0)
    said = [w for w in resolve_inputs(recipe, shifted, sar).warnings if "+1000" in w]
    assert len(said) == 1 and "subtract 1000" in said[0], said
    assert not [w for w in _warnings(optical, sar) if "+1000" in w]
    eight = resolve_inputs(recipe, paths[("optical", "uint8")], sar)
    # the rendition spans the 8-bit range: its own percentiles, far above the reflectance range
    assert eight.optical_record.source == str(paths[("optical", "uint8")])
    assert all(b.p_high > 0.5 for b in eight.optical_record.bands), eight.optical_record
    assert any("this raster's 2-98 % percentiles (uint8" in line for line in eight.lines)
    # a snowfield at 0.8 reflectance with 1 % texture stays bright and flat; by its own
    # percentiles its texture would fill the whole 0-1 range. As uint16 x 10000 its median (8,000)
    # is that of digital numbers: a dark end (here 10 % forest at 0.15) makes it reflectance,
    # said unsure; a snowfield without one stays digital numbers, also said unsure
    snow = 0.8 + np.random.default_rng(0).normal(0, 0.008, (3, 120, 120))
    forest = snow.copy()
    forest[:, :12] = 0.15
    files = {"float": _write(tmp_path / "snow.tif", snow, optical, "float32", float("nan")),
             "uint16": _write(tmp_path / "snow16.tif", np.round(forest * 10000), optical, "uint16", 0)}
    for name, path in files.items():
        resolved = resolve_inputs(recipe, path, sar)
        with rasterio.open(path) as src:
            x = resolved.preprocessor.optical(src.read().astype(np.float32))
        snowy = x[:, 12:] if name == "uint16" else x
        assert float(np.median(snowy)) == 1.0 and float(snowy.std()) < 0.01, name
    assert resolved.optical_units.units == "reflectance10000" and resolved.optical_units.unsure
    pure16 = _write(tmp_path / "pure16.tif", np.round(snow * 10000), optical, "uint16", 0)
    pure = detect_optical_units(pure16, [1, 2, 3])
    assert pure.units == "dn" and pure.unsure
    # ... unless its name says Sentinel-2 (file name, or band names as `engine stack` writes them)
    named = _write(tmp_path / "S2B_MSIL2A_20240115_snow.tif", np.round(snow * 10000), optical, "uint16", 0)
    bands = _write(tmp_path / "rgb.tif", np.round(snow * 10000), optical, "float32", None,
                   descriptions=[f"S2A_MSIL2A_20170613T101031_87_48_{b}_b1" for b in ("B04", "B03", "B02")])
    for path in (named, bands):
        decision = detect_optical_units(path, [1, 2, 3])
        assert (decision.units, decision.how) == ("reflectance10000", "metadata"), (path.name, decision)
    # nor is a collar of zeros without a nodata value a dark end (Landsat Collection 2 surface
    # reflectance: about 7,300 at zero reflectance, 0 = fill)
    landsat = np.round((np.clip(snow - 0.7, 0, None) + 0.2) / 2.75e-5)
    landsat[:, :, :30] = 0
    collar = detect_optical_units(_write(tmp_path / "l8.tif", landsat, optical, "uint16", None), [1, 2, 3])
    assert collar.units == "dn", collar


def test_a_large_mostly_empty_raster_is_not_called_a_small_clip(tmp_path):
    # 2048 x 2048 with 300 x 300 valid pixels (90,000: more than one 256 x 256 tile); the
    # sample reads 16 of the 64 windows, so its count is not the raster's and must not be
    # reported as one
    from engine.preprocess.normalize import reads_every_pixel

    assert reads_every_pixel(120, 120, 1_000_000) and reads_every_pixel(1024, 1024, 1_000_000)
    assert not reads_every_pixel(1100, 900, 1_000_000) and not reads_every_pixel(2048, 2048, 1_000_000)
    rgb = np.zeros((3, 2048, 2048), np.uint8)
    rgb[:, 100:400, 100:400] = np.random.default_rng(0).integers(20, 200, (3, 300, 300))
    profile = dict(driver="GTiff", width=2048, height=2048, count=3, dtype="uint8", nodata=0, tiled=True,
                   crs="EPSG:32631", transform=rasterio.transform.from_origin(500000, 5000000, 10, 10))
    with rasterio.open(tmp_path / "sparse.tif", "w", **profile) as dst:
        dst.write(rgb)
    said = _warnings(tmp_path / "sparse.tif", SAMPLE / "synthetic" / "sar.tif")
    assert not [w for w in said if "small clip" in w], said


def test_an_aoi_keeps_the_whole_scene_stretch_where_a_clip_does_not(tmp_path):
    from rasterio.windows import Window, bounds

    from engine.progress import CallbackProgress

    optical, sar = SAMPLE / "synthetic" / "optical.tif", SAMPLE / "synthetic" / "sar.tif"
    window = Window(192, 192, 128, 128)
    clips = []
    for path in (optical, sar):
        with rasterio.open(path) as src:
            box = bounds(window, src.transform)
            profile = dict(src.profile, width=128, height=128, transform=src.window_transform(window))
            with rasterio.open(tmp_path / f"clip_{path.name}", "w", **profile) as dst:
                dst.write(src.read(window=window))
        clips.append(tmp_path / f"clip_{path.name}")
    said = {}
    for name, (o, s, aoi) in {"aoi": (optical, sar, ",".join(str(v) for v in box)),
                              "clip": (clips[0], clips[1], None)}.items():
        said[name] = []
        result = segment_scene(o, s, MODELS / "sgcad_student.safetensors", tmp_path / name, aoi=aoi,
                               cfg=InferenceConfig(backend="torch"),
                               progress=CallbackProgress(warning=said[name].append))
        with rasterio.open(result["outputs"]["classes"]) as src:
            assert (src.width, src.height) == (128, 128)
    assert not [w for w in said["aoi"] if "small clip" in w], said["aoi"]
    assert [w for w in said["clip"] if "small clip" in w and "(16,384 valid pixels)" in w], said["clip"]


def test_warnings_reach_the_command_line(tmp_path):
    optical, sar = SAMPLE / "synthetic" / "optical.tif", SAMPLE / "synthetic" / "sar.tif"
    with rasterio.open(optical) as src:
        rgb = src.read()
    rgb[2] = 0
    bad = _write(tmp_path / "blue0.tif", rgb, optical, "uint8")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "engine", "segment", "--optical", str(bad), "--sar", str(sar),
         "--model", str(MODELS / "sgcad_student.safetensors"), "--out", str(tmp_path / "out"),
         "--backend", "torch", "--sar-units", "linear"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: optical band 3 of blue0.tif holds only zeros" in done.stderr
    assert "SAR: linear power (sigma0/gamma0) given" in done.stderr and "optical: 8-bit values" in done.stderr


def test_large_tiled_rasters_are_sampled_by_blocks_with_the_same_decisions(shared_data, tmp_path, monkeypatch):
    """A large tiled file without overviews is sampled by 32 of its blocks (a decimated read would
    decode all of them); overviews, or blocks holding too few valid pixels, bring back the
    decimated read. The decisions stay those of the real Sentinel-1 values."""
    from engine.inputs import units as units_module

    with rasterio.open(next((shared_data / "bigearthnet").rglob("*87_48_VV.tif"))) as src:
        vv_db = np.tile(src.read(1), (13, 13))[:1536, :1536]  # 12 x 12 blocks of 128, real dB values
    paths = {}
    for units, values in {"db": vv_db, "linear": 10 ** (vv_db / 10), "amplitude": 10 ** (vv_db / 20)}.items():
        paths[units] = tmp_path / f"{units}.tif"
        with rasterio.open(paths[units], "w", driver="GTiff", width=1536, height=1536, count=1, dtype="float32",
                           tiled=True, blockxsize=128, blockysize=128, nodata=float("nan")) as dst:
            dst.write(values.astype("float32"), 1)
    sampled = []
    original = units_module._block_sample
    monkeypatch.setattr(units_module, "_block_sample", lambda *a: sampled.append(original(*a)) or sampled[-1])
    for units, path in paths.items():
        assert detect_sar_units(path, [1]).units == units
    assert len(sampled) == 3 and all(s is not None and s.shape[1] == 32 * 64 * 64 for s in sampled)  # every 2nd pixel

    with rasterio.open(paths["linear"], "r+") as dst:  # 99.9 % missing: too few valid pixels in 32 blocks
        holey = dst.read(1)
        holey[:, 40:] = np.nan
        holey[40:, :] = np.nan
        dst.write(holey, 1)
    sampled.clear()
    assert detect_sar_units(paths["linear"], [1]).units == "linear" and sampled == [None]
    with rasterio.open(paths["amplitude"], "r+") as dst:
        dst.build_overviews([2, 4, 8])
    sampled.clear()
    assert detect_sar_units(paths["amplitude"], [1]).units == "amplitude" and sampled == []


def test_a_flooded_scene_is_not_called_a_unit_error_but_a_wrong_constant_still_is(shared_data, tmp_path):
    # real Sentinel-1 pixels (Nigeria chip, VV + VH dB): a 90 x 90 block of open water (inside its
    # hand label) mirrored over all but the chip's top 15 % of rows is a flood whose VH median is
    # ~10 dB under the VV + VH expert's training data while its brightest pixels are still land
    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    with rasterio.open(chip) as src:
        db = src.read().astype(np.float64)
    with rasterio.open(chip.with_name("Nigeria_812045_LabelHand.tif")) as src:
        assert (src.read(1)[182:272, 218:308] == 1).all()
    block = db[:, 182:272, 218:308]
    top = db.shape[1] * 15 // 100
    reps = (1, -(-db.shape[1] // 90), -(-db.shape[2] // 90))
    flooded = np.pad(block, ((0, 0), (0, 90), (0, 90)), mode="symmetric")[:, :180, :180]
    flooded = np.tile(flooded, reps)[:, :db.shape[1], :db.shape[2]]
    flooded[:, :top] = db[:, :top]
    recipe = InputRecipe.of(read_metadata(MODELS / "sgcad_teacher_vvvh.safetensors"))
    trained = recipe.stats["sar"]["bands"][1]["p50"]

    def said(data, name):
        path = _write(tmp_path / name, data, chip, "float32", descriptions=["VV", "VH"])
        return [w for w in resolve_inputs(recipe, None, path, InputOverrides(sar_units="db")).warnings if "median" in w]

    assert np.nanmedian(flooded[1]) < trained - 8  # a median alone would call this a unit error
    assert said(flooded, "flood.tif") == []
    # the real chip 10 dB too dark (a wrong calibration constant): said, naming both readings
    dark = said(db - 10, "dark.tif")
    assert len(dark) == 2 and all("--sar-calibration" in w and "open water covers most" in w for w in dark), dark
    # 25 dB too dark is under the training data's darkest 2 %: a plain units warning
    darker = said(db - 25, "darker.tif")
    assert darker and all("may be unreliable" in w for w in darker), darker


def test_a_declared_scale_and_offset_read_the_product_in_its_units(shared_data, tmp_path):
    # the real Nigeria chip stored as int16 dB x 100 with GDAL's scale 0.01 declared (as some products
    # ship): read in dB, its water map is the float chip's; without the scale it would be -1442 "dB"
    from engine.inference.sar_only import water_probability

    chip = shared_data / "sen1floods11_s1" / "Nigeria_812045_S1Hand.tif"
    with rasterio.open(chip) as src:
        db = src.read()
    scaled = _write(tmp_path / "db_x100.tif", np.where(np.isfinite(db), np.round(db * 100), -32768), chip, "int16",
                    nodata=-32768, descriptions=["VV", "VH"])
    with rasterio.open(scaled, "r+") as dst:
        dst.scales, dst.offsets = (0.01, 0.01), (0.0, 0.0)
    assert detect_sar_units(scaled, [1, 2]).units == "db"
    teacher = MODELS / "sgcad_teacher.safetensors"
    cpu = InferenceConfig(device="cpu", backend="torch")
    plain = water_probability(chip, teacher, tmp_path / "a.tif", cfg=cpu)
    stored = water_probability(scaled, teacher, tmp_path / "b.tif", cfg=cpu)
    assert stored["teacher"] == plain["teacher"] and not stored["inputs"]["warnings"]
    assert abs(stored["water_fraction"] - plain["water_fraction"]) < 0.002


def test_top_of_atmosphere_reflectance_is_named_and_surface_reflectance_is_not(real_pairs, tmp_path):
    """Path reflectance (clear sky, the size a real Sentinel-2 L1C chip shows) added to a real L2A chip
    turned 33-80 % of three pasture chips into water; the run now says what the file looks like."""
    optical, sar, _ = real_pairs["bigearthnet"]
    assert not [w for w in _warnings(optical, sar) if "top-of-atmosphere" in w]
    with rasterio.open(optical) as src:
        surface = src.read().astype(np.float64)
    hazy = _write(tmp_path / "hazy.tif", surface + np.array([250.0, 400.0, 700.0])[:, None, None], optical, "uint16", 0)
    said = [w for w in _warnings(hazy, sar) if "top-of-atmosphere" in w]
    assert len(said) == 1 and "L2A" in said[0] and "blue 0.0" in said[0], said
    # snow is bright in every band, but it is no haze
    snow = _write(tmp_path / "snow.tif", 5500 + surface / 10, optical, "uint16", 0)
    assert not [w for w in _warnings(snow, sar, optical_units="reflectance10000") if "top-of-atmosphere" in w]


def test_a_picture_clipped_white_is_read_from_black_unless_its_dark_end_is_hazy(real_pairs, tmp_path):
    """A TCI-like 8-bit rendition (reflectance x 637.5) of a real chip with a white cloud (10 % at 255) is a
    fixed rendition: read from black. With path reflectance added (haze), reading from black made 82 % of a
    chip water (docs/experiments/zero_shot_real.md, "8-bit pictures of snow"), so it keeps its stretch."""
    optical, sar, _ = real_pairs["bigearthnet"]
    with rasterio.open(optical) as src:
        surface = src.read().astype(np.float64) / 10000
    recipe = InputRecipe.of(read_metadata(MODELS / "sgcad_student.safetensors"))
    lows = {}
    hazes = {"clear": (0, 0, 0), "hazy": (0.025, 0.04, 0.07), "grey_haze": (0.05, 0.05, 0.05), "no_cloud": (0, 0, 0)}
    for name, haze in hazes.items():
        picture = np.clip((surface + np.array(haze)[:, None, None]) * 637.5, 1, 255)
        if name != "no_cloud":
            picture[:, :38, :38] = 255
        path = _write(tmp_path / f"{name}.tif", np.round(picture), optical, "uint8", 0)
        record = resolve_inputs(recipe, path, sar).optical_record
        lows[name] = [b.p_low for b in record.bands]
    assert lows["clear"] == [0.0, 0.0, 0.0], lows
    assert min(lows["hazy"]) > 0.05 and min(lows["grey_haze"]) > 0.05, lows  # their own 2nd percentiles
    assert min(lows["no_cloud"]) > 0.0, lows


def test_a_paletted_picture_is_refused_with_how_to_expand_it(tmp_path, capsys):
    """A paletted export (one band of colour-table indices, as rgb2pct or some web-map downloads
    write) was refused only as 'band 2 does not exist'; its numbers are no brightness at all."""
    from engine.cli import main

    optical, sar = SAMPLE / "rotterdam" / "rgb_unmasked.tif", SAMPLE / "rotterdam" / "sar_masked.tif"
    with rasterio.open(optical) as src:
        profile, rgb = src.profile, src.read()
    levels = (rgb // 64).astype("uint8")  # 4 levels per colour: 64 entries
    index = levels[0] * 16 + levels[1] * 4 + levels[2]
    paletted = tmp_path / "paletted.tif"
    profile.update(count=1, photometric="palette")
    with rasterio.open(paletted, "w", **profile) as dst:
        dst.write(index, 1)
        dst.write_colormap(1, {i: (i // 16 * 85, i // 4 % 4 * 85, i % 4 * 85, 255) for i in range(64)})
    with pytest.raises(ValueError, match="paletted picture.*PCT to RGB.*-expand rgb"):
        resolve_inputs(InputRecipe.of(read_metadata(MODELS / "sgcad_student.safetensors")), paletted, sar)
    out = tmp_path / "seg"
    assert main(["segment", "--optical", str(paletted), "--sar", str(sar), "--out", str(out), "--quiet"]) == 2
    assert "paletted picture" in capsys.readouterr().err and not out.exists()


def test_complex_sar_is_refused_by_every_sar_reader(tmp_path, capsys):
    """Single-look complex values were read as their real part, as if they were backscatter."""
    from engine.cli import main

    optical, sar = SAMPLE / "rotterdam" / "rgb_unmasked.tif", SAMPLE / "rotterdam" / "sar_masked.tif"
    with rasterio.open(sar) as src:
        profile, power = src.profile, src.read(1).astype(np.float64)
    amplitude = np.sqrt(10 ** (np.nan_to_num(power, nan=-30.0) / 10))
    phase = np.random.default_rng(0).uniform(-np.pi, np.pi, amplitude.shape)
    slc = tmp_path / "slc.tif"
    profile.update(count=1, dtype="complex64", nodata=None)
    with rasterio.open(slc, "w", **profile) as dst:
        dst.write((amplitude * np.exp(1j * phase)).astype("complex64"), 1)
    runs = {
        "segment": ["segment", "--optical", str(optical), "--sar", str(slc)],
        "water": ["water", "--sar", str(slc)],
        "flood": ["flood", "--after", str(slc), "--before", str(sar), "--method", "threshold"],
    }
    for name, args in runs.items():
        out = tmp_path / name
        assert main(args + ["--out", str(out), "--quiet"]) == 2, name
        said = capsys.readouterr().err
        assert "slc.tif holds complex values (complex64)" in said and "GRD" in said, (name, said)
        assert not out.exists(), name


def test_the_sentinel2_offset_is_read_from_the_product_name(real_pairs, tmp_path):
    """Since processing baseline 04.00 every Sentinel-2 value carries +1000; a band file exported from its
    .SAFE folder keeps no metadata saying so. Read as it was, a real flooded chip's water IoU fell from 39.3
    to 25.4 (docs/inputs.md). The baseline in the product's folder or file name now sets the offset."""
    optical, sar, _ = real_pairs["bigearthnet"]
    with rasterio.open(optical) as src:
        surface = src.read().astype(np.float64)
    shifted = np.where(surface > 0, surface + 1000, 0)
    safe = tmp_path / "S2B_MSIL2A_20230615T101031_N0509_R022_T33UUP_20230615T130000.SAFE"
    safe.mkdir()
    names = ["B04", "B03", "B02"]
    inside = _write(safe / "T33UUP_20230615T101031_rgb.tif", shifted, optical, "uint16", 0, names)
    unnamed = _write(tmp_path / "T33UUP_20230615T101031_rgb.tif", shifted, optical, "uint16", 0, names)
    placeholder = _write(tmp_path / "S2A_MSIL2A_20170613T101031_N9999_R022_T33UUP_87_48.tif", surface, optical,
                         "uint16", 0, names)  # BigEarthNet's names: no baseline, no offset
    decision = detect_optical_units(inside, [1, 2, 3])
    assert decision.units == "reflectance10000" and decision.offset_dn == -1000 and "N0509" in decision.reason
    assert detect_optical_units(unnamed, [1, 2, 3]).offset_dn == 0  # a date alone does not say (harmonised)
    # an ESA band file's own name (out of its .SAFE, or as the Planetary Computer serves it) sensed since
    # baseline 04.00 says it; one sensed before may be either, and stays as it is
    for name, offset in (("T33UUP_20230615T101031_B04_10m.tif", -1000), ("T33UUP_20210615T101031_B04_10m.tif", 0)):
        band_file = _write(tmp_path / name, shifted[:1], optical, "uint16", 0, ["B04"])
        decision = detect_optical_units(band_file, [1])
        assert decision.offset_dn == offset and (not offset or "ESA band file" in decision.reason), decision
    from osgeo import gdal  # QGIS's Build Virtual Raster over the band files of the .SAFE: the sources say it

    gdal.BuildVRT(str(tmp_path / "rgb.vrt"), [str(inside)] * 3, separate=True, bandList=[1])
    assert detect_optical_units(tmp_path / "rgb.vrt", [1, 2, 3]).offset_dn == -1000
    assert detect_optical_units(placeholder, [1, 2, 3]).offset_dn == 0
    recipe = InputRecipe.of(read_metadata(MODELS / "sgcad_student.safetensors"))
    cfg = InferenceConfig(tile_size=256, overlap=32, backend="torch", device="cpu")
    maps = {}
    for name, path in (("surface", optical), ("inside", inside), ("unnamed", unnamed)):
        result = segment_scene(path, sar, MODELS / "sgcad_student.safetensors", tmp_path / name, cfg=cfg)
        with rasterio.open(result["outputs"]["classes"]) as src:
            maps[name] = src.read(1)
    assert (maps["inside"] == maps["surface"]).mean() > 0.99
    assert (maps["unnamed"] != maps["surface"]).mean() > 0.05  # the offset left in moves the map
    said = [w for w in resolve_inputs(recipe, unnamed, sar).warnings if "+1000" in w]
    assert len(said) == 1 and "N0400" in said[0], said
