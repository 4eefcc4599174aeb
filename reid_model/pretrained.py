"""Backbone initialisation from ImageNet weights (torchvision's weights API) or a local state dict.

`imagenet` first looks in the torch hub cache; if the file is not there it asks torchvision to
fetch it, which works online and fails offline with a one-line PretrainedWeightsError naming
`--pretrained PATH` as the way out. A local file is read with weights_only=True.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path

import torch

from reid_model.errors import PretrainedWeightsError
from reid_model.resnet import ResNet

log = logging.getLogger(__name__)


def imagenet_cache_path() -> Path:
    from torchvision.models import ResNet50_Weights

    filename = ResNet50_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def imagenet_state_dict() -> dict[str, torch.Tensor]:
    from torchvision.models import ResNet50_Weights

    cached = imagenet_cache_path()
    if cached.is_file():
        return _read_state(cached)
    log.warning(
        "ImageNet ResNet-50 weights not in the torch hub cache (%s); asking torchvision to fetch them", cached
    )
    try:
        return ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:  # noqa: BLE001 - any network/IO failure becomes one clear message
        raise PretrainedWeightsError(
            f"ImageNet weights unavailable ({exc.__class__.__name__}): not in {cached} and no download "
            "possible; put resnet50-0676ba61.pth there or pass --pretrained PATH to a local state dict"
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


def load_pretrained(backbone: ResNet, spec: str) -> None:
    """Initialise `backbone` from `spec` ("imagenet" or a file path); "" leaves the random init."""
    if not spec:
        return
    state = imagenet_state_dict() if spec == "imagenet" else _read_state(Path(spec))
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
