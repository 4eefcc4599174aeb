"""What a released image may hold: its pixels and the minimum container of its format, nothing else.

A release holds JPEG, PNG and TIFF images, each reduced to a whitelist of its structure
(`jpeg_segments`, `png_chunks`, `tiff_tags`): no metadata segment, chunk or tag, no thumbnail, no
byte outside the structure. `image_problem` names the first thing an image holds beyond its
whitelist (`opreid validate`, `validate --public`); `clean_image` gives the image reduced to it,
losslessly, or raises ContainerError when it cannot (another format, a structure it cannot
follow, a TIFF Pillow cannot re-write pixel for pixel): the caller then converts the decoded
pixels to PNG.
"""

from __future__ import annotations

import io

from opreid_builder.release.jpeg_segments import SOI, JpegStructureError, clean_jpeg, jpeg_problem
from opreid_builder.release.png_chunks import SIGNATURE, PngStructureError, clean_png, png_problem
from opreid_builder.release.tiff_tags import TiffStructureError, clean_tiff, tiff_problem

_TIFF = (b"II*\x00", b"MM\x00*")
#: The largest released image `image_file_problem` reads (a crop is far smaller).
MAX_CHECKED_BYTES = 256 << 20


class ContainerError(ValueError):
    """The image cannot be reduced to its format's whitelist without decoding it."""


def image_problem(data: bytes) -> str | None:
    """What in an image file is more than pixels and the minimum container, in words; None if nothing."""
    if data[:2] == SOI:
        return jpeg_problem(data)
    if data[:8] == SIGNATURE:
        return png_problem(data)
    if data[:4] in _TIFF:
        return tiff_problem(data)
    return "not a JPEG, PNG or TIFF image (a release holds these formats only)"


def image_file_problem(path) -> str | None:
    """`image_problem` of a file on disk (None for a file that cannot be read: reported elsewhere)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CHECKED_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_CHECKED_BYTES:
        return f"over {MAX_CHECKED_BYTES} bytes: too large to be a released crop"
    return image_problem(data)


def _same_pixels(a: bytes, b: bytes) -> bool:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(a)) as x, Image.open(io.BytesIO(b)) as y:
        return x.mode == y.mode and x.size == y.size and np.array_equal(np.asarray(x), np.asarray(y))


def clean_image(data: bytes) -> bytes | None:
    """The image reduced to its whitelist (None when it already is); raises ContainerError."""
    if image_problem(data) is None:
        return None
    try:
        if data[:2] == SOI:
            cleaned = clean_jpeg(data)
        elif data[:8] == SIGNATURE:
            cleaned = clean_png(data)
        elif data[:4] in _TIFF:
            cleaned = clean_tiff(data)
            if not _same_pixels(data, cleaned):
                raise ContainerError("Pillow cannot re-write this TIFF pixel for pixel")
        else:
            raise ContainerError("not a JPEG, PNG or TIFF image")
    except (JpegStructureError, PngStructureError, TiffStructureError, OSError) as exc:
        raise ContainerError(str(exc)) from None
    if (problem := image_problem(cleaned)) is not None:
        raise ContainerError(problem)
    return cleaned
