"""Typed errors of the scorer (the error policy: manifests/errors.py)."""

from __future__ import annotations

from manifests.errors import ExitCode, OpreidError


class BenchmarkError(OpreidError):
    """Base class of every error the benchmarks package raises on purpose (exit 1 unless it says otherwise)."""


class InvalidSubmissionError(BenchmarkError):
    """A submission breaks the format contract; `problems` lists every problem found, not only the first."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, problems: list[str] | str, path: str | None = None):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if not self.problems:
            raise ValueError("InvalidSubmissionError needs at least one problem")
        self.path = path  # the submission file, when known: named in the message
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        problems = "; ".join(self.problems)
        return f"invalid submission {self.path}: {problems}" if self.path else problems


class DatasetError(BenchmarkError):
    """The dataset directory or ground truth cannot be scored against."""
