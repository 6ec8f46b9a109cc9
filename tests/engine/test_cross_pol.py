"""The water map's cross-polarised check on a real Sentinel-1 chip: quiet where the map holds the
chip's water, a warning that names the band when wind hides the water from the co-polarised band."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from engine.config import InferenceConfig
from engine.inference.sar_only import water_probability
from engine.water.cross_pol import MISSED_SHARE_WARNING

TEACHER = Path(__file__).resolve().parents[2] / "resources" / "models" / "sgcad_teacher.safetensors"
CPU = InferenceConfig(device="cpu", backend="torch")


def _windy(chip, label, out):
    """The chip with its labelled water as bright as its land in VV (wind), VH unchanged."""
    with rasterio.open(chip) as src, rasterio.open(label) as lab:
        profile, bands, water = src.profile, src.read(), lab.read(1) == 1
        land_vv = float(np.nanmedian(bands[0][lab.read(1) == 0]))
        bands[0][water] += land_vv - float(np.nanmedian(bands[0][water]))
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(bands)
            dst.descriptions = src.descriptions
    return out


def test_cross_polarised_band_flags_water_the_map_missed(shared_data, tmp_path):
    folder = shared_data / "sen1floods11_s1"
    chip, label = folder / "India_900498_S1Hand.tif", folder / "India_900498_LabelHand.tif"

    plain = water_probability(chip, TEACHER, tmp_path / "plain.tif", cfg=CPU)
    check = plain["cross_polarised"]
    assert check["band"] == 2 and not check["warned"]
    assert check["dark_share"] > 0.4 and check["missed_share"] < 0.1  # its dark VH is mapped water
    assert not any("cross-polarised" in w for w in plain["inputs"]["warnings"])

    windy = water_probability(_windy(chip, label, tmp_path / "windy.tif"), TEACHER, tmp_path / "windy_w.tif", cfg=CPU)
    check = windy["cross_polarised"]
    assert windy["water_fraction"] < plain["water_fraction"] - 0.2  # the VV-reading expert lost the water
    assert check["warned"] and check["missed_share"] > MISSED_SHARE_WARNING
    message = windy["inputs"]["warnings"][-1]
    assert "SAR band 2 (cross-polarised)" in message and "--after-bands 2" in message

    camargue = next((shared_data / "sentinel1_camargue").glob("*20170309*.tif"))  # VV only: nothing to compare
    assert water_probability(camargue, TEACHER, tmp_path / "vv.tif", cfg=CPU)["cross_polarised"] is None
