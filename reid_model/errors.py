"""Typed errors of the reference model (the error policy: manifests/errors.py)."""

from __future__ import annotations

from manifests.errors import OpreidError


class ReidModelError(OpreidError):
    """Base class of every error the reference model raises for a user-facing problem (exit 1)."""


class ConfigError(ReidModelError):
    """A config file or override is malformed, names an unknown key, or has a value of the wrong type."""


class DataError(ReidModelError):
    """The dataset folder or one of its images does not fit what training or extraction needs."""


class CheckpointError(ReidModelError):
    """A checkpoint is missing, unreadable, or does not fit the model being built."""


class PretrainedWeightsError(ReidModelError):
    """Requested pretrained weights cannot be found or do not fit the backbone."""


class DistributedError(ReidModelError):
    """The torchrun environment is inconsistent with the run's settings."""
