"""`opreid extract`: a checkpoint and a built dataset -> Q x G distance matrix (.npy) or features (.npz)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reid_model.cli_errors import one_line_errors


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
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
    type=click.Choice(["cosine", "euclidean"]),
    default=None,
    help="Distance (default: the checkpoint's test.metric).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per forward pass.")
@click.option("--num-workers", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def extract(
    checkpoint, data, output, features, flip, metric, batch_size, num_workers, device, progress, as_json
):
    """Features are normalise(BNNeck) minus the ME mean; rows follow query.parquet, columns gallery.parquet."""
    with one_line_errors("extract"):
        summary = _run(
            checkpoint, data, output, features, flip, metric, batch_size, num_workers, device, progress
        )
        if as_json:
            click.echo(json.dumps(summary, sort_keys=True))
        else:
            click.echo(
                f"wrote {', '.join(summary['written'])} ({summary['queries']} x {summary['gallery']})",
                err=True,
            )


def _run(checkpoint, data, output, features, flip, metric, batch_size, num_workers, device, progress):
    from reid_model.errors import CheckpointError, ConfigError, DataError

    # user mistakes are caught before torch is imported, so they fail fast
    if output is None and features is None:
        raise ConfigError("nothing to write: give -o predictions.npy and/or --features F.npz")
    if not Path(data).is_dir():
        raise DataError(f"dataset folder not found: {data}")
    if not Path(checkpoint).is_file():
        raise CheckpointError(f"checkpoint not found: {checkpoint}")

    import numpy as np

    from manifests import atomic_path
    from reid_model.checkpoint import build_model, checkpoint_config, load_checkpoint
    from reid_model.data import image_loader, read_split
    from reid_model.distributed import resolve_device
    from reid_model.extract import distance_matrix, extract_features
    from reid_model.transforms import test_transform

    state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state)
    model = build_model(state, cfg)
    dev = resolve_device(device)
    model.to(dev)
    flip = cfg.test.flip if flip is None else flip
    metric = metric or cfg.test.metric
    batch_size = batch_size or cfg.test.batch_size
    transform = test_transform(cfg.input)
    feats = {}
    for split in ("query", "gallery"):
        records = read_split(data, split, with_truth=False)
        loader = image_loader(records.paths, transform, batch_size, num_workers)
        feats[split] = extract_features(model, loader, dev, flip, progress, desc=split)
    written = []
    if features is not None:
        with atomic_path(features, suffix=".npz") as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                query=feats["query"].numpy().astype(np.float32),
                gallery=feats["gallery"].numpy().astype(np.float32),
            )
        written.append(str(features))
    if output is not None:
        dist = distance_matrix(feats["query"], feats["gallery"], metric).numpy().astype(np.float32)
        with atomic_path(output, suffix=".npy") as tmp, open(tmp, "wb") as fh:
            np.save(fh, dist, allow_pickle=False)
        written.append(str(output))
    return {
        "written": written,
        "queries": int(feats["query"].shape[0]),
        "gallery": int(feats["gallery"].shape[0]),
        "dim": int(feats["query"].shape[1]),
        "metric": metric,
        "flip": bool(flip),
    }
