"""Compound Batch Erasing (docs/model.md §4): a batch-level op applied after collation.

The sampled batch X is duplicated; the first copy gets Random Erasing (independent per image),
the second one horizontal stripe erased identically in every image (Batch-constant Erasing, the
image height split into s in {6, 7, 8} parts, one part t erased). Labels and camids are duplicated
to match. All randomness comes from an explicit generator so a step is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: What an erased region is filled with (`input.re_fill`).


@dataclass(frozen=True)
class ErasingParams:
    prob: float = 0.5
    area: tuple[float, float] = (0.02, 0.4)
    ratio: float = 0.3  # aspect ratio ~ U(ratio, 1/ratio)
    fill: str = (
        "mean"  # one of FILLS; mean: 0 in normalised space (the ImageNet mean pixel) | random: N(0, 1)
    )
    parts: tuple[int, ...] = (6, 7, 8)
    attempts: int = 100


def _uniform(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * torch.rand((), generator=gen).item()


def _fill(region: torch.Tensor, fill: str, gen: torch.Generator) -> torch.Tensor:
    if fill == "random":
        return torch.randn(region.shape, generator=gen).to(region)
    return torch.zeros_like(region)


def random_erasing(
    x: torch.Tensor, gen: torch.Generator, params: ErasingParams = ErasingParams()
) -> torch.Tensor:
    """Random Erasing (Zhong et al.) on each image of a N x C x H x W batch; returns a new tensor."""
    out = x.clone()
    n, _, h, w = x.shape
    for i in range(n):
        if torch.rand((), generator=gen).item() >= params.prob:
            continue
        for _ in range(params.attempts):
            area = _uniform(gen, *params.area) * h * w
            aspect = _uniform(gen, params.ratio, 1.0 / params.ratio)
            eh = int(round(math.sqrt(area * aspect)))
            ew = int(round(math.sqrt(area / aspect)))
            if 0 < eh < h and 0 < ew < w:
                top = int(torch.randint(0, h - eh + 1, (), generator=gen))
                left = int(torch.randint(0, w - ew + 1, (), generator=gen))
                region = out[i, :, top : top + eh, left : left + ew]
                out[i, :, top : top + eh, left : left + ew] = _fill(region, params.fill, gen)
                break
    return out


def stripe_rows(height: int, parts: int, index: int) -> tuple[int, int]:
    """Rows [round(t*H/s), round((t+1)*H/s)) of part t out of s."""
    return int(round(index * height / parts)), int(round((index + 1) * height / parts))


def batch_constant_erasing(
    x: torch.Tensor, gen: torch.Generator, params: ErasingParams = ErasingParams()
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Erase one full-width stripe, the same rows in every image; returns the batch and the rows."""
    s = params.parts[int(torch.randint(0, len(params.parts), (), generator=gen))]
    t = int(torch.randint(0, s, (), generator=gen))
    top, bottom = stripe_rows(x.shape[2], s, t)
    out = x.clone()
    region = out[:, :, top:bottom, :]
    if params.fill == "random":  # one noise pattern shared by the batch: the erasing stays batch-constant
        out[:, :, top:bottom, :] = _fill(region[:1], params.fill, gen).expand_as(region)
    else:
        out[:, :, top:bottom, :] = _fill(region, params.fill, gen)
    return out, (top, bottom)


def compound_batch_erasing(
    x: torch.Tensor,
    pids: torch.Tensor,
    camids: torch.Tensor,
    gen: torch.Generator,
    params: ErasingParams = ErasingParams(),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[RE(X); BcE(X)] with labels and camids duplicated: 2B images out of B."""
    erased = random_erasing(x, gen, params)
    stripe, _ = batch_constant_erasing(x, gen, params)
    return torch.cat([erased, stripe]), torch.cat([pids, pids]), torch.cat([camids, camids])
