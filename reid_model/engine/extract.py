"""Retrieval features and the query x gallery distance matrix (docs/model.md §5.2, §6.3).

Features are what the eval-mode model returns (the GeM output with ME, SBS's BNNeck output
without; optionally averaged with the flipped image), then L2-normalised with the ME mean subtracted. Distances are the scorer's (`benchmarks.metrics.distances`,
numpy backend so the bytes do not depend on whether faiss is installed): cosine (1 - cos,
re-normalising the ME-subtracted features, FastReID's default) or squared Euclidean.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader

from benchmarks.metrics.distances import METRICS, feature_distances
from manifests import progress_bar
from reid_model.modeling.model import ReidModel

__all__ = ["METRICS", "distance_matrix", "extract_features"]


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
        for images in progress_bar(loader, desc=desc, unit="batch", enabled=progress):
            images = images.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, enabled=device.type == "cuda"):
                base = model(images).float()
                if flip:
                    base = (base + model(torch.flip(images, dims=[3])).float()) / 2
            chunks.append(model.retrieval_features(base).cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros(0, model.dim)
    return torch.cat(chunks)


def distance_matrix(query: torch.Tensor, gallery: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Q x G float32 distances, lower is closer (cosine: 1 - the scorer's similarity)."""
    source = feature_distances(query.float().numpy(), gallery.float().numpy(), metric, backend="numpy")
    block = source.rows(0, source.num_query)
    dist = np.float32(1.0) - block if source.similarity else np.maximum(block, np.float32(0.0))
    return torch.from_numpy(np.ascontiguousarray(dist, dtype=np.float32))
