"""Label raster to polygons (GeoPackage) with class ids and names, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from osgeo import gdal, ogr, osr

from ..config import ClassSchema
from .io import atomic_output

gdal.UseExceptions()
ogr.UseExceptions()


def polygonize_labels(
    label_path: Union[str, Path],
    out_path: Union[str, Path],
    schema: ClassSchema,
    layer_name: str = "labels",
    overwrite: bool = False,
) -> Path:
    """Write the classes of a label raster as polygons (``class_id``, ``class_name``).

    Pixels equal to ``schema.ignore_index`` (or the raster's nodata) produce no polygon.
    """
    names = dict(zip(schema.ids, schema.names))
    with atomic_output(out_path, overwrite) as tmp:
        src = gdal.Open(str(label_path))
        band = src.GetRasterBand(1)
        mask = band.GetMaskBand()
        srs = osr.SpatialReference(wkt=src.GetProjection())
        drv = ogr.GetDriverByName("GPKG")
        ds = drv.CreateDataSource(str(tmp))
        layer = ds.CreateLayer(layer_name, srs=srs, geom_type=ogr.wkbPolygon)
        layer.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
        name_field = ogr.FieldDefn("class_name", ogr.OFTString)
        name_field.SetWidth(64)
        layer.CreateField(name_field)
        gdal.Polygonize(band, mask, layer, 0, [], callback=None)
        layer.StartTransaction()
        for feature in layer:
            feature.SetField("class_name", names.get(feature.GetField("class_id"), ""))
            layer.SetFeature(feature)
        layer.CommitTransaction()
        layer = None
        ds = None
        src = None
    return Path(out_path)
