"""Bounded Exponential Distance loss, Eq. 3 of the paper (docs/model.md §3).

Per pair: y (1 - exp(-a d)) + (1 - y) exp(-a d), d the Euclidean distance, a = 0.3. The paper does
not say which pairs or how to average; the default uses every pair i != j and averages positives
and negatives separately (otherwise negatives dominate). Computed in fp32 even under autocast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REDUCTIONS = ("separate", "all_pairs_mean", "per_anchor", "batch_hard")


def euclidean_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sqrt(clamp(|a|^2 + |b|^2 - 2 a.b, 1e-12)): the clamp keeps sqrt's gradient finite at d = 0."""
    sq = a.pow(2).sum(1, keepdim=True) + b.pow(2).sum(1).unsqueeze(0) - 2.0 * a @ b.t()
    return sq.clamp(min=1e-12).sqrt()


def _masks(pids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = pids.view(-1, 1) == pids.view(1, -1)
    eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    return same & ~eye, ~same


def bed_loss(
    features: torch.Tensor,
    pids: torch.Tensor,
    alpha: float = 0.3,
    reduction: str = "separate",
    normalize: bool = False,
) -> torch.Tensor:
    """BED over a batch of N features (N x D) with identity labels (N,)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown BED reduction {reduction!r}")
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.float()
        if normalize:
            z = F.normalize(z, dim=1)
        sim = torch.exp(-alpha * euclidean_distances(z, z))  # exp(-a d), in (0, 1]
        pos, neg = _masks(pids)
        pos_loss = 1.0 - sim  # per-pair loss of positive pairs
        neg_loss = sim
        zero = z.new_zeros(())
        if reduction == "separate":
            p = pos_loss[pos].mean() if pos.any() else zero
            n = neg_loss[neg].mean() if neg.any() else zero
            return p + n
        if reduction == "all_pairs_mean":
            pairs = pos | neg
            return torch.where(pos, pos_loss, neg_loss)[pairs].mean()
        if reduction == "per_anchor":
            p_cnt, n_cnt = pos.sum(1), neg.sum(1)
            p = (pos_loss * pos).sum(1) / p_cnt.clamp(min=1)
            n = (neg_loss * neg).sum(1) / n_cnt.clamp(min=1)
            return (p + n).mean()
        # batch_hard: hardest positive (largest d = smallest sim) and hardest negative per anchor
        valid = pos.any(1) & neg.any(1)
        hard_pos = torch.where(pos, sim, torch.full_like(sim, 2.0)).min(1).values
        hard_neg = torch.where(neg, sim, torch.full_like(sim, -1.0)).max(1).values
        if not valid.any():
            return zero
        return (1.0 - hard_pos[valid].mean()) + hard_neg[valid].mean()
