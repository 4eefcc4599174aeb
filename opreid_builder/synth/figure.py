"""A walking pedestrian: a COCO-17 skeleton and the shapes that paint a person on it.

The keypoints are the joints the drawing is built from, so they agree with the picture by
construction. Views: front, back, and walking left or right (side view); in a side view the
person's right side faces the camera when walking right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from manifests import COCO17, KEYPOINT_INDEX
from opreid_builder.synth.appearance import Identity
from opreid_builder.synth.canvas import Shape, capsule, ellipse, line, mix, polygon, rect, shade

# COCO-17 indices of the joints the drawing uses.
_I = KEYPOINT_INDEX
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = (_I[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"))
L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI = (
    _I[f"{side}_{joint}"] for joint in ("shoulder", "elbow", "wrist") for side in ("left", "right")
)
L_HIP, R_HIP, L_KNE, R_KNE, L_ANK, R_ANK = (
    _I[f"{side}_{joint}"] for joint in ("hip", "knee", "ankle") for side in ("left", "right")
)


@dataclass(frozen=True)
class Pose:
    view: str  # front | back | left | right
    u: float  # person height in pixels (head top to soles)
    cx: float
    top: float
    head: tuple[float, float, float, float]  # cx, cy, rx, ry
    keypoints: np.ndarray  # (17, 2) float64, crop pixels

    @property
    def facing(self) -> int:
        """+1 walking right, -1 walking left, 0 front/back."""
        return {"right": 1, "left": -1}.get(self.view, 0)

    def kp(self, index: int) -> tuple[float, float]:
        return float(self.keypoints[index, 0]), float(self.keypoints[index, 1])

    def lateral(self, side: str) -> int:
        """Image x direction of the person's `side` ("left"/"right") in front and back views."""
        sign = 1 if self.view == "front" else -1
        return sign if side == "left" else -sign

    def near_side(self) -> str | None:
        """The side facing the camera in a side view."""
        return {"right": "right", "left": "left"}.get(self.view)


