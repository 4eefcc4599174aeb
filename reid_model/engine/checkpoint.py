"""Checkpoints: atomic writes, `weights_only=True` reads, and rebuilding a model from one.

A checkpoint is a plain dict of tensors and primitive values: the resolved config (as a dict),
the number of training identities, the model state (ME buffer included) and, for resuming, the
optimiser, scheduler, grad-scaler and RNG states with the count of completed iterations.
"""

from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from manifests import atomic_path
from reid_model.config import Config, config_from_dict
from reid_model.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)

FORMAT = "opreid-reid-model"
VERSION = 2  # 2: ME and retrieval on the GeM output, SBS classifier and non-local block


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    log.info("checkpoint written: %s (iteration %s)", path, state.get("iteration"))
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an opreid reference-model checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {state.get('version')} (this opreid reads {VERSION})"
        )
    for key in ("config", "num_classes", "model"):
        if key not in state:
            raise CheckpointError(f"{path}: checkpoint has no {key!r} entry")
    return state


def checkpoint_config(state: dict[str, Any]) -> Config:
    try:
        return config_from_dict(state["config"])
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint config does not load: {exc}") from None


def build_model(state: dict[str, Any], cfg: Config | None = None):
    """The model of a checkpoint, weights loaded, in eval mode (on the CPU)."""
    from reid_model.modeling.model import ReidModel

    cfg = cfg or checkpoint_config(state)
    model = ReidModel(cfg, int(state["num_classes"]))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint weights do not fit its config: {first}") from None
    return model.eval()
