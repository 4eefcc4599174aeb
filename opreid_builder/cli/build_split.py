"""`opreid build-split`: parse, call the library, print.

Summaries go to stdout (`--json`: JSON alone); warnings and errors go to stderr through the root's
error policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from manifests import InvalidInputError
from opreid_builder.build import COUNT_NAMES, SplitRequest
from opreid_builder.cli.curate import config_from_options, curate_options, progress_option, show_progress
from opreid_builder.errors import SplitError
from opreid_builder.split.presets import PRESETS
from opreid_builder.split.protocol import ProtocolRules

_RULES = ProtocolRules()
_REQUEST = SplitRequest()


def _span(lo_hi: tuple[int, int]) -> str:
    return f"{lo_hi[0]}-{lo_hi[1]}"


def _range(text: str, name: str) -> tuple[int, int]:
    try:
        lo, _, hi = text.strip().partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
    except ValueError:
        raise click.BadParameter(f"expected LOW-HIGH, e.g. 5-20 (got {text!r})", param_hint=name) from None
    if not 0 <= lo_i <= hi_i:
        raise click.BadParameter(f"need 0 <= LOW <= HIGH (got {text!r})", param_hint=name)
    return lo_i, hi_i


def _count(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    if value.lower() == "none":
        return "none"
    try:
        number = int(value)
    except ValueError:
        raise click.BadParameter(f"expected a whole number or 'none' (got {value!r})") from None
    if number < 0:
        raise click.BadParameter("must not be negative")
    return number


def split_options(func):
    """The split protocol's options; defaults come from SplitRequest and ProtocolRules."""
    paper = PRESETS["opreid"]
    options = [
        click.option("--preset", type=click.Choice(sorted(PRESETS)), default=_REQUEST.preset, show_default=True,
                     help=f"Split sizes: 'opreid' = the paper's numbers (train {paper.train_ids:,} ids / "
                          f"{paper.train_images:,} images; query {paper.query_ids:,} / {paper.query_images:,}; "
                          f"gallery {paper.gallery_ids:,} / {paper.gallery_images:,})."),
        click.option("--scale", type=float, default=_REQUEST.scale, show_default=True,
                     help="Multiply every preset count by this factor (small pools, the demo)."),
        click.option("--seed", "split_seed", type=int, default=_REQUEST.seed, show_default=True,
                     help="Seed of the split and of the opaque public names."),
        *[click.option(f"--{name.replace('_', '-')}", name, callback=_count, default=None, metavar="N|none",
                       help=f"Override the preset's {name.replace('_', ' ')} (not scaled)"
                            + ("; 'none' = no image target." if name.endswith("images") else "."))
          for name in COUNT_NAMES],
        click.option("--train-images-per-id", default=_span(_RULES.train_images_per_id), show_default=True,
                     metavar="LO-HI", help="Images per train identity."),
        click.option("--train-occluded-fraction", type=click.FloatRange(0, 1),
                     default=_RULES.train_occluded_fraction, show_default=True,
                     help="Share of occluded train images (met where the pool allows; a warning otherwise)."),
        click.option("--distractor-images", show_default=True, metavar="LO-HI,LO-HI",
                     default=f"{_span(_RULES.distractor_occluded)},{_span(_RULES.distractor_holistic)}",
                     help="Occluded and holistic images per distractor identity; widen to trade the rule "
                          "for the gallery total."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def split_request(kw: dict[str, Any]) -> SplitRequest:
    """A SplitRequest from the keyword arguments of `split_options` (popped from `kw`)."""
    counts = {}
    for name in COUNT_NAMES:
        value = kw.pop(name)
        if value is not None:
            counts[name] = None if value == "none" else value
    dist = kw.pop("distractor_images").split(",")
    if len(dist) not in (1, 2):
        raise click.BadParameter(
            "expected LO-HI,LO-HI (occluded, holistic)", param_hint="--distractor-images"
        )
    rules = ProtocolRules(
        train_images_per_id=_range(kw.pop("train_images_per_id"), "--train-images-per-id"),
        train_occluded_fraction=kw.pop("train_occluded_fraction"),
        distractor_occluded=_range(dist[0], "--distractor-images"),
        distractor_holistic=_range(dist[-1], "--distractor-images"),
    )
    return SplitRequest(
        preset=kw.pop("preset"), scale=kw.pop("scale"), counts=counts, rules=rules, seed=kw.pop("split_seed")
    )


def _print_summary(result) -> None:
    click.echo(f"release written to {result.out}")
    click.echo(f"{'number':<26}{'target':>10}{'achieved':>10}")
    for key, value in result.release.target_vs_achieved.items():
        target = "-" if value["target"] is None else value["target"]
        click.echo(f"{key:<26}{target!s:>10}{value['achieved']!s:>10}")
    report = result.report
    click.echo("validate: ok" if report.ok else f"validate: {len(report.violations)} violation(s)")


def _given_curation_options(ctx: click.Context, names: list[str]) -> list[str]:
    return [
        f"--{name.replace('_', '-')}"
        for name in names
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    ]


@click.command("build-split")
@click.argument("raw", type=click.Path(path_type=Path), required=False)
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Output (release) folder.")
@click.option("--curated", is_flag=True,
              help="Split OUT/private/images.parquet as it stands (e.g. after `opreid curate` and review); "
                   "takes no RAW and no curation option.")  # fmt: skip
@split_options
@curate_options
@click.option("--force", is_flag=True,
              help="Rebuild OUT even though a leaderboard was created from it (its hidden split then no "
                   "longer applies).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@progress_option
@click.pass_context
def build_split(ctx: click.Context, raw: Path | None, out: Path, curated: bool, force: bool, as_json: bool,
                progress: bool | None, **kw: Any) -> None:  # fmt: skip
    """Curate RAW into OUT, then draw the OPReID split and write the release.

    Splits the images with status ok: train/test identities disjoint, occluded queries each with
    one occluded and one holistic cross-camera gallery match, distractors, 5-20 train images per
    identity. The result depends only on the set of images and --seed. Ends with `opreid validate`.
    """
    from opreid_builder.build import build_release

    request = split_request(kw)
    if curated:
        given = _given_curation_options(ctx, list(kw))
        if raw is not None or given:
            what = ", ".join((["RAW"] if raw is not None else []) + given)
            raise SplitError(
                f"--curated splits OUT's curated table as it stands and ignores {what}; drop "
                f"{'it' if what.count(',') == 0 else 'them'}, or run without --curated to curate again "
                "(cached stages are not rerun)"
            )
        curate_config = None
    else:
        if raw is None:
            raise click.UsageError("Missing argument 'RAW' (or pass --curated to split OUT as it stands).")
        curate_config = config_from_options(**kw)
    result = build_release(raw, out, curate_config, request, progress=show_progress(progress), force=force)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        _print_summary(result)
    if not result.report.ok:
        for violation in result.report.violations:
            click.echo(str(violation), err=True)
        raise InvalidInputError(f"the release in {out} breaks {len(result.report.violations)} invariant(s)")
