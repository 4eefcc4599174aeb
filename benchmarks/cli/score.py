"""`opreid score SUBMISSION --data OUT`: validate a submission, score it, print a table or JSON.

Exit codes (the error policy): 0 scored; 2 invalid submission (every problem on one stderr line);
1 bad usage, an unusable dataset directory, or an output file that cannot be written.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmarks.cli.rerank_options import rerank_options, rerank_settings
from benchmarks.cli.submission_options import max_npz_bytes_option, metric_option, similarity_option
from benchmarks.metrics.market import DEFAULT_RANKS
from benchmarks.metrics.positive_ranks import TIES
from benchmarks.rank_pictures import (
    DEFAULT_QUERY_COUNT,
    DEFAULT_TOP,
    QUERY_ORDERS,
    QuerySelection,
    parse_queries,
)
from manifests import progress_enabled, progress_option


def _parse_ranks(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        ranks = tuple(sorted({int(part) for part in value.split(",") if part.strip()}))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers") from None
    if not ranks or ranks[0] < 1:
        raise click.BadParameter(f"{value!r}: ranks must be positive integers")
    return ranks


def _parse_queries(ctx: click.Context, param: click.Parameter, value: str) -> QuerySelection:
    try:
        return parse_queries(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command("score")
@click.argument("submission", type=click.Path(path_type=Path))
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset directory OUT: query.parquet and gallery.parquet fix the submission's row/column order.",
)
@click.option(
    "--truth",
    type=click.Path(path_type=Path),
    default=None,
    help="Ground-truth Parquet [default: OUT/private/ground_truth.parquet].",
)
@similarity_option
@metric_option
@click.option(
    "--ranks",
    default=",".join(map(str, DEFAULT_RANKS)),
    show_default=True,
    callback=_parse_ranks,
    help="CMC ranks to report, comma-separated.",
)
@click.option(
    "--ties",
    type=click.Choice(TIES),
    default=TIES[0],
    show_default=True,
    help="Ties are broken by gallery order; 'pessimistic' also reports the worst case.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout (nothing else).")
@click.option(
    "--per-query",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write per-query AP, INP and first-hit rank to this CSV.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the CMC curve to this PNG.",
)
@max_npz_bytes_option
@rerank_options
@click.option(
    "--visualize",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write rank-list pictures (index.html and PNGs) to this folder. Host only: they show the ground truth.",
)
@click.option(
    "--top", type=click.IntRange(min=1), default=DEFAULT_TOP, show_default=True,
    help="Gallery crops shown per query with --visualize.",
)  # fmt: skip
@click.option(
    "--queries",
    default=QUERY_ORDERS[0],
    show_default=True,
    callback=_parse_queries,
    help=f"Queries shown with --visualize: N (the N worst), {', '.join(QUERY_ORDERS)} "
    f"({DEFAULT_QUERY_COUNT} of them) or ORDER:N.",
)
@progress_option
def score(
    submission: Path,
    data_dir: Path,
    truth: Path | None,
    similarity: bool,
    metric: str,
    ranks: tuple[int, ...],
    ties: str,
    as_json: bool,
    per_query: Path | None,
    plot: Path | None,
    max_npz_bytes: int,
    visualize: Path | None,
    top: int,
    queries: QuerySelection,
    progress: bool | None,
    **rerank: object,
) -> None:
    """Validate SUBMISSION and score it with the Market-1501 protocol.

    SUBMISSION is a Q x G distance matrix (.npy float), Q x K ranked gallery indices (.npy int;
    mAP/mINP then truncated at K) or query/gallery features (.npz). --rerank re-ranks features
    (k-reciprocal) before scoring.
    """
    from benchmarks.scoring import score_submission

    report = score_submission(
        submission, data_dir, truth=truth, similarity=similarity, metric=metric, ranks=ranks, ties=ties,
        max_npz_bytes=max_npz_bytes, rerank=rerank_settings(rerank), progress=progress_enabled(progress),
    )  # fmt: skip
    if per_query is not None:
        report.write_per_query(per_query)
        click.echo(f"per-query results written to {per_query}", err=as_json)
    if plot is not None:
        from benchmarks.metrics.cmc_plot import plot_cmc

        curves = {"stable ties": report.metrics}
        if report.pessimistic is not None:
            curves["worst-case ties"] = report.pessimistic
        plot_cmc(curves, plot, max_rank=max(50, max(ranks)), title=f"CMC: {submission.name}")
        click.echo(f"CMC curve written to {plot}", err=as_json)
    if visualize is not None:
        from benchmarks.rank_pictures import write_rank_pictures

        pictures = write_rank_pictures(report, data_dir, visualize, top=top, queries=queries)
        click.echo(
            f"rank-list pictures of {pictures.queries} queries written to {pictures.page} (host only)",
            err=as_json,
        )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, allow_nan=False))
    else:
        click.echo(report.format_table())
