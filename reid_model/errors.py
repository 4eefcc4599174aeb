"""Typed errors of the reference model; the CLI turns each into one line on stderr and a non-zero exit."""

from __future__ import annotations


class ReidModelError(Exception):
    """Base class of every error the reference model raises for a user-facing problem."""


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
