"""The error policy of every opreid package, and the data contract's own errors.

Library code raises an `OpreidError` (or a subclass); the one handler at the CLI root prints it as
`opreid <command>: error: <message>` on the last line of stderr and exits with its `exit_code`
(docs/architecture.md, "Errors and exit codes"). Anything else that escapes a command is a bug and
exits with `ExitCode.INTERNAL`.
"""

from __future__ import annotations

import enum
from pathlib import Path


class ExitCode(enum.IntEnum):
    """The documented exit codes of the `opreid` command."""

    OK = 0
    USER = 1  # a bad option or usage, a path that does not exist, a request that cannot be met
    INVALID_INPUT = 2  # a submission, manifest, image set or release that breaks the contract
    REFUSED = 3  # quota used up, a bad or missing token, a closed phase: nothing was recorded
    INTERNAL = 70  # a bug (EX_SOFTWARE); rerun with -vv for the traceback
    INTERRUPTED = 130


class OpreidError(Exception):
    """Base class of every error opreid raises on purpose; the message is one line a user can act on."""

    exit_code: ExitCode = ExitCode.USER


class UserError(OpreidError):
    """The request cannot be carried out as asked (bad value, missing path, unsatisfiable request)."""


class InvalidInputError(OpreidError):
    """An input file breaks the contract (a submission, a manifest, a release)."""

    exit_code = ExitCode.INVALID_INPUT


class RefusedError(OpreidError):
    """Refused on purpose: quota used up, bad or missing token, outside a phase. Nothing was recorded."""

    exit_code = ExitCode.REFUSED


class ManifestError(InvalidInputError):
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


class ChecksumError(ManifestError):
    """A release file differs from its sha256 in dataset.json (or is not listed there): modified since
    the release was built."""
