"""`opreid train`: train the reference model on a built dataset (multi-GPU: `torchrun -m opreid train`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from manifests import progress_enabled, progress_option


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config", default=None, help="YAML config file or preset name (tiny, opreid_r50, ...)."
)
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
@progress_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.argument("overrides", nargs=-1)
def train(config, data, output, resume, pretrained, device, progress, as_json, overrides):
    """Train on OUT/train.parquet; evaluate on query/gallery when OUT/private/ground_truth.parquet exists.

    OVERRIDES are dotted key=value pairs, e.g. solver.max_epochs=5 cbe=false.
    """
    from reid_model.training import train_model

    summary = train_model(
        config, data, output, resume=resume, pretrained=pretrained, device=device,
        progress=progress_enabled(progress), overrides=tuple(overrides),
    )  # fmt: skip
    if summary is None:  # a DDP rank other than 0
        return
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        ev = summary["final_eval"]
        tail = f", mAP {ev['mAP']:.4f}, rank-1 {ev['rank1']:.4f}" if ev else ""
        click.echo(
            f"trained {summary['iteration']}/{summary['total_iters']} iterations{tail}; "
            f"checkpoint {summary['last_checkpoint']}"
        )
