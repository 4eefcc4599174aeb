"""Retrieval features and the query x gallery distance matrix (docs/model.md §5.2, §6.3).

Features are the eval-mode BNNeck outputs (optionally averaged with the flipped image), then
L2-normalised with the ME mean subtracted. Distances: cosine (1 - cos, re-normalising the
ME-subtracted features, FastReID's default) or squared Euclidean.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from reid_model.model import ReidModel

METRICS = ("cosine", "euclidean")


@torch.no_grad()
def extract_features(
    model: ReidModel,
    loader: DataLoader,
    device: torch.device,
    flip: bool = False,
    progress: bool = True,
    desc: str = "features",
) -> torch.Tensor:
    """N x D retrieval features for every image of `loader`, in loader order, on the CPU."""
    was_training = model.training
    model.eval()
    chunks = []
    try:
        for images in tqdm(loader, desc=desc, disable=not progress, leave=False):
            images = images.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
                neck = model(images).float()
                if flip:
                    neck = (neck + model(torch.flip(images, dims=[3])).float()) / 2
            chunks.append(model.retrieval_features(neck).cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros(0, model.dim)
    return torch.cat(chunks)


def distance_matrix(query: torch.Tensor, gallery: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Q x G float32 distances, lower is closer."""
    q, g = query.float(), gallery.float()
    if metric == "cosine":
        return 1.0 - F.normalize(q, dim=1) @ F.normalize(g, dim=1).t()
    if metric == "euclidean":
        sq = q.pow(2).sum(1, keepdim=True) + g.pow(2).sum(1).unsqueeze(0) - 2.0 * q @ g.t()
        return sq.clamp(min=0)
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
