"""Shared builders for the curation tests: a small synth corpus, a corrupt-input corpus, keypoints."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
from PIL import Image

import manifests

#: build-split options for a small synth pool (12-60 identities): the OPReID preset at 0.5% of its size.
SMALL_SPLIT = (
    "--preset",
    "opreid",
    "--scale",
    "0.005",
    "--train-ids",
    "20",
    "--train-images",
    "none",
    "--seed",
    "2",
)


def make_synth(out: Path, identities: int = 12, cameras: int = 3, seed: int = 7) -> Path:
    from opreid_builder.synth.generator import SynthConfig, generate

    generate(out, SynthConfig(identities=identities, cameras=cameras, images_per_identity=(6, 10), seed=seed))
    return out


def person_keypoints(w: int, h: int, conf: float = 1.0) -> list[float]:
    """A standing person filling a w x h crop, every keypoint seen (COCO-17 order, x, y, v)."""
    ys = [
        0.10,
        0.08,
        0.08,
        0.09,
        0.09,
        0.22,
        0.22,
        0.38,
        0.38,
        0.52,
        0.52,
        0.55,
        0.55,
        0.75,
        0.75,
        0.95,
        0.95,
    ]
    xs = [
        0.50,
        0.45,
        0.55,
        0.40,
        0.60,
        0.30,
        0.70,
        0.25,
        0.75,
        0.22,
        0.78,
        0.40,
        0.60,
        0.40,
        0.60,
        0.40,
        0.60,
    ]
    out: list[float] = []
    for x, y in zip(xs, ys, strict=True):
        out += [x * (w - 1), y * (h - 1), conf]
    return out


def write_keypoints(raw: Path, entries: dict[str, list[float]], name: str = "keypoints.parquet") -> Path:
    files = sorted(entries)
    return manifests.write_manifest(
        {"file": files, "keypoints": [entries[f] for f in files]}, raw / name, manifests.KEYPOINTS_FILE
    )


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _person_image(w: int = 64, h: int = 128, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr)


#: name -> (expected status, what it is)
CORRUPT_EXPECTED = {
    "0001_c1s1_000001_00.jpg": ("unreadable", "zero-byte"),
    "0001_c1s1_000002_00.jpg": ("unreadable", "truncated JPEG"),
    "0001_c2s1_000003_00.jpg": ("ok", "PNG data named .jpg"),
    "0002_c1s1_000004_00.jpg": ("excluded", "1x1"),
    "0002_c2s1_000005_00.jpg": ("ok", "greyscale"),
    "0003_c1s1_000006_00.jpg": ("ok", "CMYK JPEG"),
    "0003_c2s1_000007_00.png": ("ok", "16-bit PNG"),
    "0004_c1s1_000008_00.jpg": ("unreadable", "a directory"),
    "0004_c2s1_000009_00.jpg": ("ok", "plain RGB JPEG"),
    "0004_c3s1_000010_00.jpg": ("duplicate", "same bytes as 0004_c2s1_000009_00.jpg"),
    "0005_c1s1_000011_00.jpg": ("ok", "JPEG with EXIF"),
}


def make_corrupt_corpus(raw: Path) -> Path:
    """Every awkward input the curation must survive, plus junk, a refused symlink and keypoints."""
    raw.mkdir(parents=True, exist_ok=True)
    n = list(CORRUPT_EXPECTED)
    good = _jpeg(_person_image(seed=1), quality=90)
    (raw / n[0]).write_bytes(b"")
    (raw / n[1]).write_bytes(good[: len(good) // 2])
    png = io.BytesIO()
    _person_image(seed=2).save(png, format="PNG")
    (raw / n[2]).write_bytes(png.getvalue())
    (raw / n[3]).write_bytes(_jpeg(Image.new("RGB", (1, 1), (10, 20, 30))))
    (raw / n[4]).write_bytes(_jpeg(_person_image(seed=3).convert("L")))
    (raw / n[5]).write_bytes(_jpeg(_person_image(seed=4).convert("CMYK")))
    deep = (np.random.default_rng(5).integers(0, 65535, (128, 64))).astype(np.uint16)
    Image.fromarray(deep).save(raw / n[6])  # mode I;16 PNG
    (raw / n[7]).mkdir()
    (raw / n[8]).write_bytes(good)
    (raw / n[9]).write_bytes(good)
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x8298] = "Jane Doe"  # Copyright
    (raw / n[10]).write_bytes(_jpeg(_person_image(seed=6), exif=exif.tobytes()))
    (raw / "-1_c1s1_000012_00.jpg").write_bytes(_jpeg(_person_image(seed=7)))  # junk: dropped
    (raw / "readme.txt").write_text("not an image")
    outside = raw.parent / "outside.jpg"
    outside.write_bytes(_jpeg(_person_image(seed=8)))
    (raw / "0006_c1s1_000013_00.jpg").symlink_to(outside)  # leaves RAW: refused
    write_keypoints(raw, {name: person_keypoints(64, 128) for name in n})
    return raw


class FakePose:
    """Stands in for PoseEstimator: keypoints come from a keypoints file keyed by content hash.

    `model_path` is the keypoints file (inside RAW). Counts the crops it was asked about, so tests
    can tell whether pose ran again. Like a pose model it gives a person box (the keypoints' extent
    with a margin) and a detection score, which the learned occlusion flag reads.
    """

    calls = 0
    kill_after: int | None = None

    def __init__(self, model_path, device=None, imgsz=None, half=False, batch_size=32, person_conf=0.25):
        from opreid_builder.curation.pose import KeypointsFile

        self.batch_size = batch_size
        path = Path(model_path)
        self.path = path
        kf = KeypointsFile(path)
        self.by_sha = {}
        for f in kf._by_file:
            if (path.parent / f).is_file():
                found = kf.lookup(f)
                xy = found.keypoints[:, :2]
                box = (*(xy.min(axis=0) - 4.0).tolist(), *(xy.max(axis=0) + 4.0).tolist())
                self.by_sha[manifests.sha256_file(path.parent / f)] = dataclasses.replace(
                    found, box=tuple(float(v) for v in box), score=0.9
                )

    def describe(self) -> dict:
        return {"source": "pose", "model": "fake"}

    def run(self, stream):
        import os
        import signal

        from opreid_builder.curation.pose import PoseResult

        for key, _rgb in stream:
            FakePose.calls += 1
            if FakePose.kill_after is not None and FakePose.calls > FakePose.kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            yield key, self.by_sha.get(key, PoseResult(0))
