"""Typed errors of the leaderboard; the CLI root and the web app turn each into one message.

Exit codes follow the error policy (manifests/errors.py): refusals (token, quota, a closed phase, a
board not yet revealed) exit 3, a rejected submission exits 2, everything else 1.
"""

from __future__ import annotations

from manifests.errors import ExitCode, OpreidError


class LeaderboardError(OpreidError):
    """Base class of every leaderboard failure a user can act on."""


class HostSideError(LeaderboardError):
    """A fault on the host's side (the database, the dataset): nothing a participant can act on.

    The message names server paths and URLs for the host; the web app answers a generic 503 and
    logs the message instead of showing it.
    """


class DatabaseUnavailableError(HostSideError):
    """The database server is down, or the file cannot be opened or stays locked past the busy timeout."""


class NotInitialisedError(HostSideError):
    """The database holds no leaderboard (run `opreid leaderboard init`)."""


class OutdatedSchemaError(HostSideError):
    """The database was made by another opreid version; the message says how to upgrade it."""


class AlreadyInitialisedError(LeaderboardError):
    """`init` on a database that already holds a leaderboard."""


class AuthError(LeaderboardError):
    """Unknown, revoked or wrong-role token. The message never contains the token."""

    exit_code = ExitCode.REFUSED


class TeamExistsError(LeaderboardError):
    pass


class UnknownTeamError(LeaderboardError):
    pass


class UnknownSubmissionError(LeaderboardError):
    pass


class QuotaExceededError(LeaderboardError):
    """No submission left today or in total; nothing was recorded."""

    exit_code = ExitCode.REFUSED

    def __init__(self, message: str, quota: dict[str, int | None]):
        self.quota = quota
        super().__init__(message)


class RejectedSubmissionError(LeaderboardError):
    """The scorer refused the file; no quota was used. `problems` lists every reason at once."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, problems: list[str]):
        self.problems = list(problems) or ["invalid submission"]
        self.quota = None  # the team's unchanged QuotaStatus, when the token was known
        super().__init__("invalid submission: " + "; ".join(self.problems))

    def __str__(self) -> str:
        quota = f"; {self.quota.describe()}" if self.quota is not None else ""
        return "invalid submission (no quota used): " + "; ".join(self.problems) + quota


class DatasetChangedError(HostSideError):
    """The query manifest changed since `init`, so the stored hidden partition no longer applies."""


class DatasetUnscorableError(HostSideError):
    """The leaderboard's own dataset cannot be read by the scorer."""


class SubmissionAbandonedError(LeaderboardError):
    """Scoring outlived the request timeout or its deadline; nothing was recorded and no quota was used."""


class PhaseClosedError(LeaderboardError):
    """No phase is open now (or the phase an action needs is over); the message gives the phases' dates."""

    exit_code = ExitCode.REFUSED


class NotRevealedError(LeaderboardError):
    """The private board is the host's until the final phase has closed and the host has revealed it."""

    exit_code = ExitCode.REFUSED


class ScoringPendingError(NotRevealedError):
    """The reveal waits for submissions received before the final phase closed and still being scored."""


class SelectionError(LeaderboardError):
    """A selection for the private board that cannot be made (too many, another team's, another phase)."""