def make_pose(rng: np.random.Generator, who: Identity, view: str, cx: float, top: float, u: float) -> Pose:
    """A walking pose: a random gait phase swings the legs and (opposite) the arms."""
    kp = np.zeros((len(COCO17), 2))
    phase = rng.uniform(0.0, 2.0 * math.pi)
    leg_amp = math.radians(rng.uniform(10.0, 30.0))
    arm_amp = math.radians(rng.uniform(6.0, 24.0))
    swing = math.sin(phase)
    sho_y, hip_y = top + 0.19 * u, top + 0.53 * u
    upper_arm, forearm, thigh, shin = 0.165 * u, 0.15 * u, 0.225 * u, 0.215 * u
    hx, hy, hrx, hry = cx, top + 0.068 * u, 0.052 * u, 0.068 * u
    side = view in ("left", "right")
    d = 1 if view == "right" else -1

    if side:
        for sho, elb, wri, hip, kne, ank, sgn, off in (
            (R_SHO, R_ELB, R_WRI, R_HIP, R_KNE, R_ANK, 1.0, 0.012 * u),
            (L_SHO, L_ELB, L_WRI, L_HIP, L_KNE, L_ANK, -1.0, -0.012 * u),
        ):
            kp[sho] = (cx + off, sho_y)
            kp[hip] = (cx + off * 0.8, hip_y)
            theta = sgn * leg_amp * swing  # leg angle, positive = forward
            knee_bend = math.radians(28.0 if theta < 0 else 6.0)
            kp[kne] = kp[hip] + thigh * np.array([d * math.sin(theta), math.cos(theta)])
            shin_a = theta - knee_bend
            kp[ank] = kp[kne] + shin * np.array([d * math.sin(shin_a), math.cos(shin_a)])
            beta = -sgn * arm_amp * swing
            elbow_bend = math.radians(rng.uniform(8.0, 35.0))
            kp[elb] = kp[sho] + upper_arm * np.array([d * math.sin(beta), math.cos(beta)])
            kp[wri] = kp[elb] + forearm * np.array(
                [d * math.sin(beta + elbow_bend), math.cos(beta + elbow_bend)]
            )
        # Head: the face looks towards the walking direction.
        near, far = (R_EYE, L_EYE) if d == 1 else (L_EYE, R_EYE)
        kp[NOSE] = (hx + d * 0.98 * hrx, hy + 0.22 * hry)
        kp[near] = (hx + d * 0.62 * hrx, hy - 0.08 * hry)
        kp[far] = (hx + d * 0.8 * hrx, hy - 0.1 * hry)
        near_ear, far_ear = (R_EAR, L_EAR) if d == 1 else (L_EAR, R_EAR)
        kp[near_ear] = (hx - d * 0.12 * hrx, hy + 0.02 * hry)
        kp[far_ear] = (hx - d * 0.2 * hrx, hy)
    else:
        sw, hw = 0.105 * u * who.width, 0.07 * u * who.width
        for name, sho, elb, wri, hip, kne, ank, sgn in (
            ("left", L_SHO, L_ELB, L_WRI, L_HIP, L_KNE, L_ANK, 1.0),
            ("right", R_SHO, R_ELB, R_WRI, R_HIP, R_KNE, R_ANK, -1.0),
        ):
            lat = (1 if view == "front" else -1) * (1 if name == "left" else -1)
            kp[sho] = (cx + lat * sw, sho_y)
            kp[hip] = (cx + lat * hw, hip_y)
            theta = sgn * leg_amp * swing  # foreshortened: seen as a shorter leg
            spread = math.radians(rng.uniform(1.0, 5.0))
            kp[kne] = kp[hip] + thigh * np.array([lat * math.sin(spread), math.cos(theta) * math.cos(spread)])
            bend = math.radians(25.0 if theta < 0 else 4.0)
            kp[ank] = kp[kne] + shin * np.array([lat * 0.5 * math.sin(spread), math.cos(theta - bend)])
            beta = -sgn * arm_amp * swing
            out = math.radians(rng.uniform(5.0, 16.0))
            kp[elb] = kp[sho] + upper_arm * np.array([lat * math.sin(out), math.cos(beta) * math.cos(out)])
            fold = math.radians(rng.uniform(0.0, 30.0))
            kp[wri] = kp[elb] + forearm * np.array([lat * 0.6 * math.sin(out), math.cos(beta + fold)])
        s = 1 if view == "front" else -1
        kp[NOSE] = (hx, hy + (0.25 if view == "front" else 0.1) * hry)
        kp[L_EYE] = (hx + s * 0.36 * hrx, hy - 0.06 * hry)
        kp[R_EYE] = (hx - s * 0.36 * hrx, hy - 0.06 * hry)
        kp[L_EAR] = (hx + s * 0.96 * hrx, hy + 0.02 * hry)
        kp[R_EAR] = (hx - s * 0.96 * hrx, hy + 0.02 * hry)
    return Pose(view=view, u=u, cx=cx, top=top, head=(hx, hy, hrx, hry), keypoints=kp)


def _face_ellipse(pose: Pose) -> tuple[float, float, float, float] | None:
    """(cx, cy, rx, ry) of the skin-coloured face, or None in a back view."""
    hx, hy, rx, ry = pose.head
    if pose.view == "back":
        return None
    if pose.view == "front":
        return hx, hy + 0.14 * ry, 0.74 * rx, 0.8 * ry
    return hx + pose.facing * 0.42 * rx, hy + 0.14 * ry, 0.56 * rx, 0.78 * ry


def face_box(pose: Pose) -> tuple[float, float, float, float] | None:
    """The drawn face's bounding box (x1, y1, x2, y2) in crop pixels, or None if no face is drawn."""
    face = _face_ellipse(pose)
    if face is None:
        return None
    fx, fy, rx, ry = face
    return fx - rx, fy - ry, fx + rx, fy + ry


