"""Parameter messages a Processing sweep found wrong or misleading: each now names what to give."""

from __future__ import annotations

from pathlib import Path

import pytest
from qgis.core import QgsProcessingException, QgsProcessingFeedback, QgsRasterLayer

ROOT = Path(__file__).resolve().parents[2]
CHIP = ROOT.parent / "shared" / "data" / "sen1floods11_s1" / "India_900498_S1Hand.tif"
ROTTERDAM = ROOT / "resources" / "sample" / "rotterdam"


def _refusal(alg: str, params: dict) -> str:
    import processing

    with pytest.raises(QgsProcessingException) as info:
        processing.run(f"sgcad:{alg}", params, feedback=QgsProcessingFeedback())
    return str(info.value).strip().splitlines()[-1]


def test_option_names_numbers_and_default_overlaps_are_said_as_they_are(sgcad_provider, tmp_path):
    # before: "'2' is not one of [0, 1, 2, 3, 4] (auto, linear, db, amplitude, dn)", which these options refuse
    message = _refusal("watermap", {"SAR": str(CHIP), "SAR_UNITS": "2", "OUTPUT_FOLDER": str(tmp_path / "a")})
    assert "'2' is not one of auto, linear, db, amplitude, dn; give the name, e.g. auto." in message, message
    # before: "tile overlap 64 must be ..." for a user who only set the tile size
    message = _refusal("watermap", {"SAR": str(CHIP), "TILE_SIZE": 65, "OUTPUT_FOLDER": str(tmp_path / "b")})
    assert "OVERLAP was left at its default, 64: set it too" in message, message
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_sar_only_model_leaves_a_given_optical_image_unread_instead_of_asking_for_0_bands(sgcad_provider):
    from sgcad_qgis.engine.models.checkpoint import read_metadata

    from sgcad_qgis.algorithms import _checks

    sar_only = read_metadata(ROOT / "resources" / "models" / "sgcad_student_sar_only.safetensors")
    optical = QgsRasterLayer(str(ROTTERDAM / "rgb_unmasked.tif"), "rgb")
    assert optical.isValid()
    assert _checks.model_bands(sar_only, optical, [], "optical", "optical raster") is None
    student = read_metadata(ROOT / "resources" / "models" / "sgcad_student.safetensors")
    message = _checks.model_bands(student, optical, [1, 2], "optical", "optical raster")
    assert "but 3 band(s) are expected" in message  # a model that reads optical still checks the count


def test_a_raster_output_named_as_another_format_is_refused_before_writing(sgcad_provider, tmp_path):
    # before: a GeoTIFF written as labels.png
    message = _refusal("rasterizelabels", {"INPUT": str(ROTTERDAM / "labels_digitised.gpkg"), "CLASS_FIELD": "class",
                                           "REFERENCE": str(ROTTERDAM / "sar_masked.tif"),
                                           "OUTPUT": str(tmp_path / "labels.png")})
    assert "labels.png ends in .png, but this output is written as .tif; name it labels.tif" in message, message
    assert list(tmp_path.iterdir()) == []


def test_a_report_output_named_as_another_format_is_refused_before_writing(sgcad_provider, tmp_path):
    # before: JSON metrics written as metrics.tif
    message = _refusal("evaluate", {"PREDICTION": str(ROTTERDAM / "rgb_unmasked.tif"),
                                    "REFERENCE_VECTOR": str(ROTTERDAM / "labels_digitised.gpkg"),
                                    "OUTPUT_HTML": str(tmp_path / "report.html"),
                                    "OUTPUT_JSON": str(tmp_path / "metrics.tif")})
    assert "metrics.tif ends in .tif, but this output is written as .json; name it metrics.json" in message, message
    assert list(tmp_path.iterdir()) == []


def test_a_fine_resolution_is_judged_on_the_area_of_interest(sgcad_provider, tmp_path):
    import processing

    params = {"OPTICAL": str(ROTTERDAM / "rgb_unmasked.tif"), "SAR": str(ROTTERDAM / "sar_masked.tif"),
              "MODEL": str(ROOT / "resources" / "models" / "sgcad_student.safetensors"), "TEACHER": "",
              "RESOLUTION": 0.05, "DEVICE": 1, "THREADS": 1}
    # before: refused for the whole 900 m scene although the area of interest is 6 m wide
    result = processing.run("sgcad:segment", dict(params, AOI_EXTENT="592700,592706,5749600,5749606 [EPSG:32631]",
                                                  OUTPUT_FOLDER=str(tmp_path / "small")),
                            feedback=QgsProcessingFeedback())
    classes = QgsRasterLayer(result["CLASSES"], "classes")
    assert classes.isValid() and 120 <= classes.width() <= 121 and classes.rasterUnitsPerPixelX() == pytest.approx(0.05)
    message = _refusal("segment", dict(params, OUTPUT_FOLDER=str(tmp_path / "whole")))
    assert "choose a pixel size of at least 0.09 m" in message, message
    assert not (tmp_path / "whole").exists()
