"""Masking faces in released crops, and re-encoding them without EXIF.

`fill` (default) paints the enlarged box a solid colour: nothing of the face survives. `pixelate`
keeps at most 4 x 4 cells of the box. `blur` is offered for those who want it, with a warning:
a Gaussian blur of a known kernel can be partly inverted, so it is not anonymisation.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from manifests import DEFAULT_KPT_CONF
from opreid_builder.curation.faces import HEAD_ENLARGE, FaceBox
from opreid_builder.errors import CurationError

log = logging.getLogger(__name__)

MASK_METHODS = ("fill", "pixelate", "blur")
FILL_COLOR = (0, 0, 0)
PIXEL_CELLS = 4
BLUR_WARNING = (
    "--face-mask blur can be partly reversed (deblurring); use fill or pixelate for a public release"
)


@dataclass(frozen=True)
class MaskSettings:
    """How faces are masked: the detector boxes plus the pose head box of every person found.

    Its defaults are curation's (`CurateConfig` and the CLI read them here).
    """

    method: str = MASK_METHODS[0]
    enlarge: float = 1.3  # detector boxes grow by this factor about their centre
    jpeg_quality: int = 95
    pose_head: bool = True
    head_enlarge: float = HEAD_ENLARGE
    kpt_conf: float = DEFAULT_KPT_CONF  # the occlusion rule's: a head keypoint it calls missing is not seen
    detector_count: int = 0  # how many detectors ran on each crop (recorded per crop)


def check_method(method: str) -> None:
    if method not in MASK_METHODS:
        raise CurationError(f"unknown --face-mask {method!r} (choose one of {', '.join(MASK_METHODS)})")


def enlarged(box: FaceBox, factor: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The box scaled by `factor` about its centre, as whole pixels covering it, clipped to the crop."""
    cx, cy = (box.x1 + box.x2) / 2.0, (box.y1 + box.y2) / 2.0
    hw, hh = (box.x2 - box.x1) * factor / 2.0, (box.y2 - box.y1) * factor / 2.0
    x1, y1 = max(0, int(np.floor(cx - hw))), max(0, int(np.floor(cy - hh)))
    x2, y2 = min(width, int(np.ceil(cx + hw))), min(height, int(np.ceil(cy + hh)))
    return x1, y1, x2, y2


def mask_faces(
    rgb: np.ndarray, boxes: Iterable[FaceBox], method: str = MaskSettings.method,
    enlarge: float = MaskSettings.enlarge,
) -> np.ndarray:  # fmt: skip
    """A copy of the crop with every box masked; detector boxes are enlarged, pose head boxes already are."""
    import cv2

    check_method(method)
    out = np.array(rgb, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    for box in boxes:
        factor = 1.0 if box.detector == "pose-head" else enlarge
        x1, y1, x2, y2 = enlarged(box, factor, w, h)
        if x2 <= x1 or y2 <= y1:
            continue
        region = out[y1:y2, x1:x2]
        if method == "fill":
            region[...] = FILL_COLOR
        elif method == "pixelate":
            small = cv2.resize(
                region, (min(PIXEL_CELLS, x2 - x1), min(PIXEL_CELLS, y2 - y1)), interpolation=cv2.INTER_AREA
            )
            region[...] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
        else:
            k = max(3, (max(x2 - x1, y2 - y1) // 2) | 1)
            region[...] = cv2.GaussianBlur(region, (k, k), 0)
    return out


def encode_jpeg(rgb: np.ndarray, quality: int = MaskSettings.jpeg_quality) -> bytes:
    """JPEG bytes with no EXIF or other metadata (the pixels alone); deterministic for the same input."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(
        buf, format="JPEG", quality=int(quality), optimize=False, progressive=False, subsampling=0
    )
    return buf.getvalue()
