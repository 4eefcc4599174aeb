"""Learning-rate factor per iteration: linear warmup, constant until the delay, then per-epoch cosine.

FastReID SBS (docs/model.md §6.2): warmup factor 0.1 -> 1 over `warmup_iters`; the cosine starts at
max(ceil(warmup_iters / iters_per_epoch), delay_epochs) and anneals to eta_min at the last epoch.
A pure function of the iteration, so a resumed LambdaLR continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from reid_model.config import SolverConfig


def lr_factor_fn(solver: SolverConfig, iters_per_epoch: int) -> Callable[[int], float]:
    delay = max(math.ceil(solver.warmup_iters / iters_per_epoch), solver.delay_epochs)
    span = solver.max_epochs - delay
    floor = solver.eta_min / solver.base_lr

    def factor(iteration: int) -> float:
        warm = 1.0
        if solver.warmup_iters > 0 and iteration < solver.warmup_iters:
            alpha = iteration / solver.warmup_iters
            warm = solver.warmup_factor * (1 - alpha) + alpha
        epoch = iteration // iters_per_epoch
        if span <= 0 or epoch < delay:
            return warm
        progress = min(epoch - delay, span) / span
        return warm * (floor + (1 - floor) * (1 + math.cos(math.pi * progress)) / 2)

    return factor
