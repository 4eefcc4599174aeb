"""`opreid train`: train the reference model on a built dataset (also `torchrun -m reid_model.train_cli`)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from reid_model.cli_errors import one_line_errors

log = logging.getLogger(__name__)

# Keys that may change when resuming: bookkeeping only, never the model or the optimisation.
RESUMABLE_PREFIXES = ("train.", "test.", "data.num_workers")


def _resolve_config(config: str | None, overrides: tuple[str, ...], resume_state: dict | None):
    from reid_model.config import config_from_dict, flatten_dict, load_config, merge_dicts, parse_overrides
    from reid_model.errors import ConfigError

    if resume_state is None:
        if config is None:
            raise ConfigError("--config is required (a YAML file or a preset: tiny, opreid_r50)")
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
            raise ConfigError(f"cannot change {key!r} when resuming (only train.*, test.*, data.num_workers)")
    return config_from_dict(merge_dicts(base, extra))


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", default=None, help="YAML config file or preset name (tiny, opreid_r50).")
@click.option(
    "--data", "data", required=True, type=click.Path(path_type=Path), help="Built dataset folder OUT."
)
@click.option(
    "-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="Run folder RUN."
)
@click.option(
    "--resume", default=None, help="Checkpoint to continue from, or 'auto' for RUN/checkpoints/last.pt."
)
@click.option("--pretrained", default=None, help="'imagenet' (torchvision weights) or a state-dict path.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.argument("overrides", nargs=-1)
def train(config, data, output, resume, pretrained, device, progress, as_json, overrides):
    """Train on OUT/train.parquet; evaluate on query/gallery when OUT/private/ground_truth.parquet exists.

    OVERRIDES are dotted key=value pairs, e.g. solver.max_epochs=5 cbe=false.
    """
    with one_line_errors("train"):
        summary = _run(config, data, output, resume, pretrained, device, progress, tuple(overrides))
        if summary is not None:
            if as_json:
                click.echo(json.dumps(summary, sort_keys=True))
            else:
                ev = summary["final_eval"]
                tail = f", mAP {ev['mAP']:.4f}, rank-1 {ev['rank1']:.4f}" if ev else ""
                click.echo(
                    f"trained {summary['iteration']}/{summary['total_iters']} iterations{tail}; "
                    f"checkpoint {summary['last_checkpoint']}",
                    err=True,
                )


def _run(config, data, output, resume, pretrained, device, progress, overrides):
    from reid_model.errors import CheckpointError, DataError

    # user mistakes are caught before torch is imported, so they fail fast
    if not Path(data).is_dir():
        raise DataError(f"dataset folder not found: {data}")
    resume_path = None
    if resume == "auto":
        candidate = Path(output) / "checkpoints" / "last.pt"
        resume_path = candidate if candidate.is_file() else None
    elif resume:
        resume_path = Path(resume)
        if not resume_path.is_file():
            raise CheckpointError(f"checkpoint not found: {resume_path}")
    if resume_path is None:
        cfg = _resolve_config(config, overrides, None)

    from reid_model.checkpoint import load_checkpoint
    from reid_model.distributed import init_distributed, shutdown_distributed
    from reid_model.engine import Trainer

    state = load_checkpoint(resume_path) if resume_path else None
    if state is not None:
        cfg = _resolve_config(config, overrides, state)
    if pretrained is not None:
        if state is not None:
            from reid_model.errors import ConfigError

            raise ConfigError("--pretrained has no effect when resuming; drop it")
        cfg.model.pretrained = pretrained
    ctx = init_distributed(device)
    try:
        trainer = Trainer(cfg, data, output, ctx, resume=state, progress=progress)
        summary = trainer.fit()
    finally:
        shutdown_distributed()
    return summary if ctx.is_main else None


if __name__ == "__main__":  # torchrun --nproc_per_node N -m reid_model.train_cli ...
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    train(prog_name="opreid train")
