"""Pretrained SAR encoder files and their transfer into the networks they initialise.

An encoder file is a model file like every other (:func:`engine.models.checkpoint.save_model`:
safetensors with the :class:`~engine.config.ModelMetadata` in its header, and a JSON sidecar)
of kind ``sar_encoder``. Its ``model`` entry says which network shape it fits (``target``:
``student`` or ``teacher``) and that network's configuration; its weights carry the target's
own parameter names (a student's ``sar_encoder.`` prefix removed). The input recipe (bands,
SAR chain, fixed range) is stored as for any model: a network it initialises should be fed the
same features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch
from safetensors import safe_open
from torch import nn

from ..config import ModelMetadata, StudentConfig, TeacherConfig, from_dict
from ..models.checkpoint import read_metadata, save_model

ENCODER_KIND = "sar_encoder"
PathLike = Union[str, Path]


def save_encoder(path: PathLike, backbone: nn.Module, metadata: ModelMetadata) -> Path:
    """Write a backbone's encoder weights (``backbone.encoder_module``) with ``metadata``."""
    metadata.kind = ENCODER_KIND
    return save_model(path, backbone.encoder_module, metadata)


def load_encoder(path: PathLike) -> Tuple[Dict[str, torch.Tensor], ModelMetadata]:
    """The weights and metadata of an encoder file; nothing is unpickled.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a model file, or a model file of another kind (a whole student or teacher).
    """
    path = Path(path)
    metadata = read_metadata(path)
    if metadata.kind != ENCODER_KIND:
        raise ValueError(
            f"{path} is a {metadata.kind} model, not a pretrained SAR encoder; give the sar_encoder.safetensors "
            "written by pretrain-sar (sgcad:pretrainsar)"
        )
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}
    return state, metadata


def encoder_config(metadata: ModelMetadata) -> Union[StudentConfig, TeacherConfig]:
    """The configuration of the network an encoder file was pretrained for."""
    target = metadata.model.get("target")
    cls = {"student": StudentConfig, "teacher": TeacherConfig}.get(target)
    if cls is None:
        raise ValueError(f"encoder target {target!r} is not known; expected student or teacher")
    return from_dict(cls, metadata.model["config"])


def _destination(model: nn.Module) -> Tuple[nn.Module, str]:
    """Where encoder weights go: a student's ``sar_encoder``, a SAR-only model's ``encoder`` (both
    built by the student's encoder registry, so a student-target file fits them), or the network
    itself (the teacher's backbone)."""
    for name in ("sar_encoder", "encoder"):
        part = getattr(model, name, None)
        if isinstance(part, nn.Module):
            return part, "student"
    return model, "teacher"


def init_from_pretrained(model: nn.Module, path: PathLike) -> Dict[str, Any]:
    """Copy a pretrained SAR encoder into ``model``: a student's SAR branch, a SAR-only model's
    encoder, or a teacher's backbone.

    Every tensor of the file must find a parameter of the same name and shape; the network's
    other parts (fusion, decoder, heads, the optical branch) are left as they are.

    Returns:
        ``{"path", "target", "tensors"}`` describing what was copied.

    Raises:
        ValueError: the file does not fit the network (other shape, widths or band count).
    """
    path = Path(path)
    state, metadata = load_encoder(path)
    destination, role = _destination(model)
    target = metadata.model.get("target")
    if role != target:
        raise ValueError(
            f"{path} was pretrained for the {target}'s SAR encoder, but this network is a {role}; pretrain "
            f"with the target {role} (--target {role}, or --like the model to initialise)"
        )
    own = destination.state_dict()
    wrong = [k for k, v in state.items() if k not in own or own[k].shape != v.shape]
    if wrong:
        first = wrong[0]
        have = tuple(own[first].shape) if first in own else "no such parameter"
        raise ValueError(
            f"{path} does not fit this {role}: {len(wrong)} tensor(s) differ, e.g. {first} "
            f"{tuple(state[first].shape)} vs {have}; pretrain --like the model you want to initialise"
        )
    missing = [k for k in own if k not in state]
    if role == "student" and missing:
        raise ValueError(f"{path} lacks {len(missing)} tensor(s) of the SAR encoder, e.g. {missing[0]}")
    own.update({k: v.to(own[k].dtype) for k, v in state.items()})
    destination.load_state_dict(own)
    return {"path": str(path), "target": role, "tensors": len(state)}