def _limb_shapes(pose: Pose, who: Identity, side: str, dim: float) -> tuple[list[Shape], list[Shape]]:
    """(leg shapes, arm shapes) of one side; `dim` darkens the far side in a side view."""
    u = pose.u
    sho, elb, wri, hip, kne, ank = (
        (L_SHO, L_ELB, L_WRI, L_HIP, L_KNE, L_ANK)
        if side == "left"
        else (R_SHO, R_ELB, R_WRI, R_HIP, R_KNE, R_ANK)
    )
    P = pose.kp
    bottom, skin, top = shade(who.bottom, dim), shade(who.skin, dim), shade(who.top, dim)
    thigh_r, shin_r = 0.046 * u * who.width, 0.036 * u * who.width
    legs: list[Shape] = []
    if who.bottom_style == "trousers":
        legs += [capsule(P(hip), P(kne), thigh_r, bottom), capsule(P(kne), P(ank), shin_r, bottom)]
    elif who.bottom_style == "shorts":
        mid = tuple((a + b) / 2 for a, b in zip(P(hip), P(kne), strict=True))
        legs += [capsule(P(kne), P(ank), shin_r * 0.85, skin), capsule(P(hip), P(kne), thigh_r * 0.9, skin)]
        legs += [capsule(P(hip), mid, thigh_r * 1.05, bottom)]
    else:  # skirt: legs are bare below it; the skirt itself is drawn with the torso
        legs += [capsule(P(hip), P(kne), thigh_r * 0.8, skin), capsule(P(kne), P(ank), shin_r * 0.8, skin)]
    ax, ay = P(ank)
    toe = pose.facing * 0.035 * u
    legs.append(
        ellipse(ax + toe, ay + 0.022 * u, 0.034 * u + abs(toe) * 0.6, 0.02 * u, shade(who.shoes, dim))
    )
    arm_r, fore_r = 0.03 * u * who.width, 0.025 * u
    arms = [capsule(P(sho), P(elb), arm_r, top)]
    arms.append(capsule(P(elb), P(wri), fore_r, top if who.long_sleeves else skin))
    if who.has_logo and who.top_pattern != "logo":  # a sleeve stripe
        arms.append(capsule(P(sho), P(elb), arm_r * 0.35, shade(who.logo, dim)))
    wx, wy = P(wri)
    ex, ey = P(elb)
    hand = (wx + (wx - ex) * 0.18, wy + (wy - ey) * 0.18)
    arms.append(ellipse(hand[0], hand[1], fore_r * 1.05, fore_r * 1.2, skin))
    if who.bag == "handbag" and side == who.bag_side:
        arms.append(line(hand, (hand[0], hand[1] + 0.05 * u), 0.008 * u, shade(who.bag_color, 0.6)))
        arms.append(
            rect(
                hand[0] - 0.045 * u,
                hand[1] + 0.04 * u,
                hand[0] + 0.045 * u,
                hand[1] + 0.11 * u,
                who.bag_color,
            )
        )
    return legs, arms


