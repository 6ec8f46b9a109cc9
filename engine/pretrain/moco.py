"""DI3CL: a query encoder, its momentum (key) encoder, queues of negatives and three loss terms.

* global term (MoCo): the whole query view must match the whole key view of the same window
  among the queued keys of earlier windows;
* Dynamic Instance term: a changing number of regions drawn inside the views' overlap are
  pooled from both views' deep features (ROI pooling by ``grid_sample``) and matched the same
  way, so every part of a scene is contrasted, not only what lies at a view's centre;
* Contour Consistency term: a small head on the shallow features predicts contours; it is
  supervised by the contours of the filtered SAR and must agree with the momentum encoder's
  contours on the overlap, seen through the other view.
"""

from __future__ import annotations

import copy
from typing import Dict, Tuple

import torch
import torch.nn.functional as F  # noqa: N812  (the usual torch alias)
from torch import nn

from ..config import PretrainConfig
from .geometry import region_points, roi_pool, to_view
from .losses import consistency_loss, contour_loss, info_nce

CONSISTENCY_SAMPLES = 8  # points per overlap edge where the two views' contours are compared


def _projection(cin: int, dim: int) -> nn.Sequential:
    # BatchNorm in the head (as MoCo v3 and SimCLR) spreads the embeddings of a batch apart from
    # the first steps; without it every view of a scene started at nearly one embedding
    hidden = max(cin, dim)
    return nn.Sequential(nn.Linear(cin, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, dim))


class _Branch(nn.Module):
    """An encoder with its heads: global projection, region projection, contour head."""

    def __init__(self, backbone: nn.Module, dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.project = _projection(backbone.deep_channels, dim)
        self.project_region = _projection(backbone.deep_channels, dim)
        c = backbone.shallow_channels
        self.contour = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, 1, 1))


class DI3CL(nn.Module):
    """Query and momentum branches, two queues, and the loss of one batch.

    Args:
        backbone: a backbone from :func:`engine.pretrain.backbones.build_backbone`.
        cfg: weights, temperature, momentum, queue size.
    """

    def __init__(self, backbone: nn.Module, cfg: PretrainConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.query = _Branch(backbone, cfg.projection_dim)
        self.key = copy.deepcopy(self.query)
        for p in self.key.parameters():
            p.requires_grad_(False)
        for name in ("queue_global", "queue_region"):
            self.register_buffer(name, F.normalize(torch.randn(cfg.projection_dim, cfg.queue_size), dim=0))
        self.register_buffer("queue_pointer", torch.zeros(2, dtype=torch.long))

    @torch.no_grad()
    def momentum_update(self) -> None:
        m = self.cfg.momentum
        for q, k in zip(self.query.parameters(), self.key.parameters()):
            k.mul_(m).add_(q.detach(), alpha=1 - m)
        for q, k in zip(self.query.buffers(), self.key.buffers()):  # BatchNorm statistics follow
            k.copy_(q)

    @torch.no_grad()
    def _enqueue(self, which: int, keys: torch.Tensor) -> None:
        queue = self.queue_global if which == 0 else self.queue_region
        size = queue.shape[1]
        keys = keys[:size]
        start = int(self.queue_pointer[which])
        idx = (torch.arange(len(keys), device=keys.device) + start) % size
        queue[:, idx] = keys.T.to(queue.dtype)
        self.queue_pointer[which] = (start + len(keys)) % size

    def forward(self, batch: Dict[str, torch.Tensor]) -> Tuple[torch.Tensor, Dict[str, float]]:
        """The weighted loss of one batch (see :class:`~engine.pretrain.sampler.ViewPairSampler`)
        and its terms; the keys of the batch join the queues afterwards."""
        cfg = self.cfg
        shallow_q, deep_q = self.query.backbone(batch["query"])
        with torch.no_grad():
            shallow_k, deep_k = self.key.backbone(batch["key"])
        terms: Dict[str, torch.Tensor] = {}
        total = deep_q.new_zeros(())

        q = F.normalize(self.query.project(deep_q.mean((2, 3)).float()), dim=1)
        with torch.no_grad():
            k = F.normalize(self.key.project(deep_k.mean((2, 3)).float()), dim=1)
        terms["global"] = info_nce(q, k, self.queue_global.clone().detach(), cfg.temperature)
        total = total + cfg.global_weight * terms["global"]

        region_keys = None
        if cfg.di_weight > 0:
            points = region_points(batch["regions"], cfg.roi_samples)  # (N, R, S*S, 2) window coordinates
            pooled_q = roi_pool(deep_q, to_view(points, batch["theta_query"]), cfg.roi_samples)
            rq = F.normalize(self.query.project_region(pooled_q.flatten(0, 1).float()), dim=1)
            with torch.no_grad():
                pooled_k = roi_pool(deep_k, to_view(points, batch["theta_key"]), cfg.roi_samples)
                region_keys = F.normalize(self.key.project_region(pooled_k.flatten(0, 1).float()), dim=1)
            terms["dynamic_instance"] = info_nce(rq, region_keys, self.queue_region.clone().detach(), cfg.temperature)
            total = total + cfg.di_weight * terms["dynamic_instance"]

        if cfg.cc_weight > 0:
            logits = self.query.contour(shallow_q).float()
            supervised = contour_loss(logits, batch["contour"], batch["valid"])
            points = region_points(batch["overlap"][:, None], CONSISTENCY_SAMPLES)  # (N, 1, P, 2)
            prob_q = F.grid_sample(torch.sigmoid(logits), to_view(points, batch["theta_query"]),
                                   align_corners=False)
            with torch.no_grad():
                prob_k = F.grid_sample(torch.sigmoid(self.key.contour(shallow_k).float()),
                                       to_view(points, batch["theta_key"]), align_corners=False)
            terms["contour"] = supervised
            terms["contour_consistency"] = consistency_loss(prob_q, prob_k)
            total = total + cfg.cc_weight * (supervised + terms["contour_consistency"])

        self._enqueue(0, k)
        if region_keys is not None:
            self._enqueue(1, region_keys)
        return total, {name: float(value.detach()) for name, value in terms.items()}

    @torch.no_grad()
    def probe(self, batch: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """How well the query encoder finds each key among the batch's keys (no queue, no update).

        Unlike the training loss, whose negatives change as the queue fills, this is comparable
        from step to step on a fixed batch: ``probe_top1`` is the share of views whose own key is
        the nearest, ``probe_regions_top1`` the same for regions of the overlap (chance: 1 / N).
        """
        was_training = self.training
        self.eval()
        _, deep_q = self.query.backbone(batch["query"])
        _, deep_k = self.key.backbone(batch["key"])
        q = F.normalize(self.query.project(deep_q.mean((2, 3)).float()), dim=1)
        k = F.normalize(self.key.project(deep_k.mean((2, 3)).float()), dim=1)
        out = {"probe_top1": float(((q @ k.T).argmax(1) == torch.arange(len(q), device=q.device)).float().mean())}
        points = region_points(batch["regions"], self.cfg.roi_samples)
        rq = roi_pool(deep_q, to_view(points, batch["theta_query"]), self.cfg.roi_samples).flatten(0, 1)
        rk = roi_pool(deep_k, to_view(points, batch["theta_key"]), self.cfg.roi_samples).flatten(0, 1)
        rq = F.normalize(self.query.project_region(rq.float()), dim=1)
        rk = F.normalize(self.key.project_region(rk.float()), dim=1)
        hits = (rq @ rk.T).argmax(1) == torch.arange(len(rq), device=rq.device)
        out["probe_regions_top1"] = float(hits.float().mean())
        self.train(was_training)
        return out
