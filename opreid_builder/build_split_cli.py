"""`opreid build-split`, `opreid validate` and `opreid export`: the split stage and its release.

User mistakes and unsatisfiable requests are one line on stderr and exit 1; `--json` output goes
to stdout alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from manifests import IMAGES, ManifestError, read_manifest
from opreid_builder.curate_cli import config_from_options, curate_options
from opreid_builder.errors import BuilderError
from opreid_builder.split_presets import PRESET_NOTES, PRESETS

_COUNT_OPTIONS = ("train_ids", "train_images", "query_ids", "query_images", "gallery_ids", "gallery_images")


def _fail(message: str) -> None:
    click.echo(f"opreid: error: {message}", err=True)
    sys.exit(1)


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


def _split_options(func):
    options = [
        click.option("--preset", type=click.Choice(sorted(PRESETS)), default="opreid", show_default=True,
                     help="Split sizes: 'opreid' = the paper's numbers (train 1,744 ids / 27,228 images; query "
                          "3,515 / 4,200; gallery 6,174 / 41,014)."),
        click.option("--scale", type=float, default=1.0, show_default=True,
                     help="Multiply every preset count by this factor (small pools, the demo)."),
        click.option("--seed", "split_seed", type=int, default=0, show_default=True,
                     help="Seed of the split and of the opaque public names."),
        *[click.option(f"--{name.replace('_', '-')}", name, callback=_count, default=None, metavar="N|none",
                       help=f"Override the preset's {name.replace('_', ' ')} (not scaled)"
                            + ("; 'none' = no image target." if name.endswith("images") else "."))
          for name in _COUNT_OPTIONS],
        click.option("--train-images-per-id", default="5-20", show_default=True, metavar="LO-HI",
                     help="Images per train identity."),
        click.option("--train-occluded-fraction", type=click.FloatRange(0, 1), default=0.15, show_default=True,
                     help="Share of occluded train images (about; limited by the pool)."),
        click.option("--distractor-images", default="1-3,1-3", show_default=True, metavar="LO-HI,LO-HI",
                     help="Occluded and holistic images per distractor identity; widen to trade the rule "
                          "for the gallery total."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _split_config(kw: dict[str, Any]):
    from opreid_builder.split_presets import resolve_targets
    from opreid_builder.split_protocol import ProtocolRules, SplitConfig

    overrides = {
        name: (None if kw[name] == "none" else kw[name]) for name in _COUNT_OPTIONS if kw[name] is not None
    }
    targets = resolve_targets(kw["preset"], kw["scale"], overrides)
    dist = kw["distractor_images"].split(",")
    if len(dist) not in (1, 2):
        raise click.BadParameter(
            "expected LO-HI,LO-HI (occluded, holistic)", param_hint="--distractor-images"
        )
    d_occ = _range(dist[0], "--distractor-images")
    d_hol = _range(dist[-1], "--distractor-images")
    rules = ProtocolRules(
        train_images_per_id=_range(kw["train_images_per_id"], "--train-images-per-id"),
        train_occluded_fraction=kw["train_occluded_fraction"],
        distractor_occluded=d_occ,
        distractor_holistic=d_hol,
    )
    return SplitConfig(targets=targets, rules=rules, seed=kw["split_seed"])


def _ok_rows(table):
    import pyarrow.compute as pc

    return table.filter(pc.equal(table.column("status"), "ok"))


def _curated_table(out: Path):
    return _ok_rows(read_manifest(out / "private" / "images.parquet", IMAGES))


def _recorded_curation(out: Path) -> dict[str, Any]:
    """The curation record `opreid curate` left in OUT/private/curation.json (empty when absent)."""
    path = out / "private" / "curation.json"
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(path, f"not readable JSON ({exc})") from None
    record.pop("refused", None)
    return record


def _print_summary(summary, report) -> None:
    click.echo(f"release written to {summary.out}")
    click.echo(f"{'number':<26}{'target':>10}{'achieved':>10}")
    for key, value in summary.target_vs_achieved.items():
        target = "-" if value["target"] is None else value["target"]
        click.echo(f"{key:<26}{target!s:>10}{value['achieved']!s:>10}")
    click.echo("validate: ok" if report.ok else f"validate: {len(report.violations)} violation(s)")


@click.command("build-split")
@click.argument("raw", type=click.Path(path_type=Path))
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True, help="Output (release) folder.")
@click.option("--curated", is_flag=True,
              help="Split OUT/private/images.parquet as it stands (e.g. after review) instead of running "
                   "curate first; RAW is not read.")  # fmt: skip
@_split_options
@curate_options
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--progress/--no-progress", default=True, help="Progress bars on stderr.")
def build_split(raw: Path, out: Path, curated: bool, as_json: bool, progress: bool, **kw: Any) -> None:
    """Curate RAW into OUT, then draw the OPReID split and write the release.

    Splits the images with status ok: train/test identities disjoint, occluded queries each with
    one occluded and one holistic cross-camera gallery match, distractors, 5-20 train images per
    identity. The result depends only on the set of images and --seed. Ends with `opreid validate`.
    """
    from opreid_builder.release import write_release
    from opreid_builder.split_protocol import select_split
    from opreid_builder.validate import validate

    progress = progress and sys.stderr.isatty()
    split_kw = {k: kw.pop(k) for k in list(kw) if k in _COUNT_OPTIONS or k in {
        "preset", "scale", "split_seed", "train_images_per_id", "train_occluded_fraction", "distractor_images"}}  # fmt: skip
    try:
        config = _split_config(split_kw)
        if curated:
            table = _curated_table(out)
            curation_parameters = _recorded_curation(out)
        else:
            from opreid_builder.curate import curate

            result = curate(raw, out, config_from_options(**kw), progress=progress)
            curation_parameters = dict(result.curation)
            table = _ok_rows(result.images)
        selection = select_split(table, config)
        parameters = {
            "curation": curation_parameters,
            "split": {
                "preset": split_kw["preset"],
                "preset_note": PRESET_NOTES.get(split_kw["preset"]),
                "scale": split_kw["scale"],
                "seed": config.seed,
                "targets": config.targets.as_dict(),
                "rules": config.rules.as_dict(),
            },
        }
        summary = write_release(out, selection, seed=config.seed, parameters=parameters, progress=progress)
        report = validate(out)
    except (BuilderError, ManifestError) as exc:
        _fail(str(exc))
        return
    if as_json:
        click.echo(json.dumps({
            "out": str(out), "counts": summary.counts, "target_vs_achieved": summary.target_vs_achieved,
            "eligibility": selection.eligibility, "validate": report.as_dict()}, indent=2, default=str))  # fmt: skip
    else:
        _print_summary(summary, report)
    if not report.ok:
        for violation in report.violations:
            click.echo(str(violation), err=True)
        sys.exit(1)


@click.command("validate")
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def validate_cmd(out: Path, as_json: bool) -> None:
    """Check every invariant of a release; one line per violation (exit 1) or a summary (exit 0)."""
    from opreid_builder.validate import validate

    report = validate(out)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    elif report.ok:
        counts = report.summary.get("counts", {})
        parts = ", ".join(f"{s} {c['ids']} ids / {c['images']} images" for s, c in counts.items())
        click.echo(f"ok: {out}: {parts}; {report.summary.get('files_checked', 0)} checksums verified")
    else:
        for violation in report.violations:
            click.echo(str(violation))
    sys.exit(0 if report.ok else 1)


@click.command("export")
@click.argument("out", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["market1501"]), default="market1501", show_default=True)
@click.option("-o", "--dest", type=click.Path(path_type=Path), required=True, help="New folder to write.")
def export_cmd(out: Path, fmt: str, dest: Path) -> None:
    """Write the release as bounding_box_train/, query/, bounding_box_test/ with Market-1501 names.

    Market names carry pids: this needs OUT/private/ground_truth.parquet and yields a folder with
    the ground truth in it (not for participants).
    """
    from opreid_builder.export import export_market1501

    try:
        result = export_market1501(out, dest)
    except (BuilderError, ManifestError) as exc:
        _fail(str(exc))
        return
    for warning in result.warnings:
        click.echo(f"opreid: warning: {warning}", err=True)
    counts = ", ".join(f"{k} {v}" for k, v in result.images.items())
    click.echo(f"exported {fmt} to {result.dest}: {counts} images (names carry the private ground truth)")
