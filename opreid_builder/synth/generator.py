"""`opreid synth`: synthetic pedestrian crops with ground-truth keypoints, occlusion and faces.

The project's built-in raw data and test fixture. Writes Market-1501 named crops
(`{pid:04d}_c{cam}s1_{frame:06d}_00.jpg`) flat into OUT, plus `keypoints.parquet` (COCO-17 x, y, v;
v = 0 under an occluder or outside the crop) and `truth.parquet` (occluded flag, occluded parts,
occluder, face box). Every image is drawn from its own RNG seeded by (seed, pid, cam, frame), so
the output is byte-identical for a seed whatever the worker count or order.

Occluded images carry an occluder that hides >= 3 sequential keypoints in the OpenPose COCO-18
order (the paper's rule, `occlusion.PAPER_RULE`); holistic images keep every keypoint in the crop
and at most a small incidental hide. The generator checks its own intent against that rule and
re-places an occluder that misses it, so the truth flag and the keypoints agree.

truth.parquet: `occluded` is the generator's intent (checked against the rule above);
`occluded_parts` lists the body parts with at least one hidden keypoint (manifests.PART_KEYPOINTS);
`occluder` names the object drawn in front of the person (a holistic image may carry a thin
`pole` that hides a joint or two), null when nothing is; `face_box` is the drawn face (null in
back views) and `face_visible` is False when no face is drawn or an occluder covers half of it.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import manifests
from opreid_builder.curation.occlusion import PAPER_RULE, missing_parts
from opreid_builder.errors import SynthError
from opreid_builder.synth.appearance import VIEWS, Camera, camera, identity, random_identity
from opreid_builder.synth.canvas import SUPERSAMPLE, Shape, line, new_mask, paint, rect, shade
from opreid_builder.synth.figure import Pose, face_box, figure_shapes, make_pose
from opreid_builder.synth.occluders import (
    BUILDERS,
    LARGE_OCCLUDERS,
    SMALL_OCCLUDERS,
    Occluder,
    full_leg_cart,
)  # fmt: skip

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
KEYPOINTS_NAME = "keypoints.parquet"
TRUTH_NAME = "truth.parquet"
MAX_CAMERAS = 9  # one digit in `c{cam}`, as Market-1501 readers expect
MAX_IDENTITIES = 9999  # four digits in the pid


class SynthConfigError(SynthError):
    """An option is out of range."""


class SynthOutputError(SynthError):
    """The output folder cannot be used."""


@dataclass
class SynthConfig:
    identities: int = 100
    cameras: int = 6
    images_per_identity: tuple[int, int] = (10, 30)  # the opreid preset wants ~15.6 images per train identity
    occluded_fraction: float = 0.35
    height: int = 128
    width: int = 64
    seed: int = 0
    workers: int = 1

    def validate(self) -> None:
        try:
            lo, hi = (int(v) for v in self.images_per_identity)
        except (TypeError, ValueError):
            raise SynthConfigError(
                f"images per identity must be a (lo, hi) pair, got {self.images_per_identity!r}"
            ) from None
        checks = [
            (1 <= self.identities <= MAX_IDENTITIES, f"identities must be 1..{MAX_IDENTITIES}, got {self.identities}"),
            (1 <= self.cameras <= MAX_CAMERAS, f"cameras must be 1..{MAX_CAMERAS}, got {self.cameras}"),
            (1 <= lo <= hi, f"images per identity must be a range lo-hi with 1 <= lo <= hi, got {lo}-{hi}"),
            (hi <= 2000, f"images per identity at most 2000, got {hi}"),
            (0.0 <= self.occluded_fraction <= 1.0, f"occluded fraction must be in [0, 1], got {self.occluded_fraction}"),
            (32 <= self.height <= 2048 and 16 <= self.width <= 1024, f"size must be at least 32x16 (height x width) and at most 2048x1024, got {self.height}x{self.width}"),
            (self.height <= 4 * self.width and self.width <= self.height, f"width/height must be between 1/4 and 1 for a standing pedestrian, got {self.height}x{self.width}"),
            (0 <= self.seed < 2**63, f"seed must be a non-negative integer, got {self.seed}"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise SynthConfigError(message)


@dataclass(frozen=True)
class ImageSpec:
    pid: int
    camid: int
    frame: int
    occluded: bool

    @property
    def file(self) -> str:
        return f"{self.pid:04d}_c{self.camid}s1_{self.frame:06d}_00.jpg"


@dataclass
class SynthSummary:
    out_dir: str
    images: int
    identities: int
    cameras: int
    occluded: int
    holistic: int
    files: list[str] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "files"}


@dataclass
class SynthCrop:
    """One rendered crop and its ground truth (before JPEG encoding)."""

    spec: ImageSpec
    image: np.ndarray  # (H, W, 3) uint8
    keypoints: np.ndarray  # (17, 3) float32: x, y, v
    occluded_parts: list[str]
    occluder: str | None
    face_box: list[float] | None
    face_visible: bool
    occluder_mask: np.ndarray  # (H*SUPERSAMPLE, W*SUPERSAMPLE) bool: what the occluder covers
    view: str


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(
        np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in key] + [int(key[0]) >> 32])
    )


def occluded_by_rule(visible: np.ndarray) -> bool:
    """Whether the paper's rule flags a person whose keypoint visibility (17 values, 0 = hidden) this is."""
    return bool(PAPER_RULE.decide(np.asarray(visible) == 0.0)[1])


