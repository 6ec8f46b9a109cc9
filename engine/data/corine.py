"""CORINE Land Cover labels (BigEarthNet patches) mapped to the six SGCAD classes.

BigEarthNet gives each 1.2 km patch a set of image-level CORINE labels (level-3 names, or the
19-class BigEarthNet nomenclature), not pixels. A label admits the SGCAD classes its land cover
can contain at 10 m: e.g. "Port areas" admits city, water and road. The union over a patch's
labels is the set of classes its pixels may take, which can constrain weak supervision.

Judgement calls (the schema has no bare-ground, wetland or shrub class):
- Grassland, pasture, heath and other open low vegetation -> farmland, the schema's open
  low-vegetation class (as in the Rotterdam sample labels).
- Shrubs, orchards, olive groves, agro-forestry, mixed agriculture/natural -> farmland or forest.
- Marshes, peat bogs, rice fields -> farmland or water (flooded for part of the year).
- Bare ground with no schema class (beaches, bare rock, sparse vegetation, burnt areas,
  glaciers) admits nothing; a patch carrying such a label is left unconstrained (every class).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Tuple, Union

SIX_CLASSES: Tuple[str, ...] = ("farmland", "city", "village", "water", "forest", "road")


def _c(*names: str) -> FrozenSet[str]:
    return frozenset(names)


#: CORINE level-3 name (code in the comment) -> admissible SGCAD classes.
CORINE_TO_CLASSES: Dict[str, FrozenSet[str]] = {
    "Continuous urban fabric": _c("city", "road"),  # 111
    "Discontinuous urban fabric": _c("city", "village", "road"),  # 112: suburbs and villages
    "Industrial or commercial units": _c("city", "road"),  # 121
    "Road and rail networks and associated land": _c("road", "farmland"),  # 122: verges
    "Port areas": _c("city", "water", "road"),  # 123
    "Airports": _c("city", "road", "farmland"),  # 124: terminals, runways, grass
    "Mineral extraction sites": _c("city", "water"),  # 131: pits fill with water
    "Dump sites": _c(
        "city",
    ),  # 132
    "Construction sites": _c(
        "city",
    ),  # 133
    "Green urban areas": _c("farmland", "forest", "city"),  # 141: parks
    "Sport and leisure facilities": _c("farmland", "city"),  # 142
    "Non-irrigated arable land": _c(
        "farmland",
    ),  # 211
    "Permanently irrigated land": _c(
        "farmland",
    ),  # 212
    "Rice fields": _c("farmland", "water"),  # 213
    "Vineyards": _c(
        "farmland",
    ),  # 221
    "Fruit trees and berry plantations": _c("farmland", "forest"),  # 222
    "Olive groves": _c("farmland", "forest"),  # 223
    "Pastures": _c(
        "farmland",
    ),  # 231
    "Annual crops associated with permanent crops": _c("farmland", "forest"),  # 241
    "Complex cultivation patterns": _c("farmland", "village"),  # 242: scattered farmsteads
    "Land principally occupied by agriculture, with significant areas of natural vegetation": _c(
        "farmland", "forest"
    ),  # 243
    "Agro-forestry areas": _c("farmland", "forest"),  # 244
    "Broad-leaved forest": _c(
        "forest",
    ),  # 311
    "Coniferous forest": _c(
        "forest",
    ),  # 312
    "Mixed forest": _c(
        "forest",
    ),  # 313
    "Natural grasslands": _c(
        "farmland",
    ),  # 321
    "Moors and heathland": _c(
        "farmland",
    ),  # 322
    "Sclerophyllous vegetation": _c("farmland", "forest"),  # 323
    "Transitional woodland-shrub": _c("farmland", "forest"),  # 324
    "Beaches, dunes, sands": _c(),  # 331
    "Bare rocks": _c(),  # 332
    "Sparsely vegetated areas": _c(),  # 333
    "Burnt areas": _c(),  # 334
    "Glaciers and perpetual snow": _c(),  # 335
    "Inland marshes": _c("farmland", "water"),  # 411
    "Peat bogs": _c("farmland", "water"),  # 412
    "Salt marshes": _c("farmland", "water"),  # 421
    "Salines": _c(
        "water",
    ),  # 422: salt pans
    "Intertidal flats": _c(
        "water",
    ),  # 423
    "Water courses": _c(
        "water",
    ),  # 511
    "Water bodies": _c(
        "water",
    ),  # 512
    "Coastal lagoons": _c(
        "water",
    ),  # 521
    "Estuaries": _c(
        "water",
    ),  # 522
    "Sea and ocean": _c(
        "water",
    ),  # 523
}

#: BigEarthNet's 19-class nomenclature, as unions of the level-3 classes it groups.
BIGEARTHNET19_TO_CLASSES: Dict[str, FrozenSet[str]] = {
    "Urban fabric": _c("city", "village", "road"),
    "Arable land": _c("farmland", "water"),
    "Permanent crops": _c("farmland", "forest"),
    "Natural grassland and sparsely vegetated areas": _c(),
    "Moors, heathland and sclerophyllous vegetation": _c("farmland", "forest"),
    "Transitional woodland, shrub": _c("farmland", "forest"),
    "Inland wetlands": _c("farmland", "water"),
    "Coastal wetlands": _c("farmland", "water"),
    "Inland waters": _c(
        "water",
    ),
    "Marine waters": _c(
        "water",
    ),
}

# Spellings found in BigEarthNet's metadata that differ from the CLC nomenclature.
_ALIASES = {
    "natural grassland": "Natural grasslands",
    "transitional woodland/shrub": "Transitional woodland-shrub",
    "bare rock": "Bare rocks",
    "peatbogs": "Peat bogs",
}
_LOOKUP: Dict[str, FrozenSet[str]] = {
    **{k.lower(): v for k, v in BIGEARTHNET19_TO_CLASSES.items()},
    **{k.lower(): v for k, v in CORINE_TO_CLASSES.items()},
}
_LOOKUP.update({alias: CORINE_TO_CLASSES[name] for alias, name in _ALIASES.items()})


def classes_for_label(label: str) -> FrozenSet[str]:
    """SGCAD classes one CORINE (level-3 or BigEarthNet-19) label admits; may be empty.

    Raises:
        ValueError: the name is not a CORINE/BigEarthNet label.
    """
    key = " ".join(label.split()).lower()
    if key not in _LOOKUP:
        raise ValueError(f"unknown CORINE label {label!r}; expected a CLC level-3 or BigEarthNet-19 name")
    return _LOOKUP[key]


def admissible_classes(labels: Iterable[str]) -> FrozenSet[str]:
    """Classes a patch with these CORINE labels may contain: the union over its labels.

    A label that admits no schema class (bare ground, snow) makes the whole patch
    unconstrained, so every class is returned; so does an empty label list.
    """
    labels = list(labels)
    per_label = [classes_for_label(lab) for lab in labels]
    if not per_label or any(not s for s in per_label):
        return frozenset(SIX_CLASSES)
    return frozenset().union(*per_label)


def read_patch_labels(metadata_path: Union[str, Path]) -> List[str]:
    """The ``labels`` list of a BigEarthNet ``*_labels_metadata.json`` file."""
    path = Path(metadata_path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read BigEarthNet label metadata ({exc})") from exc
    labels = meta.get("labels") if isinstance(meta, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{path}: expected a JSON object with a 'labels' list of CORINE names")
    return labels


def patch_admissible_classes(metadata_path: Union[str, Path]) -> FrozenSet[str]:
    """:func:`admissible_classes` of a BigEarthNet patch's metadata file."""
    return admissible_classes(read_patch_labels(metadata_path))
