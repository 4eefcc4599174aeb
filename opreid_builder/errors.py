"""Typed errors of the curation and split package (the error policy: manifests/errors.py)."""

from __future__ import annotations

from manifests.errors import ExitCode, OpreidError


class BuilderError(OpreidError):
    """Base class of every error `opreid_builder` raises on purpose (exit 1 unless it says otherwise)."""


class SynthError(BuilderError):
    """`opreid synth` cannot run as asked."""


class TableFileError(BuilderError):
    """A user-supplied CSV/Parquet table (index file, review corrections) is missing or malformed."""

    exit_code = ExitCode.INVALID_INPUT


# --- curation: sources, pose, occlusion, faces, review ---


class CurationError(BuilderError):
    """Curation cannot run as asked (bad option values, an output folder it cannot use)."""


class SourceError(CurationError):
    """RAW cannot be read as a source: missing folder, unknown layout, a bad index file."""


class ModelFileError(CurationError):
    """A model file is missing or unusable; the message names the option that sets it.

    Checked before Ultralytics / insightface see the path, so neither ever tries a download.
    """

    def __init__(self, what: str, path: str | None, option: str):
        self.what, self.path, self.option = what, path, option
        where = f"not found: {path}" if path else "not given"
        super().__init__(f"{what} {where} (set {option})")


class PoseError(CurationError):
    """The pose model failed to load or to run."""


class KeypointsFileError(CurationError):
    """A precomputed keypoints file is missing or malformed."""

    exit_code = ExitCode.INVALID_INPUT


class FlagFileError(CurationError):
    """An occlusion flag file is malformed, of another format version, or fitted on other features."""

    exit_code = ExitCode.INVALID_INPUT


class FaceDetectorError(CurationError):
    """A face detector could not be built or run."""


class CorrectionsError(CurationError):
    """A review corrections file is missing or malformed."""

    exit_code = ExitCode.INVALID_INPUT


# --- split protocol, release, validate, export ---


class SplitError(BuilderError):
    """The split protocol cannot run as asked (bad option values or an input table it cannot use)."""


class SplitPoolError(SplitError):
    """The curated pool cannot satisfy one constraint of the split; the message names it and the pool."""

    def __init__(self, constraint: str, needed: str, pool: str):
        self.constraint, self.needed, self.pool = constraint, needed, pool
        super().__init__(f"cannot satisfy '{constraint}': need {needed}; the pool holds {pool}")


class ReleaseError(BuilderError):
    """Writing the release layout failed (a missing masked image, an output that is not a release)."""


class MaskedCropError(ReleaseError):
    """A masked crop about to be released is not what curate wrote (changed after curation); nothing was written."""

    exit_code = ExitCode.INVALID_INPUT


class ExportError(BuilderError):
    """Export to another dataset layout failed (missing ground truth, target folder not empty)."""


# --- import of public benchmarks with their official splits ---


class BenchmarkImportError(BuilderError):
    """`opreid import` cannot run as asked: an unknown format, a missing folder, an OUT it cannot use."""


class BenchmarkLayoutError(BenchmarkImportError):
    """The dataset copy breaks its layout: a file name that does not parse, pid 0 in a query, a train
    identity in the test set, a malformed list file. Nothing is written."""

    exit_code = ExitCode.INVALID_INPUT


class PackRefusedError(ReleaseError):
    """`release pack` found something private or broken in what participants would receive; nothing was written."""

    exit_code = ExitCode.INVALID_INPUT


class LeaderboardReleaseError(ReleaseError):
    """build-split would overwrite the release a leaderboard scores against (pass --force to do it anyway)."""


class EngineError(CurationError):
    """The curation engine cannot run as asked (Ray missing, a cluster that cannot be reached)."""
