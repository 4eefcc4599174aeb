"""Reconstructive pooling, Eq. 2: f_r = (W^v F) softmax(W^m F)^T (docs/model.md §2). Training only.

The softmax runs over spatial positions (an attention pooling). Recommended init W^m = 0,
W^v = I makes f_r equal global average pooling at step 0; `init="normal"` is the DNL-style
N(0, 0.01) alternative.
"""

from __future__ import annotations

import torch
from torch import nn

#: Initialisations of W^m and W^v (`model.rp_init`).
from reid_model.choices import RP_INITS as INITS


class ReconstructivePooling(nn.Module):
    def __init__(self, channels: int, init: str = "identity"):
        super().__init__()
        self.mask = nn.Conv2d(channels, 1, 1)
        self.value = nn.Conv2d(channels, channels, 1, bias=False)
        if init == "identity":
            nn.init.zeros_(self.mask.weight)
            with torch.no_grad():
                self.value.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        elif init == "normal":
            nn.init.normal_(self.mask.weight, 0.0, 0.01)
            nn.init.normal_(self.value.weight, 0.0, 0.01)
        else:
            raise ValueError(
                f"unknown reconstructive pooling init {init!r}; expected one of {', '.join(INITS)}"
            )
        nn.init.zeros_(self.mask.bias)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        attention = torch.softmax(self.mask(feature_map).flatten(2).float(), dim=-1)  # N x 1 x L
        values = self.value(feature_map).flatten(2)  # N x C x L
        return torch.bmm(values.float(), attention.transpose(1, 2)).squeeze(2)  # N x C
