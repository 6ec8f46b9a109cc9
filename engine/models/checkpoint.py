"""Model files: one safetensors file whose header carries the model's metadata, never pickled.

A model checkpoint is one safetensors file whose header carries the
:class:`~engine.config.ModelMetadata` as JSON (architecture, classes, bands and the input
contract the network was trained with), plus a readable copy of that JSON in
``<path>.json``. Both are written through a temporary name and a rename, so a run killed while
writing leaves the previous file intact. Inference reads models through this module only;
resumable training states live in :mod:`engine.train.state`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors_to_bytes

from .. import __version__
from ..config import (
    BandMapping,
    ClassSchema,
    ModelMetadata,
    StudentConfig,
    TeacherConfig,
    from_dict,
    to_dict,
)
from ..files import atomic_write_bytes

FORMAT = "sgcad-checkpoint"
STATE_FORMAT = "sgcad-train-state"
FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024  # a real header is kilobytes; anything huge is not ours

PathLike = Union[str, Path]


def _tensor_dict(state: Dict[str, torch.Tensor], prefix: str = "") -> Dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    return {prefix + k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def _read_header(path: Path) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Parse and check a safetensors header without reading the tensors.

    Returns:
        (tensor entries, ``__metadata__`` strings)

    Raises:
        ValueError: the file is not safetensors or is shorter than its header promises.
    """
    size = path.stat().st_size
    what = f"{path} is not a SGCAD checkpoint"
    if size < 8:
        raise ValueError(f"{what}: the file has only {size} bytes")
    with open(path, "rb") as handle:
        (n,) = struct.unpack("<Q", handle.read(8))
        if n > _MAX_HEADER:
            raise ValueError(f"{what}: it does not start with a safetensors header")
        if 8 + n > size:
            raise ValueError(f"{path} is truncated: its header needs {8 + n} bytes, the file has {size}")
        raw = handle.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{what}: its header is not valid safetensors JSON") from None
    if not isinstance(header, dict):
        raise ValueError(f"{what}: its header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    end = max((int(e["data_offsets"][1]) for e in header.values()), default=0)
    if 8 + n + end > size:
        raise ValueError(
            f"{path} is truncated: {8 + n + end} bytes expected, {size} found (interrupted copy or download?)"
        )
    return header, meta


def _checked_meta(path: Path, fmt: str) -> Dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    _, meta = _read_header(path)
    if meta.get("format") != fmt:
        found = meta.get("format")
        if found in (FORMAT, STATE_FORMAT):
            raise ValueError(f"{path} is a {found} file; expected a {fmt} file")
        raise ValueError(
            f"{path} is a safetensors file but not a {fmt} file (no SGCAD metadata in its header)"
        )
    return meta


def migrate_metadata(data: Dict[str, Any]) -> Dict[str, Any]:
    """Bring the metadata of a first-release model (input contract 1) to the current contract.

    Contract 1 stored the SAR chain's input units in ``input_is_db`` / ``calibrate`` and
    scaled the optical input by the training file's raw-unit percentiles. Now the units
    belong to each file; a contract-1 SAR range (dB after the Lee filter) stays the model's
    fixed range, and the optical input is scaled per scene, as the paper does.
    """
    if "contract_version" in data:
        return data
    data = dict(data, contract_version=1)
    sar = dict(data.get("sar_preprocess") or {})
    is_db, calibrate = sar.pop("input_is_db", False), sar.pop("calibrate", False)
    sar.setdefault("units", "dn" if calibrate else ("db" if is_db else "linear"))
    if not calibrate:
        sar["calibration_constant"] = 0.0
    sar.setdefault("normalization", "fixed")
    data["sar_preprocess"] = sar
    optical = dict(data.get("optical_preprocess") or {})
    custom = optical.get("scale", 1.0) != 1.0 or optical.get("offset", 0.0) != 0.0
    optical.setdefault("units", "custom" if custom else "auto")
    optical.setdefault("normalization", "scene")
    data["optical_preprocess"] = optical
    return data


def read_metadata(path: PathLike) -> ModelMetadata:
    """The :class:`ModelMetadata` of a model checkpoint, without building the model."""
    path = Path(path)
    meta = _checked_meta(path, FORMAT)
    try:
        return from_dict(ModelMetadata, migrate_metadata(json.loads(meta["metadata"])))
    except (KeyError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: the checkpoint's metadata is unreadable: {exc}") from None


def save_model(
    path: PathLike, model: torch.nn.Module, metadata: ModelMetadata, overwrite: bool = True
) -> Path:
    """Write the model's weights and metadata to ``path`` and ``path`` + ``.json``.

    Args:
        path: target file, conventionally ``*.safetensors``.
        model: the network; its ``state_dict`` is stored.
        metadata: stored in the safetensors header and in the JSON sidecar.
        overwrite: replace existing files (a training run updates its best model).

    Returns:
        the path written.
    """
    path = Path(path)
    if not metadata.engine_version:
        metadata.engine_version = __version__
    text = json.dumps(to_dict(metadata))
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": metadata.kind, "metadata": text}
    data = save_tensors_to_bytes(_tensor_dict(model.state_dict()), metadata=header)
    sidecar = path.with_name(path.name + ".json")
    if not overwrite:
        for p in (path, sidecar):
            if p.exists():
                raise ValueError(f"{p} already exists; pass overwrite=True to replace it")
    atomic_write_bytes(path, data)
    atomic_write_bytes(sidecar, json.dumps(to_dict(metadata), indent=2).encode("utf-8"))
    return path


def _model_config(metadata: ModelMetadata, path: Path) -> Union[StudentConfig, TeacherConfig]:
    cls = {"student": StudentConfig, "teacher": TeacherConfig}.get(metadata.kind)
    if cls is None:
        raise ValueError(f"{path}: unknown model kind {metadata.kind!r}; expected student or teacher")
    from .registry import model_spec

    try:  # a network registered with its own config class (e.g. a SAR-only model's water head)
        cls = model_spec(str(metadata.model.get("name", ""))).config_cls or cls
    except ValueError:
        pass  # unknown names are reported by build_model
    try:
        return from_dict(cls, metadata.model)
    except ValueError as exc:
        raise ValueError(f"{path}: model configuration unreadable: {exc}") from None


def check_fits(
    metadata: ModelMetadata,
    path: PathLike,
    expected_kind: Optional[str] = None,
    schema: Optional[ClassSchema] = None,
    bands: Optional[BandMapping] = None,
) -> None:
    """Raise ``ValueError`` when a checkpoint does not fit the intended use.

    Args:
        metadata: what the checkpoint holds.
        path: named in the messages.
        expected_kind: "student" or "teacher".
        schema: classes the caller works with (students only; a teacher is water/non-water).
        bands: input bands the caller will feed; only the channel counts must agree.
    """
    if expected_kind and metadata.kind != expected_kind:
        raise ValueError(
            f"{path} is a {metadata.kind} checkpoint, but a {expected_kind} checkpoint is expected here"
        )
    if (
        schema is not None
        and metadata.kind == "student"
        and tuple(metadata.schema.names) != tuple(schema.names)
    ):
        raise ValueError(
            f"{path} was trained for classes {list(metadata.schema.names)}, "
            f"but this run uses {list(schema.names)}"
        )
    if bands is not None:
        pairs = [("SAR", metadata.bands.sar_channels, bands.sar_channels)]
        if metadata.kind == "student":
            pairs.insert(0, ("optical", metadata.bands.optical_channels, bands.optical_channels))
        for name, have, want in pairs:
            if have != want:
                raise ValueError(f"{path} expects {have} {name} band(s), but {want} {name} band(s) are given")


def load_model(
    path: PathLike,
    expected_kind: Optional[str] = None,
    schema: Optional[ClassSchema] = None,
    bands: Optional[BandMapping] = None,
    device: Union[str, torch.device] = "cpu",
) -> Tuple[torch.nn.Module, ModelMetadata]:
    """Build the network a checkpoint describes and load its weights; nothing is unpickled.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a checkpoint, truncated, wrong kind, other classes or band counts,
            or weights that do not fit the stored model configuration.
    """
    from ..models import build_model  # imported late: models import torch-heavy modules

    path = Path(path)
    metadata = read_metadata(path)
    check_fits(metadata, path, expected_kind, schema, bands)
    model = build_model(_model_config(metadata, path))
    state = {}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key in handle.keys():
            state[key] = handle.get_tensor(key)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[:3]
        raise ValueError(f"{path}: weights do not fit the stored model configuration: {first}") from None
    return model.to(device), metadata


def average_models(paths: Sequence[PathLike], out: PathLike, overwrite: bool = False) -> Path:
    """Write the element-wise mean of several checkpoints of one run (weight averaging).

    Averaging the last epochs of a run (as stochastic weight averaging does) gives a model that
    does not depend on where the last epoch happened to stop; zero-shot real-scene accuracy of
    single epochs varied widely. BatchNorm running statistics are averaged as well, which is close
    to the statistics of the averaged weights when the epochs share a learning-rate plateau.

    Args:
        paths: checkpoints of one architecture; the metadata of the last one is kept.
        out: target file.
        overwrite: replace an existing ``out``.

    Returns:
        the path written.
    """
    if not paths:
        raise ValueError("no checkpoint to average")
    models = [load_model(p) for p in paths]
    kinds = {meta.kind for _, meta in models}
    configs = {json.dumps(meta.model, sort_keys=True) for _, meta in models}
    if len(kinds) != 1 or len(configs) != 1:
        raise ValueError("only checkpoints of one kind and one architecture can be averaged")
    model, metadata = models[-1]
    states = [m.state_dict() for m, _ in models]
    merged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            merged[key] = torch.stack([s[key] for s in states]).mean(0)
        else:  # counters such as num_batches_tracked
            merged[key] = last
    model.load_state_dict(merged)
    # the run folder too: two runs' best.safetensors must not read as one name twice
    metadata.train = dict(metadata.train or {}, averaged_from=[f"{Path(p).parent.name}/{Path(p).name}" for p in paths])
    return save_model(out, model, metadata, overwrite=overwrite)
