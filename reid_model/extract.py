"""Retrieval features and the query x gallery distance matrix (spec §5.2, §6.3).

Features are the eval-mode BNNeck outputs (optionally averaged with the flipped image), then
L2-normalised with the ME mean subtracted. Distances: cosine (1 - cos, re-normalising the
ME-subtracted features, FastReID's default) or squared Euclidean: the definitions of the scorer's
`benchmarks.feature_distances`, which evaluation during training calls directly. Here they are
computed in torch, because the written predictions are byte-for-byte those of torch's float32
normalisation and matrix product (numpy's BLAS and float64 norms differ in the last bit for about
a quarter of the entries); tests/test_model_components.py checks the two agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmarks.feature_distances import METRICS
from reid_model.model import ReidModel


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
    """Q x G float32 distances, lower is closer (cosine: 1 - the scorer's similarity)."""
    q, g = query.float(), gallery.float()
    if metric == "cosine":
        return 1.0 - F.normalize(q, dim=1) @ F.normalize(g, dim=1).t()
    if metric == "euclidean":
        sq = q.pow(2).sum(1, keepdim=True) + g.pow(2).sum(1).unsqueeze(0) - 2.0 * q @ g.t()
        return sq.clamp(min=0)
    raise ValueError(f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}")
