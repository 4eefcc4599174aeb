"""`opreid export`: write a release in another tool's layout and print what was written."""

from __future__ import annotations

import json
from pathlib import Path

import click

from manifests import progress_enabled, progress_option
from opreid_builder.export.formats import FORMATS as EXPORT_FORMATS


@click.command("export")
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "--format", "fmt", type=click.Choice(list(EXPORT_FORMATS)), default="market1501", show_default=True,
    help="market1501: fast-reid/torchreid folders (names carry pids); hf: Hugging Face datasets Parquet shards.",
)  # fmt: skip
@click.option("-o", "--dest", type=click.Path(path_type=Path), required=True, help="New folder to write.")
@click.option(
    "--with-ground-truth", is_flag=True,
    help="hf: add the private query/gallery pids and occlusion flags (host only; never publish the result).",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@progress_option
def export_cmd(
    out: Path, fmt: str, dest: Path, with_ground_truth: bool, as_json: bool, progress: bool | None
) -> None:
    """Export the release OUT for other tools.

    market1501 writes bounding_box_train/, query/, bounding_box_test/ with Market-1501 names: the
    names carry pids, so it needs OUT/private/ground_truth.parquet and yields a folder with the
    ground truth in it (not for participants). hf writes Parquet shards, README.md and croissant.json
    that `datasets.load_dataset` reads; it holds no private label unless --with-ground-truth.
    """
    from opreid_builder.export.formats import export_release

    result = export_release(
        out, dest, fmt, progress=progress_enabled(progress), with_ground_truth=with_ground_truth
    )
    if as_json:
        click.echo(json.dumps({"format": fmt, "dest": str(result.dest), "images": result.images,
                               "warnings": result.warnings,
                               "contains_ground_truth": result.contains_ground_truth}, indent=2))  # fmt: skip
    else:
        counts = ", ".join(f"{k} {v}" for k, v in result.images.items())
        truth = "no private ground truth"
        if result.contains_ground_truth:
            truth = ("names carry" if fmt == "market1501" else "it holds") + " the private ground truth"
        click.echo(f"exported {fmt} to {result.dest}: {counts} images ({truth})")
