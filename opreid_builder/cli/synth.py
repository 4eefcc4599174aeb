"""`opreid synth OUT`: write synthetic pedestrian crops, keypoints.parquet and truth.parquet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from manifests import progress_enabled, progress_option
from opreid_builder.split.public_formats import FORMATS
from opreid_builder.synth.generator import MAX_CAMERAS, MAX_IDENTITIES, SynthConfig

_D = SynthConfig()

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def _parse_range(ctx, param, value: str) -> tuple[int, int]:
    m = _RANGE.match(value)
    if not m:
        raise click.BadParameter(f"expected LO-HI (e.g. 6-16) or N, got {value!r}")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) else lo
    if not 1 <= lo <= hi:
        raise click.BadParameter(f"need 1 <= LO <= HI, got {value!r}")
    return lo, hi


def _parse_size(ctx, param, value: str) -> tuple[int, int]:
    m = _SIZE.match(value)
    if not m:
        raise click.BadParameter(f"expected HEIGHTxWIDTH (e.g. 128x64), got {value!r}")
    h, w = int(m.group(1)), int(m.group(2))
    if h < 1 or w < 1:
        raise click.BadParameter(f"height and width must be positive, got {value!r}")
    return h, w


@click.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--identities", type=int, default=_D.identities, show_default=True,
              help=f"Number of identities (pids 1..N, N <= {MAX_IDENTITIES}).")  # fmt: skip
@click.option(
    "--cameras",
    type=int,
    default=_D.cameras,
    show_default=True,
    help=f"Number of cameras (1..{MAX_CAMERAS}).",
)
@click.option("--images-per-identity", "ipi", default="{}-{}".format(*_D.images_per_identity), show_default=True,
              callback=_parse_range, help="Images per identity, a range LO-HI (or one number).")  # fmt: skip
@click.option("--occluded-fraction", type=float, default=_D.occluded_fraction, show_default=True,
              help="Expected fraction of occluded images (each identity keeps both kinds when it can).")  # fmt: skip
@click.option("--size", default=f"{_D.height}x{_D.width}", show_default=True, callback=_parse_size,
              help="Crop size HEIGHTxWIDTH.")  # fmt: skip
@click.option(
    "--seed", type=int, default=_D.seed, show_default=True, help="Same seed => byte-identical output."
)
@click.option("--workers", type=int, default=_D.workers, show_default=True, help="Worker processes.")
@click.option("--layout", type=click.Choice(["raw", *FORMATS]), default="raw", show_default=True,
              help="raw: flat Market-named crops for build-split; a benchmark format: that dataset's folder "
                   "layout as it ships, for `opreid import` (junk, distractors and a stray file included).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@progress_option
def synth(out: Path, identities: int, cameras: int, ipi: tuple[int, int], occluded_fraction: float,
          size: tuple[int, int], seed: int, workers: int, layout: str, as_json: bool,
          progress: bool | None) -> None:  # fmt: skip
    """Generate synthetic pedestrian crops into OUT (Market-1501 names, or a benchmark's layout).

    Also writes OUT/keypoints.parquet (ground-truth COCO-17 keypoints, v=0 when hidden by an
    occluder or outside the crop) and OUT/truth.parquet (occluded flag, occluded parts, face boxes;
    with --layout: what `opreid import` must make of every file).
    """
    from opreid_builder.synth.generator import generate

    config = SynthConfig(
        identities=identities,
        cameras=cameras,
        images_per_identity=ipi,
        occluded_fraction=occluded_fraction,
        height=size[0],
        width=size[1],
        seed=seed,
        workers=workers,
    )
    if layout != "raw":
        from opreid_builder.synth.layouts import generate_layout

        made = generate_layout(out, layout, config, progress=progress_enabled(progress))
        roles = ", ".join(f"{n} {role}" for role, n in made.roles.items())
        click.echo(json.dumps(made.as_dict(), sort_keys=True) if as_json else
                   f"wrote the {layout} layout to {Path(out) / made.root}: {made.files} files ({roles})")  # fmt: skip
        return
    summary = generate(out, config, progress=progress_enabled(progress))
    if as_json:
        click.echo(json.dumps(summary.as_dict(), sort_keys=True))
    else:
        click.echo(
            f"wrote {summary.images} crops ({summary.occluded} occluded, {summary.holistic} holistic) of "
            f"{summary.identities} identities from {summary.cameras} cameras to {summary.out_dir}"
        )
