"""A PNG's chunks, and the whitelist a released PNG keeps: the header, the palette and its
transparency, the image data, the end.

Text (tEXt, zTXt, iTXt), EXIF (eXIf), times, ICC profiles and any other chunk can carry identity,
and so can bytes after IEND; `clean_png` drops them losslessly (the image data is copied), and
`png_problem` names the first one a released PNG holds.
"""

from __future__ import annotations

import io
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: What a decoder needs: the header, a palette and its transparency, the image data, the end.
KEPT = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"})


class PngStructureError(ValueError):
    """The bytes are not a PNG whose chunks can be followed from the signature to IEND."""


def chunks(data: bytes) -> tuple[list[tuple[bytes, int, int]], int]:
    """(type, start, end) of every chunk up to IEND, and the offset after IEND."""
    if data[:8] != SIGNATURE:
        raise PngStructureError("no PNG signature")
    found, i, n = [], 8, len(data)
    while True:
        if i + 12 > n:
            raise PngStructureError("the file ends before its IEND chunk")
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if end > n:
            raise PngStructureError(f"chunk {kind!r} at byte {i} runs past the file's end")
        if zlib.crc32(data[i + 4 : end - 4]) != struct.unpack(">I", data[end - 4 : end])[0]:
            raise PngStructureError(f"chunk {kind!r} at byte {i} fails its CRC")
        found.append((kind, i, end))
        i = end
        if kind == b"IEND":
            return found, i


def _image_data_ends_exactly(data: bytes, found: list[tuple[bytes, int, int]]) -> None:
    """The IDAT chunks hold one zlib stream and nothing after it (bytes there would be ignored by
    every decoder: room for anything); the header is 13 bytes. Raises PngStructureError."""
    if not found or found[0][0] != b"IHDR" or found[0][2] - found[0][1] != 12 + 13:
        raise PngStructureError("no 13-byte IHDR chunk first")
    stream = zlib.decompressobj()
    try:
        for kind, start, end in found:
            rest = data[start + 8 : end - 4] if kind == b"IDAT" else b""
            while rest:
                stream.decompress(rest, 1 << 20)  # at most 1 MiB of pixels at a time, dropped at once
                rest = stream.unconsumed_tail
    except zlib.error as exc:
        raise PngStructureError(f"its image data is no zlib stream ({exc})") from None
    if not stream.eof or stream.unused_data:
        raise PngStructureError("bytes after the end of its compressed image data")


def clean_png(data: bytes) -> bytes:
    """The PNG rebuilt from its whitelisted chunks; raises PngStructureError."""
    found, _ = chunks(data)
    _image_data_ends_exactly(data, found)
    return SIGNATURE + b"".join(data[start:end] for kind, start, end in found if kind in KEPT)


def png_problem(data: bytes) -> str | None:
    """The first chunk (or trailing bytes) a PNG holds beyond the whitelist, or None."""
    try:
        found, end = chunks(data)
    except PngStructureError as exc:
        return f"a PNG structure that cannot be checked ({exc})"
    for kind, start, _ in found:
        if kind not in KEPT:
            return f"PNG chunk {kind.decode('latin-1')} at byte {start}"
    try:
        _image_data_ends_exactly(data, found)
    except PngStructureError as exc:
        return f"a PNG structure that cannot be checked ({exc})"
    if end < len(data):
        return f"{len(data) - end} byte(s) after the IEND chunk"
    return None


def encode_png(pixels) -> bytes:
    """A minimal PNG of an H x W x 3 uint8 array (Pillow writes no ancillary chunk for it)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()
