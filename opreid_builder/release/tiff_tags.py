"""A TIFF's tags, and the whitelist a released TIFF keeps: one image, the tags that say how to
decode it, its strips or tiles, and no byte outside them.

A TIFF can hide identity in tags (ImageDescription, DocumentName, Artist, EXIF, XMP, IPTC, ICC...),
in further images (a second IFD) and in bytes no tag points at. `tiff_problem` names the first
such thing; `clean_tiff` re-writes the image from its pixels with Pillow, which writes the
structural tags alone (pixels identical; checked by the caller).
"""

from __future__ import annotations

import io
import struct

#: What a decoder needs: size, samples, compression and its tables, photometric interpretation,
#: the strip or tile layout, a palette, extra samples (alpha) and sample formats.
KEPT = frozenset(
    {254, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339,
     347, 529, 530, 531, 532}
)  # fmt: skip
_NAMES = {269: "DocumentName", 270: "ImageDescription", 271: "Make", 272: "Model", 274: "Orientation",
          282: "XResolution", 283: "YResolution", 285: "PageName", 296: "ResolutionUnit", 305: "Software",
          306: "DateTime", 315: "Artist", 316: "HostComputer", 700: "XMP", 33432: "Copyright",
          33723: "IPTC", 34377: "Photoshop", 34665: "ExifIFD", 34675: "ICCProfile",
          34853: "GPSInfo"}  # fmt: skip
_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_OFFSETS_COUNTS = ((273, 279), (324, 325))  # strips, tiles
_ALIGNMENT = 1  # a writer may pad each block to an even offset


class TiffStructureError(ValueError):
    """The bytes are not a classic TIFF whose first image directory can be read."""


def _ifd(data: bytes) -> tuple[str, int, dict[int, tuple[int, int, int]], int]:
    """Byte order, IFD offset, tags (tag -> (type, count, value offset)) and the next IFD's offset."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        raise TiffStructureError("not a classic TIFF (BigTIFF or another format)")
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack(order + "I", data[4:8])
    if offset + 2 > len(data):
        raise TiffStructureError("its image directory lies past the file's end")
    (count,) = struct.unpack(order + "H", data[offset : offset + 2])
    end = offset + 2 + 12 * count + 4
    if end > len(data):
        raise TiffStructureError("its image directory runs past the file's end")
    tags = {}
    for k in range(count):
        at = offset + 2 + 12 * k
        tag, kind, n = struct.unpack(order + "HHI", data[at : at + 8])
        size = _SIZES.get(kind, 1) * n
        value_at = at + 8 if size <= 4 else struct.unpack(order + "I", data[at + 8 : at + 12])[0]
        if value_at + size > len(data):
            raise TiffStructureError(f"tag {tag} points past the file's end")
        tags[tag] = (kind, n, value_at)
    (following,) = struct.unpack(order + "I", data[end - 4 : end])
    return order, offset, tags, following


def _values(data: bytes, order: str, entry: tuple[int, int, int]) -> list[int]:
    kind, n, at = entry
    code = {3: "H", 4: "I", 16: "Q"}.get(kind)
    if code is None:
        raise TiffStructureError("strip offsets or counts of an unexpected type")
    return list(struct.unpack(f"{order}{n}{code}", data[at : at + n * _SIZES.get(kind, 8)]))


def tiff_problem(data: bytes) -> str | None:
    """The first tag, image or byte a TIFF holds beyond the whitelist, or None."""
    try:
        order, offset, tags, following = _ifd(data)
        for tag in sorted(tags):
            if tag not in KEPT:
                return f"TIFF tag {tag}" + (f" ({_NAMES[tag]})" if tag in _NAMES else "")
        if following:
            return "a second image (IFD) in the TIFF"
        blocks = [(0, 8), (offset, offset + 2 + 12 * len(tags) + 4)]
        for kind, n, at in tags.values():
            if _SIZES.get(kind, 1) * n > 4:
                blocks.append((at, at + _SIZES.get(kind, 1) * n))
        for offsets_tag, counts_tag in _OFFSETS_COUNTS:
            if offsets_tag in tags and counts_tag in tags:
                starts = _values(data, order, tags[offsets_tag])
                sizes = _values(data, order, tags[counts_tag])
                blocks += [(s, s + c) for s, c in zip(starts, sizes, strict=False)]
    except (TiffStructureError, struct.error) as exc:
        return f"a TIFF structure that cannot be checked ({exc})"
    covered = 0
    for start, end in sorted(blocks):
        if start > covered + _ALIGNMENT:
            return f"{start - covered} byte(s) at byte {covered} that no TIFF tag points at"
        covered = max(covered, end)
    if len(data) > covered + _ALIGNMENT:
        return f"{len(data) - covered} byte(s) after the TIFF's image data"
    return None


def clean_tiff(data: bytes) -> bytes:
    """The TIFF's first image re-written from its pixels (Pillow writes only structural tags)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        fresh = Image.frombytes(img.mode, img.size, img.tobytes())
        if img.mode == "P":
            fresh.putpalette(img.getpalette())
    buf = io.BytesIO()
    fresh.save(buf, format="TIFF")
    return buf.getvalue()
