"""Re-ranking settings: the paper's k1, k2 and lambda, the working-memory budget, the device and the
screening precision."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from benchmarks.errors import BenchmarkError

#: `--rerank-device` values: cpu runs numpy and its BLAS; the others run the same algorithm in torch
#: ("torch-cpu" is the torch code on the CPU: the GPU path, checkable where there is no GPU).
DEVICE_PATTERN = re.compile(r"cpu|torch-cpu|cuda(:\d+)?")
DEVICE_HELP = "cpu (numpy and its BLAS), cuda, cuda:N, or torch-cpu (the torch code on the CPU)"
#: `--rerank-precision` values: the precision of the products that screen each image's neighbours. The
#: answer is the same with each (the screened candidates are re-checked exactly); auto takes bfloat16
#: where this machine runs it measurably faster than float32 (screening.py).
PRECISIONS = ("auto", "float32", "bfloat16")


class RerankError(BenchmarkError):
    """Re-ranking settings that cannot work (a user error)."""


@dataclass(frozen=True)
class RerankSettings:
    """The paper's k1, k2 and lambda (the anchors' defaults), the working-memory budget in MiB, the
    device and the screening precision; the result depends on the first three (and, through float
    rounding only, on the budget and the device)."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3
    memory_mb: int = 1024
    device: str = "cpu"
    precision: str = "auto"

    def check(self) -> None:
        if self.k1 < 1:
            raise RerankError(f"re-ranking k1 must be at least 1, got {self.k1}")
        if self.k2 < 1:
            raise RerankError(f"re-ranking k2 must be at least 1, got {self.k2}")
        if not 0.0 <= self.lambda_value <= 1.0:
            raise RerankError(f"re-ranking lambda must lie in [0, 1], got {self.lambda_value}")
        if self.memory_mb < 1:
            raise RerankError(f"re-ranking memory budget must be at least 1 MiB, got {self.memory_mb}")
        if not DEVICE_PATTERN.fullmatch(self.device):
            raise RerankError(f"re-ranking device must be {DEVICE_HELP}; got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise RerankError(
                f"re-ranking precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )

    @property
    def half_k1(self) -> int:
        """round(k1 / 2), half to even as numpy.around rounds: the expansion's neighbourhood."""
        return round(self.k1 / 2)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> dict:
        """What a report records of a re-ranking: the method and the settings the result depends on."""
        return {"method": "k-reciprocal", "k1": self.k1, "k2": self.k2, "lambda": self.lambda_value}
