"""Who the synthetic pedestrians are and what each camera sees them through.

An identity's appearance depends only on (seed, pid) and a camera's look only on (seed, camid), so
adding identities or cameras never changes the existing ones. Colours come from one small shared
palette, and about a fifth of the identities are "near twins" of a neighbour (same clothes colours,
different small details), so that a ReID model has both something to learn and something to confuse.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np

from opreid_builder.synth.canvas import Color

# Clothing palette, weighted towards what street cameras mostly see (dark tops, jeans).
PALETTE: dict[str, Color] = {
    "black": (28, 28, 32), "charcoal": (62, 64, 70), "grey": (128, 128, 132), "white": (226, 226, 222),
    "navy": (32, 42, 86), "blue": (44, 86, 170), "denim": (70, 98, 138), "light_blue": (140, 180, 220),
    "red": (180, 36, 40), "maroon": (104, 30, 40), "green": (40, 110, 60), "olive": (96, 100, 50),
    "khaki": (176, 160, 118), "brown": (104, 70, 44), "yellow": (222, 196, 60), "pink": (222, 150, 170),
    "purple": (104, 62, 140), "orange": (224, 120, 40),
}  # fmt: skip
_NAMES = list(PALETTE)
_WEIGHTS = np.array([6, 4, 4, 5, 4, 4, 5, 3, 3, 2, 3, 2, 3, 3, 3, 3, 3, 3], dtype=float)
_WEIGHTS /= _WEIGHTS.sum()
SKIN: tuple[Color, ...] = ((240, 200, 170), (224, 172, 138), (196, 140, 104), (150, 100, 70), (100, 66, 46))
HAIR: tuple[Color, ...] = (
    (20, 16, 14),
    (50, 34, 24),
    (96, 64, 36),
    (160, 120, 70),
    (200, 180, 130),
    (120, 120, 120),
)
SHOES: tuple[Color, ...] = (
    (20, 20, 20),
    (230, 230, 230),
    (90, 60, 40),
    (60, 60, 70),
    (170, 40, 40),
    (40, 70, 150),
)

TOP_PATTERNS = ("solid", "solid", "hstripes", "open_jacket", "logo", "two_tone")
BOTTOMS = ("trousers", "trousers", "trousers", "shorts", "skirt")
HAIR_STYLES = ("short", "short", "long", "hat", "bald")
BAGS = ("none", "none", "backpack", "shoulder", "handbag")
VIEWS = ("front", "back", "left", "right")  # left/right: walking towards that side of the image


@dataclass(frozen=True)
class Identity:
    pid: int
    top: Color
    top2: Color  # stripes, jacket lining, second tone
    top_pattern: str
    long_sleeves: bool
    bottom: Color
    bottom_style: str
    shoes: Color
    skin: Color
    hair: Color
    hair_style: str
    hat: Color
    bag: str
    bag_color: Color
    bag_side: str  # "left" or "right" (the person's side)
    logo: Color  # a small chest mark or sleeve stripe: the detail that tells near twins apart
    has_logo: bool
    width: float  # build: shoulder/hip width factor
    height: float  # build: stature factor
    twin_of: int | None  # pid whose clothes colours this identity shares


@dataclass(frozen=True)
class Camera:
    camid: int
    wall: Color
    floor: Color
    horizon: float  # floor starts at this fraction of the crop height
    texture: str  # tiles | stripes | bricks | plain
    gain: float  # brightness
    cast: tuple[float, float, float]  # per-channel colour cast
    noise: float  # sensor noise sigma (grey levels)
    blur: float  # >1: the camera resolves less than the crop size (downscale factor)
    scale: float  # person size in the crop
    views: tuple[float, float, float, float]  # probabilities of VIEWS
    light: int  # image side the light comes from: +1 right, -1 left


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key]))


def _color(rng: np.random.Generator, exclude: Color | None = None) -> Color:
    while True:
        c = PALETTE[_NAMES[rng.choice(len(_NAMES), p=_WEIGHTS)]]
        if c != exclude:
            return c


def _pick(rng: np.random.Generator, options: tuple):
    return options[int(rng.integers(len(options)))]


def _details(rng: np.random.Generator) -> dict:
    """The parts that differ between near twins: hair, bag, shoes, logo, build."""
    return {
        "skin": _pick(rng, SKIN),
        "hair": _pick(rng, HAIR),
        "hair_style": _pick(rng, HAIR_STYLES),
        "hat": _color(rng),
        "shoes": _pick(rng, SHOES),
        "bag": _pick(rng, BAGS),
        "bag_color": _color(rng),
        "bag_side": "left" if rng.random() < 0.5 else "right",
        "logo": _color(rng),
        "has_logo": bool(rng.random() < 0.5),
        "width": float(rng.uniform(0.86, 1.18)),
        "height": float(rng.uniform(0.9, 1.04)),
    }


def _base_identity(seed: int, pid: int) -> Identity:
    rng = _rng(seed, 0x1D, pid)
    top = _color(rng)
    return Identity(
        pid=pid,
        top=top,
        top2=_color(rng, exclude=top),
        top_pattern=_pick(rng, TOP_PATTERNS),
        long_sleeves=bool(rng.random() < 0.6),
        bottom=_color(rng),
        bottom_style=_pick(rng, BOTTOMS),
        twin_of=None,
        **_details(rng),
    )


@functools.lru_cache(maxsize=4096)
def identity(seed: int, pid: int) -> Identity:
    """The appearance of `pid`; about a fifth copy the clothes of pid-1..pid-3 and differ in details."""
    rng = _rng(seed, 0x7E, pid)
    if pid > 1 and rng.random() < 0.2:
        other = max(1, pid - 1 - int(rng.integers(3)))
        base = _base_identity(seed, other)
        details = _details(rng)
        # Keep some details too, so only one or two small things tell them apart.
        for key in ("skin", "hair", "hat", "width", "height"):
            if rng.random() < 0.5:
                details[key] = getattr(base, key)
        return replace(base, pid=pid, twin_of=other, **details)
    return _base_identity(seed, pid)


def _tinted(rng: np.random.Generator, grey: float, amount: float) -> Color:
    hue = rng.integers(30, 230, 3).astype(float)
    return tuple(int(round(grey + (h - grey) * amount)) for h in hue)  # type: ignore[return-value]


@functools.lru_cache(maxsize=256)
def camera(seed: int, camid: int) -> Camera:
    rng = _rng(seed, 0xCA, camid)
    # Muted scene colours: a grey level tinted towards a random hue, as real walls and floors are.
    wall = _tinted(rng, rng.uniform(80, 200), rng.uniform(0.15, 0.5))
    floor = _tinted(rng, rng.uniform(60, 170), rng.uniform(0.1, 0.4))
    views = rng.dirichlet([3.0, 3.0, 2.0, 2.0])
    return Camera(
        camid=camid,
        wall=wall,
        floor=floor,
        horizon=float(rng.uniform(0.45, 0.8)),
        texture=_pick(rng, ("tiles", "stripes", "bricks", "plain")),
        gain=float(rng.uniform(0.8, 1.15)),
        cast=tuple(float(v) for v in rng.uniform(0.92, 1.08, 3)),  # type: ignore[arg-type]
        noise=float(rng.uniform(1.5, 6.0)),
        blur=float(rng.choice([1.0, 1.0, 1.4, 1.8])),
        scale=float(rng.uniform(0.9, 1.0)),
        views=tuple(float(v) for v in views),  # type: ignore[arg-type]
        light=1 if rng.random() < 0.5 else -1,
    )


def random_identity(rng: np.random.Generator) -> Identity:
    """A passer-by (an occluding or background pedestrian), not one of the dataset's identities."""
    top = _color(rng)
    return Identity(
        pid=0,
        top=top,
        top2=_color(rng, exclude=top),
        top_pattern=_pick(rng, TOP_PATTERNS),
        long_sleeves=bool(rng.random() < 0.6),
        bottom=_color(rng),
        bottom_style=_pick(rng, BOTTOMS),
        twin_of=None,
        **_details(rng),
    )
