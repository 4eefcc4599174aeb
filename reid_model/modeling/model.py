"""The reference model assembled from its parts (docs/model.md §0).

Train mode: `model(images, pids)` returns a dict of loss terms (keys `loss_*`), the batch term of the
ME update (`me_batch_mean`, detached) and BED's operating range (`range_*`: mean positive and
negative distances, the two parts of BED, and the feature batch those parts were computed on, kept
in the graph so that the engine can measure the gradient each part sends) and the backbone's output
map (`feature_map`, in the graph: the engine measures there how much of the gradient reaching the
backbone comes from the metric loss and how much from the classifier). The engine sums the
losses and updates ME, so that the update can be averaged across DDP ranks. Under DDP the pairwise
losses see the global batch (`distributed.gather_batch`). Eval mode: `model(images)` returns the
N x D features retrieval starts from (the GeM output, or the BNNeck output for SBS); reconstructive
pooling and the classifier are not run.

With every Table 5 switch off (`cbe bed dnl rp me` false) this is FastReID's strong baseline:
FastReID's non-local blocks, CircleSoftmax with label smoothing, soft-margin batch-hard triplet on
the BNNeck output, retrieval on the BNNeck output.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reid_model.config import Config, classifier_kind, retrieval_feature
from reid_model.distributed import gather_batch
from reid_model.losses.bed_loss import bed_terms, euclidean_distances, mean_pair_distances
from reid_model.losses.triplet_loss import batch_hard_triplet_loss
from reid_model.modeling.bnneck import BNNeck
from reid_model.modeling.causal_classifier import (
    CausalNormClassifier,
    classification_loss,
    smoothed_cross_entropy,
)
from reid_model.modeling.circle_softmax import CircleSoftmax
from reid_model.modeling.dnl import DisentangledNonLocal
from reid_model.modeling.gem import GeneralizedMeanPooling
from reid_model.modeling.momentum_mean import MomentumMean
from reid_model.modeling.nonlocal_block import NonLocal
from reid_model.modeling.reconstructive_pooling import ReconstructivePooling
from reid_model.modeling.resnet import ResNet

#: The branches a metric loss is applied to, in the names of the logged keys.
BRANCHES = ("global", "rp")


class ReidModel(nn.Module):
    def __init__(self, cfg: Config, num_classes: int):
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.num_classes = num_classes
        self.classifier_kind = classifier_kind(cfg)
        self.retrieval_feature = retrieval_feature(cfg)

        def nonlocal_block(channels: int) -> nn.Module:
            if cfg.dnl:
                return DisentangledNonLocal(channels, m.dnl_reduction, m.dnl_temperature, m.dnl_scale)
            return NonLocal(channels, m.dnl_reduction, m.nl_inner_channels)  # `dnl: false`: SBS's block

        self.backbone = ResNet(m.block, m.layers, m.widths, m.last_stride, m.nl_layers, nonlocal_block)
        dim = self.backbone.out_channels
        self.dim = dim
        self.pool = GeneralizedMeanPooling(m.gem_p, m.gem_learnable, m.gem_eps)
        self.bnneck = BNNeck(dim)
        self.classifier = self._classifier(dim, num_classes)
        self.rp = ReconstructivePooling(dim, m.rp_init) if cfg.rp else None
        if cfg.rp and m.rp_id_loss:
            self.rp_bnneck = BNNeck(dim)
            self.rp_classifier = self._classifier(dim, num_classes)
        else:
            self.rp_bnneck = self.rp_classifier = None
        self.me = MomentumMean(dim, m.me_beta)
        # `loss.bed_learn_scale`: the scale of the features BED sees, learned (as its log) with the rest
        lc = cfg.loss
        self.bed_log_scale = (
            nn.Parameter(torch.tensor(math.log(lc.bed_scale))) if cfg.bed and lc.bed_learn_scale else None
        )

    def bed_scale(self) -> float | torch.Tensor:
        return self.cfg.loss.bed_scale if self.bed_log_scale is None else self.bed_log_scale.exp()

    def _classifier(self, dim: int, num_classes: int) -> nn.Module:
        m = self.cfg.model
        if self.classifier_kind == "circle":
            return CircleSoftmax(dim, num_classes, m.circle_scale, m.circle_margin)
        return CausalNormClassifier(dim, num_classes, m.cls_heads, m.cls_tau, m.cls_gamma)

    def _classification_loss(self, classifier: nn.Module, neck: torch.Tensor, pids: torch.Tensor):
        lc = self.cfg.loss
        if isinstance(classifier, CircleSoftmax):
            return smoothed_cross_entropy(classifier(neck, pids), pids, lc.label_smoothing)
        return classification_loss(classifier(neck), pids, lc.cls_head_loss, lc.label_smoothing)

    def metric_loss(self, features: torch.Tensor, pids: torch.Tensor, branch: str) -> dict[str, torch.Tensor]:
        """The branch's metric loss on the (DDP-gathered) batch, with its operating range."""
        lc = self.cfg.loss
        features, pids = gather_batch(features, pids)
        key = f"range_{branch}"
        out = {f"{key}_feat_norm": features.detach().float().norm(dim=1).mean()}
        if self.cfg.bed:
            scale = self.bed_scale()
            terms = bed_terms(features, pids, lc.bed_alpha, lc.bed_reduction, lc.bed_normalize, scale)
            if isinstance(scale, torch.Tensor):
                out["range_bed_scale"] = scale.detach()
            out.update({
                f"loss_metric_{branch}": lc.bed_weight * terms.loss,
                f"{key}_d_pos": terms.d_pos, f"{key}_d_neg": terms.d_neg,
                f"{key}_bed_pos": terms.pos, f"{key}_bed_neg": terms.neg, f"features_{branch}": features,
            })  # fmt: skip
            return out
        with torch.no_grad():
            z = features.detach().float()
            d_pos, d_neg = mean_pair_distances(euclidean_distances(z, z), pids)
        out.update({
            f"loss_metric_{branch}": batch_hard_triplet_loss(features, pids, lc.triplet_margin),
            f"{key}_d_pos": d_pos, f"{key}_d_neg": d_neg,
        })  # fmt: skip
        return out

    def forward(self, images: torch.Tensor, pids: torch.Tensor | None = None):
        fmap = self.backbone(images)
        pooled = self.pool(fmap)
        if not self.training:
            return pooled if self.retrieval_feature == "pooled" else self.bnneck(pooled)
        if pids is None:
            raise ValueError("train-mode forward needs the identity labels")
        neck = self.bnneck(pooled)
        out = {"loss_cls": self._classification_loss(self.classifier, neck, pids)}
        # BED reads "the feature representation after the pooling layer" (Eq. 3); SBS's triplet the BNNeck output
        metric_global = pooled if self.cfg.bed or self.cfg.loss.triplet_feature == "pooled" else neck
        out.update(self.metric_loss(metric_global, pids, "global"))
        if self.rp is not None:
            pooled_rp = self.rp(fmap)
            out.update(self.metric_loss(pooled_rp, pids, "rp"))
            if self.rp_classifier is not None:
                out["loss_cls_rp"] = self._classification_loss(
                    self.rp_classifier, self.rp_bnneck(pooled_rp), pids
                )
        out["me_batch_mean"] = MomentumMean.batch_mean(pooled)  # Eq. 6 on normalize(GeM output)
        out["feature_map"] = fmap  # in the graph: the engine measures each loss's gradient at the backbone
        return out

    def retrieval_features(self, base: torch.Tensor) -> torch.Tensor:
        """From what eval-mode forward returns: normalize(z) - mu with ME on, normalize(.) with it off."""
        if self.cfg.me:
            return self.me.subtract(base)
        return F.normalize(base.float(), dim=1)

    def frozen_parameters(self) -> list[nn.Parameter]:
        """What the freeze phase keeps fixed: the backbone, (D)NL blocks included (docs/model.md §6.2)."""
        return list(self.backbone.parameters())


def total_loss(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(v for k, v in outputs.items() if k.startswith("loss_"))
