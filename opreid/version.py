"""The single source of the package version (read by setup.cfg without importing anything heavy)."""

__version__ = "0.1.0"
