"""Name-based registries for networks and their interchangeable parts.

Callers build networks from typed configs (:class:`~engine.config.StudentConfig`,
:class:`~engine.config.TeacherConfig`) by name, so a new encoder, fusion module, decoder head
or whole network is added by registering it, never by editing the code that builds models.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, List, Optional, TypeVar, Union

from torch import nn

from ..config import from_dict

F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[F]):
    """A dictionary of named builders with an error that lists the known names."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: Dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator registering ``fn`` under ``name`` (names are case-insensitive)."""

        def wrap(fn: F) -> F:
            key = name.lower()
            if key in self._items and self._items[key] is not fn:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._items[key] = fn
            return fn

        return wrap

    def get(self, name: str) -> F:
        try:
            return self._items[name.lower()]
        except KeyError:
            raise ValueError(
                f"unknown {self.what} {name!r}; registered: {sorted(self._items)}"
            ) from None

    def names(self) -> List[str]:
        return sorted(self._items)


ENCODERS: Registry = Registry("encoder")
"""``builder(in_channels, config) -> nn.Module`` with ``.channels`` (per stage), ``.stride``
(total downsampling) and ``forward(x) -> [features]``, finest first, the first at stride 4."""

FUSIONS: Registry = Registry("fusion module")
"""``builder(config, stage, optical_ch, sar_ch, out_ch) -> nn.Module(optical, sar) -> fused``."""

DECODERS: Registry = Registry("decoder")
"""``builder(config, in_channels: list) -> nn.Module([features]) -> stride-4 feature``."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: its builder, config class and role."""

    name: str
    builder: Callable[[Any], nn.Module]
    config_cls: type
    kind: str  # "student" (optical + SAR -> K classes) or "teacher" (SAR -> water)
    description: str = ""
    defaults: Optional[Dict[str, Any]] = None  # config fields this network needs (e.g. no optical band)

    def default_config(self) -> Any:
        """The network's default configuration (its config class's defaults, its own name)."""
        config = self.config_cls(**(self.defaults or {}))
        if getattr(config, "name", self.name) != self.name:
            config.name = self.name
        return config


_MODELS: Dict[str, ModelSpec] = {}


def register_model(
    name: str,
    config_cls: Optional[type] = None,
    kind: str = "student",
    description: str = "",
    defaults: Optional[Dict[str, Any]] = None,
) -> Callable[[Callable[[Any], nn.Module]], Callable[[Any], nn.Module]]:
    """Decorator registering a network builder (a class or function taking its config).

    Args:
        name: the value of ``config.name`` that selects this network.
        config_cls: the config dataclass the builder takes.
        kind: ``"student"`` (``model(optical, sar)``) or ``"teacher"`` (``model(sar)``).
        description: one line for ``python -m engine models``.
        defaults: config fields whose class default does not suit this network.
    """

    def wrap(builder: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        key = name.lower()
        if key in _MODELS and _MODELS[key].builder is not builder:
            raise ValueError(f"model {name!r} is already registered")
        _MODELS[key] = ModelSpec(key, builder, config_cls, kind, description, defaults)
        return builder

    return wrap


def list_models() -> List[str]:
    """Names of every registered network, sorted."""
    _ensure_builtin()
    return sorted(_MODELS)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name`` (``ValueError`` listing names if unknown)."""
    _ensure_builtin()
    try:
        return _MODELS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(_MODELS)}") from None


def build_model(config: Union[Any, Dict[str, Any]]) -> nn.Module:
    """Build the network ``config.name`` from a config dataclass or its JSON dict.

    A dict (as stored in :class:`~engine.config.ModelMetadata.model`) is converted to the
    registered config class first, so unknown keys are reported.
    """
    if isinstance(config, dict):
        if "name" not in config:
            raise ValueError(f"model config has no 'name'; registered models: {list_models()}")
        spec = model_spec(str(config["name"]))
        config = from_dict(spec.config_cls, config)
    elif not dataclasses.is_dataclass(config):
        raise ValueError(f"build_model expects a model config dataclass or dict, got {type(config)}")
    spec = model_spec(config.name)
    if spec.config_cls is not None and not isinstance(config, spec.config_cls):
        raise ValueError(
            f"model {spec.name!r} is built from {spec.config_cls.__name__}, "
            f"got {type(config).__name__}"
        )
    return spec.builder(config)


def _ensure_builtin() -> None:
    # Importing the package registers the built-in networks; this makes the registry usable
    # even when a caller imported this module alone.
    from . import fpn, hrnet, lightmcam, lightmcanet, resnet, sar_lulc  # noqa: F401
