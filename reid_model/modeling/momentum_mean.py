"""bad-Momentum-effect Elimination (ME), Eq. 6 of the paper (docs/model.md §5.2).

A running mean mu <- beta mu + (1 - beta) mean_batch(normalize(z)) of the L2-normalised
global-pooled training features (the GeM output, before the BNNeck), kept as a buffer so it
travels in checkpoints, and subtracted from the same normalised feature of every query and gallery
image at inference: one feature space throughout. (Tracking the train-mode BNNeck output instead
gives mu ~ 0, since that output has zero batch mean by construction, and ME does nothing.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MomentumMean(nn.Module):
    def __init__(self, dim: int, beta: float = 0.9):
        super().__init__()
        self.beta = beta
        self.register_buffer("mean", torch.zeros(dim))

    @staticmethod
    def batch_mean(features: torch.Tensor) -> torch.Tensor:
        """The batch term of Eq. 6: the mean of the L2-normalised features."""
        return F.normalize(features.detach().float(), dim=1).mean(0)

    @torch.no_grad()
    def update(self, batch_mean: torch.Tensor) -> None:
        self.mean.mul_(self.beta).add_(batch_mean.to(self.mean), alpha=1.0 - self.beta)

    def subtract(self, features: torch.Tensor) -> torch.Tensor:
        """normalize(z) - mu: the retrieval feature."""
        return F.normalize(features.float(), dim=1) - self.mean
