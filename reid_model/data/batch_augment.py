"""The per-image training transforms of docs/model.md §6.2 on whole uint8 batches, where the model runs.

The crops come from the decoded-crop cache already resized to the input size (crop_cache.py), so what
is left per step is: AutoAugment (probability `autoaug_p`, ImageNet policy), horizontal flip, zero
padding + random crop back to the input size, and the ImageNet normalisation. Each is one or a few
tensor ops over the batch on its device (the GPU when training runs there); every random choice is
drawn per image on the CPU from the step's generator, so a step's batch depends only on (seed, step,
rank), on any device and after any resume.

The AutoAugment policy is torchvision's (the one the PIL path applies) and each operation is
torchvision's tensor kernel; images that drew the same operation and magnitude are transformed together.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
import torchvision.transforms.v2.functional as F
from torchvision import transforms as T

from reid_model.config import InputConfig
from reid_model.data.transforms import IMAGENET_MEAN, IMAGENET_STD

#: The ImageNet sub-policies: pairs of (operation, probability, magnitude bin or None).
POLICY = tuple(T.AutoAugment(T.AutoAugmentPolicy.IMAGENET).policies)
MAGNITUDE_BINS = 10
NEAREST = F.InterpolationMode.NEAREST


def magnitudes(op: str, height: int, width: int) -> tuple[torch.Tensor, bool]:
    """The magnitude of each bin of `op` on an H x W image, and whether it takes a random sign
    (the AutoAugment paper's ranges, as torchvision scales them)."""
    bins = MAGNITUDE_BINS
    signed = {
        "ShearX": torch.linspace(0.0, 0.3, bins),
        "ShearY": torch.linspace(0.0, 0.3, bins),
        "TranslateX": torch.linspace(0.0, 150.0 / 331.0 * width, bins),
        "TranslateY": torch.linspace(0.0, 150.0 / 331.0 * height, bins),
        "Rotate": torch.linspace(0.0, 30.0, bins),
        "Brightness": torch.linspace(0.0, 0.9, bins),
        "Color": torch.linspace(0.0, 0.9, bins),
        "Contrast": torch.linspace(0.0, 0.9, bins),
        "Sharpness": torch.linspace(0.0, 0.9, bins),
    }
    if op in signed:
        return signed[op], True
    if op == "Posterize":
        return 8 - (torch.arange(bins) / ((bins - 1) / 4)).round().int(), False
    if op == "Solarize":
        return torch.linspace(255.0, 0.0, bins), False
    return torch.tensor(0.0), False


def apply_op(images: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """One AutoAugment operation on a uint8 N x 3 x H x W batch (torchvision's kernels, fill 0)."""
    if op in ("ShearX", "ShearY"):
        shear = math.degrees(math.atan(magnitude))
        return F.affine(images, angle=0.0, translate=[0, 0], scale=1.0, interpolation=NEAREST, center=[0, 0],
                        shear=[shear, 0.0] if op == "ShearX" else [0.0, shear])  # fmt: skip
    if op in ("TranslateX", "TranslateY"):
        shift = [int(magnitude), 0] if op == "TranslateX" else [0, int(magnitude)]
        return F.affine(
            images, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0], interpolation=NEAREST
        )
    if op == "Rotate":
        return F.rotate(images, magnitude, interpolation=NEAREST)
    adjust = {"Brightness": F.adjust_brightness, "Color": F.adjust_saturation,
              "Contrast": F.adjust_contrast, "Sharpness": F.adjust_sharpness}  # fmt: skip
    if op in adjust:
        return adjust[op](images, 1.0 + magnitude)
    if op == "Posterize":
        return F.posterize(images, int(magnitude))
    if op == "Solarize":
        return F.solarize(images, magnitude)
    if op == "AutoContrast":
        return F.autocontrast(images)
    if op == "Equalize":
        return F.equalize(images)
    if op == "Invert":
        return F.invert(images)
    raise ValueError(f"unknown AutoAugment operation {op!r}")


def auto_augment(images: torch.Tensor, gen: torch.Generator, prob: float) -> torch.Tensor:
    """AutoAugment (ImageNet policy) on each image with probability `prob`; returns a new batch.

    Per image, as torchvision draws it: a sub-policy, then each of its two operations with its own
    probability and, for the signed ones, a random sign. The second operation sees the first's output.
    """
    n = images.shape[0]
    chosen = torch.rand(n, generator=gen, dtype=torch.float64) < prob
    policy = torch.randint(0, len(POLICY), (n,), generator=gen)
    probs = torch.rand(n, 2, generator=gen)
    signs = torch.randint(0, 2, (n, 2), generator=gen)
    if not chosen.any():
        return images
    out = images.clone()
    height, width = images.shape[-2:]
    for slot in range(2):
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i in torch.nonzero(chosen).flatten().tolist():
            op, p, _ = POLICY[int(policy[i])][slot]
            if float(probs[i, slot]) <= p:
                groups[(int(policy[i]), int(signs[i, slot]))].append(i)
        for (pol, sign), rows in sorted(groups.items()):
            op, _, bin_ = POLICY[pol][slot]
            values, signed = magnitudes(op, height, width)
            magnitude = float(values[bin_]) if bin_ is not None else 0.0
            if signed and sign == 0:
                magnitude = -magnitude
            index = torch.tensor(rows, device=images.device)
            out[index] = apply_op(out[index], op, magnitude)
    return out


def flip_pad_crop(images: torch.Tensor, flip: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
                  padding: int) -> torch.Tensor:  # fmt: skip
    """Flip the chosen images, pad every image by `padding` zeros, crop H x W at (top, left) of the
    padded image: two gathers over the batch."""
    n, c, h, w = images.shape
    device = images.device
    flip, top, left = (t.to(device, non_blocking=True) for t in (flip, top, left))
    padded = torch.nn.functional.pad(images, (padding,) * 4) if padding else images
    rows = top[:, None] + torch.arange(h, device=device)  # N x H
    cols = left[:, None] + torch.arange(w, device=device)  # N x W
    cols = torch.where(flip[:, None], w + 2 * padding - 1 - cols, cols)  # mirror in the padded frame
    out = padded.gather(2, rows[:, None, :, None].expand(n, c, h, padded.shape[3]))
    return out.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in ImageNet-normalised space (ToTensor + Normalize)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def augment_batch(images: torch.Tensor, gen: torch.Generator, cfg: InputConfig) -> torch.Tensor:
    """AutoAugment, flip, pad + crop and normalisation of a uint8 N x 3 x H x W batch at the input size;
    the draws come from `gen` (CPU) in that order, the ops run on the batch's device."""
    n, _, h, w = images.shape
    if (h, w) != (cfg.height, cfg.width):
        raise ValueError(f"batch of {h}x{w} crops for a {cfg.height}x{cfg.width} input")
    if cfg.autoaug_p > 0:
        images = auto_augment(images, gen, cfg.autoaug_p)
    flip = torch.rand(n, generator=gen, dtype=torch.float64) < cfg.flip_p
    span = 2 * cfg.padding + 1
    top = torch.randint(0, span, (n,), generator=gen)
    left = torch.randint(0, span, (n,), generator=gen)
    return normalize(flip_pad_crop(images, flip, top, left, cfg.padding))
