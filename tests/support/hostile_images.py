"""Images that carry identity beside their pixels, each the way a probe found one slipping through:
JPEG metadata segments (behind a fill byte, after a 64 KiB APP2), bytes after EOI, a JFIF
thumbnail, PNG text chunks, TIFF tags. Every variant decodes to the same pixels as its clean base."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin, TiffImagePlugin

SECRET = "0002_c1s1_000451_00"  # an official, pid-bearing name


def pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img).copy()


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload


def _after_jfif(jpeg: bytes, insert: bytes) -> bytes:
    """`insert` placed after SOI and the 18-byte JFIF header our encoders write."""
    assert jpeg[2:4] == b"\xff\xe0", "expected a JFIF JPEG"
    end = 4 + int.from_bytes(jpeg[4:6], "big")
    return jpeg[:end] + insert + jpeg[end:]


def jpeg_variants(jpeg: bytes) -> dict[str, bytes]:
    """A clean JPEG with identity smuggled in, one way per entry."""
    exif = _segment(0xE1, b"Exif\x00\x00" + SECRET.encode())
    icc = _segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + SECRET.encode())
    big_app2 = _segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + b"\x00" * (65533 - 14))
    thumb = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x02\x01" + b"\x7f" * 6  # a 2 x 1 RGB thumbnail
    return {
        "APP1 EXIF": _after_jfif(jpeg, exif),
        "APP2 ICC": _after_jfif(jpeg, icc),
        "APP13 IPTC": _after_jfif(jpeg, _segment(0xED, b"Photoshop 3.0\x00" + SECRET.encode())),
        "COM": _after_jfif(jpeg, _segment(0xFE, SECRET.encode())),
        "EXIF behind a fill byte": _after_jfif(jpeg, b"\xff" + exif),
        "EXIF after a 64 KiB APP2": _after_jfif(jpeg, big_app2 + exif),
        "bytes after EOI": jpeg + SECRET.encode(),
        "JFIF thumbnail": _segment(0xE0, thumb).join(
            [jpeg[:2], jpeg[4 + int.from_bytes(jpeg[4:6], "big") :]]
        ),
    }


def png_with_text(rgb: np.ndarray) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", SECRET)
    info.add_itxt("Comment", SECRET)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def tiff_with_tags(rgb: np.ndarray) -> bytes:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[270] = SECRET  # ImageDescription
    tags[269] = SECRET  # DocumentName
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="TIFF", tiffinfo=tags)
    return buf.getvalue()


def clean_jpeg_of(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()
