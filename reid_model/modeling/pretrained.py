"""Backbone initialisation from ImageNet weights (torchvision's weights API) or a local state dict.

`imagenet` reads torchvision's ResNet-50 weights from the torch hub cache. Nothing is downloaded
unless the user says so (`--allow-download`, `model.allow_download: true`): then torchvision fetches
the file into the cache. Without that permission, or offline, a missing file is a one-line
PretrainedWeightsError naming the ways out. A local file is read with weights_only=True.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch

from reid_model.errors import PretrainedWeightsError
from reid_model.modeling.resnet import ResNet

log = logging.getLogger(__name__)


def imagenet_cache_path() -> Path:
    from torchvision.models import ResNet50_Weights

    filename = ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_state_dict(allow_download: bool = False) -> dict[str, torch.Tensor]:
    from torchvision.models import ResNet50_Weights

    cached = imagenet_cache_path()
    if cached.is_file():
        return _read_state(cached)
    if not allow_download:
        raise PretrainedWeightsError(
            f"ImageNet weights not found at {cached}; put {cached.name} there, pass --pretrained PATH to a "
            "local state dict, or allow the download with --allow-download (model.allow_download=true)"
        )
    log.warning("ImageNet ResNet-50 weights not in the torch hub cache; downloading them to %s", cached)
    try:
        return ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:  # noqa: BLE001 - any network/IO failure becomes one clear message
        raise PretrainedWeightsError(
            f"ImageNet weights could not be downloaded ({exc.__class__.__name__}) and are not in {cached}; "
            f"put {cached.name} there or pass --pretrained PATH to a local state dict"
        ) from None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights not found: {path} (check --pretrained)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise PretrainedWeightsError(
            f"cannot read pretrained weights {path}: {exc.__class__.__name__}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path} is not a state dict of tensors")
    return state


def load_pretrained(backbone: ResNet, spec: str, allow_download: bool = False) -> None:
    """Initialise `backbone` from `spec` ("imagenet" or a file path); "" leaves the random init."""
    if not spec:
        return
    state = imagenet_state_dict(allow_download) if spec == "imagenet" else _read_state(Path(spec))
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    try:
        missing = backbone.load_torchvision_state(state)
    except (KeyError, RuntimeError) as exc:
        raise PretrainedWeightsError(f"pretrained weights {spec} do not fit the backbone: {exc}") from None
    resnet_missing = [
        k for k in missing if not k.startswith("nonlocal_blocks.") and not k.endswith("num_batches_tracked")
    ]
    if resnet_missing:
        raise PretrainedWeightsError(
            f"pretrained weights {spec} lack {len(resnet_missing)} backbone tensor(s), e.g. {resnet_missing[0]!r}"
        )
    log.info("backbone initialised from %s (%d non-local tensors left at init)", spec, len(missing))
