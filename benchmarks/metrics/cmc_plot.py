"""CMC curve as a PNG; matplotlib (Agg backend) is imported only when a plot is asked for."""

from __future__ import annotations

from pathlib import Path

from benchmarks.metrics.market import MarketMetrics
from manifests import atomic_path


def plot_cmc(
    curves: dict[str, MarketMetrics], path: str | Path, *, max_rank: int = 50, title: str = "CMC"
) -> Path:
    """Draw one CMC curve per entry (label -> metrics) for ranks 1..max_rank; write atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        ranks = range(1, max_rank + 1)
        for label, metrics in curves.items():
            ax.plot(
                ranks,
                100 * metrics.cmc_curve(max_rank),
                label=f"{label} (R-1 {100 * metrics.cmc_curve(1)[0]:.1f}%)",
            )
        ax.set_xlabel("rank")
        ax.set_ylabel("matching rate (%)")
        ax.set_xlim(1, max_rank)
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
        ax.set_title(title)
        ax.legend(loc="lower right")
        fig.tight_layout()
        with atomic_path(path, suffix=path.suffix) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path
