"""Write the project's hand-digitised label polygons for the bundled Rotterdam sample.

The vertices were read off the optical image (pixel column, row) by a project member and
are converted here to map coordinates of the image's grid (EPSG:32631, 4.5 m). Run it to
regenerate ``resources/sample/rotterdam/labels_digitised.gpkg``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from osgeo import ogr, osr

ORIGIN_X, ORIGIN_Y, PIXEL = 592317.861581054, 5750102.160218578, 4.5
OUT = Path(__file__).resolve().parent.parent / "resources" / "sample" / "rotterdam" / "labels_digitised.gpkg"

# (class name, [(column, row), ...]) — conservative outlines, well inside each feature.
POLYGONS = [
    ("water", [(2, 2), (48, 2), (20, 18), (20, 42), (2, 45)]),
    ("water", [(47, 38), (60, 40), (75, 50), (80, 80), (85, 110), (80, 125), (84, 142), (95, 165),
               (98, 195), (60, 195), (52, 180), (48, 150), (44, 120), (44, 100), (45, 70)]),
    ("water", [(38, 160), (47, 160), (52, 198), (27, 198), (28, 180)]),
    ("city", [(150, 60), (162, 60), (165, 105), (150, 105)]),
    ("city", [(40, 18), (60, 15), (70, 30), (65, 38), (45, 28)]),
    ("city", [(2, 130), (18, 132), (22, 198), (2, 198)]),
    ("city", [(92, 92), (113, 92), (113, 104), (92, 104)]),
    ("road", [(110, 2), (117, 2), (121, 70), (114, 70)]),
    ("farmland", [(178, 125), (198, 122), (198, 160), (185, 160)]),
    ("farmland", [(168, 38), (198, 32), (198, 55), (170, 60)]),
]


def main() -> int:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32631)
    if OUT.exists():
        OUT.unlink()
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(OUT))
    layer = ds.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    for name, ring_px in POLYGONS:
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for col, row in ring_px + ring_px[:1]:
            ring.AddPoint_2D(ORIGIN_X + col * PIXEL, ORIGIN_Y - row * PIXEL)
        poly = ogr.Geometry(ogr.wkbPolygon)
        poly.AddGeometry(ring)
        assert poly.IsValid(), name
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class", name)
        feature.SetGeometry(poly)
        layer.CreateFeature(feature)
    ds = None
    print(OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
