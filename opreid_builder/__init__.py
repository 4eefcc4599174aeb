"""Curation: raw crops -> pose -> occlusion -> face masking -> review -> OPReID splits."""

from opreid_builder.version import __version__

__all__ = ["__version__"]
