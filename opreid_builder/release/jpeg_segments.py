"""JPEG header segments that carry metadata: EXIF/XMP (APP1) and comments (COM).

A released image may hold no such segment (they can carry camera serials, dates, source names);
`opreid validate` looks for them with `metadata_segment`, and `opreid import` drops them with
`strip_metadata`, losslessly: the segments are cut out of the byte stream, pixels untouched.
"""

from __future__ import annotations

SOI = b"\xff\xd8"
_APP1, _COM = 0xE1, 0xFE
_HEADERS_END = (0xD9, 0xDA)  # end of image / start of scan: no header segment follows
_NAMES = {_APP1: "EXIF/XMP (APP1)", _COM: "a comment (COM)"}


def _segments(data: bytes):
    """(marker, start, end) of each header segment before the scan; stops at anything unexpected."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in _HEADERS_END:
            return
        end = i + 2 + int.from_bytes(data[i + 2 : i + 4], "big")
        yield marker, i, end
        i = end


def metadata_segment(head: bytes) -> str | None:
    """Name the first EXIF/XMP or comment segment of a JPEG (its first bytes suffice), or None."""
    if head[:2] != SOI:
        return None
    return next((_NAMES[m] for m, _, _ in _segments(head) if m in _NAMES), None)


def strip_metadata(data: bytes) -> bytes | None:
    """The JPEG without its EXIF/XMP and comment segments; None when it has none (or is no JPEG)."""
    if data[:2] != SOI:
        return None
    cut = [(start, end) for marker, start, end in _segments(data) if marker in _NAMES]
    if not cut:
        return None
    parts, at = [], 0
    for start, end in cut:
        parts.append(data[at:start])
        at = end
    parts.append(data[at:])
    return b"".join(parts)
