"""Disentangled Non-Local block (Yin et al. 2020) as the paper places it (docs/model.md §1.3).

Whitened pairwise attention plus a unary (saliency) attention over positions share one value
embedding; the sum goes through a 1x1 conv and a BN whose affine parameters start at zero, so the
block is an exact identity at initialisation and pretrained ResNet behaviour is kept. The
`dnl: false` ablation uses FastReID's own non-local block instead (reid_model/modeling/nonlocal_block.py).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class DisentangledNonLocal(nn.Module):
    def __init__(
        self,
        channels: int,
        reduction: int = 2,
        temperature: float = 0.05,
        use_scale: bool = True,
    ):
        super().__init__()
        inner = channels // reduction
        self.inner = inner
        self.temperature = temperature
        self.use_scale = use_scale
        self.query = nn.Conv2d(channels, inner, 1)
        self.key = nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, inner, 1)
        self.mask = nn.Conv2d(channels, 1, 1)
        self.out = nn.Conv2d(inner, channels, 1, bias=False)
        self.out_bn = nn.BatchNorm2d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in (self.query, self.key, self.value, self.mask):
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)
        nn.init.kaiming_normal_(self.out.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.out_bn.weight)
        nn.init.zeros_(self.out_bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2)  # N x C' x L
        k = self.key(x).flatten(2)
        v = self.value(x).flatten(2)
        q = q - q.mean(dim=2, keepdim=True)  # whitening: the mean query and key over positions
        k = k - k.mean(dim=2, keepdim=True)
        logits = torch.bmm(q.transpose(1, 2), k)  # N x L x L: query position i, key position j
        if self.use_scale:
            logits = logits / math.sqrt(self.inner)
        logits = logits / self.temperature
        pairwise = torch.softmax(logits.float(), dim=-1).to(v.dtype)
        y = torch.bmm(v, pairwise.transpose(1, 2))  # N x C' x L: y_i = sum_j A_ij v_j
        unary = torch.softmax(self.mask(x).flatten(2).float(), dim=-1).to(v.dtype)  # N x 1 x L
        y = y + torch.bmm(v, unary.transpose(1, 2))  # N x C' x 1, broadcast to every position
        y = y.view(n, self.inner, h, w)
        return x + self.out_bn(self.out(y))
