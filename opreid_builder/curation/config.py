"""`CurateConfig`: every curation option, its default and its check, in one place.

The CLI's `curate_options` map onto these fields one to one (`opreid curate`, `build-split`,
`import`); the defaults are read from the modules that own them (pose, the occlusion rule, face
detection, masking, the engines, the shards), never written out twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from opreid_builder.curation import pose
from opreid_builder.curation.engines import EngineConfig
from opreid_builder.curation.faces import FaceConfig, FaceDetectors
from opreid_builder.curation.masking import MaskSettings, check_method
from opreid_builder.curation.occlusion import PAPER_RULE, OcclusionRule
from opreid_builder.curation.occlusion_flag import Flag, load_flag
from opreid_builder.curation.shards import DEFAULT_SHARD_SIZE
from opreid_builder.curation.sources import DEFAULT_MAX_PIXELS
from opreid_builder.errors import CurationError

#: What becomes of a crop in which pose finds nobody: by default an `ok` crop flagged occluded (finding
#: nobody is itself evidence of heavy occlusion; occlusion_source `no-person`), or status `no_person`.
NO_PERSON_CHOICES = ("occluded", "exclude")


@dataclass(frozen=True)
class CurateConfig:
    """Every curation option (the CLI's `curate_options` map onto these fields one to one)."""

    layout: str = "auto"
    pose_model: str | None = None  # else $OPREID_POSE_MODEL, unless `keypoints` is given
    keypoints: str | None = None
    device: str | None = None
    batch_size: int = pose.BATCH_SIZE
    imgsz: int | None = None
    half: bool = False
    person_conf: float = pose.PERSON_CONF
    rule: str = PAPER_RULE.rule
    kpt_conf: float = PAPER_RULE.kpt_conf
    min_run: int = PAPER_RULE.min_run
    occlusion_flag: str | None = None  # paper | learned | a flag file; None: occlusion_flag.DEFAULT_FLAG
    no_person: str = NO_PERSON_CHOICES[0]
    min_size: int = 16
    max_pixels: int = DEFAULT_MAX_PIXELS
    face_detectors: tuple[str, ...] = ()
    face_models: tuple[str, ...] = ()  # empty: $OPREID_FACE_MODEL, else the bundled YuNet; ("none",): off
    insightface_root: str | None = None
    face_score: float = FaceConfig.score_threshold
    face_upscale: int = FaceConfig.upscale_to
    face_mask: str = MaskSettings.method
    face_enlarge: float = MaskSettings.enlarge
    head_enlarge: float = FaceConfig.head_enlarge
    jpeg_quality: int = MaskSettings.jpeg_quality
    corrections: str | None = None
    workers: int = 2
    engine: str = EngineConfig.engine
    ray_address: str | None = None
    pose_actors: int = EngineConfig.pose_actors
    face_actors: int = EngineConfig.face_actors
    pose_gpus: float | None = None
    shard_size: int = DEFAULT_SHARD_SIZE

    def __post_init__(self) -> None:
        if self.no_person not in NO_PERSON_CHOICES:
            raise CurationError(
                f"--no-person must be one of {', '.join(NO_PERSON_CHOICES)}, got {self.no_person!r}"
            )
        check_method(self.face_mask)
        if self.batch_size < 1:
            raise CurationError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not 1 <= self.jpeg_quality <= 100:
            raise CurationError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")
        if self.face_enlarge < 1.0 or self.head_enlarge < 1.0:
            raise CurationError("--face-enlarge and --head-enlarge must be >= 1")
        if self.max_pixels < 1:
            raise CurationError(f"--max-pixels must be >= 1, got {self.max_pixels}")
        if self.shard_size < 1:
            raise CurationError(f"--shard-size must be >= 1, got {self.shard_size}")
        _ = self.occlusion_rule  # validates rule, kpt_conf, min_run
        _ = self.engine_config  # validates the engine options

    @property
    def occlusion_rule(self) -> OcclusionRule:
        return OcclusionRule(self.rule, self.kpt_conf, self.min_run)

    def flag(self, from_keypoints_file: bool) -> Flag:
        """The occlusion flag these options name, for a pose model or a keypoints file."""
        return load_flag(self.occlusion_flag, self.occlusion_rule, from_keypoints_file=from_keypoints_file)

    @property
    def face_config(self) -> FaceConfig:
        return FaceConfig(
            tuple(self.face_detectors), tuple(self.face_models), self.insightface_root,
            self.face_score, self.face_upscale, self.head_enlarge,
        )  # fmt: skip

    @property
    def engine_config(self) -> EngineConfig:
        return EngineConfig(self.engine, self.ray_address, self.pose_actors, self.face_actors, self.pose_gpus)

    def mask_settings(self, detectors: FaceDetectors) -> MaskSettings:
        """How the crops are masked with `detectors` (the pose head box sees what the rule sees)."""
        return MaskSettings(
            self.face_mask, self.face_enlarge, self.jpeg_quality, detectors.pose_head, self.head_enlarge,
            self.kpt_conf, detectors.detector_count,
        )  # fmt: skip
