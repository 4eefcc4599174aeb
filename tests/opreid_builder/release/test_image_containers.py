"""Released images hold pixels and their format's minimum container only: every way a probe smuggled
identity past the old JPEG check is named by `image_problem` and removed by `clean_image`, with the
pixels untouched; what our own encoders write passes as it is."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image
from support.hostile_images import (
    SECRET,
    clean_jpeg_of,
    jpeg_variants,
    pixels,
    png_with_text,
    tiff_with_tags,
)

from opreid_builder.release.image_containers import ContainerError, clean_image, image_problem

RGB = np.random.default_rng(0).integers(0, 255, (32, 16, 3), dtype=np.uint8)
JPEG = clean_jpeg_of(RGB)


def _saved(fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [JPEG, _saved("PNG"), _saved("TIFF"), cv2.imencode(".jpg", RGB)[1].tobytes(),
     _saved("JPEG", progressive=True), _saved("JPEG", quality=50, subsampling=0)],
    ids=["pil-jpeg", "pil-png", "pil-tiff", "cv2-jpeg", "progressive", "q50-444"],
)  # fmt: skip
def test_what_our_encoders_write_passes_as_it_is(data):
    assert image_problem(data) is None
    assert clean_image(data) is None


@pytest.mark.parametrize("name", list(jpeg_variants(JPEG)))
def test_every_jpeg_smuggling_is_named_and_removed_losslessly(name):
    data = jpeg_variants(JPEG)[name]
    assert image_problem(data) is not None, name
    cleaned = clean_image(data)
    assert image_problem(cleaned) is None and SECRET.encode() not in cleaned
    assert np.array_equal(pixels(cleaned), pixels(data))
    assert cleaned == JPEG  # the base, byte for byte: only what was added went


def test_the_exif_after_a_64_kib_app2_is_found():
    """The old check read the first 64 KiB only."""
    data = jpeg_variants(JPEG)["EXIF after a 64 KiB APP2"]
    assert len(data) > 1 << 16
    assert image_problem(data).startswith("APP2")
    assert b"Exif" not in clean_image(data)


def test_png_text_chunks():
    data = png_with_text(RGB)
    assert image_problem(data).startswith("PNG chunk tEXt") or image_problem(data).startswith(
        "PNG chunk iTXt"
    )
    cleaned = clean_image(data)
    assert image_problem(cleaned) is None and SECRET.encode() not in cleaned
    assert np.array_equal(pixels(cleaned), RGB)
    assert image_problem(_saved("PNG") + b"tail").startswith("4 byte(s) after the IEND chunk")


def test_tiff_tags_extra_images_and_hidden_bytes():
    data = tiff_with_tags(RGB)
    assert image_problem(data) == "TIFF tag 269 (DocumentName)"
    cleaned = clean_image(data)
    assert image_problem(cleaned) is None and SECRET.encode() not in cleaned
    assert np.array_equal(pixels(cleaned), RGB)
    two = io.BytesIO()
    Image.fromarray(RGB).save(two, format="TIFF", save_all=True, append_images=[Image.fromarray(RGB[::-1])])
    assert image_problem(two.getvalue()) == "a second image (IFD) in the TIFF"
    assert image_problem(_saved("TIFF") + SECRET.encode()).endswith("after the TIFF's image data")


def test_other_formats_and_broken_structures_cannot_be_reduced():
    for data in (_saved("BMP"), _saved("GIF"), JPEG[:20] + b"\xff\xe1\xff\xffExif"):
        assert image_problem(data) is not None
        with pytest.raises(ContainerError):
            clean_image(data)


def test_bytes_hidden_inside_a_kept_structure_are_found():
    """Beside the tables of a DQT segment, or after the zlib stream of a PNG's image data: decoders
    skip them, so they could carry anything."""
    at = JPEG.index(b"\xff\xdb")
    length = int.from_bytes(JPEG[at + 2 : at + 4], "big")
    padded = JPEG[: at + 2] + (length + 6).to_bytes(2, "big") + JPEG[at + 4 : at + 2 + length] + b"SECRET"
    padded += JPEG[at + 2 + length :]
    assert (
        image_problem(padded)
        == f"a JPEG structure that cannot be checked (DQT at byte {at} holds bytes beside its tables)"
    )
    with pytest.raises(ContainerError):
        clean_image(padded)

    import struct
    import zlib

    png = _saved("PNG")
    at = png.index(b"IDAT") - 4
    (n,) = struct.unpack(">I", png[at : at + 4])
    payload = png[at + 8 : at + 8 + n] + SECRET.encode()
    chunk = (
        struct.pack(">I", len(payload)) + b"IDAT" + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload))
    )
    hidden = png[:at] + chunk + png[at + 12 + n :]
    assert np.array_equal(pixels(hidden), RGB)  # every decoder shows the same picture
    assert "bytes after the end of its compressed image data" in image_problem(hidden)
    with pytest.raises(ContainerError):
        clean_image(hidden)
