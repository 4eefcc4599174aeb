"""`train_model`: the Python API under `opreid train` (config resolution, resume, the trainer)."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from reid_model.errors import CheckpointError, ConfigError, DataError

#: Keys that may change when resuming: bookkeeping only, never the model or the optimisation.
RESUMABLE_PREFIXES = ("train.", "test.", "data.num_workers", "loader.cache_dir", "loader.prefetch")


def resolve_config(config: str | None, overrides: tuple[str, ...] = (), resume_state: dict | None = None):
    """The run's Config: a preset or YAML file plus overrides, or the checkpoint's config when resuming."""
    from reid_model.config import (
        config_from_dict,
        flatten_dict,
        load_config,
        merge_dicts,
        parse_overrides,
        preset_names,
    )

    if resume_state is None:
        if config is None:
            raise ConfigError(f"--config is required (a YAML file or a preset: {', '.join(preset_names())})")
        return load_config(config, overrides)
    base = resume_state["config"]
    if config is not None:
        given = load_config(config).to_dict()
        if given != base:
            changed = sorted(k for k, v in flatten_dict(given).items() if flatten_dict(base).get(k) != v)
            raise ConfigError(
                f"--config differs from the checkpoint's config ({', '.join(changed[:3])}); "
                "omit --config when resuming"
            )
    extra = parse_overrides(overrides)
    for key in flatten_dict(extra):
        if not key.startswith(RESUMABLE_PREFIXES):
            raise ConfigError(
                f"cannot change {key!r} when resuming (only train.*, test.*, data.num_workers, loader.cache_dir, loader.prefetch)"
            )
    return config_from_dict(merge_dicts(base, extra))


def train_model(
    config: str | None,
    data: str | Path,
    output: str | Path,
    *,
    resume: str | Path | None = None,
    pretrained: str | None = None,
    device: str = "auto",
    progress: bool = False,
    overrides: tuple[str, ...] = (),
    eval_data: tuple[str | Path, ...] = (),
    val_ids: int | None = None,
    allow_download: bool | None = None,
    tensorboard: bool | None = None,
) -> dict[str, Any] | None:
    """Train on DATA into the run folder OUTPUT; `resume` is a checkpoint or "auto" (OUTPUT's last.pt).

    `eval_data` are further releases evaluated during training (cross-dataset evaluation);
    `val_ids`, `allow_download` and `tensorboard` are the config keys `data.val_ids`,
    `model.allow_download` and `train.tensorboard` (None: the config's value).
    Returns the run summary on the main process (None on the other DDP ranks).
    """
    # user mistakes are caught before torch is imported, so they fail fast
    if not Path(data).is_dir():
        raise DataError(f"dataset folder not found: {data}")
    for extra in eval_data:
        if not Path(extra).is_dir():
            raise DataError(f"--eval-data: dataset folder not found: {extra}")
    flags = {
        "data.val_ids": val_ids,
        "model.allow_download": allow_download,
        "train.tensorboard": tensorboard,
    }
    overrides = tuple(overrides) + tuple(
        f"{key}={str(value).lower() if isinstance(value, bool) else value}"
        for key, value in flags.items()
        if value is not None
    )
    resume_path = None
    if resume == "auto":
        candidate = Path(output) / "checkpoints" / "last.pt"
        resume_path = candidate if candidate.is_file() else None
    elif resume:
        resume_path = Path(resume)
        if not resume_path.is_file():
            raise CheckpointError(f"checkpoint not found: {resume_path}")
    if resume_path is None:
        cfg = resolve_config(config, overrides, None)

    from reid_model.distributed import init_distributed, shutdown_distributed
    from reid_model.engine.checkpoint import load_checkpoint
    from reid_model.engine.trainer import Trainer

    state = load_checkpoint(resume_path) if resume_path else None
    if state is not None:
        cfg = resolve_config(config, overrides, state)
    if pretrained is not None:
        if state is not None:
            raise ConfigError("--pretrained has no effect when resuming; drop it")
        cfg.model.pretrained = pretrained
    ctx = init_distributed(device)
    trainer = None
    try:
        trainer = Trainer(cfg, data, output, ctx, resume=state, progress=progress, eval_data=eval_data)
        summary = trainer.fit()
    finally:
        # DDP's reducer holds the process group: drop it first, so that the group is torn down here,
        # while every rank is still alive, and not at interpreter exit after a peer has gone.
        del trainer
        gc.collect()
        shutdown_distributed()
    return summary if ctx.is_main else None
