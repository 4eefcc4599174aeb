"""`opreid report`: run folders -> a Table 3-5 shaped comparison with the paper's published numbers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from reid_model.runs.result_tables import FORMATS


@click.command("report", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=FORMATS[0], show_default=True,
              help="A Markdown table with notes below it, or CSV (the table alone).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON on stdout instead.")
def report(runs, fmt, as_json):
    """One row per run and release (the run's last evaluation on it): dataset, components (the
    cbe/bed/dnl/rp/me switches of RUN/config.yaml), R-1, mAP, mINP, each beside the paper's number."""
    from reid_model.runs.run_report import build_report, render_report

    result = build_report(runs)
    if as_json:
        click.echo(json.dumps(result.as_dict(), sort_keys=True))
    else:
        click.echo(render_report(result, fmt), nl=False)
