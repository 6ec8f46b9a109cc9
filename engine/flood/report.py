"""Flooded area per area-of-interest polygon and for the whole map, as JSON and HTML.

Areas are summed per pixel while the flood map is written (no second pass): on a projected
grid a pixel's area is its width times height (in m², from the CRS's linear unit); on a
geographic grid it is the exact area of the pixel's cell on the CRS's ellipsoid (WGS84 for EPSG:4326).
A pixel belongs to a polygon when its centre lies inside (as the AOI masks of ``engine
segment``); polygons may overlap, each counts its own pixels.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask
from rasterio.windows import Window

from ..files import atomic_write_bytes
from ..raster.grid import Grid, row_areas_m2
from ..vector.geometry import area_polygons, quiet_gdal, to_crs

PathLike = Union[str, Path]

#: flood-extent values: (value, key in reports, legend label, colour)
FLOOD_CLASSES = (
    (0, "dry", "not water on either date", "#ffffff"),
    (1, "flood", "observed flood (water after, not before)", "#e31a1c"),
    (2, "permanent_water", "permanent water (water on both dates)", "#1f78b4"),
    (3, "receded", "receded water (water before, not after)", "#fdbf6f"),
    (254, "excluded", "excluded: SAR cannot see water here (see exclusion layer)", "#969696"),
    (255, "no_data", "no data on a date", "#000000"),
)
#: exclusion-layer values: (value, key, label, colour)
EXCLUSION_CLASSES = (
    (0, "usable", "usable", "#ffffff"),
    (1, "no_data", "no SAR value on a date", "#d9d9d9"),
    (2, "shadow", "radar shadow on a date", "#4d4d4d"),
    (3, "layover", "layover on a date", "#737373"),
    (4, "low_backscatter", "very low backscatter on both dates, not water on both", "#a6a6a6"),
)


@dataclass
class Zone:
    """One AOI polygon in the grid CRS and the pixel window of its envelope."""

    name: str
    shape: Dict[str, Any]  # GeoJSON geometry
    window: Tuple[int, int, int, int]  # x0, y0, x1, y1 on the grid (clipped)
    totals: np.ndarray = field(default_factory=lambda: np.zeros(256))
    outside_share: float = 0.0  # of its area, outside the grid: its figures cover the part inside


def load_zones(path: PathLike, grid: Grid, name_field: Optional[str] = None) -> List[Zone]:
    """The polygons of the first layer of a vector file, in the grid CRS, named by ``name_field``.

    Without ``name_field`` the first text field names them (``name`` if there is one), else
    ``polygon <fid>``.

    Raises:
        ValueError: unreadable file, no polygons, no CRS, or an unknown name field.
    """
    from osgeo import ogr, osr

    from ..validate import check_single_layer

    ds = ogr.Open(str(path))
    if ds is None or ds.GetLayerCount() == 0:
        raise ValueError(f"areas of interest {path}: not a readable vector file (GeoPackage, Shapefile, GeoJSON ...)")
    check_single_layer(path, "areas of interest")
    layer = ds.GetLayer(0)
    defn = layer.GetLayerDefn()
    fields = [defn.GetFieldDefn(i) for i in range(defn.GetFieldCount())]
    names = [f.GetName() for f in fields]
    if name_field:
        if name_field not in names:
            raise ValueError(f"areas of interest {path}: no field {name_field!r}; its fields are {names}")
        chosen = name_field
    else:
        text = [f.GetName() for f in fields if f.GetType() == ogr.OFTString]
        lower = {n.lower(): n for n in text}
        chosen = lower.get("name") or (text[0] if text else None)
    srs = layer.GetSpatialRef()
    if srs is None:
        raise ValueError(f"areas of interest {path}: the layer has no CRS; assign one (e.g. in QGIS) first")
    target = osr.SpatialReference()
    target.ImportFromWkt(grid.crs_wkt)
    for s in (srs, target):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = None if srs.IsSame(target) else osr.CoordinateTransformation(srs, target)
    inv = ~grid.transform
    zones: List[Zone] = []
    fids: List[int] = []
    footprint = ogr.CreateGeometryFromWkt("POLYGON((" + ",".join(
        f"{x} {y}" for x, y in (grid.transform * corner for corner in
                                ((0, 0), (grid.width, 0), (grid.width, grid.height), (0, grid.height), (0, 0))))
        + "))")
    for feature in layer:
        geom = area_polygons(feature.GetGeometryRef())  # arcs made straight, the polygons of a collection kept
        if geom is None:
            continue
        if transform is not None:
            to_crs(geom, transform, f"areas of interest {path}: feature {feature.GetFID()} cannot be brought into the "
                   "after date's CRS", srs)
        with quiet_gdal():
            inside = geom.Intersection(footprint)
        outside = 1.0 - (inside.GetArea() / geom.GetArea() if inside is not None else 0.0)
        minx, maxx, miny, maxy = geom.GetEnvelope()
        cols, rows = zip(*(inv * (x, y) for x in (minx, maxx) for y in (miny, maxy)))
        x0, x1 = max(int(math.floor(min(cols))), 0), min(int(math.ceil(max(cols))), grid.width)
        y0, y1 = max(int(math.floor(min(rows))), 0), min(int(math.ceil(max(rows))), grid.height)
        value = feature.GetField(chosen) if chosen else None
        name = str(value) if value not in (None, "") else f"polygon {feature.GetFID()}"
        zones.append(Zone(name, json.loads(geom.ExportToJson()), (x0, y0, x1, y1), outside_share=max(outside, 0.0)))
        fids.append(feature.GetFID())
    if not zones:
        raise ValueError(f"areas of interest {path}: layer {layer.GetName()!r} holds no polygons")
    counts = Counter(z.name for z in zones)  # two areas both called "A" could not be told apart in the report
    return [dataclasses.replace(z, name=f"{z.name} (polygon {fid})") if counts[z.name] > 1 else z
            for z, fid in zip(zones, fids)]


class AreaCounter:
    """Sums pixel areas per flood-extent value, for the whole map and per zone."""

    def __init__(self, grid: Grid, zones: Sequence[Zone] = ()) -> None:
        self.grid, self.zones = grid, list(zones)
        self.totals = np.zeros(256)

    def add(self, window: Window, codes: np.ndarray) -> None:
        """Add a window of flood-extent values (uint8, (h, w))."""
        row0, col0 = int(window.row_off), int(window.col_off)
        h, w = codes.shape
        area = np.broadcast_to(row_areas_m2(self.grid, row0, h)[:, None], (h, w))
        self.totals += np.bincount(codes.ravel(), weights=area.ravel(), minlength=256)
        for zone in self.zones:
            x0, y0, x1, y1 = zone.window
            if x1 <= col0 or x0 >= col0 + w or y1 <= row0 or y0 >= row0 + h:
                continue
            transform = self.grid.transform * Affine.translation(col0, row0)
            inside = geometry_mask([zone.shape], out_shape=(h, w), transform=transform, invert=True)
            if inside.any():
                zone.totals += np.bincount(codes[inside], weights=area[inside], minlength=256)


def summarise(totals: np.ndarray) -> Dict[str, float]:
    """km² per flood-extent class, the observed area and the flooded share of it."""
    out = {f"{key}_km2": round(float(totals[v]) / 1e6, 6) for v, key, _, _ in FLOOD_CLASSES}
    observed = float(sum(totals[v] for v in (0, 1, 2, 3)))
    out["observed_km2"] = round(observed / 1e6, 6)
    out["flood_share_of_observed"] = round(float(totals[1]) / observed, 6) if observed > 0 else None
    return out


def write_reports(out_dir: Path, report: Dict[str, Any], overwrite: bool) -> Dict[str, str]:
    """``flood_report.json`` and ``flood_report.html`` in ``out_dir``."""
    json_path = out_dir / "flood_report.json"
    html_path = out_dir / "flood_report.html"
    atomic_write_bytes(json_path, json.dumps(report, indent=2, default=str).encode(), overwrite=overwrite)
    atomic_write_bytes(html_path, render_html(report).encode("utf-8"), overwrite=overwrite)
    return {"report_json": str(json_path), "report_html": str(html_path)}


def render_html(report: Dict[str, Any]) -> str:
    """A self-contained HTML page: settings, per-area table, totals, legend."""
    e = html.escape
    cols = [("flood_km2", "Flood km²"), ("permanent_water_km2", "Permanent water km²"),
            ("receded_km2", "Receded km²"), ("excluded_km2", "Excluded km²"), ("no_data_km2", "No data km²"),
            ("observed_km2", "Observed km²"), ("flood_share_of_observed", "Flooded share")]

    def cell(value: Any) -> str:
        if value is None:
            return "–"
        if isinstance(value, float):
            return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
        return e(str(value))

    rows = []
    for zone in report.get("areas", []):
        rows.append("<tr><td>" + e(zone["name"]) + "</td>" + "".join(f"<td>{cell(zone[k])}</td>" for k, _ in cols)
                    + "</tr>")
    total = report["totals"]
    rows.append("<tr class='total'><td>whole map</td>" + "".join(f"<td>{cell(total[k])}</td>" for k, _ in cols)
                + "</tr>")
    settings = "".join(f"<tr><th>{e(str(k))}</th><td>{e(str(v))}</td></tr>" for k, v in report["settings"].items())
    legend = "".join(
        f"<li><span style='background:{c};border:1px solid #888;display:inline-block;width:1em'>&nbsp;</span> "
        f"{v}: {e(label)}</li>" for v, _, label, c in FLOOD_CLASSES)
    warnings = "".join(f"<li>{e(w)}</li>" for w in report.get("warnings", []))
    scores = report.get("scores")
    score_html = ""
    if scores:
        score_html = "<h2>Against the reference flood</h2><table>" + "".join(
            f"<tr><th>{e(k)}</th><td>{cell(v)}</td></tr>" for k, v in scores.items()) + "</table>"
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>SGCAD flood report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}th{{background:#f3f3f3}}
td:first-child{{text-align:left}}
tr.total td{{font-weight:bold}}</style></head><body>
<h1>Flood map: {e(report['after'])} vs {e(report['before'])}</h1>
<p>Observed flood = water after and not before; permanent water = water on both dates; areas where the SAR
cannot see water (exclusion layer) are left out of every class. Method: <b>{e(report['method'])}</b>.
Areas in km² (pixel centres inside each polygon).</p>
<table><tr><th>Area</th>{''.join(f'<th>{e(t)}</th>' for _, t in cols)}</tr>{''.join(rows)}</table>
{score_html}
<h2>Legend of flood_extent.tif</h2><ul>{legend}</ul>
{'<h2>Warnings</h2><ul>' + warnings + '</ul>' if warnings else ''}
<h2>Settings</h2><table>{settings}</table>
<p>Written by SGCAD {e(str(report.get('engine', '')))} in {cell(report.get('seconds'))} s.</p>
</body></html>
"""
