"""`opreid validate`: check a release (or a participants' package) and print its report.

The report goes to stdout (`--json`: JSON alone), notes to stderr; a broken release exits 2 through
the root's error policy.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from manifests import InvalidInputError


@click.command("validate")
@click.argument("out", type=click.Path(path_type=Path, exists=True))
@click.option(
    "--public", is_flag=True,
    help="OUT is a participants' package (folder or archive from `opreid release pack`): check it alone.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def validate_cmd(out: Path, public: bool, as_json: bool) -> None:
    """Check every invariant of a release (or, with --public, of a participants' package); one line
    per violation (exit 2) or a summary (exit 0).

    The invariants follow the release's protocol (dataset.json `protocol`): an OPReID build, or a
    benchmark imported with its official split. What that protocol allows but a reader should know
    (queries without a cross-camera match, counts that differ from the published ones) is printed
    as a note on stderr.
    """
    from opreid_builder.release.validate import validate, validate_public

    report = validate_public(out) if public else validate(out)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, default=str))
    elif report.ok:
        counts = report.summary.get("counts", {})
        parts = ", ".join(
            f"{s} {c['ids']} ids / {c['images']} images" if "ids" in c else f"{s} {c['images']} images"
            for s, c in counts.items()
        )
        protocol = report.summary.get("protocol")
        click.echo(f"ok: {out}{f' ({protocol} protocol)' if protocol else ''}: {parts}; "
                   f"{report.summary.get('files_checked', 0)} checksums verified")  # fmt: skip
    else:
        for violation in report.violations:
            click.echo(str(violation))
    if not as_json:
        for note in report.notes:
            click.echo(f"opreid validate: note: {note}", err=True)
    if not report.ok:
        raise InvalidInputError(f"{out}: {len(report.violations)} violation(s)")
