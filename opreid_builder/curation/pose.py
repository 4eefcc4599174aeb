"""Pose keypoints for each crop: an Ultralytics YOLO-pose model, or a precomputed keypoints file.

The model path is checked here before Ultralytics sees it: Ultralytics downloads any weights name it
does not find on disk, and this project never downloads anything. Ultralytics is imported lazily,
offline and silenced. Inference is batched and streamed, so results never pile up in memory.

A ReID crop is centred on its target, so when several people are detected we take the one whose
box best covers the whole crop (IoU with the crop), then the higher score.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from manifests import COCO17, KEYPOINT_VALUES, KEYPOINTS_FILE, ManifestError, read_manifest, sha256_file
from opreid_builder.errors import CurationError, KeypointsFileError, ModelFileError, PoseError

log = logging.getLogger(__name__)

POSE_MODEL_ENV = "OPREID_POSE_MODEL"
#: Crops per pose model call, and the minimum person detection score.
BATCH_SIZE = 32
PERSON_CONF = 0.25
K = TypeVar("K")


@dataclass(frozen=True)
class PoseResult:
    """The person taken from one crop: how many were found, which one, and its 17 keypoints."""

    n_persons: int
    person_index: int | None = None
    keypoints: np.ndarray | None = None  # (17, 3) float32: x, y, conf in crop pixels
    box: tuple[float, float, float, float] | None = None
    score: float | None = None
    persons: np.ndarray | None = None  # (n_persons, 17, 3): everyone found, in the model's order

    @property
    def everyone(self) -> list[np.ndarray]:
        """Keypoints of every person found (the one taken included): their heads are all masked."""
        if self.persons is not None:
            return list(self.persons)
        return [] if self.keypoints is None else [self.keypoints]


def crop_iou(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """IoU of each (x1, y1, x2, y2) box with the whole crop [0, width] x [0, height]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(b[:, 2], width) - np.maximum(b[:, 0], 0), 0, None)
    iy = np.clip(np.minimum(b[:, 3], height) - np.maximum(b[:, 1], 0), 0, None)
    inter = ix * iy
    area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area + float(width) * float(height) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def select_person(boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> int | None:
    """Index of the person whose box best covers the crop; ties (to 1e-6) go to the higher score."""
    if len(boxes) == 0:
        return None
    iou = np.round(crop_iou(boxes, width, height), 6)
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), -iou))
    return int(order[0])


def resolve_model_path(path: str | os.PathLike | None, option: str = "--pose-model") -> Path:
    """The pose model path (option, else $OPREID_POSE_MODEL), checked to exist; never a download."""
    given = path if path not in (None, "") else os.environ.get(POSE_MODEL_ENV) or None
    where = f"{option} PATH, {POSE_MODEL_ENV}, or --keypoints FILE"
    if given is None:
        raise ModelFileError("pose model", None, where)
    p = Path(given).expanduser()
    if not p.exists():
        raise ModelFileError("pose model", str(p), where)
    if p.is_file() and p.stat().st_size == 0:
        raise ModelFileError("pose model (empty file)", str(p), where)
    return p


