"""Bounded Exponential Distance loss, Eq. 3 of the paper (docs/model.md §3).

Per pair: y (1 - exp(-a d)) + (1 - y) exp(-a d), d the Euclidean distance, a = 0.3. The paper does
not say which pairs or how to average; the default uses every pair i != j and averages positives
and negatives separately (otherwise negatives dominate). Computed in fp32 even under autocast.

`bed_terms` keeps the positive-pair and negative-pair parts apart (their sum is the loss) with the
mean distances they see, so that training can log BED's operating range: at distances of 20-40
(raw ResNet-50 features) exp(-0.3 d) is ~0 and both parts sit at their bounds with no gradient.

The features BED sees are `scale * normalize(z)` (or `scale * z` without normalisation). Only the
product `alpha * scale` enters the loss: on L2-normalised features, where d <= sqrt(2), the paper's
alpha = 0.3 at scale 1 keeps exp(-alpha d) within [0.65, 1], an almost linear loss with a weak
gradient; a scale of ~10 puts the same alpha where the exponential bends (docs/model.md §3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from reid_model.choices import BED_REDUCTIONS as REDUCTIONS


def euclidean_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sqrt(clamp(|a|^2 + |b|^2 - 2 a.b, 1e-12)): the clamp keeps sqrt's gradient finite at d = 0."""
    sq = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.t()
    return sq.clamp(min=1e-12).sqrt()


def pair_masks(pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive pairs (same identity, i != j) and negative pairs of a batch."""
    same = pids.view(-1, 1) == pids.view(1, -1)
    eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    return same & ~eye, ~same


def mean_pair_distances(dist: torch.Tensor, pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean distance over positive pairs and over negative pairs (NaN when a batch has none), detached."""
    pos, neg = pair_masks(pids)
    d = dist.detach()
    nan = d.new_full((), float("nan"))
    return (d[pos].mean() if pos.any() else nan), (d[neg].mean() if neg.any() else nan)


@dataclass
class BedTerms:
    """BED split into its positive-pair and negative-pair parts (loss = pos + neg)."""

    pos: torch.Tensor
    neg: torch.Tensor
    d_pos: torch.Tensor  # mean distance of positive pairs, detached
    d_neg: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return self.pos + self.neg


def bed_terms(
    features: torch.Tensor,
    pids: torch.Tensor,
    alpha: float = 0.3,
    reduction: str = "separate",
    normalize: bool = False,
    scale: float | torch.Tensor = 1.0,
) -> BedTerms:
    """BED over a batch of N features (N x D) with identity labels (N,), as its two parts; the
    distances are taken between `scale * normalize(features)` (`scale * features` unnormalised)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown BED reduction {reduction!r}")
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.float()
        if normalize:
            z = F.normalize(z, dim=1)
        if not (isinstance(scale, float | int) and scale == 1):
            z = z * (scale.float() if isinstance(scale, torch.Tensor) else float(scale))
        dist = euclidean_distances(z, z)
        sim = torch.exp(-alpha * dist)  # exp(-a d), in (0, 1]
        pos, neg = pair_masks(pids)
        d_pos, d_neg = mean_pair_distances(dist, pids)
        pos_loss = 1.0 - sim  # per-pair loss of positive pairs
        neg_loss = sim
        zero = z.new_zeros(())
        if reduction == "separate":
            p = pos_loss[pos].mean() if pos.any() else zero
            n = neg_loss[neg].mean() if neg.any() else zero
            return BedTerms(p, n, d_pos, d_neg)
        if reduction == "all_pairs_mean":
            pairs = max(int((pos | neg).sum()), 1)
            return BedTerms(pos_loss[pos].sum() / pairs, neg_loss[neg].sum() / pairs, d_pos, d_neg)
        if reduction == "per_anchor":
            p_cnt, n_cnt = pos.sum(1), neg.sum(1)
            p = (pos_loss * pos).sum(1) / p_cnt.clamp(min=1)
            n = (neg_loss * neg).sum(1) / n_cnt.clamp(min=1)
            return BedTerms(p.mean(), n.mean(), d_pos, d_neg)
        # batch_hard: hardest positive (largest d = smallest sim) and hardest negative per anchor
        valid = pos.any(1) & neg.any(1)
        if not valid.any():
            return BedTerms(zero, zero, d_pos, d_neg)
        hard_pos = torch.where(pos, sim, torch.full_like(sim, 2.0)).min(1).values
        hard_neg = torch.where(neg, sim, torch.full_like(sim, -1.0)).max(1).values
        return BedTerms(1.0 - hard_pos[valid].mean(), hard_neg[valid].mean(), d_pos, d_neg)


def bed_loss(
    features: torch.Tensor,
    pids: torch.Tensor,
    alpha: float = 0.3,
    reduction: str = "separate",
    normalize: bool = False,
    scale: float | torch.Tensor = 1.0,
) -> torch.Tensor:
    """BED over a batch of N features (N x D) with identity labels (N,)."""
    return bed_terms(features, pids, alpha, reduction, normalize, scale).loss
