"""TensorBoard event files beside metrics.jsonl (`--tensorboard`, `train.tensorboard: true`).

The same scalars as metrics.jsonl: every numeric field of a train record under `train/` (losses,
learning rate, BED's operating range), and the metrics of every evaluation under
`eval/<dataset>/` or `val/<dataset>/`, all at the record's iteration. TensorBoard is an optional
extra (`pip install 'opreid[tensorboard]'`); without it training stops before it starts, with one
line naming the extra.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from reid_model.errors import ConfigError

EXTRA_HINT = "pip install 'opreid[tensorboard]'"
#: Fields of a record that are bookkeeping, not scalars to plot.
NOT_SCALARS = frozenset({"kind", "iteration", "epoch", "dataset", "split", "protocol", "num_valid_queries"})


def require_tensorboard() -> None:
    """Fail early, with the extra to install, when the tensorboard package is missing."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(f"--tensorboard needs the tensorboard package: {EXTRA_HINT}") from None


def scalar_tags(record: dict[str, Any]) -> dict[str, float]:
    """The tag -> value pairs one metrics.jsonl record becomes."""
    kind = record.get("kind")
    if kind == "train":
        prefix = "train/"
    elif kind in ("eval", "val"):
        prefix = f"{kind}/{record.get('dataset', 'data')}/"
    else:
        return {}
    out = {}
    for key, value in record.items():
        if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[prefix + key] = float(value)
    return out


class TensorBoardLog:
    """Writes records as scalars; a resumed run purges the events past its checkpoint."""

    def __init__(self, log_dir: Path, resume_iteration: int | None = None):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir), purge_step=resume_iteration)

    def add(self, record: dict[str, Any]) -> None:
        step = int(record.get("iteration", 0))
        for tag, value in scalar_tags(record).items():
            self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
