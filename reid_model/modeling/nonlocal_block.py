"""The non-local block of FastReID's strong baseline (SBS): the `dnl: false` ablation (docs/model.md §1.2).

The "dot product" form of Wang et al.: 1x1 convs give query (theta), key (phi) and value (g)
embeddings of width C' = C / reduction; the affinity is the plain dot product divided by the number
of positions L (no softmax, no whitening, no unary term); the aggregate goes through a 1x1 conv and
a BN whose weight and bias start at zero, so the block is an exact identity at initialisation.
The embedding convs keep PyTorch's default initialisation, as in FastReID.

FastReID computes its inner width as `reduc_ratio // reduc_ratio`, i.e. C' = 1 (a known bug,
JDAI-CV/fast-reid#558: "no performance gain if setting to in_channels/2"). `inner_channels` = 1
reproduces FastReID's block (the R50 presets, so that their switched-off baseline is FastReID's
SBS); 0 gives C' = C / reduction, as the code intends.
"""

from __future__ import annotations

import torch
from torch import nn


class NonLocal(nn.Module):
    def __init__(self, channels: int, reduction: int = 2, inner_channels: int = 0):
        super().__init__()
        inner = inner_channels or channels // reduction
        self.inner = inner
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, inner, 1)
        self.out = nn.Conv2d(inner, channels, 1)
        self.out_bn = nn.BatchNorm2d(channels)
        nn.init.zeros_(self.out_bn.weight)
        nn.init.zeros_(self.out_bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        q = self.query(x).flatten(2)  # N x C' x L
        k = self.key(x).flatten(2)
        v = self.value(x).flatten(2)
        affinity = torch.bmm(q.transpose(1, 2), k) / k.shape[2]  # N x L x L, divided by L
        y = torch.bmm(v, affinity.transpose(1, 2))  # y_i = sum_j f_ij v_j
        return x + self.out_bn(self.out(y.view(n, self.inner, h, w)))
