"""Typed errors of the data contract; the CLI turns each into one line and a non-zero exit."""

from __future__ import annotations

from pathlib import Path


class ManifestError(Exception):
    """Base class: a manifest or dataset file does not honour the contract."""

    def __init__(self, path: str | Path, message: str):
        self.path = Path(path)
        super().__init__(f"{self.path}: {message}")


class MissingColumnError(ManifestError):
    def __init__(self, path: str | Path, column: str):
        self.column = column
        super().__init__(path, f"missing column {column!r}")


class ColumnTypeError(ManifestError):
    def __init__(self, path: str | Path, column: str, expected: str, found: str):
        self.column, self.expected, self.found = column, expected, found
        super().__init__(path, f"column {column!r} has type {found}, expected {expected}")


class SchemaVersionError(ManifestError):
    def __init__(self, path: str | Path, found: str | None, supported: str):
        self.found = found
        what = "no schema version in its metadata" if found is None else f"schema version {found}"
        super().__init__(path, f"{what}; this opreid reads major version {supported.split('.')[0]}")


class SchemaKindError(ManifestError):
    def __init__(self, path: str | Path, found: str | None, expected: str):
        self.found, self.expected = found, expected
        super().__init__(path, f"is a {found or 'foreign'!s} file, expected a {expected} manifest")


class UnreadableManifestError(ManifestError):
    """The file is missing, truncated or not Parquet/JSON at all."""
