"""Vector shapes in crop-pixel coordinates, rendered supersampled with Pillow.

The figure, the background props and the occluders are all plain lists of `Shape`s, so the same
description paints colour onto the crop and coverage onto the occluder mask: keypoint visibility
is read from exactly what was drawn.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from PIL import Image, ImageDraw

#: Drawing happens at this multiple of the crop size, then is box-filtered down (cheap anti-aliasing).
SUPERSAMPLE = 2

Color = tuple[int, int, int]


class Shape(NamedTuple):
    """One primitive. `geom` by kind: ellipse/rect (x1, y1, x2, y2); polygon (x, y, x, y, ...);
    capsule (x1, y1, x2, y2, radius); line (x1, y1, x2, y2, width)."""

    kind: str
    geom: tuple[float, ...]
    fill: Color


def ellipse(cx: float, cy: float, rx: float, ry: float, fill: Color) -> Shape:
    return Shape("ellipse", (cx - rx, cy - ry, cx + rx, cy + ry), fill)


def rect(x1: float, y1: float, x2: float, y2: float, fill: Color) -> Shape:
    return Shape("rect", (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), fill)


def polygon(points: list[tuple[float, float]], fill: Color) -> Shape:
    return Shape("polygon", tuple(v for p in points for v in p), fill)


def capsule(p1: tuple[float, float], p2: tuple[float, float], radius: float, fill: Color) -> Shape:
    """A limb: a thick segment with round ends."""
    return Shape("capsule", (p1[0], p1[1], p2[0], p2[1], radius), fill)


def line(p1: tuple[float, float], p2: tuple[float, float], width: float, fill: Color) -> Shape:
    return Shape("line", (p1[0], p1[1], p2[0], p2[1], width), fill)


def paint(draw: ImageDraw.ImageDraw, shapes: list[Shape], solid: int | None = None) -> None:
    """Draw `shapes` at SUPERSAMPLE scale; `solid` (for a mask) replaces every fill colour."""
    s = SUPERSAMPLE
    for shape in shapes:
        fill = shape.fill if solid is None else solid
        g = shape.geom
        kind = shape.kind
        if kind == "rect":
            x1, y1 = g[0] * s, g[1] * s
            draw.rectangle((x1, y1, max(x1, g[2] * s - 1), max(y1, g[3] * s - 1)), fill=fill)
        elif kind == "ellipse":
            x1, y1 = g[0] * s, g[1] * s
            draw.ellipse((x1, y1, max(x1, g[2] * s), max(y1, g[3] * s)), fill=fill)
        elif kind == "polygon":
            draw.polygon([v * s for v in g], fill=fill)
        elif kind == "capsule":
            x1, y1, x2, y2, r = (v * s for v in g)
            dx, dy = x2 - x1, y2 - y1
            length = math.hypot(dx, dy) or 1.0
            nx, ny = -dy / length * r, dx / length * r
            draw.polygon(
                [(x1 + nx, y1 + ny), (x2 + nx, y2 + ny), (x2 - nx, y2 - ny), (x1 - nx, y1 - ny)], fill=fill
            )
            draw.ellipse((x1 - r, y1 - r, x1 + r, y1 + r), fill=fill)
            draw.ellipse((x2 - r, y2 - r, x2 + r, y2 + r), fill=fill)
        elif kind == "line":
            x1, y1, x2, y2, w = g
            draw.line((x1 * s, y1 * s, x2 * s, y2 * s), fill=fill, width=max(1, round(w * s)))
        else:  # pragma: no cover - shapes are built in this package only
            raise ValueError(f"unknown shape kind {kind!r}")


def new_mask(width: int, height: int) -> Image.Image:
    return Image.new("L", (width * SUPERSAMPLE, height * SUPERSAMPLE), 0)


def shade(color: Color, factor: float) -> Color:
    """Darken (<1) or lighten (>1) a colour, clipped to 0..255."""
    return tuple(max(0, min(255, round(c * factor))) for c in color)  # type: ignore[return-value]


def mix(a: Color, b: Color, t: float) -> Color:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]