# ----------------------------------------------------------------------------------------- planning


def plan(config: SynthConfig) -> list[ImageSpec]:
    """Which images to draw: per identity a count, cameras, occluded flags and frame numbers.

    With >= 2 cameras each identity appears in >= 2 of them; with >= 4 images (and a fraction
    strictly between 0 and 1) its occluded and its holistic images each span two cameras, so any
    occluded query has an occluded and a holistic match from another camera.
    """
    config.validate()
    lo, hi = config.images_per_identity
    frac = config.occluded_fraction
    specs: list[ImageSpec] = []
    for pid in range(1, config.identities + 1):
        rng = _rng(config.seed, 0x9A, pid)
        n = int(rng.integers(lo, hi + 1))
        if config.cameras >= 2 and n >= 2:
            k = int(min(config.cameras, n, rng.integers(2, min(config.cameras, 5) + 1)))
        else:
            k = 1
        cams = (rng.permutation(config.cameras)[:k] + 1).tolist()
        cam_of = [cams[i % k] for i in range(n)]
        m = int(rng.binomial(n, frac))
        if 0.0 < frac < 1.0 and n >= 2:
            floor = 2 if n >= 4 and k >= 2 else 1
            m = min(max(m, floor), n - floor)
        flags = [False] * n
        if m >= 2 and n >= 4 and k >= 2 and n - m >= 2:
            fixed_occ, fixed_hol = [0, 1], [2, 3]
        else:
            fixed_occ, fixed_hol = [0][: min(m, 1)], []
        for i in fixed_occ:
            flags[i] = True
        rest = [i for i in range(n) if i not in fixed_occ and i not in fixed_hol]
        for i in rng.permutation(len(rest))[: m - len(fixed_occ)]:
            flags[rest[int(i)]] = True
        frames: dict[int, int] = {}
        for i in range(n):
            cam = cam_of[i]
            frames[cam] = frames.get(cam, int(rng.integers(1, 3000))) + int(rng.integers(5, 80))
            specs.append(ImageSpec(pid, cam, frames[cam], flags[i]))
    return specs


# ---------------------------------------------------------------------------------------- rendering

_BACKGROUNDS: dict[tuple, np.ndarray] = {}