def _model_digest(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for f in sorted(q for q in path.rglob("*") if q.is_file()):
        digest.update(f.relative_to(path).as_posix().encode())
        digest.update(sha256_file(f).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _process_state_kept():
    """Undo what importing Ultralytics does to the rest of the process.

    Its import replaces ``PIL.Image.open`` (an unidentifiable file then tries to pip-install a
    HEIF plugin and fails with ModuleNotFoundError instead of PIL's error, so a damaged crop would
    stop a run instead of being recorded and skipped), wraps ``torch.save``, sets numpy's print
    options and turns OpenCV's threads off. None of that is ours to change for the caller.
    """
    import cv2
    import torch
    from PIL import Image

    image_open, torch_save = Image.open, torch.save
    printoptions, cv2_threads = np.get_printoptions(), cv2.getNumThreads()
    try:
        yield
    finally:
        Image.open, torch.save = image_open, torch_save
        np.set_printoptions(**printoptions)
        cv2.setNumThreads(cv2_threads)


def _quiet_ultralytics():
    """Import Ultralytics offline, with auto-install off, its logger silenced and its patches undone."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    with _process_state_kept(), contextlib.redirect_stdout(io.StringIO()):
        import ultralytics
        from ultralytics.utils import LOGGER

    LOGGER.setLevel(logging.ERROR)
    return ultralytics


def _chunks(items: Iterable[K], size: int) -> Iterator[list[K]]:
    chunk: list[K] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class PoseEstimator:
    """A YOLO-pose model run in batches over a stream of RGB crops."""

    def __init__(
        self,
        model_path: str | os.PathLike | None,
        device: str | None = None,
        imgsz: int | None = None,
        half: bool = False,
        batch_size: int = BATCH_SIZE,
        person_conf: float = PERSON_CONF,
    ):
        self.path = resolve_model_path(model_path)
        self.device, self.imgsz, self.half = device, imgsz, half
        self.batch_size = max(1, int(batch_size))
        self.person_conf = person_conf
        self._digest = _model_digest(self.path)
        self._model = None

    @property
    def model(self):
        """The Ultralytics model, loaded on first use (a rerun with everything cached never loads it)."""
        if self._model is None:
            ultralytics = _quiet_ultralytics()
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    model = ultralytics.YOLO(str(self.path), task="pose")
            except Exception as exc:  # Ultralytics raises many kinds for a bad file
                raise PoseError(f"cannot load pose model {self.path}: {str(exc).splitlines()[0]}") from None
            task = getattr(model, "task", "pose")
            if task != "pose":
                raise PoseError(f"{self.path} is a {task} model, not a pose model (--pose-model)")
            self._model = model
        return self._model

    def describe(self) -> dict:
        return {
            "source": "pose",
            "model": self.path.name,
            "model_sha256": self._digest,
            "imgsz": self.imgsz,
            "half": self.half,
            "person_conf": self.person_conf,
        }

    def _predict(self, batch: list[np.ndarray]) -> list:
        kwargs = {
            "stream": True,
            "verbose": False,
            "conf": self.person_conf,
            "batch": len(batch),
            "half": self.half,
        }
        if self.imgsz:
            kwargs["imgsz"] = self.imgsz
        if self.device:
            kwargs["device"] = self.device
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in batch]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return list(self.model.predict(bgr, **kwargs))
        except Exception as exc:
            raise PoseError(f"pose model {self.path.name} failed: {str(exc).splitlines()[0]}") from None

    def run(self, stream: Iterable[tuple[K, np.ndarray]]) -> Iterator[tuple[K, PoseResult]]:
        """Yield (key, PoseResult) for each (key, RGB crop), in input order, one batch in memory at a time."""
        for chunk in _chunks(stream, self.batch_size):
            results = self._predict([im for _, im in chunk])
            for (key, im), res in zip(chunk, results, strict=True):
                yield key, self._to_result(res, im.shape[1], im.shape[0])

    def predict_one(self, rgb: np.ndarray) -> PoseResult:
        """One crop, one call: the per-image baseline of the throughput benchmark."""
        return self._to_result(self._predict([rgb])[0], rgb.shape[1], rgb.shape[0])

    @staticmethod
    def _to_result(res, width: int, height: int) -> PoseResult:
        boxes = res.boxes
        if boxes is None or len(boxes) == 0 or res.keypoints is None:
            return PoseResult(0)
        xyxy = boxes.xyxy.cpu().numpy().astype(np.float64)
        conf = boxes.conf.cpu().numpy().astype(np.float64)
        kps = res.keypoints.data.cpu().numpy().astype(np.float32)
        if kps.ndim != 3 or kps.shape[1:] != (len(COCO17), 3):
            raise PoseError(
                f"the pose model gives keypoints of shape {kps.shape[1:]}, expected (17, 3) COCO-17"
            )
        best = select_person(xyxy, conf, width, height)
        assert best is not None
        return PoseResult(
            n_persons=len(xyxy),
            person_index=best,
            keypoints=kps[best],
            box=tuple(float(v) for v in xyxy[best]),
            score=float(conf[best]),
            persons=kps,
        )


class KeypointsFile:
    """Precomputed keypoints (the `keypoints.parquet` schema: file relative to RAW, 51 floats)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise KeypointsFileError(f"keypoints file not found: {self.path} (--keypoints)")
        try:
            table = read_manifest(self.path, KEYPOINTS_FILE)
        except ManifestError as exc:
            raise KeypointsFileError(f"--keypoints: {exc}") from None
        files = table.column("file").to_pylist()
        values = table.column("keypoints").to_pylist()
        self._by_file: dict[str, np.ndarray] = {}
        self._by_name: dict[str, list[str]] = {}
        for i, (f, kp) in enumerate(zip(files, values, strict=True)):
            if kp is None or len(kp) != KEYPOINT_VALUES:
                raise KeypointsFileError(
                    f"{self.path}: row {i + 1} ({f}) has {0 if kp is None else len(kp)} values, expected {KEYPOINT_VALUES}"
                )
            key = os.path.normpath(f).replace(os.sep, "/")
            self._by_file[key] = np.asarray(kp, dtype=np.float32).reshape(len(COCO17), 3)
            self._by_name.setdefault(Path(f).name, []).append(key)
        self._digest = sha256_file(self.path)

    def __len__(self) -> int:
        return len(self._by_file)

    def lookup(self, source_path: str, by_name: bool = False) -> PoseResult:
        """The keypoints of `source_path` (relative to RAW); n_persons 0 when the file has none.

        `by_name` also matches on the bare file name when that name is unique in the file
        (calibration folders hold the same crops under other folders).
        """
        kp = self._by_file.get(source_path)
        if kp is None and by_name:
            keys = self._by_name.get(Path(source_path).name, [])
            if len(keys) == 1:
                kp = self._by_file[keys[0]]
        if kp is None:
            return PoseResult(0)
        return PoseResult(1, 0, kp.copy(), None, None)

    def describe(self) -> dict:
        return {"source": "keypoints-file", "file": self.path.name, "sha256": self._digest}

    def check_matches(self, source_paths: Sequence[str]) -> None:
        """Refuse a file that names none of the crops, and warn when it names only some of them.

        Entries are looked up by the crop's path relative to RAW, so a file keyed by paths relative to
        another folder would otherwise turn every crop into `no_person` without a word. The message
        shows a crop's path beside one of the file's, so the mismatch can be seen.
        """
        if not source_paths:
            return
        missing = [p for p in source_paths if p not in self._by_file]
        if not missing:
            return
        named = set(source_paths)
        theirs = next((k for k in sorted(self._by_file) if k not in named), None) or next(
            iter(self._by_file), None
        )
        example = f"crop {missing[0]!r}; " + (f"the file has {theirs!r}" if theirs else "the file is empty")
        if len(missing) == len(source_paths):
            raise KeypointsFileError(
                f"--keypoints {self.path}: none of the {len(source_paths)} crops has an entry (e.g. {example}); "
                "its `file` column must name each crop relative to RAW"
            )
        log.warning(
            "--keypoints %s: %d of %d crops have no entry (e.g. %s): no person is found in them (see --no-person)",
            self.path, len(missing), len(source_paths), example,
        )  # fmt: skip


def keypoint_source(
    pose_model: str | None = None,
    keypoints: str | None = None,
    device: str | None = None,
    imgsz: int | None = None,
    half: bool = False,
    batch_size: int = BATCH_SIZE,
    person_conf: float = PERSON_CONF,
) -> KeypointsFile | PoseEstimator:
    """The keypoint source a command asks for: a precomputed file, or a pose model (never both)."""
    if pose_model and keypoints:
        raise CurationError("give either --pose-model or --keypoints, not both")
    if keypoints:
        return KeypointsFile(keypoints)
    return PoseEstimator(pose_model, device, imgsz, half, batch_size, person_conf)
