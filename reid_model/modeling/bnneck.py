"""BNNeck: a BatchNorm over the pooled feature with a frozen zero bias (docs/model.md §1.5).

The classifier reads its output; the retrieval feature is its output in eval mode (running stats).
"""

from __future__ import annotations

import torch
from torch import nn


class BNNeck(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, eps=1e-5, momentum=0.1)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)
