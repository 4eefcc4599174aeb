"""The reference model assembled from its parts (docs/model.md §0).

Train mode: `model(images, pids)` returns a dict of loss terms (keys `loss_*`) and the batch term of
the ME update (`me_batch_mean`, detached); the engine sums the losses and updates ME, so that the
update can be averaged across DDP ranks. Eval mode: `model(images)` returns the N x D BNNeck
features; reconstructive pooling and the classifier are not run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid_model.bed_loss import bed_loss
from reid_model.bnneck import BNNeck
from reid_model.causal_classifier import CausalNormClassifier, classification_loss
from reid_model.config import Config
from reid_model.dnl import DisentangledNonLocal
from reid_model.gem import GeneralizedMeanPooling
from reid_model.momentum_mean import MomentumMean
from reid_model.reconstructive_pooling import ReconstructivePooling
from reid_model.resnet import ResNet
from reid_model.triplet_loss import batch_hard_triplet_loss


class ReidModel(nn.Module):
    def __init__(self, cfg: Config, num_classes: int):
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.num_classes = num_classes

        def nonlocal_block(channels: int) -> nn.Module:
            # `dnl: false` keeps the SBS baseline's plain (embedded-Gaussian) non-local blocks
            return DisentangledNonLocal(
                channels, m.dnl_reduction, m.dnl_temperature, m.dnl_scale, whiten=cfg.dnl, unary=cfg.dnl
            )

        self.backbone = ResNet(m.block, m.layers, m.widths, m.last_stride, m.nl_layers, nonlocal_block)
        dim = self.backbone.out_channels
        self.dim = dim
        self.pool = GeneralizedMeanPooling(m.gem_p, m.gem_learnable, m.gem_eps)
        self.bnneck = BNNeck(dim)
        self.classifier = CausalNormClassifier(dim, num_classes, m.cls_heads, m.cls_tau, m.cls_gamma)
        self.rp = ReconstructivePooling(dim, m.rp_init) if cfg.rp else None
        if cfg.rp and m.rp_id_loss:
            self.rp_bnneck = BNNeck(dim)
            self.rp_classifier = CausalNormClassifier(dim, num_classes, m.cls_heads, m.cls_tau, m.cls_gamma)
        else:
            self.rp_bnneck = self.rp_classifier = None
        self.me = MomentumMean(dim, m.me_beta)

    def metric_loss(self, features: torch.Tensor, pids: torch.Tensor) -> torch.Tensor:
        loss = self.cfg.loss
        if self.cfg.bed:
            return bed_loss(features, pids, loss.bed_alpha, loss.bed_reduction, loss.bed_normalize)
        return batch_hard_triplet_loss(features, pids, loss.triplet_margin)

    def forward(self, images: torch.Tensor, pids: torch.Tensor | None = None):
        fmap = self.backbone(images)
        pooled = self.pool(fmap)
        neck = self.bnneck(pooled)
        if not self.training:
            return neck
        if pids is None:
            raise ValueError("train-mode forward needs the identity labels")
        lc = self.cfg.loss
        out = {
            "loss_cls": classification_loss(
                self.classifier(neck), pids, lc.cls_head_loss, lc.label_smoothing
            ),
            "loss_metric_global": self.metric_loss(pooled, pids),
        }
        if self.rp is not None:
            pooled_rp = self.rp(fmap)
            out["loss_metric_rp"] = self.metric_loss(pooled_rp, pids)
            if self.rp_classifier is not None:
                logits = self.rp_classifier(self.rp_bnneck(pooled_rp))
                out["loss_cls_rp"] = classification_loss(logits, pids, lc.cls_head_loss, lc.label_smoothing)
        tracked = neck if self.cfg.model.me_feature == "bnneck" else pooled
        out["me_batch_mean"] = MomentumMean.batch_mean(tracked)
        return out

    def retrieval_features(self, neck: torch.Tensor) -> torch.Tensor:
        """normalize(b) - mu with ME on, normalize(b) with it off (the `me: false` ablation)."""
        if self.cfg.me:
            return self.me.subtract(neck)
        return F.normalize(neck.float(), dim=1)

    def frozen_parameters(self) -> list[nn.Parameter]:
        """What the freeze phase keeps fixed: the backbone, (D)NL blocks included (docs/model.md §6.2)."""
        return list(self.backbone.parameters())


def total_loss(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(v for k, v in outputs.items() if k.startswith("loss_"))