def _torso_shapes(pose: Pose, who: Identity, light: int) -> list[Shape]:
    u, P = pose.u, pose.kp
    (lsx, sy), (rsx, _) = P(L_SHO), P(R_SHO)
    (lhx, hy), (rhx, _) = P(L_HIP), P(R_HIP)
    shapes: list[Shape] = []
    if pose.view in ("front", "back"):
        a, b = (lsx, rsx) if lsx < rsx else (rsx, lsx)
        c, e = (lhx, rhx) if lhx < rhx else (rhx, lhx)
        pad_s, pad_h = 0.028 * u, 0.04 * u * who.width
        outline = [
            (a - pad_s, sy - 0.012 * u),
            (b + pad_s, sy - 0.012 * u),
            (e + pad_h, hy + 0.03 * u),
            (c - pad_h, hy + 0.03 * u),
        ]
    else:
        depth = 0.07 * u * who.width
        cx = pose.cx
        outline = [
            (cx - depth, sy - 0.012 * u), (cx + depth * 0.9, sy - 0.012 * u),
            (cx + depth * 0.8, hy + 0.03 * u), (cx - depth * 0.85, hy + 0.03 * u),
        ]  # fmt: skip
    xs = [p[0] for p in outline]
    x1, x2 = min(xs), max(xs)
    y1, y2 = sy - 0.012 * u, hy + 0.03 * u
    if who.bottom_style == "skirt":
        shapes.append(
            polygon(
                [
                    (x1 + 0.01 * u, hy - 0.02 * u),
                    (x2 - 0.01 * u, hy - 0.02 * u),
                    (x2 + 0.05 * u, hy + 0.2 * u),
                    (x1 - 0.05 * u, hy + 0.2 * u),
                ],
                who.bottom,
            )
        )
    shapes.append(polygon(outline, who.top))
    # Light from one side: the far quarter of the torso is in shadow.
    (ax, ay), (bx, by), (ex, ey), (fx, fy) = outline
    if light > 0:  # light from the right: shadow on the left edge (a -> f)
        strip = [(ax, ay), (ax + (bx - ax) * 0.25, by), (fx + (ex - fx) * 0.25, ey), (fx, fy)]
    else:
        strip = [(bx - (bx - ax) * 0.25, ay), (bx, by), (ex, ey), (ex - (ex - fx) * 0.25, fy)]
    shapes.append(polygon(strip, shade(who.top, 0.82)))
    pattern = who.top_pattern
    if pattern == "hstripes":
        n = 4
        for i in range(n):
            ty = y1 + (y2 - y1) * (i + 0.35) / n
            shapes.append(rect(x1 + 0.006 * u, ty, x2 - 0.006 * u, ty + (y2 - y1) * 0.1, who.top2))
    elif pattern == "two_tone":
        mid = (y1 + y2) / 2
        shapes.append(
            polygon(
                [(x1 + 0.01 * u, mid), (x2 - 0.01 * u, mid), (x2 - 0.002 * u, y2), (x1 + 0.002 * u, y2)],
                who.top2,
            )
        )
    elif pattern == "open_jacket" and pose.view == "front":
        cx = (x1 + x2) / 2
        shapes.append(rect(cx - 0.03 * u, y1 + 0.01 * u, cx + 0.03 * u, y2, who.top2))
    elif pattern == "open_jacket" and pose.facing:
        shapes.append(
            rect(
                pose.cx + pose.facing * 0.045 * u,
                y1 + 0.01 * u,
                pose.cx + pose.facing * 0.065 * u,
                y2,
                who.top2,
            )
        )
    if pattern == "logo" or (who.has_logo and pattern == "solid"):
        if pose.view != "back":
            lx = (x1 + x2) / 2 + (0.03 * u if pose.view == "front" else pose.facing * 0.03 * u)
            shapes.append(rect(lx - 0.022 * u, y1 + 0.06 * u, lx + 0.022 * u, y1 + 0.1 * u, who.logo))
        elif pattern == "logo":
            shapes.append(
                rect(pose.cx - 0.05 * u, y1 + 0.07 * u, pose.cx + 0.05 * u, y1 + 0.15 * u, who.logo)
            )
    # belt line
    shapes.append(rect(x1 + 0.004 * u, hy + 0.012 * u, x2 - 0.004 * u, hy + 0.03 * u, shade(who.bottom, 0.7)))
    return shapes


def _bag_shapes(pose: Pose, who: Identity, layer: str) -> list[Shape]:
    """Bag shapes for the `behind` layer (before the torso) or the `front` layer (after the arms)."""
    u, P = pose.u, pose.kp
    bag = who.bag
    if bag in ("none", "handbag"):
        return []
    (_, sy), (_, hy) = P(L_SHO), P(L_HIP)
    color, strap = who.bag_color, shade(who.bag_color, 0.65)
    if bag == "backpack":
        if pose.view == "back" and layer == "front":
            return [rect(pose.cx - 0.085 * u, sy + 0.01 * u, pose.cx + 0.085 * u, sy + 0.26 * u, color),
                    rect(pose.cx - 0.06 * u, sy + 0.15 * u, pose.cx + 0.06 * u, sy + 0.23 * u, shade(color, 0.8))]  # fmt: skip
        if pose.view == "front" and layer == "front":
            return [line(P(L_SHO), (P(L_SHO)[0], sy + 0.2 * u), 0.014 * u, strap),
                    line(P(R_SHO), (P(R_SHO)[0], sy + 0.2 * u), 0.014 * u, strap)]  # fmt: skip
        if pose.facing and layer == "behind":
            bx = pose.cx - pose.facing * 0.1 * u
            return [rect(bx - 0.05 * u, sy, bx + 0.05 * u, sy + 0.25 * u, color)]
        return []
    # shoulder bag hanging at the hip of bag_side, strap across to the other shoulder
    if pose.facing:
        near = pose.near_side() == who.bag_side
        if near != (layer == "front"):
            return []
        bx = pose.cx + (0.0 if near else -pose.facing * 0.06 * u)
        return [line(P(L_SHO if who.bag_side == "left" else R_SHO), (bx, hy - 0.03 * u), 0.012 * u, strap),
                rect(bx - 0.05 * u, hy - 0.05 * u, bx + 0.05 * u, hy + 0.06 * u, color)]  # fmt: skip
    if layer != "front":
        return []
    lat = pose.lateral(who.bag_side)
    other = P(R_SHO if who.bag_side == "left" else L_SHO)
    hx = P(L_HIP if who.bag_side == "left" else R_HIP)[0] + lat * 0.09 * u
    return [line(other, (hx, hy - 0.04 * u), 0.012 * u, strap),
            rect(hx - 0.045 * u, hy - 0.05 * u, hx + 0.045 * u, hy + 0.06 * u, color)]  # fmt: skip