def _background(seed: int, cam: Camera, width: int, height: int) -> np.ndarray:
    """A per-camera scene strip three crops wide (supersampled); each image takes a window of it."""
    key = (seed, cam.camid, width, height)
    if key in _BACKGROUNDS:
        return _BACKGROUNDS[key]
    rng = _rng(seed, 0xB6, cam.camid)
    s = SUPERSAMPLE
    h, w = height * s, width * 3 * s
    img = np.empty((h, w, 3), np.float32)
    horizon = int(cam.horizon * h)
    img[:horizon] = cam.wall
    img[horizon:] = cam.floor
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    wall, floor = img[:horizon], img[horizon:]
    if cam.texture == "stripes":
        period = rng.uniform(6, 16) * s
        wall *= (1.0 + 0.12 * (np.sin(xx * 2 * np.pi / period) > 0.6))[..., None][: wall.shape[0]]
    elif cam.texture == "bricks":
        bh = 4 * s
        rows = (yy[:horizon] // bh).astype(int)
        mortar = ((yy[:horizon] % bh) < s * 0.7) | (((xx + (rows % 2) * 5 * s) % (10 * s)) < s * 0.7)
        wall[mortar] *= 0.75
    elif cam.texture == "tiles":
        tile = rng.uniform(8, 14) * s
        grid = ((xx % tile) < s * 0.6) | (((yy[horizon:] - horizon) % (tile * 0.6)) < s * 0.6)
        floor[grid] *= 0.8
    # doors, windows and shop fronts on the wall
    for _ in range(int(rng.integers(2, 6))):
        x0 = int(rng.integers(0, w))
        bw = int(rng.integers(8, 24) * s)
        y0 = int(rng.integers(0, max(1, horizon // 2)))
        tint = rng.uniform(0.5, 1.3, 3).astype(np.float32)
        img[y0:horizon, x0 : x0 + bw] *= tint
    light = 1.0 + 0.15 * (1.0 - yy / h) * rng.uniform(-1.0, 1.0)
    img *= light[..., None]
    img += rng.normal(0.0, 4.0, img.shape).astype(np.float32)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if len(_BACKGROUNDS) > 64:
        _BACKGROUNDS.clear()
    _BACKGROUNDS[key] = out
    return out


def _props(rng: np.random.Generator, cam: Camera, width: int, height: int) -> list[Shape]:
    """Things behind the person: poles, bins, a distant passer-by (clutter only, never occluders)."""
    shapes: list[Shape] = []
    for _ in range(int(rng.integers(0, 3))):
        kind = rng.random()
        x = float(rng.uniform(0, width))
        if kind < 0.4:
            w = rng.uniform(0.02, 0.05) * width
            shapes.append(
                rect(
                    x,
                    -1.0,
                    x + w,
                    cam.horizon * height + rng.uniform(0, 0.2) * height,
                    shade(cam.wall, rng.uniform(0.4, 0.7)),
                )
            )
        elif kind < 0.7:
            u = rng.uniform(0.35, 0.6) * height
            who = random_identity(rng)
            view = VIEWS[int(rng.integers(4))]
            pose = make_pose(rng, who, view, x, cam.horizon * height - 0.85 * u, u)
            shapes += [s._replace(fill=shade(s.fill, 0.85)) for s in figure_shapes(pose, who)]
        else:
            w, h = rng.uniform(0.12, 0.3) * width, rng.uniform(0.08, 0.2) * height
            base = cam.horizon * height + rng.uniform(0.0, 0.15) * height
            color = tuple(int(v) for v in rng.integers(40, 200, 3))
            shapes += [
                rect(x, base - h, x + w, base, color),
                line((x, base - h), (x + w, base - h), 1.0, shade(color, 0.6)),
            ]  # type: ignore[arg-type]
    return shapes


def _visibility(keypoints: np.ndarray, mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """1.0 where a keypoint lies inside the crop and off the occluder mask, else 0.0."""
    x, y = keypoints[:, 0], keypoints[:, 1]
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    vis = np.zeros(len(keypoints), dtype=np.float32)
    mh, mw = mask.shape
    for i in np.flatnonzero(inside):
        mx = min(int(x[i] * SUPERSAMPLE), mw - 1)
        my = min(int(y[i] * SUPERSAMPLE), mh - 1)
        vis[i] = 0.0 if mask[my, mx] else 1.0
    return vis


def _occluder_mask(occluder: Occluder | None, width: int, height: int) -> np.ndarray:
    mask = new_mask(width, height)
    if occluder is not None:
        paint(ImageDraw.Draw(mask), occluder.shapes, solid=255)
    return np.asarray(mask) > 0


def _choose_occluder(
    rng: np.random.Generator, pose: Pose, occluded: bool, width: int, height: int
) -> tuple[Occluder | None, np.ndarray, np.ndarray]:
    """Place an occluder that honours the intent; re-place it (a few tries, then a fallback) if not."""
    if occluded:
        names = list(LARGE_OCCLUDERS)
        weights = np.array([LARGE_OCCLUDERS[n] for n in names])
        for _ in range(6):
            name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
            occ = BUILDERS[name](rng, pose, width, height)
            mask = _occluder_mask(occ, width, height)
            vis = _visibility(pose.keypoints, mask, width, height)
            if occluded_by_rule(vis):
                return occ, mask, vis
        occ = full_leg_cart(pose, width, height)
        mask = _occluder_mask(occ, width, height)
        return occ, mask, _visibility(pose.keypoints, mask, width, height)
    if rng.random() < 0.25:
        for _ in range(3):
            name = SMALL_OCCLUDERS[int(rng.integers(len(SMALL_OCCLUDERS)))]
            occ = BUILDERS[name](rng, pose, width, height)
            mask = _occluder_mask(occ, width, height)
            vis = _visibility(pose.keypoints, mask, width, height)
            if not occluded_by_rule(vis):
                return occ, mask, vis
    mask = _occluder_mask(None, width, height)
    return None, mask, _visibility(pose.keypoints, mask, width, height)


def render_crop(config: SynthConfig, spec: ImageSpec, draw_occluders: bool = True) -> SynthCrop:
    """Draw one crop. `draw_occluders=False` draws the same scene without the occluder (for checks)."""
    W, H, s = config.width, config.height, SUPERSAMPLE
    rng = _rng(config.seed, 0x1A, spec.pid, spec.camid, spec.frame)
    cam = camera(config.seed, spec.camid)
    who = identity(config.seed, spec.pid)
    view = VIEWS[int(rng.choice(4, p=np.array(cam.views) / sum(cam.views)))]
    u = H * 0.86 * who.height * cam.scale * rng.uniform(0.95, 1.03)
    u = min(u, 0.94 * H, W / 0.5)
    place = rng.uniform(0.25, 0.75)
    cx = W / 2 + rng.uniform(-0.05, 0.05) * W
    pose = make_pose(rng, who, view, cx, (H - 1.02 * u) * place, u)
    span = float(np.ptp(pose.keypoints[:, 0]))
    if span > W - 3.0:  # a wide stride in a narrow crop: draw the person smaller
        u *= (W - 3.0) / span
        pose = make_pose(rng, who, view, cx, (H - 1.02 * u) * place, u)
    # Keep every joint inside the crop (the arms of a wide build can swing out).
    xs = pose.keypoints[:, 0]
    shift = max(0.0, 1.0 - xs.min()) - max(0.0, xs.max() - (W - 1.0))
    if shift:
        pose = Pose(
            pose.view,
            pose.u,
            pose.cx + shift,
            pose.top,
            (pose.head[0] + shift, *pose.head[1:]),
            pose.keypoints + [shift, 0.0],
        )

    strip = _background(config.seed, cam, W, H)
    x0 = int(rng.integers(0, strip.shape[1] - W * s + 1))
    canvas = Image.fromarray(strip[:, x0 : x0 + W * s])
    draw = ImageDraw.Draw(canvas)
    paint(draw, _props(rng, cam, W, H))
    paint(draw, figure_shapes(pose, who, cam.light))
    occluder, mask, vis = _choose_occluder(rng, pose, spec.occluded, W, H)
    if occluder is not None and draw_occluders:
        paint(draw, occluder.shapes)

    small = canvas.reduce(s)
    if cam.blur > 1.0:
        low = (max(8, round(W / cam.blur)), max(8, round(H / cam.blur)))
        small = small.resize(low, Image.BILINEAR).resize((W, H), Image.BILINEAR)
    arr = np.asarray(small, dtype=np.float32)
    gain = cam.gain * rng.uniform(0.92, 1.08)
    cast = np.array(cam.cast, dtype=np.float32) * rng.uniform(0.97, 1.03, 3).astype(np.float32)
    ramp = (1.0 + rng.uniform(-0.12, 0.12) * np.linspace(-1.0, 1.0, W, dtype=np.float32))[None, :, None]
    arr = arr * (gain * cast)[None, None, :] * ramp
    arr += rng.standard_normal(arr.shape, dtype=np.float32) * cam.noise
    image = np.clip(arr + 0.5, 0, 255).astype(np.uint8)

    keypoints = np.concatenate([pose.keypoints.astype(np.float32), vis[:, None]], axis=1)
    parts = list(missing_parts(vis == 0.0))
    box = face_box(pose)
    face_visible = False
    box_out: list[float] | None = None
    if box is not None:
        x1, y1, x2, y2 = max(0.0, box[0]), max(0.0, box[1]), min(float(W), box[2]), min(float(H), box[3])
        if x2 > x1 and y2 > y1:
            box_out = [x1, y1, x2, y2]
            region = mask[int(y1 * s) : int(np.ceil(y2 * s)), int(x1 * s) : int(np.ceil(x2 * s))]
            face_visible = bool(region.size and region.mean() < 0.5)
    return SynthCrop(
        spec=spec,
        image=image,
        keypoints=keypoints,
        occluded_parts=parts,
        occluder=occluder.name if occluder is not None else None,
        face_box=box_out,
        face_visible=face_visible,
        occluder_mask=mask,
        view=view,
    )


def encode_jpeg(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------- generation


def _write_atomic(target: Path, data: bytes) -> None:
    """Temp file + rename, like `manifests.atomic_path`, with one create instead of two.

    Crop names are unique, so a fixed temp name cannot collide; files get the usual 0o666 & ~umask
    mode (mkstemp's 0600 would make a shared data folder unreadable to others). No fsync: a killed
    run leaves no half crop, and the manifests, written last, are what a later step trusts.
    """
    tmp = target.with_name(f".{target.name}.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666), "wb") as fh:
        fh.write(data)
    os.replace(tmp, target)


def _render_group(task: tuple[str, SynthConfig, list[ImageSpec]]) -> list[dict]:
    """Render and write one identity's crops (a pool task); returns their manifest rows."""
    out_dir, config, specs = task
    rows = []
    for spec in specs:
        crop = render_crop(config, spec)
        _write_atomic(Path(out_dir) / spec.file, encode_jpeg(crop.image))
        rows.append(
            {
                "file": spec.file,
                "keypoints": crop.keypoints.reshape(-1).tolist(),
                "pid": spec.pid,
                "camid": spec.camid,
                "occluded": spec.occluded,
                "occluded_parts": crop.occluded_parts,
                "occluder": crop.occluder,
                "face_box": crop.face_box,
                "face_visible": crop.face_visible,
            }
        )
    return rows


def _groups(specs: list[ImageSpec]) -> Iterator[list[ImageSpec]]:
    group: list[ImageSpec] = []
    for spec in specs:
        if group and spec.pid != group[0].pid:
            yield group
            group = []
        group.append(spec)
    if group:
        yield group


def _check_output(out_dir: Path, files: set[str]) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthOutputError(f"{out_dir} exists and is not a folder")
    if not out_dir.exists():
        return
    foreign = sorted(p.name for p in out_dir.glob("*.jpg") if p.name not in files)
    if foreign:
        raise SynthOutputError(
            f"{out_dir} already holds {len(foreign)} crop(s) this run would not write (e.g. {foreign[0]}); "
            "use an empty folder so stale crops do not mix into the data"
        )


def generate(out_dir: Path, config: SynthConfig, progress: bool = False) -> SynthSummary:
    """Write the crops, `keypoints.parquet` and `truth.parquet` into `out_dir`."""
    out_dir = Path(out_dir)
    specs = plan(config)
    files = {s.file for s in specs}
    _check_output(out_dir, files)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SynthOutputError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    tasks = [(str(out_dir), config, group) for group in _groups(specs)]
    rows: list[dict] = []
    with manifests.progress_bar(total=len(specs), desc="synth", enabled=progress) as bar:
        if config.workers > 1 and len(tasks) > 1:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(config.workers, len(tasks))) as pool:
                for group_rows in pool.imap_unordered(_render_group, tasks, chunksize=1):
                    rows += group_rows
                    bar.update(len(group_rows))
        else:
            for task in tasks:
                group_rows = _render_group(task)
                rows += group_rows
                bar.update(len(group_rows))
    rows.sort(key=lambda r: r["file"])
    manifests.write_manifest(
        {"file": [r["file"] for r in rows], "keypoints": [r["keypoints"] for r in rows]},
        out_dir / KEYPOINTS_NAME,
        manifests.KEYPOINTS_FILE,
    )
    truth_cols = (
        "file",
        "pid",
        "camid",
        "occluded",
        "occluded_parts",
        "occluder",
        "face_box",
        "face_visible",
    )
    manifests.write_manifest(
        {c: [r[c] for r in rows] for c in truth_cols}, out_dir / TRUTH_NAME, manifests.SYNTH_TRUTH
    )
    occluded = sum(r["occluded"] for r in rows)
    log.info("wrote %d crops of %d identities to %s", len(rows), config.identities, out_dir)
    return SynthSummary(
        out_dir=str(out_dir),
        images=len(rows),
        identities=len({r["pid"] for r in rows}),
        cameras=len({r["camid"] for r in rows}),
        occluded=occluded,
        holistic=len(rows) - occluded,
        files=[r["file"] for r in rows],
    )
