"""Geometry helpers for polygons traced in pixel space.

Polygons are traced and merged in global pixel coordinates, where every vertex is an integer
(exact in floating point), so pieces of a polygon traced in different blocks share their
border vertices exactly and their union is exact. Only the final polygon is moved to map
coordinates, with one affine transform applied to its WKB coordinates in numpy.
"""

from __future__ import annotations

import contextlib
import struct
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from affine import Affine
from osgeo import gdal, ogr

ogr.UseExceptions()

_POLYGON, _MULTIPOLYGON = 3, 6


def canonical(geom: ogr.Geometry) -> ogr.Geometry:
    """The same polygon with a canonical vertex list, so that equal polygons have equal WKB.

    GDAL's polygoniser emits only corner vertices; a union of pieces keeps the vertices where
    the pieces met, and starts its rings anywhere. Here every ring loses its collinear vertices
    (exact on integer pixel coordinates), shells get a negative and holes a positive shoelace
    area in pixel coordinates (row numbers grow downwards, so on a north-up grid shells are
    counter-clockwise and holes clockwise in map coordinates, the OGC convention), each ring
    starts at its smallest (x, y) vertex and holes and parts are sorted by it. A polygon traced
    in pieces then equals the same polygon traced whole.
    """
    return build_polygons(canonical_rings(geom))


Polygons = List[List[np.ndarray]]


def canonical_rings(geom: ogr.Geometry) -> Polygons:
    """The rings of :func:`canonical` (parts, each shell first), without building a geometry."""
    polygons = []
    for rings in read_polygons(geom):
        shell, holes = _ring(rings[0], True), sorted((_ring(r, False) for r in rings[1:]), key=_key)
        polygons.append([shell] + holes)
    polygons.sort(key=lambda p: _key(p[0]))
    return polygons


def ring_area(ring: np.ndarray) -> float:
    """Unsigned area of a closed ring (shoelace)."""
    x, y = ring[:, 0], ring[:, 1]
    return abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))) / 2.0


def drop_small_holes(polygons: Polygons, min_area: float) -> Tuple[Polygons, int]:
    """Remove holes whose area is below ``min_area``; returns the rings and how many were removed."""
    if min_area <= 0:
        return polygons, 0
    out, dropped = [], 0
    for rings in polygons:
        kept = [rings[0]] + [r for r in rings[1:] if ring_area(r) >= min_area]
        dropped += len(rings) - len(kept)
        out.append(kept)
    return out, dropped


def transform_rings(polygons: Polygons, t: Affine) -> Polygons:
    """Every vertex mapped by the affine transform ``t``."""
    moved = []
    for rings in polygons:
        part = []
        for r in rings:
            out = np.empty_like(r)
            out[:, 0] = t.c + t.a * r[:, 0] + t.b * r[:, 1]
            out[:, 1] = t.f + t.d * r[:, 0] + t.e * r[:, 1]
            part.append(out)
        moved.append(part)
    return moved


def _key(ring: np.ndarray) -> Tuple[float, float]:
    return float(ring[0, 0]), float(ring[0, 1])


def _ring(ring: np.ndarray, shell: bool) -> np.ndarray:
    """Closed ring -> collinear-free, oriented, starting at its smallest (x, y) vertex, closed again."""
    pts = ring[:-1] if len(ring) > 1 and ring[0, 0] == ring[-1, 0] and ring[0, 1] == ring[-1, 1] else ring
    n = len(pts)
    idx = np.arange(n)
    nxt = pts[(idx + 1) % n]
    step = nxt - pts
    moving = (step[:, 0] != 0) | (step[:, 1] != 0)  # drop repeated vertices
    if not moving.all():
        pts = pts[moving]
        n = len(pts)
        idx = np.arange(n)
        nxt = pts[(idx + 1) % n]
        step = nxt - pts
    if n > 3:
        back = step[idx - 1]  # from the previous vertex to this one
        cross = back[:, 0] * step[:, 1] - back[:, 1] * step[:, 0]
        pts = pts[cross != 0]
    x, y = pts[:, 0], pts[:, 1]
    area2 = float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]) + x[-1] * y[0] - x[0] * y[-1])
    if (area2 < 0) != shell:
        pts = pts[::-1]
    order = np.lexsort((pts[:, 1], pts[:, 0]))
    first = int(order[0])
    return np.concatenate([pts[first:], pts[:first], pts[first : first + 1]])


