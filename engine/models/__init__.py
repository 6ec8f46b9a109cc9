"""Networks: registry, LightMCANet student, HRNet teacher, shared blocks.

``build_model(config)`` builds a network from :class:`~engine.config.StudentConfig` or
:class:`~engine.config.TeacherConfig` (or their JSON dicts) by ``config.name``.
"""

from . import claire, fpn, lightmcam, resnet, sar_lulc  # noqa: F401  (register encoders, fusions, decoders)
from .hrnet import HRNetTeacher
from .lightmcanet import LightMCANet
from .registry import (
    DECODERS,
    ENCODERS,
    FUSIONS,
    ModelSpec,
    build_model,
    list_models,
    model_spec,
    register_model,
)

__all__ = [
    "DECODERS",
    "ENCODERS",
    "FUSIONS",
    "HRNetTeacher",
    "LightMCANet",
    "ModelSpec",
    "build_model",
    "list_models",
    "model_spec",
    "register_model",
]
