"""`opreid extract`: a checkpoint and a built dataset -> Q x G distance matrix (.npy) or features (.npz)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmarks.cli.rerank_options import rerank_options, rerank_settings
from benchmarks.metrics.distances import METRICS
from manifests import progress_enabled, progress_option


@click.command("extract", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--checkpoint", required=True, type=click.Path(path_type=Path), help="A checkpoint from opreid train."
)
@click.option("--data", required=True, type=click.Path(path_type=Path), help="Built dataset folder OUT.")
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(path_type=Path),
    help="Distance matrix .npy (Q x G float32, public query/gallery order).",
)
@click.option(
    "--features",
    default=None,
    type=click.Path(path_type=Path),
    help="Write query/gallery features to this .npz instead of (or besides) distances.",
)
@click.option(
    "--flip/--no-flip",
    default=None,
    help="Average with the flipped image (default: the checkpoint's test.flip).",
)
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    default=None,
    help="Distance (default: the checkpoint's test.metric).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per forward pass.")
@click.option("--num-workers", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@progress_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
@rerank_options
def extract(
    checkpoint, data, output, features, flip, metric, batch_size, num_workers, device, progress, as_json,
    **rerank,
):  # fmt: skip
    """Features are normalize(GeM output) minus the ME mean (SBS: the BNNeck output); rows follow query.parquet,
    columns gallery.parquet."""
    from reid_model.engine.predictions import write_submission

    summary = write_submission(
        checkpoint, data, output, features, flip=flip, metric=metric, batch_size=batch_size,
        num_workers=num_workers, device=device, progress=progress_enabled(progress), rerank=rerank_settings(rerank),
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(summary.as_dict(), sort_keys=True))
    else:
        click.echo(f"wrote {', '.join(summary.written)} ({summary.queries} x {summary.gallery})")
