"""Batch-hard triplet loss of the FastReID strong baseline: the metric loss of the `bed: false` ablation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from reid_model.losses.bed_loss import euclidean_distances, pair_masks


def batch_hard_triplet_loss(features: torch.Tensor, pids: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Hardest positive / hardest negative per anchor; margin 0 is the soft-margin softplus form (SBS)."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        z = features.float()
        d = euclidean_distances(z, z)
        pos, neg = pair_masks(pids)
        valid = pos.any(1) & neg.any(1)
        if not valid.any():
            return z.new_zeros(())
        d_ap = torch.where(pos, d, torch.full_like(d, -1.0)).max(1).values[valid]
        d_an = torch.where(neg, d, torch.full_like(d, float("inf"))).min(1).values[valid]
        if margin > 0:
            return F.relu(d_ap - d_an + margin).mean()
        return F.softplus(d_ap - d_an).mean()
