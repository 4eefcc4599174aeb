"""Typed errors of the scorer; `opreid score` maps each to one stderr line and an exit code."""

from __future__ import annotations


class BenchmarkError(Exception):
    """Base class of every error the benchmarks package raises on purpose."""


class InvalidSubmissionError(BenchmarkError):
    """A submission breaks the format contract; `problems` lists every problem found, not only the first.

    The CLI exits with code 2 on it.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if not self.problems:
            raise ValueError("InvalidSubmissionError needs at least one problem")
        super().__init__("; ".join(self.problems))


class DatasetError(BenchmarkError):
    """The dataset directory or ground truth cannot be scored against (the CLI exits with code 1)."""
