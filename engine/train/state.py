"""Resumable training states in safetensors, without pickle.

A training state (``state.safetensors``) holds everything needed to resume a run exactly:
weights, optimizer moments, scheduler, epoch, RNG states and the run's book-keeping; tensors
go in the safetensors body and every other value in JSON in its header. It is written
atomically, so a run killed while writing keeps its previous state.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors_to_bytes

from .. import __version__
from ..files import atomic_write_bytes
from ..models.checkpoint import FORMAT_VERSION, STATE_FORMAT, _checked_meta, _tensor_dict

PathLike = Union[str, Path]


def _rng_state() -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    np_state = np.random.get_state()
    tensors = {
        "rng.torch": torch.get_rng_state(),
        "rng.numpy": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
    }
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    info = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    return tensors, info


def _set_rng_state(tensors: Dict[str, torch.Tensor], info: Dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    name, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = info["python"]
    random.setstate((version, tuple(internal), gauss))
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _split_optimizer(state: Dict[str, Any]) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    tensors: Dict[str, torch.Tensor] = {}
    plain: Dict[str, Dict[str, Any]] = {}
    for idx, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{name}"] = value
            else:
                plain.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def _join_optimizer(tensors: Dict[str, torch.Tensor], info: Dict[str, Any]) -> Dict[str, Any]:
    state: Dict[int, Dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, entries in info["plain"].items():
        state.setdefault(int(idx), {}).update(entries)
    return {"state": state, "param_groups": info["param_groups"]}


def save_training_state(
    path: PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    extra: Dict[str, Any],
    scaler: Optional[Any] = None,
) -> Path:
    """Write everything a run needs to continue after ``epoch`` (completed epochs).

    Args:
        path: target file (``state.safetensors`` in the run folder).
        model, optimizer, scheduler: their states; the scheduler state must be JSON-able
            (true of :class:`~engine.train.schedule.PolyLR`).
        epoch: number of completed epochs.
        extra: JSON-able book-keeping (history, best score, early-stopping counter ...).
        scaler: the AMP grad scaler, if any.
    """
    return TrainingSnapshot(model, optimizer, scheduler, epoch, extra, scaler).write(path)


class TrainingSnapshot:
    """The state after an epoch, copied in memory now and written later (or never).

    Copying the tensors costs milliseconds; serialising and writing them (tens of MB) costs
    as much as a short epoch. A run takes a snapshot after every epoch and writes it every few
    epochs, at its end and when it is stopped or fails, so a resume still starts exactly
    after the last completed epoch. Arguments as :func:`save_training_state`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        epoch: int,
        extra: Dict[str, Any],
        scaler: Optional[Any] = None,
    ) -> None:
        rng_tensors, rng_info = _rng_state()
        opt_tensors, opt_info = _split_optimizer(optimizer.state_dict())
        tensors = _tensor_dict(model.state_dict(), "model.")
        tensors.update(_tensor_dict(opt_tensors))
        tensors.update(_tensor_dict(rng_tensors))
        self.tensors = tensors  # copies on the CPU (_tensor_dict clones)
        info = {
            "epoch": int(epoch),
            "optimizer": opt_info,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng_info,
            "extra": extra,
            "engine_version": __version__,
        }
        self.epoch = int(epoch)
        self.state = json.dumps(info)  # JSON now: later changes to the live objects do not leak in
        self.written = False

    def write(self, path: PathLike) -> Path:
        """Write the snapshot atomically (a kill while writing keeps the previous file)."""
        header = {"format": STATE_FORMAT, "format_version": FORMAT_VERSION, "state": self.state}
        out = atomic_write_bytes(path, save_tensors_to_bytes(self.tensors, metadata=header))
        self.written = True
        return out


def load_training_state(
    path: PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Optional[Any] = None,
) -> Tuple[int, Dict[str, Any]]:
    """Restore a state written by :func:`save_training_state` into live objects.

    Returns:
        (completed epochs, the ``extra`` book-keeping dict)

    Raises:
        ValueError: not a training state, truncated, or made for another network.
    """
    path = Path(path)
    meta = _checked_meta(path, STATE_FORMAT)
    info = json.loads(meta["state"])
    groups: Dict[str, Dict[str, torch.Tensor]] = {"model": {}, "optim": {}, "rng": {}}
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        for key in handle.keys():
            head, rest = key.split(".", 1)
            groups[head][rest if head == "model" else key] = handle.get_tensor(key)
    try:
        model.load_state_dict(groups["model"], strict=True)
        optimizer.load_state_dict(_join_optimizer(groups["optim"], info["optimizer"]))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} was saved for a different network or optimizer: {exc}") from None
    if scheduler is not None and info["scheduler"] is not None:
        scheduler.load_state_dict(info["scheduler"])
    if scaler is not None and info.get("scaler"):
        scaler.load_state_dict(info["scaler"])
    _set_rng_state(groups["rng"], info["rng"])
    return int(info["epoch"]), info["extra"]
