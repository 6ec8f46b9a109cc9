"""Which water expert maps a SAR raster: the one reading VV and VH where the raster has both.

Wind-roughened open water can be as bright as fields in co-polarised backscatter and still dark in
cross-polarised (held-out Sen1Floods11 chip Sri-Lanka_534068: VV -11 dB, VH -26 dB over the
water); a model reading VV alone maps none of it (docs/experiments/zero_shot_real.md). So a
teacher may have a dual-polarisation companion beside it, named ``<teacher>_vvvh.safetensors``.
It is used for SAR water maps when the raster's band names give VV and VH, when two unnamed bands'
calibrated levels say which is co- and which cross-polarised (:func:`engine.inputs.levels.unnamed_co_cross`:
GeoTIFF exports often drop band names), or when the user chose two SAR bands; otherwise the
single-band teacher reads the co-polarised band.
The choice is made here only; front ends pass the teacher they were given and the user's bands.

The companion alone called dry sand bars water on India's training half (VV -14, VH -24.5 dB; water
IoU 80.1 against the VV teacher's 83.4), where the VV teacher was right. So on VV + VH the two
answer together: the mean of the VV teacher's logits (on the co-polarised band) and the
companion's (on both). That kept 81.0 there and found the windy water (Sri-Lanka 99.2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence, Tuple, Union

import rasterio

from ..inputs.levels import unnamed_co_cross
from ..inputs.units import polarisation_names

if TYPE_CHECKING:  # torch is imported only when a model is loaded: choosing needs no network
    from torch import nn

    from ..config import ModelMetadata

PathLike = Union[str, Path]
DUAL_POL_SUFFIX = "_vvvh"
"""File-name suffix of a teacher's dual-polarisation companion."""


@dataclass(frozen=True)
class ExpertChoice:
    """The teacher to run, the SAR bands it reads (empty: the model's own choice) and why."""

    path: Path
    sar_bands: Tuple[int, ...]
    reason: str

    @property
    def dual_pol(self) -> bool:
        return len(self.sar_bands) == 2


def companion_path(teacher_path: PathLike) -> Path:
    """Where the dual-polarisation companion of ``teacher_path`` is (or is written): beside it, suffixed."""
    path = Path(teacher_path)
    return path.with_name(path.stem + DUAL_POL_SUFFIX + path.suffix)


def companion(teacher_path: PathLike) -> Optional[Path]:
    """The dual-polarisation companion file of ``teacher_path``, if there is one."""
    if Path(teacher_path).stem.endswith(DUAL_POL_SUFFIX):
        return None
    other = companion_path(teacher_path)
    return other if other.is_file() else None


def _names(sar_path: PathLike) -> list:
    """``"vv"``, ``"vh"``, ... or None per band of a multi-band raster; [] for a single band."""
    with rasterio.open(sar_path) as src:
        count = src.count
    return polarisation_names(sar_path, range(1, count + 1)) if count > 1 else []


def named_pair(names: Sequence[Optional[str]]) -> Optional[Tuple[int, int]]:
    """``(VV, VH)`` 1-based bands when the band names (:func:`_names`) give both, else None (the companion
    learnt C-band VV + VH; HH + HV or other sensors stay with the single-band teacher)."""
    if "vv" not in names or "vh" not in names:
        return None
    return list(names).index("vv") + 1, list(names).index("vh") + 1


def _by_levels(sar_path: PathLike, sar_units: str) -> Tuple[Optional[Tuple[int, int]], str]:
    """``(co, cross)`` of two unnamed bands told apart by their levels, and why; (None, "") when they cannot be."""
    order = unnamed_co_cross(sar_path, sar_units)
    if order is None:
        return None, ""
    return (order.co_band, order.cross_band), (
        f"unnamed bands read from their levels: {order.reason()}. The companion learnt Sentinel-1 VV + VH: if they "
        f"are HH + HV (L-band), choose band {order.co_band} alone for the single-band teacher")


