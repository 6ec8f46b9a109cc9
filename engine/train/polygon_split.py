"""User polygons for fine-tuning: read one by one, grouped in space, split train / held-out.

Honest validation holds out whole polygons, never patches that share pixels or context with
training patches: polygons closer than ``gap`` pixels (a crop and its context) form one group,
and groups go to training or to validation as a whole. Validation is stratified by class: a
class drawn in at least two groups gets a held-out group; a class drawn in one group only stays
in training and its accuracy is reported as unmeasured. With nothing to hold out, the split
says so (``measured`` False) and no accuracy is printed as the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..config import ClassSchema
from ..raster.grid import Grid

PathLike = Union[str, Path]
Box = Tuple[int, int, int, int]  # col0, row0, col1, row1 (pixels, end exclusive)


@dataclass
class Polygon:
    """One drawn polygon: its class, GeoJSON geometry in the grid's CRS, and pixel box."""

    index: int
    class_id: int
    geometry: dict
    box: Box


@dataclass
class PolygonSplit:
    """Training and held-out polygons, by group."""

    train: List[Polygon]
    val: List[Polygon]
    groups: List[List[int]]  # polygon indices per group
    measured: bool  # at least one group was held out
    unmeasured_classes: List[int] = field(default_factory=list)  # drawn, but only in training

    def summary(self, schema: ClassSchema) -> Dict[str, object]:
        count = lambda polys: {schema.names[c]: sum(p.class_id == c for p in polys) for c in schema.ids}  # noqa: E731
        return {
            "groups": len(self.groups),
            "train_polygons": {k: v for k, v in count(self.train).items() if v},
            "validation_polygons": {k: v for k, v in count(self.val).items() if v},
            "validation": "held-out polygons" if self.measured else "unmeasured",
            "unmeasured_classes": [schema.names[c] for c in self.unmeasured_classes],
        }


def _pixel_box(geometry: dict, grid: Grid) -> Optional[Box]:
    coords: List[Tuple[float, float]] = []

    def walk(c):
        if isinstance(c[0], (int, float)):
            coords.append((c[0], c[1]))
        else:
            for item in c:
                walk(item)

    walk(geometry["coordinates"])
    inverse = ~grid.transform
    cols, rows = zip(*(inverse * xy for xy in coords))
    box = (int(np.floor(min(cols))), int(np.floor(min(rows))), int(np.ceil(max(cols))), int(np.ceil(max(rows))))
    c0, r0, c1, r1 = max(box[0], 0), max(box[1], 0), min(box[2], grid.width), min(box[3], grid.height)
    return (c0, r0, c1, r1) if c0 < c1 and r0 < r1 else None


def read_polygons(
    path: PathLike, class_field: str, grid: Grid, schema: ClassSchema, layer: Optional[str] = None
) -> Tuple[List[Polygon], Dict[str, object]]:
    """Every polygon of a layer on ``grid``; those entirely outside the grid are dropped.

    Raises:
        ValueError: bad field or values (from :func:`engine.raster.labels.read_label_polygons`),
            or no polygon on the imagery.
    """
    from ..raster.labels import no_overlap_note, read_label_polygons

    by_class, report = read_label_polygons(path, class_field, grid, schema, layer)
    polygons: List[Polygon] = []
    outside = 0
    for class_id, geometries in sorted(by_class.items()):
        for geometry in geometries:
            box = _pixel_box(geometry, grid)
            if box is None:
                outside += 1
                continue
            polygons.append(Polygon(len(polygons), class_id, geometry, box))
    if not polygons:
        raise ValueError(f"{path}: none of the polygons lies on the imagery{no_overlap_note(by_class, grid)}; draw "
                         "them over the scene")
    report["outside_imagery"] = outside
    return polygons, report


def _near(a: Box, b: Box, gap: int) -> bool:
    return a[0] - gap < b[2] and b[0] - gap < a[2] and a[1] - gap < b[3] and b[1] - gap < a[3]


def group_polygons(polygons: Sequence[Polygon], gap: int) -> List[List[int]]:
    """Indices of polygons whose boxes come within ``gap`` pixels of each other, transitively."""
    parent = list(range(len(polygons)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(polygons)):
        for j in range(i + 1, len(polygons)):
            if _near(polygons[i].box, polygons[j].box, gap):
                parent[find(i)] = find(j)
    groups: Dict[int, List[int]] = {}
    for i in range(len(polygons)):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values())


def _area(p: Polygon) -> int:
    return (p.box[2] - p.box[0]) * (p.box[3] - p.box[1])


def split_polygons(
    polygons: Sequence[Polygon], gap: int, val_fraction: float = 0.25, seed: int = 42
) -> PolygonSplit:
    """Hold out whole groups, stratified by class, about ``val_fraction`` of each class's area.

    For each class (rarest first) drawn in two or more groups, random groups holding it are
    moved to validation until its held-out area reaches ``val_fraction``; a group is never
    taken when that would leave some class with no training polygon.
    """
    groups = group_polygons(polygons, gap)
    rng = np.random.default_rng(seed)
    classes = sorted({p.class_id for p in polygons})
    held: set = set()

    def train_classes(excluding: set) -> set:
        return {polygons[i].class_id for g, members in enumerate(groups) if g not in excluding for i in members}

    area_of = {c: sum(_area(p) for p in polygons if p.class_id == c) for c in classes}
    with_class = {c: [g for g, m in enumerate(groups) if any(polygons[i].class_id == c for i in m)] for c in classes}
    for c in sorted(classes, key=lambda c: len(with_class[c])):
        if len(with_class[c]) < 2 or val_fraction <= 0:
            continue
        for g in rng.permutation(with_class[c]):
            held_area = sum(_area(polygons[i]) for h in held for i in groups[h] if polygons[i].class_id == c)
            if held_area >= val_fraction * area_of[c]:
                break
            if g in held or train_classes(held | {int(g)}) != set(classes):
                continue
            held.add(int(g))
    val_classes = {polygons[i].class_id for g in held for i in groups[g]}
    train = [p for g, m in enumerate(groups) if g not in held for p in (polygons[i] for i in m)]
    val = [p for g in sorted(held) for p in (polygons[i] for i in groups[g])]
    return PolygonSplit(train, val, groups, bool(held), [c for c in classes if c not in val_classes])
