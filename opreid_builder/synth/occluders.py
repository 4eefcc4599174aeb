"""Objects in front of a pedestrian: carts, shelves, signs, other pedestrians, poles.

Each is placed relative to the target's skeleton so that it covers the body parts it is meant to
(a cart both legs from above the hips, a shelf one side of the body, a sign the shoulders or head,
a passer-by one side); a pole is the small incidental kind that holistic images may carry. Builders
return plain shapes; the caller renders them onto the crop and onto the occluder mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opreid_builder.synth.appearance import PALETTE, random_identity
from opreid_builder.synth.canvas import Shape, line, rect, shade
from opreid_builder.synth.figure import (
    L_ANK,
    L_ELB,
    L_HIP,
    L_SHO,
    L_WRI,
    R_ANK,
    R_ELB,
    R_HIP,
    R_SHO,
    R_WRI,
    Pose,
    figure_shapes,
    make_pose,
)  # fmt: skip

#: Occluders used for occluded images, with their sampling weights.
LARGE_OCCLUDERS = {"cart": 0.28, "pedestrian": 0.3, "shelf": 0.2, "sign": 0.22}
SMALL_OCCLUDERS = ("pole",)

_PRODUCTS = [PALETTE[k] for k in ("red", "yellow", "blue", "green", "orange", "white", "purple")]


@dataclass(frozen=True)
class Occluder:
    name: str
    shapes: list[Shape]


def _bbox(pose: Pose, indices: tuple[int, ...]) -> tuple[float, float, float, float]:
    pts = pose.keypoints[list(indices)]
    return float(pts[:, 0].min()), float(pts[:, 1].min()), float(pts[:, 0].max()), float(pts[:, 1].max())


def cart(rng: np.random.Generator, pose: Pose, width: int, height: int) -> Occluder:
    """A shopping cart / trolley covering both legs from just above the hips down."""
    u = pose.u
    x1, _, x2, y2 = _bbox(pose, (L_HIP, R_HIP, L_ANK, R_ANK))
    top = min(pose.kp(L_HIP)[1], pose.kp(R_HIP)[1]) - rng.uniform(0.03, 0.1) * u
    left = x1 - rng.uniform(0.08, 0.3) * u
    right = x2 + rng.uniform(0.08, 0.3) * u
    if rng.random() < 0.5:  # runs off one edge of the crop
        left, right = (-2.0, right) if rng.random() < 0.5 else (left, width + 2.0)
    bottom = min(height + 2.0, y2 + rng.uniform(0.04, 0.08) * u)
    # Per-image colour: identical occluders across images would let a model match on the occluder.
    metal = tuple(int(v) for v in rng.integers(60, 215, 3))
    dark = shade(metal, 0.55)
    shapes = [rect(left, top, right, bottom, metal)]
    step = max(2.0, 0.05 * u)
    x = left + step
    while x < right - 1:
        shapes.append(line((x, top + 1), (x, bottom - 1), max(0.5, 0.008 * u), dark))
        x += step
    for frac in (0.33, 0.66):
        yy = top + (bottom - top) * frac
        shapes.append(line((left, yy), (right, yy), max(0.5, 0.008 * u), dark))
    shapes.append(rect(left, top, right, top + 0.025 * u, dark))  # handle bar / rim
    return Occluder("cart", shapes)


def shelf(rng: np.random.Generator, pose: Pose, width: int, height: int) -> Occluder:
    """A shelving unit from one crop edge over one side of the body (arm and leg of that side)."""
    u = pose.u
    from_left = rng.random() < 0.5
    side_pts = pose.keypoints[[L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI, L_HIP, R_HIP, L_ANK, R_ANK], 0]
    reach = rng.uniform(0.0, 0.05) * u
    if from_left:
        left, right = -2.0, max(pose.cx + reach, float(np.sort(side_pts)[4]) + reach)
    else:
        left, right = min(pose.cx - reach, float(np.sort(side_pts)[5]) - reach), width + 2.0
    top = -2.0 if rng.random() < 0.5 else pose.top + rng.uniform(0.12, 0.17) * u
    wood = tuple(int(v) for v in rng.integers(90, 200, 3))
    shapes = [rect(left, top, right, height + 2.0, wood)]  # type: ignore[arg-type]
    board = shade(wood, 0.6)  # type: ignore[arg-type]
    y = max(top, 0.0) + 0.03 * u
    while y < height:
        shapes.append(rect(left, y, right, y + 0.02 * u, board))
        # products on the board above
        x = left + 0.01 * u
        while x < right - 0.04 * u:
            w = rng.uniform(0.03, 0.07) * u
            h = rng.uniform(0.06, 0.12) * u
            shapes.append(rect(x, y - h, min(x + w, right), y, _PRODUCTS[int(rng.integers(len(_PRODUCTS)))]))
            x += w + rng.uniform(0.005, 0.02) * u
        y += rng.uniform(0.18, 0.24) * u
    return Occluder("shelf", shapes)


def sign(rng: np.random.Generator, pose: Pose, width: int, height: int) -> Occluder:
    """A board over the shoulders and elbows (on a post), or a hanging sign over head and shoulders."""
    u = pose.u
    x1, y1, x2, _ = _bbox(pose, (L_SHO, R_SHO, L_ELB, R_ELB))
    margin = rng.uniform(0.05, 0.12) * u
    if rng.random() < 0.4:  # hanging from above, hides the head and shoulders
        top, bottom = -2.0, y1 + rng.uniform(0.05, 0.12) * u
        x1 = min(x1, pose.head[0] - pose.head[2])
        x2 = max(x2, pose.head[0] + pose.head[2])
        post = None
    else:
        top = y1 - rng.uniform(0.03, 0.07) * u
        bottom = max(pose.kp(L_ELB)[1], pose.kp(R_ELB)[1]) + rng.uniform(0.03, 0.1) * u
        post = (x1 + x2) / 2 + rng.uniform(-0.05, 0.05) * u
    board = tuple(int(v) for v in rng.integers(30, 250, 3))
    ink = (20, 20, 24) if sum(board) > 380 else (240, 240, 240)
    left, right = x1 - margin, x2 + margin
    shapes: list[Shape] = []
    if post is not None:
        shapes.append(rect(post - 0.015 * u, bottom, post + 0.015 * u, height + 2.0, (90, 90, 96)))
    shapes.append(rect(left, top, right, bottom, board))
    shapes.append(rect(left, top, right, top + 0.02 * u, shade(board, 0.6)))
    # "text": a few dark bars
    y = max(top, 0.0) + 0.05 * u
    while y < bottom - 0.04 * u:
        shapes.append(
            rect(left + 0.03 * u, y, left + (right - left) * rng.uniform(0.4, 0.9), y + 0.022 * u, ink)
        )
        y += 0.05 * u
    return Occluder("sign", shapes)


def pedestrian(rng: np.random.Generator, pose: Pose, width: int, height: int) -> Occluder:
    """Another person nearer the camera, covering one side of the target."""
    u = pose.u
    s = -1 if rng.random() < 0.5 else 1  # image side the passer-by covers
    cols = pose.keypoints[[L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI, L_HIP, R_HIP, L_ANK, R_ANK], 0]
    edge = float(cols.max() if s > 0 else cols.min())
    scale = rng.uniform(1.0, 1.15)
    other_u = u * scale
    cx = edge + s * rng.uniform(-0.06, 0.02) * u
    other_top = pose.top + rng.uniform(0.0, 0.1) * u
    who = random_identity(rng)
    view = ("front", "back", "left", "right")[int(rng.integers(4))]
    other = make_pose(rng, who, view, cx, other_top, other_u)
    shapes = figure_shapes(other, who)
    # Widen the body slightly so a shoulder-to-wrist or hip-to-ankle run is reliably covered.
    torso_w = 0.12 * other_u * who.width
    shapes.insert(
        0, rect(cx - torso_w, other_top + 0.17 * other_u, cx + torso_w, other_top + 0.58 * other_u, who.top)
    )
    return Occluder("pedestrian", shapes)


def pole(rng: np.random.Generator, pose: Pose, width: int, height: int) -> Occluder:
    """A thin pole in front: hides little, at most a joint or two."""
    w = rng.uniform(0.03, 0.07) * width
    x = rng.uniform(0.0, width)
    color = (200, 170, 40) if rng.random() < 0.3 else (110, 110, 118)
    return Occluder(
        "pole",
        [
            rect(x - w / 2, -2.0, x + w / 2, height + 2.0, color),
            rect(x - w / 2, -2.0, x - w / 6, height + 2.0, shade(color, 1.2)),
        ],
    )


BUILDERS = {"cart": cart, "shelf": shelf, "sign": sign, "pedestrian": pedestrian, "pole": pole}


def full_leg_cart(pose: Pose, width: int, height: int) -> Occluder:
    """The fallback occluder: a full-width cart hiding both legs from above the hips (certain run of 6)."""
    u = pose.u
    top = min(pose.kp(L_HIP)[1], pose.kp(R_HIP)[1]) - 0.06 * u
    metal = (150, 150, 158)
    shapes = [
        rect(-2.0, top, width + 2.0, height + 2.0, metal),
        rect(-2.0, top, width + 2.0, top + 0.025 * u, shade(metal, 0.55)),
    ]
    return Occluder("cart", shapes)