def choose_water_expert(teacher_path: PathLike, sar_path: PathLike,
                        sar_bands: Optional[Sequence[int]] = None, sar_units: str = "auto") -> ExpertChoice:
    """The water expert for ``sar_path``: ``teacher_path`` or its dual-polarisation companion.

    Args:
        teacher_path: the teacher the user gave (the bundled one by default).
        sar_path: the SAR raster to map.
        sar_bands: 1-based bands the user chose (None or empty: found by band names or levels).
        sar_units: the SAR units the user gave (``"auto"``: detected), to read unnamed bands' levels.

    Returns:
        The model, its bands and a line for the run's log. The companion is chosen when it exists
        and the user chose two bands (read as VV then VH), or chose none and the band names give
        VV and VH, or two unnamed bands' levels do. A single chosen band, a single-band raster or
        other bands keep ``teacher_path`` and the user's bands (when two unnamed bands cannot be
        told apart, ``reason`` says how to choose the companion).
    """
    chosen = tuple(int(b) for b in (sar_bands or ()))
    dual = companion(teacher_path)
    if dual is None or len(chosen) == 1:
        return ExpertChoice(Path(teacher_path), chosen, "")
    names = [] if chosen else _names(sar_path)
    pair = chosen if len(chosen) == 2 else named_pair(names)
    how = "the two bands chosen" if chosen else "found by their names"
    if len(chosen) == 2 and named_pair(_names(sar_path)) == chosen[::-1]:  # VH, VV by their names: the order is a slip
        how = f"the two bands chosen, read as VV then VH as their names say: band {chosen[0]} is VH"
        pair = chosen[::-1]
    unnamed = bool(names) and not any(names)
    if pair is None and unnamed and len(names) in (2, 3):  # a third band: an incidence angle, if any
        pair, how = _by_levels(sar_path, sar_units)
    if pair is None:
        hint = (f"water expert: {Path(teacher_path).name} reads one co-polarised band; neither the band names nor "
                f"the levels of {Path(sar_path).name} say which band is which. If two of its bands are VV and VH, "
                "choose both (VV first) to map water with the VV + VH expert, which also sees wind-roughened water")
        return ExpertChoice(Path(teacher_path), chosen, hint if unnamed else "")
    return ExpertChoice(dual, tuple(pair), f"water expert: VV + VH, {Path(teacher_path).name} on band {pair[0]} "
                                           f"averaged with {dual.name} on bands {pair[0]} and {pair[1]} ({how}); "
                                           "wind-roughened water is seen in VH")


def choose_for_dates(teacher_path: PathLike, dates: Dict[str, Tuple[PathLike, Sequence[int], str]]
                     ) -> Dict[str, ExpertChoice]:
    """One water expert for every date of a change map: ``dates`` maps a name to (SAR raster, chosen bands,
    units). Each date is chosen as :func:`choose_water_expert` does; when only some dates have VV and VH,
    those are mapped by the single-band teacher on their co-polarised band too, so that the change compares
    like with like (the pair and the VV teacher disagree on sand bars and wind: that is no flood)."""
    choices = {name: choose_water_expert(teacher_path, sar, bands, units)
               for name, (sar, bands, units) in dates.items()}
    if len({c.dual_pol for c in choices.values()}) < 2:
        return choices
    single = [name for name, c in choices.items() if not c.dual_pol]
    for name, c in choices.items():
        if c.dual_pol:
            choices[name] = ExpertChoice(Path(teacher_path), c.sar_bands[:1], (
                f"water expert: {Path(teacher_path).name} on band {c.sar_bands[0]} (VV) alone, as for the "
                f"{', '.join(single)} date(s) without VH, so that both dates are mapped by the same model"))
    return choices


def _chain(preprocess: Any) -> Any:
    """A model's SAR preprocessing without the units and backscatter of the file it last read (an adapted
    teacher stores them; every run resolves those of its own file), nor the noise floor of a cross-polarised
    band (the co-polarised network never reads that band)."""
    return dataclasses.replace(preprocess, units="auto", calibration_constant=0.0, calibration_constants=(),
                               backscatter="auto", zero_is_nodata=False, fill_is_nodata=False,
                               noise_floor_band=0, noise_floors_db=())


def load_water_expert(choice: ExpertChoice, teacher_path: PathLike) -> Tuple[nn.Module, ModelMetadata]:
    """The network and metadata of ``choice``; a dual-polarisation choice is paired with ``teacher_path``.

    The pair reads its inputs as the companion does (its metadata: two SAR bands); both networks
    must read SAR through the same preprocessing, or the co-polarised one would get other values.
    """
    from ..models.checkpoint import load_model
    from ..models.polarisation_pair import PolarisationPair

    if not choice.dual_pol:
        return load_model(choice.path, "teacher")
    co_net, co_meta = load_model(teacher_path, "teacher")
    dual_net, dual_meta = load_model(choice.path, "teacher")
    first = dual_meta.sar_normalization.bands[:1] if dual_meta.sar_normalization else ()
    if _chain(co_meta.sar_preprocess) != _chain(dual_meta.sar_preprocess) or (
            co_meta.sar_normalization and tuple(co_meta.sar_normalization.bands) != tuple(first)):
        raise ValueError(f"{choice.path.name} reads SAR differently from {Path(teacher_path).name} (preprocessing or "
                         "range); they cannot answer together. Give one of them as the teacher and choose its bands.")
    return PolarisationPair(co_net, dual_net).eval(), dual_meta