def _head_shapes(pose: Pose, who: Identity) -> list[Shape]:
    u = pose.u
    hx, hy, rx, ry = pose.head
    shapes = [rect(hx - 0.022 * u, hy + 0.5 * ry, hx + 0.022 * u, pose.top + 0.19 * u, who.skin)]  # neck
    style = who.hair_style
    hair = who.hair if style != "bald" else mix(who.skin, who.hair, 0.35)
    if style == "long" and pose.view != "front":
        shapes.append(rect(hx - rx * 0.95, hy, hx + rx * 0.95, hy + 1.6 * ry, who.hair))
    if style == "long" and pose.view == "front":
        shapes.append(rect(hx - rx * 1.05, hy - 0.2 * ry, hx + rx * 1.05, hy + 1.5 * ry, who.hair))
    shapes.append(ellipse(hx, hy, rx, ry, hair))
    face = _face_ellipse(pose)
    if face is not None:
        fx, fy, frx, fry = face
        shapes.append(ellipse(fx, fy, frx, fry, who.skin))
        eye = (24, 20, 20)
        er = max(0.45, 0.09 * rx)
        eyes = (1, 2) if pose.view == "front" else ((2,) if pose.facing == 1 else (1,))
        for i in eyes:
            ex, ey = pose.kp(i)
            shapes.append(ellipse(ex, ey, er * 1.3, er, eye))
        nx, ny = pose.kp(NOSE)
        shapes.append(
            ellipse(nx - pose.facing * 0.08 * rx, ny + 0.05 * ry, er * 0.9, er * 0.9, shade(who.skin, 0.82))
        )
        mouth_y = fy + 0.5 * fry
        shapes.append(
            line(
                (fx - 0.22 * frx + pose.facing * 0.2 * frx, mouth_y),
                (fx + 0.22 * frx + pose.facing * 0.2 * frx, mouth_y),
                max(0.4, 0.06 * rx),
                shade(who.skin, 0.65),
            )
        )
        if style in ("short", "long"):  # fringe above the face
            shapes.append(
                ellipse(hx + pose.facing * 0.1 * rx, hy - 0.62 * ry, rx * 0.95, ry * 0.42, who.hair)
            )
    if style == "hat":
        shapes.append(Shape("polygon", (hx - rx * 1.02, hy - 0.25 * ry, hx - rx * 0.8, hy - 1.05 * ry,
                                        hx + rx * 0.8, hy - 1.05 * ry, hx + rx * 1.02, hy - 0.25 * ry), who.hat))  # fmt: skip
        brim = pose.facing * rx * 0.7
        shapes.append(
            rect(
                hx - rx * 1.05 + min(brim, 0),
                hy - 0.33 * ry,
                hx + rx * 1.05 + max(brim, 0),
                hy - 0.2 * ry,
                shade(who.hat, 0.8),
            )
        )
    return shapes


def figure_shapes(pose: Pose, who: Identity, light: int = 1) -> list[Shape]:
    """Every shape of the person, back to front; `light` (+1/-1) is the image side the light comes from."""
    shapes: list[Shape] = []
    if pose.facing:
        near = pose.near_side()
        far = "left" if near == "right" else "right"
        far_legs, far_arms = _limb_shapes(pose, who, far, 0.8)
        near_legs, near_arms = _limb_shapes(pose, who, near, 1.0)
        shapes += far_arms + _bag_shapes(pose, who, "behind") + far_legs + near_legs
        shapes += (
            _torso_shapes(pose, who, light)
            + _bag_shapes(pose, who, "front")
            + _head_shapes(pose, who)
            + near_arms
        )
        return shapes
    l_legs, l_arms = _limb_shapes(pose, who, "left", 1.0)
    r_legs, r_arms = _limb_shapes(pose, who, "right", 1.0)
    shapes += l_legs + r_legs + _torso_shapes(pose, who, light) + l_arms + r_arms
    shapes += _bag_shapes(pose, who, "front") + _head_shapes(pose, who)
    return shapes
