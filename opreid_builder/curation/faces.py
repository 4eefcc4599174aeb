"""Face detection on ReID crops: SCRFD through insightface, OpenCV's YuNet, and a pose head box.

ReID faces are about 10 px high, below what face detectors see, so crops are upscaled before
detection (`upscale_to`: the long side in pixels) and boxes are scaled back. The default is every
available detector and the union of their boxes: a detector's miss must not leave a face unmasked.

Privacy by default: opreid ships OpenCV's YuNet (MIT licence, `models/` beside this module), which
runs whenever no other face model is given, and the pose head box is taken for every person the
pose model finds, bystanders included. `--face-model none` is the only way to run without a face
detector model; curation then warns on every run and the dataset card says so.

No detector ever downloads anything: model files come from a path (checked here first), the
bundled file, or, for insightface, files already in its model root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from manifests import (
    COCO17,
    DEFAULT_KPT_CONF,
    FACE_POINTS,
    HEAD_POINTS,
    SHOULDERS,
    missing_keypoints,
    sha256_file,
)
from opreid_builder.errors import FaceDetectorError, ModelFileError

log = logging.getLogger(__name__)

DETECTORS = ("insightface", "yunet", "pose-head")
MODEL_DETECTORS = ("insightface", "yunet")
FACE_MODEL_ENV = "OPREID_FACE_MODEL"
#: The `--face-model` value that switches face detection models off (the pose head box alone remains).
NO_FACE_MODEL = "none"
#: The face detector opreid ships and runs by default (MIT licence: models/LICENSE-face_detection_yunet.txt).
BUNDLED_YUNET = Path(__file__).resolve().parent / "models" / "face_detection_yunet.onnx"
#: Face detection defaults: the minimum score, and the long side crops are upscaled to first.
SCORE_THRESHOLD = 0.6
UPSCALE_TO = 512
#: The pose head box's size relative to the span of the head keypoints.
HEAD_ENLARGE = 2.0
HEAD_ONLY_WARNING = (
    "no face detector model runs (--face-model none): faces are masked by the pose head box alone, which "
    "misses faces the pose model does not see; the dataset card says so"
)


@dataclass(frozen=True)
class FaceBox:
    """A face box in crop pixels, with the detector that found it and its score."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    detector: str

    def as_dict(self) -> dict:
        return asdict(self)


def _upscaled(rgb: np.ndarray, upscale_to: int) -> tuple[np.ndarray, float]:
    """The crop resized so its long side is `upscale_to` (never shrunk), and the factor used."""
    import cv2

    h, w = rgb.shape[:2]
    scale = max(1.0, float(upscale_to) / max(h, w))
    if scale == 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC), scale


def _clip(box: FaceBox, width: int, height: int) -> FaceBox | None:
    x1, y1 = max(0.0, min(box.x1, width)), max(0.0, min(box.y1, height))
    x2, y2 = max(0.0, min(box.x2, width)), max(0.0, min(box.y2, height))
    if x2 - x1 < 1e-3 or y2 - y1 < 1e-3:
        return None
    return FaceBox(x1, y1, x2, y2, box.score, box.detector)


def _check_file(path: str | os.PathLike, what: str, option: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelFileError(what, str(p), option)
    return p


class _ModelFaceDetector:
    """What the model-file detectors share: upscaling tiny ReID faces, mapping boxes back, describing.

    Subclasses set `name`, `path`, `score_threshold`, `upscale_to`, `_digest` and implement
    `_raw_boxes(bgr)`, which yields (x1, y1, x2, y2, score) in the upscaled image's pixels.
    """

    name: str

    def describe(self) -> dict:
        return {
            "detector": self.name,
            "model": self.path.name,
            "sha256": self._digest,
            "score": self.score_threshold,
            "bundled": self.path.resolve() == BUNDLED_YUNET,
        }

    def detect(self, rgb: np.ndarray) -> list[FaceBox]:
        img, scale = _upscaled(rgb, self.upscale_to)
        out = []
        for x1, y1, x2, y2, score in self._raw_boxes(np.ascontiguousarray(img[..., ::-1])):
            box = _clip(
                FaceBox(x1 / scale, y1 / scale, x2 / scale, y2 / scale, score, self.name), *rgb.shape[1::-1]
            )
            if box is not None:
                out.append(box)
        return out


class YuNetDetector(_ModelFaceDetector):
    """OpenCV's FaceDetectorYN (YuNet) from a model file."""

    name = "yunet"

    def __init__(
        self,
        model_path: str | os.PathLike,
        score_threshold: float = SCORE_THRESHOLD,
        upscale_to: int = UPSCALE_TO,
    ):
        import cv2

        self.path = _check_file(model_path, "YuNet face model", "--face-model")
        self.score_threshold, self.upscale_to = score_threshold, upscale_to
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # DNN warns on every load
        try:
            self._det = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), score_threshold, 0.3, 5000)
        except cv2.error as exc:
            raise FaceDetectorError(
                f"cannot load YuNet model {self.path}: {str(exc).strip().splitlines()[-1]}"
            ) from None
        self._digest = sha256_file(self.path)

    def _raw_boxes(self, bgr: np.ndarray):
        self._det.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._det.detect(bgr)
        for f in [] if faces is None else faces:
            x, y, w, h = (float(v) for v in f[:4])
            yield x, y, x + w, y + h, float(f[-1])


