"""`opreid ablate`: train the ablation rows (one change each, or the paper's Table 5 rows) over seeds and tabulate them."""

from __future__ import annotations

import json
from pathlib import Path

import click

from manifests import progress_enabled, progress_option
from reid_model.runs.ablation import (
    DEFAULT_SEEDS,
    PAPER_ROWS,
    PAPER_SELECTION,
    AblationSettings,
    render_ablation,
    run_ablation,
    variant_names,
)
from reid_model.runs.result_tables import FORMATS


@click.command("ablate", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config", "config", required=True, help="YAML config file or preset name (tiny, opreid_r50, ...)."
)
@click.option(
    "--data", required=True, type=click.Path(path_type=Path), help="Built dataset folder OUT to train on."
)
@click.option(
    "--eval-data", "eval_data", multiple=True, type=click.Path(path_type=Path),
    help="Also evaluate every run on this release whenever it evaluates (repeatable), e.g. O-ReID after Market1501.",
)  # fmt: skip
@click.option("--seeds", type=click.IntRange(min=1), default=DEFAULT_SEEDS, show_default=True,
              help="Seeds per variant: the config's seed, +1, +2, ...")  # fmt: skip
@click.option(
    "--variants", default=",".join(variant_names()), show_default=True,
    help=f"Comma-separated rows to run; each changes one thing of the row before it. '{PAPER_SELECTION}': "
    f"the paper's Table 5 rows ({','.join(PAPER_ROWS)}), whose +BED and +ME compound two changes each.",
)  # fmt: skip
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Folder DIR: one run per DIR/<variant>/seed<k>/.")  # fmt: skip
@click.option("--pretrained", default=None, help="'imagenet' (torchvision weights) or a state-dict path.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default=FORMATS[0], show_default=True,
              help="A Markdown table with notes below it, or CSV (the table alone).")  # fmt: skip
@progress_option
@click.option("--json", "as_json", is_flag=True, help="Print the runs and the table as JSON on stdout.")
@click.argument("overrides", nargs=-1)
def ablate(
    config, data, eval_data, seeds, variants, output, pretrained, device, fmt, progress, as_json, overrides
):
    """Train each row for each seed (finished runs are skipped, interrupted ones resumed), then print
    mean ± std over seeds beside the paper's Table 5 rows. OVERRIDES are key=value pairs for every run,
    e.g. solver.max_epochs=5 or data.val_ids=100 (also tabulates that validation split); the switches
    cbe/bed/dnl/rp/me, model.classifier, test.feature and seed are set per run."""
    settings = AblationSettings(
        config=config, data=data, output=output, eval_data=tuple(eval_data), seeds=seeds,
        variants=tuple(v.strip() for v in variants.split(",") if v.strip()), overrides=tuple(overrides),
        device=device, pretrained=pretrained, progress=progress_enabled(progress),
    )  # fmt: skip
    result = run_ablation(settings)
    if as_json:
        click.echo(json.dumps(result.as_dict(), sort_keys=True))
    else:
        click.echo(render_ablation(result, fmt), nl=False)
