"""`opreid import FORMAT SRC -o OUT`: parse, call `import_benchmark`, print the result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from manifests import SPLITS, UNKNOWN_FLAGS, progress_option
from opreid_builder.cli.curate import (
    config_from_options,
    face_options,
    occlusion_rule_options,
    pose_options,
    show_progress,
)
from opreid_builder.public_datasets.importer import ImportOptions
from opreid_builder.split.public_formats import FORMATS, LAYOUTS

_SUBSETS = sorted({s for layout in LAYOUTS.values() for s in layout.subsets})
_FACE_NAMES = ("face_detectors", "face_models", "insightface_root", "face_score", "face_upscale", "face_mask",
               "face_enlarge", "head_enlarge", "jpeg_quality")  # fmt: skip


def _print(result) -> None:
    click.echo(f"imported {result.format}{f' ({result.subset})' if result.subset else ''} into {result.out}")
    why = {"counts": "its counts are the published ones", "user": "--published"}.get(result.published)
    click.echo(f"name: {result.name} (" + (f"the published {result.format}: {why})" if why else
               f"not the published {result.format}: no comparison with published results; --published if it is)"))  # fmt: skip
    click.echo(f"{'split':<9}{'ids':>8}{'images':>9}{'published':>18}{'occluded':>10}  flags")
    for split in SPLITS:
        got, pub = result.counts[split], result.official_counts.get(split, {})
        published = f"{pub.get('ids', '-')}/{pub.get('images', '-')}"
        occluded = "-" if result.occlusion_flags[split] == UNKNOWN_FLAGS else got["occluded"]
        click.echo(f"{split:<9}{got['ids']:>8}{got['images']:>9}{published:>18}{occluded!s:>10}  "
                   f"{result.occlusion_flags[split]}")  # fmt: skip
    i = result.images
    click.echo(
        f"images: {i['hardlink']} hard-linked, {i['copy']} copied, {i['stripped']} without metadata, "
        f"{i['converted']} converted to PNG, {i['masked']} face-masked; {result.junk} junk left out, {len(result.unexpected)} unexpected file(s) "
        f"skipped, {len(result.unreadable)} unreadable"
    )
    notes = len(result.report.notes)
    click.echo(f"validate: ok{f' ({notes} note(s): opreid validate {result.out})' if notes else ''}")


_HELP = f"""Import a public ReID benchmark in its official split as an opreid release in OUT.

FORMAT is the layout SRC holds, exactly as the dataset ships (see the README): {", ".join(FORMATS)}.
SRC is the dataset folder or the folder holding it. Occlusion flags come from the dataset where it
has them, else from --pose-model/--keypoints (the occlusion rule of `opreid curate`), else they are
recorded as unknown.
"""


@click.command("import", help=_HELP)
@click.argument("fmt", metavar="FORMAT", type=click.Choice(FORMATS))
@click.argument("src", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The release folder to write (new, empty, or a previous import it replaces).")  # fmt: skip
@click.option("--subset", type=click.Choice(_SUBSETS), default=None,
              help="cuhk03: the detected (default) or labeled boxes of CUHK03-NP.")  # fmt: skip
@click.option("--copy", is_flag=True, help="Copy the images instead of hard-linking them (hard links need "
              "OUT on SRC's file system; elsewhere images are copied anyway).")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the opaque public names and the pid remapping. Default: a random secret, kept in "
              "private/naming.json. A fixed seed makes the names reproducible, by anyone who knows it: with "
              "the public dataset, it gives every test pid.")  # fmt: skip
@click.option("--name", default=None, help="The release's name (dataset.json, the card, training records). "
              "Default: the dataset's own when SRC is the published dataset, else '<SRC folder> in the <FORMAT> "
              "layout'.")  # fmt: skip
@click.option("--published", is_flag=True, help="SRC is the published dataset itself, although its counts differ "
              "from the published ones (a few files missing): `opreid report` then compares runs on it with "
              "the paper's numbers. Without it, only a copy whose counts match is compared.")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace OUT even when a leaderboard was made from it (the "
              "leaderboard then refuses submissions until it is created again).")  # fmt: skip
@click.option("--mask-faces", is_flag=True, help="Mask faces (the curation stages of `opreid curate`, with "
              "the face options below); the datasets are public, so this is opt-in.")  # fmt: skip
@occlusion_rule_options
@face_options
@pose_options
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@progress_option
@click.pass_context
def import_cmd(ctx: click.Context, fmt: str, src: Path, out: Path, subset: str | None, copy: bool,
               seed: int | None, force: bool, name: str | None, published: bool, mask_faces: bool,
               as_json: bool, progress: bool | None, **options: Any) -> None:  # fmt: skip
    from opreid_builder.public_datasets.importer import import_benchmark

    given = [n for n in _FACE_NAMES if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE]
    if given and not mask_faces:
        raise click.UsageError(f"--{given[0].replace('_', '-')} applies with --mask-faces only")
    curation = None
    if options["pose_model"] or options["keypoints"] or mask_faces:
        curation = config_from_options(**options)
    request = ImportOptions(subset=subset, copy=copy, seed=seed, mask_faces=mask_faces, curation=curation,
                            workers=options["workers"], force=force, name=name, published=published)  # fmt: skip
    result = import_benchmark(fmt, src, out, request, progress=show_progress(progress))
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str))
    else:
        _print(result)
