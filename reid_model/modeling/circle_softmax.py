"""CircleSoftmax, the classification layer of FastReID's strong baseline (docs/model.md §5.1).

Cosine logits s_c = cos(b, w_c) between the BNNeck output and each class weight (initialised
N(0, 0.01), no bias). In training they are re-weighted as in Sun et al.'s circle loss (CVPR 2020):
the target logit becomes a_p (s_p - (1 - m)) with a_p = max(1 + m - s_p, 0), every other logit
a_n (s_n - m) with a_n = max(s_n + m, 0) (both weights detached), and everything is scaled by s.
SBS uses s = 64, m = 0.35 with label-smoothed cross-entropy on top.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CircleSoftmax(nn.Module):
    def __init__(self, dim: int, num_classes: int, scale: float = 64.0, margin: float = 0.35):
        super().__init__()
        self.scale, self.margin = scale, margin
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.normal_(self.weight, 0.0, 0.01)

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return F.normalize(x.float(), dim=1) @ F.normalize(self.weight.float(), dim=1).t()

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training logits (N x K) for the cross-entropy, margins applied to each sample's target."""
        cos = self.cosine(x)
        m = self.margin
        alpha_p = (1.0 + m - cos.detach()).clamp(min=0.0)
        alpha_n = (cos.detach() + m).clamp(min=0.0)
        target = F.one_hot(targets, cos.shape[1]).bool()
        logits = torch.where(target, alpha_p * (cos - (1.0 - m)), alpha_n * (cos - m))
        return self.scale * logits
