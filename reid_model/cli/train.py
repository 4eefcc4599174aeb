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
@click.option(
    "--pretrained",
    default=None,
    help="'imagenet' (torchvision weights, torch hub cache) or a state-dict path.",
)
@click.option(
    "--allow-download", is_flag=True, default=None,
    help="Let --pretrained imagenet download the weights when they are not cached (model.allow_download).",
)  # fmt: skip
@click.option(
    "--eval-data", "eval_data", multiple=True, type=click.Path(path_type=Path),
    help="Another built dataset to evaluate on during training (repeatable; e.g. train on Market-1501, "
    "evaluate on Occluded-REID).",
)  # fmt: skip
@click.option(
    "--val-ids", type=click.IntRange(min=0), default=None,
    help="Hold out N training identities as a validation query/gallery; best.pt is chosen on it "
    "(data.val_ids; without it only last.pt is written).",
)  # fmt: skip
@click.option(
    "--tensorboard", is_flag=True, default=None,
    help="Also write the scalars to RUN/tensorboard (train.tensorboard; needs opreid[tensorboard]).",
)  # fmt: skip
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@progress_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@click.argument("overrides", nargs=-1)
def train(config, data, output, resume, pretrained, allow_download, eval_data, val_ids, tensorboard, device,
          progress, as_json, overrides):  # fmt: skip
    """Train on OUT/train.parquet; evaluate on the query/gallery of OUT (when OUT/private/ground_truth.parquet
    exists), of every --eval-data release, and of the --val-ids split.

    OVERRIDES are dotted key=value pairs, e.g. solver.max_epochs=5 cbe=false.
    """
    from reid_model.engine.training import train_model

    summary = train_model(
        config, data, output, resume=resume, pretrained=pretrained, device=device,
        progress=progress_enabled(progress), overrides=tuple(overrides), eval_data=tuple(eval_data),
        val_ids=val_ids, allow_download=allow_download, tensorboard=tensorboard,
    )  # fmt: skip
    if summary is None:  # a DDP rank other than 0
        return
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    parts = [f"trained {summary['iteration']}/{summary['total_iters']} iterations"]
    for ev in ([summary["final_val"]] if summary["final_val"] else []) + summary["final_evals"]:
        if ev["mAP"] is not None:
            parts.append(f"{ev['split']} {ev['dataset']}: mAP {ev['mAP']:.4f}, rank-1 {ev['rank1']:.4f}")
    best = f", best {summary['best_checkpoint']}" if summary["best_checkpoint"] else ""
    click.echo(f"{'; '.join(parts)}; checkpoint {summary['last_checkpoint']}{best}")