class InsightFaceDetector(_ModelFaceDetector):
    """An SCRFD ONNX model loaded through insightface's model zoo (local file only, never a download)."""

    name = "insightface"

    def __init__(
        self,
        model_path: str | os.PathLike,
        score_threshold: float = SCORE_THRESHOLD,
        upscale_to: int = UPSCALE_TO,
        input_size: int = 640,
    ):
        self.path = _check_file(model_path, "insightface SCRFD model", "--face-model")
        self.score_threshold, self.upscale_to, self.input_size = score_threshold, upscale_to, input_size
        try:
            from insightface.model_zoo import get_model

            model = get_model(str(self.path), download=False, providers=["CPUExecutionProvider"])
            if model is None or not hasattr(model, "detect"):
                raise FaceDetectorError(
                    f"{self.path} is not a face detection model for insightface (--face-model)"
                )
            model.prepare(ctx_id=-1, input_size=(input_size, input_size), det_thresh=score_threshold)
        except FaceDetectorError:
            raise
        except Exception as exc:
            raise FaceDetectorError(
                f"cannot load insightface model {self.path}: {str(exc).splitlines()[0]}"
            ) from None
        self._model = model
        self._digest = sha256_file(self.path)

    def _raw_boxes(self, bgr: np.ndarray):
        bboxes, _ = self._model.detect(bgr, max_num=0)
        for b in [] if bboxes is None else bboxes:
            yield tuple(float(v) for v in b[:5])


def pose_head_box(
    keypoints: np.ndarray | None, width: int, height: int, kpt_conf: float = DEFAULT_KPT_CONF,
    enlarge: float = HEAD_ENLARGE,
) -> FaceBox | None:  # fmt: skip
    """A head box from the nose, eye and ear keypoints, enlarged to cover the whole head.

    Fires only when the nose or an eye is seen (a face is towards the camera); ears then only widen
    the box. A keypoint is seen when the occlusion rule would not call it missing. Its size is at
    least 1/3 of the shoulder width or 1/10 of the crop height, whichever is known, so a single
    visible point still gives a head-sized box. Score: mean point confidence.
    """
    if keypoints is None:
        return None
    kp = np.asarray(keypoints, dtype=np.float64).reshape(len(COCO17), 3)
    seen = ~missing_keypoints(kp, width, height, kpt_conf)
    if not seen[list(FACE_POINTS)].any():
        return None
    pts = kp[[i for i in HEAD_POINTS if seen[i]]]
    cx, cy = float(pts[:, 0].mean()), float(pts[:, 1].mean())
    span = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])))
    floor = height / 10.0
    ls, rs = SHOULDERS
    if seen[ls] and seen[rs]:
        floor = max(floor, abs(kp[ls, 0] - kp[rs, 0]) / 3.0)
    half = max(span, floor) * enlarge / 2.0
    return _clip(
        FaceBox(cx - half, cy - half, cx + half, cy + half, float(pts[:, 2].mean()), "pose-head"),
        width,
        height,
    )


