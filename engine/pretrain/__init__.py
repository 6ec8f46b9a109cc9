"""Self-supervised SAR encoder pretraining (DI3CL) on unlabelled SAR rasters.

One concept per module: :mod:`.geometry` (views, overlap, ROI pooling), :mod:`.sampler`
(streamed view pairs), :mod:`.backbones` (encoders in the shapes of the networks they
initialise), :mod:`.losses`, :mod:`.moco` (query / momentum encoders, queues, the three terms),
:mod:`.trainer` (the run) and :mod:`.transfer` (encoder files into students and teachers).
"""

from .trainer import pretrain_sar
from .transfer import init_from_pretrained, load_encoder

__all__ = ["init_from_pretrained", "load_encoder", "pretrain_sar"]
