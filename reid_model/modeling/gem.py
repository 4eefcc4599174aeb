"""Generalised-mean pooling with a learnable exponent (FastReID SBS's GeM-P; docs/model.md §1.4)."""

from __future__ import annotations

import torch
from torch import nn


class GeneralizedMeanPooling(nn.Module):
    """f = (mean_hw clamp(x, eps)^p)^(1/p); p is one scalar shared by all channels.

    The power is taken in fp32 even under autocast: x^3 of large activations overflows fp16.
    """

    def __init__(self, p: float = 3.0, learnable: bool = True, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        p_tensor = torch.tensor(float(p))
        if learnable:
            self.p = nn.Parameter(p_tensor)
        else:
            self.register_buffer("p", p_tensor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float().clamp(min=self.eps)
            p = self.p.float()
            return x.pow(p).mean(dim=(2, 3)).pow(1.0 / p)