def find_insightface_model(root: str | os.PathLike | None) -> Path | None:
    """An SCRFD detector already in insightface's model root (`det_*.onnx` / `scrfd*.onnx`), if any."""
    base = Path(root or os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser() / "models"
    if not base.is_dir():
        return None
    found = sorted(p for pat in ("**/det_*.onnx", "**/scrfd*.onnx") for p in base.glob(pat) if p.is_file())
    return found[0] if found else None


def _kind_of(path: Path) -> str:
    return "yunet" if "yunet" in path.name.lower() else "insightface"


@dataclass(frozen=True)
class FaceConfig:
    """Which detectors to run and how.

    `models` empty means $OPREID_FACE_MODEL, else the bundled YuNet; `("none",)` means no face model.
    `detectors` empty means every available one.
    """

    detectors: tuple[str, ...] = ()
    models: tuple[str, ...] = ()  # model files; the kind comes from the name (yunet*) else insightface
    insightface_root: str | None = None
    score_threshold: float = SCORE_THRESHOLD
    upscale_to: int = UPSCALE_TO
    head_enlarge: float = HEAD_ENLARGE


def _model_paths(config: FaceConfig) -> list[Path]:
    """The face model files asked for: the option, else $OPREID_FACE_MODEL, else the bundled YuNet."""
    given = list(config.models)
    source = "--face-model"
    if not given and os.environ.get(FACE_MODEL_ENV):
        given = [m for m in os.environ[FACE_MODEL_ENV].split(os.pathsep) if m]
        source = FACE_MODEL_ENV
    if any(m.strip().lower() == NO_FACE_MODEL for m in given):
        if len(given) > 1:
            raise FaceDetectorError(f"{source}: '{NO_FACE_MODEL}' cannot be combined with model files")
        return []
    if not given:
        return [BUNDLED_YUNET]
    paths = [Path(m).expanduser() for m in given]
    for p in paths:
        if not p.is_file():
            raise ModelFileError("face model", str(p), f"--face-model or {FACE_MODEL_ENV}")
    return paths


class FaceDetectors:
    """The model detectors to run on pixels, plus whether the pose head box is used.

    Built once on the driver (to check the options and describe the run) and once per worker.
    """

    def __init__(self, config: FaceConfig, keypoints_available: bool = True):
        unknown = [d for d in config.detectors if d not in DETECTORS]
        if unknown:
            raise FaceDetectorError(
                f"unknown face detector(s) {', '.join(unknown)} (choose from {', '.join(DETECTORS)})"
            )
        model_paths = _model_paths(config)
        switched_off = not model_paths
        by_kind: dict[str, list[Path]] = {"yunet": [], "insightface": []}
        for p in model_paths:
            by_kind[_kind_of(p)].append(p)
        if not switched_off and not by_kind["insightface"]:
            found = find_insightface_model(config.insightface_root)
            if found is not None:
                by_kind["insightface"].append(found)
        wanted = config.detectors or tuple(
            d for d in DETECTORS if (d == "pose-head" and keypoints_available) or by_kind.get(d)
        )
        for d in wanted:
            if d in MODEL_DETECTORS and not by_kind[d]:
                if switched_off:
                    raise FaceDetectorError(
                        f"--face-detector {d} needs a face model, but --face-model is 'none'"
                    )
                hint = "a YuNet .onnx (name containing 'yunet')" if d == "yunet" else "an SCRFD .onnx"
                raise ModelFileError(f"{d} face model", None, f"--face-model to {hint}")
        if not switched_off and not any(d in MODEL_DETECTORS for d in wanted):
            raise FaceDetectorError(
                f"--face-detector {' '.join(wanted)} runs no face detector model; "
                f"pass --face-model {NO_FACE_MODEL} to switch face detection off"
            )
        self.config = config
        self.models: list = []
        for d in wanted:
            for p in by_kind.get(d, []):
                cls = YuNetDetector if d == "yunet" else InsightFaceDetector
                self.models.append(cls(p, config.score_threshold, config.upscale_to))
        self.pose_head = "pose-head" in wanted
        self.names = tuple(wanted)
        self.switched_off = switched_off

    @property
    def detector_count(self) -> int:
        """How many detectors run on every crop: each model file, plus the pose head box."""
        return len(self.models) + int(self.pose_head)

    def worker_config(self) -> FaceConfig:
        """A config that rebuilds exactly these detectors in a worker (paths resolved, nothing searched)."""
        models = tuple(str(m.path) for m in self.models) or (NO_FACE_MODEL,)
        return FaceConfig(
            self.names, models, None, self.config.score_threshold, self.config.upscale_to,
            self.config.head_enlarge,
        )  # fmt: skip

    def describe(self) -> dict:
        return {
            "detectors": list(self.names),
            "detector_count": self.detector_count,
            "models": [m.describe() for m in self.models],
            "upscale_to": self.config.upscale_to,
            "head_enlarge": self.config.head_enlarge,
        }

    def model_key(self) -> str:
        """What cached model boxes depend on (not the pose head box, which is recomputed)."""
        spec = {"models": [m.describe() for m in self.models], "upscale_to": self.config.upscale_to}
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]

    def detect_models(self, rgb: np.ndarray) -> list[FaceBox]:
        return [box for m in self.models for box in m.detect(rgb)]


def detector_summary(faces: dict) -> str:
    """The detectors of a run in words, from its `describe()` record: 'yunet (face_detection_yunet.onnx), pose-head'."""
    models = faces.get("models") or []
    parts = []
    for name in faces.get("detectors") or []:
        files = [m.get("model") for m in models if m.get("detector") == name]
        parts.append(f"{name} ({', '.join(files)})" if files else name)
    return ", ".join(parts) or "no face detector"
