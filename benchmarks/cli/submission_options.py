"""The submission-reading options that `opreid score`, `opreid check` and `leaderboard submit` share,
defined once; defaults come from the submission and distance modules."""

from __future__ import annotations

import click

from benchmarks.metrics.distances import METRICS
from benchmarks.submission.formats import DEFAULT_MAX_NPZ_BYTES

similarity_option = click.option(
    "--similarity", is_flag=True, help="The matrix holds similarities (higher is closer)."
)
metric_option = click.option(
    "--metric", type=click.Choice(METRICS), default=METRICS[0], show_default=True,
    help="Distance for .npz features.",
)  # fmt: skip
max_npz_bytes_option = click.option(
    "--max-npz-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_NPZ_BYTES, show_default=True,
    help="Refuse .npz files whose members inflate beyond this many bytes.",
)  # fmt: skip
