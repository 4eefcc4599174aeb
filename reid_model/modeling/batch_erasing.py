"""Compound Batch Erasing (docs/model.md §4): a batch-level op applied after collation.

The sampled batch X is duplicated; the first copy gets Random Erasing (independent per image),
the second one horizontal stripe erased identically in every image (Batch-constant Erasing, the
image height split into s in {6, 7, 8} parts, one part t erased). Labels and camids are duplicated
to match.

Every parameter (which images, the boxes, the stripe) is drawn on the CPU from an explicit generator,
so a step is reproducible from its seed on any device; the erasing itself is a few whole-batch tensor
ops on the batch's own device (no per-image loop, no host round trip). Noise fill comes from a
generator on that device seeded by one draw of the CPU generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ErasingParams:
    prob: float = 0.5
    area: tuple[float, float] = (0.02, 0.4)
    ratio: float = 0.3  # aspect ratio ~ U(ratio, 1/ratio)
    fill: str = "mean"  # one of choices.ERASE_FILLS; mean: 0 in normalised space (the ImageNet mean pixel) | random: N(0, 1)
    parts: tuple[int, ...] = (6, 7, 8)
    attempts: int = 100


def _noise_generator(gen: torch.Generator, device: torch.device) -> torch.Generator:
    seed = int(torch.randint(0, 2**62, (), generator=gen))
    return torch.Generator(device=device).manual_seed(seed)


def _filled(x: torch.Tensor, mask: torch.Tensor, fill: str, gen: torch.Generator) -> torch.Tensor:
    """x with the pixels under `mask` (broadcast over channels) set to the fill."""
    if fill == "random":
        noise = torch.randn(
            x.shape, generator=_noise_generator(gen, x.device), device=x.device, dtype=x.dtype
        )
        return torch.where(mask, noise, x)
    return x.masked_fill(mask, 0.0)


def erasing_boxes(
    n: int, height: int, width: int, gen: torch.Generator, params: ErasingParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random Erasing's draws for n images: which are erased (bool, n) and their boxes (n x 4: top,
    bottom, left, right; rows and columns [top, bottom) x [left, right)).

    Per image: erased with probability `prob`; then up to `attempts` (area, aspect) pairs, the first
    box that fits inside the image is taken (an image where none fits stays as it is). Positions are
    uniform over the places the box fits.
    """
    erase = torch.rand(n, generator=gen, dtype=torch.float64) < params.prob
    lo, hi = params.area
    shape = (n, params.attempts)
    area = (lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float64)) * height * width
    r = params.ratio
    aspect = r + (1.0 / r - r) * torch.rand(shape, generator=gen, dtype=torch.float64)
    eh = torch.round(torch.sqrt(area * aspect)).long()
    ew = torch.round(torch.sqrt(area / aspect)).long()
    fits = (eh > 0) & (eh < height) & (ew > 0) & (ew < width)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first attempt that fits (0 when none does)
    eh, ew = eh.gather(1, first)[:, 0], ew.gather(1, first)[:, 0]
    erase &= fits.any(dim=1)
    u = torch.rand(n, 2, generator=gen, dtype=torch.float64)
    top = torch.minimum((u[:, 0] * (height - eh + 1)).long(), height - eh)
    left = torch.minimum((u[:, 1] * (width - ew + 1)).long(), width - ew)
    return erase, torch.stack([top, top + eh, left, left + ew], dim=1)


def box_mask(erase: torch.Tensor, boxes: torch.Tensor, height: int, width: int, device) -> torch.Tensor:
    """N x 1 x H x W: True inside each erased image's box."""
    erase, boxes = erase.to(device, non_blocking=True), boxes.to(device, non_blocking=True)
    rows = torch.arange(height, device=device)[None, :, None]
    cols = torch.arange(width, device=device)[None, None, :]
    top, bottom, left, right = (boxes[:, k, None, None] for k in range(4))
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    return (inside & erase[:, None, None])[:, None]


def random_erasing(
    x: torch.Tensor, gen: torch.Generator, params: ErasingParams = ErasingParams()
) -> torch.Tensor:
    """Random Erasing (Zhong et al.) on each image of a N x C x H x W batch; returns a new tensor."""
    n, _, h, w = x.shape
    erase, boxes = erasing_boxes(n, h, w, gen, params)
    return _filled(x, box_mask(erase, boxes, h, w, x.device), params.fill, gen)


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
    if params.fill == "random":  # one noise pattern shared by the batch: the erasing stays batch-constant
        shape = (1, x.shape[1], bottom - top, x.shape[3])
        noise = torch.randn(shape, generator=_noise_generator(gen, x.device), device=x.device, dtype=x.dtype)
        out[:, :, top:bottom, :] = noise
    else:
        out[:, :, top:bottom, :] = 0.0
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