def read_polygons(geom: ogr.Geometry) -> List[List[np.ndarray]]:
    """Rings (closed (n, 2) float64 arrays, shell first) of each part of a 2-D (multi)polygon."""
    buf = bytes(geom.ExportToWkb(ogr.wkbNDR))
    kind, pos = _header(buf, 0)
    if kind == _POLYGON:
        return [_read_polygon(buf, pos)[0]]
    if kind != _MULTIPOLYGON:
        raise ValueError(f"expected a 2-D polygon, got WKB type {kind}")
    (count,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    out = []
    for _ in range(count):
        sub, pos = _header(buf, pos)
        if sub != _POLYGON:
            raise ValueError(f"unexpected WKB part type {sub}")
        rings, pos = _read_polygon(buf, pos)
        out.append(rings)
    return out


def _header(buf, pos: int) -> Tuple[int, int]:
    if buf[pos] != 1:
        raise ValueError("expected little-endian WKB")
    (kind,) = struct.unpack_from("<I", buf, pos + 1)
    return kind, pos + 5


def _read_polygon(buf: bytes, pos: int) -> Tuple[List[np.ndarray], int]:
    (n_rings,) = struct.unpack_from("<I", buf, pos)
    pos += 4
    rings = []
    for _ in range(n_rings):
        (n,) = struct.unpack_from("<I", buf, pos)
        pos += 4
        rings.append(np.frombuffer(buf, dtype="<f8", count=2 * n, offset=pos).reshape(n, 2).copy())
        pos += 16 * n
    return rings, pos


def build_polygons(polygons: List[List[np.ndarray]]) -> ogr.Geometry:
    """A polygon (one part) or multipolygon from closed rings, through WKB."""
    def body(rings: List[np.ndarray]) -> bytes:
        parts = [struct.pack("<BII", 1, _POLYGON, len(rings))]
        for r in rings:
            parts.append(struct.pack("<I", len(r)))
            parts.append(np.ascontiguousarray(r, dtype="<f8").tobytes())
        return b"".join(parts)

    if len(polygons) == 1:
        return ogr.CreateGeometryFromWkb(body(polygons[0]))
    wkb = struct.pack("<BII", 1, _MULTIPOLYGON, len(polygons)) + b"".join(body(p) for p in polygons)
    return ogr.CreateGeometryFromWkb(wkb)


def union_pieces(pieces: Iterable[bytes]) -> ogr.Geometry:
    """The union of polygon pieces (WKB) of one component: a single polygon when they connect."""
    multi = ogr.Geometry(ogr.wkbMultiPolygon)
    for wkb in pieces:
        g = ogr.CreateGeometryFromWkb(wkb)
        if ogr.GT_Flatten(g.GetGeometryType()) == ogr.wkbMultiPolygon:
            for k in range(g.GetGeometryCount()):
                multi.AddGeometry(g.GetGeometryRef(k))
        else:
            multi.AddGeometry(g)
    merged = multi.UnionCascaded()
    if merged.GetGeometryCount() == 1 and ogr.GT_Flatten(merged.GetGeometryType()) == ogr.wkbMultiPolygon:
        merged = merged.GetGeometryRef(0).Clone()
    return merged


def without_small_holes(geom: ogr.Geometry, min_area: float) -> Tuple[ogr.Geometry, int]:
    """Drop interior rings whose area is below ``min_area`` (same units as the geometry).

    Returns:
        (the polygon or multipolygon, number of holes dropped).
    """
    if min_area <= 0:
        return geom, 0
    flat = ogr.GT_Flatten(geom.GetGeometryType())
    parts = [geom.GetGeometryRef(k) for k in range(geom.GetGeometryCount())] if flat == ogr.wkbMultiPolygon else [geom]
    dropped = 0
    rebuilt: List[ogr.Geometry] = []
    for poly in parts:
        new = ogr.Geometry(ogr.wkbPolygon)
        for k in range(poly.GetGeometryCount()):
            ring = poly.GetGeometryRef(k)
            if k > 0 and abs(ring.GetArea()) < min_area:
                dropped += 1
                continue
            new.AddGeometry(ring)
        rebuilt.append(new)
    if not dropped:
        return geom, 0
    if flat != ogr.wkbMultiPolygon:
        return rebuilt[0], dropped
    multi = ogr.Geometry(ogr.wkbMultiPolygon)
    for p in rebuilt:
        multi.AddGeometry(p)
    return multi, dropped


def affine_transform(geom: ogr.Geometry, transform: Affine) -> ogr.Geometry:
    """``geom`` (2-D polygon or multipolygon in pixel coordinates) mapped by ``transform``."""
    return build_polygons(transform_rings(read_polygons(geom), transform))


def polygon_parts(geom: Optional[ogr.Geometry]) -> Optional[ogr.Geometry]:
    """The polygonal parts of ``geom`` (e.g. of a make-valid result, a collection that may hold lines or points)
    as one polygon or multipolygon; None when it has none."""
    if geom is None:
        return None
    flat = ogr.GT_Flatten(geom.GetGeometryType())
    if flat in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
        return geom
    if flat != ogr.wkbGeometryCollection:
        return None
    multi = ogr.Geometry(ogr.wkbMultiPolygon)
    for k in range(geom.GetGeometryCount()):
        part = polygon_parts(geom.GetGeometryRef(k))
        if part is None:
            continue
        for poly in ([part] if ogr.GT_Flatten(part.GetGeometryType()) == ogr.wkbPolygon else
                     [part.GetGeometryRef(i) for i in range(part.GetGeometryCount())]):
            multi.AddGeometry(poly)
    return multi if multi.GetGeometryCount() else None


def linear(geom: ogr.Geometry) -> ogr.Geometry:
    """``geom`` with its arcs (CurvePolygon, MultiSurface, CompoundCurve) cut into straight segments, which every
    reader here measures; QGIS digitises curves and GEOS knows none (they read as "no area")."""
    return geom.GetLinearGeometry() if geom.HasCurveGeometry() else geom


def area_polygons(geom: Optional[ogr.Geometry]) -> Optional[ogr.Geometry]:
    """A feature's polygonal area, the way every polygon reader takes it: arcs made straight, an invalid ring
    repaired (GEOS's make-valid, quietly), the polygons of a collection kept; None when no area is left."""
    if geom is None or geom.IsEmpty():
        return None
    with quiet_gdal():  # GEOS would print a TopologyException for each bad ring
        g = linear(geom.Clone())
        if not g.IsValid():
            g = g.MakeValid()
    g = polygon_parts(g)
    if g is None or g.IsEmpty() or g.GetArea() <= 0:
        return None
    return g


def union_all(parts: Sequence[ogr.Geometry]) -> Optional[ogr.Geometry]:
    """The union of many polygons at once (GEOS's cascaded union): merging them one by one took time growing
    with the square of their number (10,000 polygons: over 5 minutes)."""
    multi = ogr.Geometry(ogr.wkbMultiPolygon)
    for part in parts:
        flat = ogr.GT_Flatten(part.GetGeometryType())
        pieces = [part] if flat == ogr.wkbPolygon else [part.GetGeometryRef(i) for i in range(part.GetGeometryCount())]
        for piece in pieces:
            if piece.Is3D() or piece.IsMeasured():  # heights and measures say nothing of an area
                piece = piece.Clone()
                piece.Set3D(False)
                piece.SetMeasured(False)
            multi.AddGeometry(piece)
    if multi.GetGeometryCount() == 0:
        return None
    with quiet_gdal():
        return multi.UnionCascaded()


def to_crs(geom: ogr.Geometry, transform, what: str, srs) -> None:
    """Transform ``geom`` in place, or refuse it (``SgcadError``) with the remedy: PROJ fails on coordinates that do
    not fit the CRS their layer declares (an error code where GDAL's exceptions are off, an exception where on).

    Args:
        what: the feature and where it was to go (``"labels.gpkg: feature 3 cannot be brought into the raster's
            CRS (EPSG:32631)"``), which the sentence continues.
        srs: the layer's ``osr.SpatialReference``, named in the sentence.
    """
    try:
        done = geom.Transform(transform) == 0
    except RuntimeError:
        done = False
    if not done:
        from ..validate import SgcadError

        raise SgcadError(
            f"{what}: its coordinates do not fit the CRS the layer declares ({srs.GetName() or srs.ExportToProj4()}; "
            "projected metres declared as degrees?). Set the layer's true CRS (QGIS: Layer Properties > Source > "
            "Assigned CRS, or ogr2ogr -a_srs) and run again")


@contextlib.contextmanager
def quiet_gdal() -> Iterator[None]:
    """Keep GDAL/GEOS's raw "Warning 1: Self-intersection ..." lines off stderr: the caller counts and says
    what it repaired or skipped in its own words."""
    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        yield
    finally:
        gdal.PopErrorHandler()
