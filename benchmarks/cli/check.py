"""`opreid check SUBMISSION --data PUBLIC`: check a submission offline, print every problem at once.

Exit codes (the error policy): 0 valid; 2 invalid submission (each problem on stdout, a summary as
the last stderr line); 1 a package that cannot be read.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from benchmarks.cli.submission_options import max_npz_bytes_option, metric_option, similarity_option
from benchmarks.errors import InvalidSubmissionError


@click.command("check")
@click.argument("submission", type=click.Path(path_type=Path))
@click.option(
    "--data", "data_dir", required=True, type=click.Path(path_type=Path),
    help="The participants' package (from `opreid release pack`) or a release: query.parquet and "
         "gallery.parquet fix the shape and order.",
)  # fmt: skip
@similarity_option
@metric_option
@max_npz_bytes_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
def check(submission: Path, data_dir: Path, similarity: bool, metric: str, max_npz_bytes: int,
          as_json: bool) -> None:  # fmt: skip
    """Check SUBMISSION against the public package PUBLIC: shape, dtype, order, finite values and size.

    Uses the scorer's own validation, needs no ground truth and sends nothing anywhere; run it
    before `opreid leaderboard submit` (an invalid file is refused there with the same reasons).
    """
    from benchmarks.submission.package_check import check_submission

    report = check_submission(
        submission, data_dir, similarity=similarity, metric=metric, max_npz_bytes=max_npz_bytes
    )
    click.echo(json.dumps(report.to_json(), indent=2) if as_json else report.format_text())
    if not report.ok:
        raise InvalidSubmissionError(
            [f"{len(report.problems)} problem(s), listed above"], path=str(submission)
        )
