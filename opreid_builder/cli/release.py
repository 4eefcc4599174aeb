"""`opreid release pack`: parse, call `pack_release`, print."""

from __future__ import annotations

import json
from pathlib import Path

import click

from manifests import progress_enabled, progress_option


@click.group("release")
def release() -> None:
    """Work on a built release: package it for participants."""


@release.command("pack")
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option(
    "-o", "--output", "dest", type=click.Path(path_type=Path), required=True,
    help="The package: a folder, or an archive named *.tar, *.tar.gz, *.tgz or *.zip.",
)  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing package at OUTPUT.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@progress_option
def pack_cmd(out: Path, dest: Path, force: bool, as_json: bool, progress: bool | None) -> None:
    """Write what participants receive from the release OUT, and nothing else.

    The train, query and gallery manifests and their images, the card (without the split seed), a
    dataset.json that lists and checksums only these files, sample_submission.npy (Q x G, the exact
    order) and SUBMITTING.md. Refused (exit 2, nothing written) when a private file or column would
    leak or a file changed since the build. Check the result with `opreid validate --public`.
    """
    from opreid_builder.release.public_package import pack_release

    summary = pack_release(out, dest, force=force, progress=progress_enabled(progress))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        click.echo(
            f"packed {out} into {summary.dest} ({summary.format}, {summary.files} files, {summary.bytes:,} bytes); "
            f"submissions are {summary.num_query} x {summary.num_gallery}"
        )
