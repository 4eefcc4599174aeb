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
