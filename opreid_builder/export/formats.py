"""The export formats and their writers: one table for the CLI's --format choices and the library."""

from __future__ import annotations

from pathlib import Path

from opreid_builder.errors import ExportError
from opreid_builder.export.huggingface import export_hf
from opreid_builder.export.market1501 import export_market1501

#: Export formats and their writers (the CLI's --format choices).
FORMATS = {"market1501": export_market1501, "hf": export_hf}
#: Formats that leave the private ground truth out unless asked (--with-ground-truth).
GROUND_TRUTH_OPTIONAL = ("hf",)


def export_release(
    out: str | Path,
    dest: str | Path,
    fmt: str = "market1501",
    progress: bool = False,
    with_ground_truth: bool = False,
):
    """Export the release in OUT to DEST in format `fmt` (one of FORMATS).

    `with_ground_truth` adds the private query/gallery labels to a format that leaves them out by
    default (GROUND_TRUTH_OPTIONAL); market1501 names always carry pids.
    """
    try:
        writer = FORMATS[fmt]
    except KeyError:
        raise ExportError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}") from None
    if fmt not in GROUND_TRUTH_OPTIONAL:
        if with_ground_truth:
            raise ExportError(
                f"--with-ground-truth applies to {', '.join(GROUND_TRUTH_OPTIONAL)}: {fmt} always holds it"
            )
        return writer(out, dest, progress=progress)
    return writer(out, dest, progress=progress, with_ground_truth=with_ground_truth)
