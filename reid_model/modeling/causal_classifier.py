"""Multi-head causal-norm classifier (Tang et al. 2020) and its label-smoothed loss (docs/model.md §5.1).

Per head h: logit_c^h = (tau / H) <x^h / |x^h|, w_c^h / (|w_c^h| + gamma)>. The classifier returns
the per-head logits (H x N x K); `classification_loss` combines them either as Tang does (one CE
on the summed logits, the default) or paper-literally (a sum of per-head CEs at scale tau).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from reid_model.choices import HEAD_LOSSES


class CausalNormClassifier(nn.Module):
    def __init__(
        self, dim: int, num_classes: int, heads: int = 2, tau: float = 16.0, gamma: float = 1.0 / 32
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"feature dim {dim} is not divisible by {heads} heads")
        self.heads, self.tau, self.gamma = heads, tau, gamma
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        bound = 1.0 / math.sqrt(dim)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-head logits, H x N x K (sum over dim 0 for Tang's classifier output)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            xs = x.float().chunk(self.heads, dim=1)
            ws = self.weight.float().chunk(self.heads, dim=1)
            scale = self.tau / self.heads
            out = []
            for xh, wh in zip(xs, ws, strict=True):
                xn = xh / (xh.norm(dim=1, keepdim=True) + 1e-12)
                wn = wh / (wh.norm(dim=1, keepdim=True) + self.gamma)
                out.append(scale * xn @ wn.t())
            return torch.stack(out)


def smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """FastReID's label smoothing: 1 - eps on the target, eps / (K - 1) elsewhere; mean over non-zero losses."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    k = logits.shape[1]
    if epsilon > 0 and k > 1:
        dist = torch.full_like(log_probs, epsilon / (k - 1))
        dist.scatter_(1, targets.view(-1, 1), 1.0 - epsilon)
    else:
        dist = F.one_hot(targets, k).to(log_probs)
    per_sample = -(dist * log_probs).sum(1)
    nonzero = (per_sample > 0).sum().clamp(min=1)
    return per_sample.sum() / nonzero


def classification_loss(
    head_logits: torch.Tensor, targets: torch.Tensor, mode: str = "sum_logits", epsilon: float = 0.1
) -> torch.Tensor:
    if mode == "sum_logits":
        return smoothed_cross_entropy(head_logits.sum(0), targets, epsilon)
    if mode == "per_head":
        h = head_logits.shape[0]
        return sum(smoothed_cross_entropy(h * logits, targets, epsilon) for logits in head_logits)
    raise ValueError(f"unknown head loss {mode!r}; expected one of {', '.join(HEAD_LOSSES)}")
