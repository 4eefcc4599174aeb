"""`opreid synth OUT --layout FORMAT`: a public benchmark's folder layout, filled with synthetic crops.

So that every importer is tested end to end without the real data: OUT/<the dataset's folder>/
holds the layout exactly as `benchmark_layouts` describes it (its folders or list files, its file
names and suffix), including what the real copies hold besides the protocol: junk (pid -1) and
distractor (pid 0) boxes where the dataset has them, a folder or list it ships but the protocol
does not use, and an unexpected `Thumbs.db`. Beside it:

- `OUT/truth.parquet` (kind `layout_truth`): every file written, with what an import must make
  of it: split, source pid, camera (after the camera-less convention), the dataset's own occlusion
  flag, and the flag the generator drew (for an import with `--keypoints`);
- `OUT/keypoints.parquet` (kind `keypoints`): ground-truth keypoints of every image, paths relative
  to the dataset folder, for `opreid import --keypoints`.

The identities, cameras and occlusion come from `synth.plan` (same options, same seed, same
crops); which image goes where follows the layout's protocol (`BenchmarkLayout.assignment`).
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from manifests import KEYPOINTS_FILE, ManifestSchema, progress_bar, write_manifest
from opreid_builder.curation.occlusion import PAPER_RULE, evaluate
from opreid_builder.curation.sources import JUNK_PID
from opreid_builder.split.protocol import DISTRACTOR_PID
from opreid_builder.split.public_formats import (
    BenchmarkLayout,
    Folder,
    ListFile,
    get_layout,
)
from opreid_builder.synth.generator import (
    JPEG_QUALITY,
    KEYPOINTS_NAME,
    TRUTH_NAME,
    ImageSpec,
    SynthConfig,
    SynthOutputError,
    plan,
    render_crop,
)

log = logging.getLogger(__name__)

#: What `opreid synth --layout` records about every file it writes (docs/data-contract.md §3.6).
LAYOUT_TRUTH = ManifestSchema(
    "layout_truth",
    pa.schema(
        [
            pa.field("file", pa.string(), nullable=False),
            pa.field("role", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=True),
            pa.field("pid", pa.int64(), nullable=True),
            pa.field("camid", pa.int32(), nullable=True),
            pa.field("occluded", pa.bool_(), nullable=True),
            pa.field("drawn_occluded", pa.bool_(), nullable=True),
        ]
    ),
)
#: Roles of layout_truth rows: the split an import gives the file, or why it gives none.
ROLES = ("train", "query", "gallery", "distractor", "junk", "unused", "extra")
PARTIAL_HEIGHT = 0.5  # a partial probe keeps the top half of a whole-body crop
_EXTRA = "Thumbs.db"
_SPLIT_OF_ROLE = {"train": "train", "query": "query", "gallery": "gallery", "distractor": "gallery"}


@dataclass(frozen=True)
class _File:
    """One file to write: where (relative to the dataset folder), what, and what it truly is."""

    path: str
    role: str
    pid: int | None = None
    camid: int | None = None
    occluded: bool | None = None  # the dataset's own flag
    spec: ImageSpec | None = None
    partial: bool = False
    pid_in_list: int | None = None  # list layouts: the pid the list file gives


@dataclass
class LayoutSummary:
    out_dir: str
    layout: str
    root: str
    files: int
    roles: dict[str, int]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class _Planner:
    """Which synthetic image becomes which file of the layout."""

    def __init__(self, layout: BenchmarkLayout, subset: str | None, specs: list[ImageSpec]):
        self.layout, self.subset = layout, subset
        self.files: list[_File] = []
        self.by_pid: dict[int, list[ImageSpec]] = defaultdict(list)
        for spec in specs:
            self.by_pid[spec.pid].append(spec)
        pids = sorted(self.by_pid)
        has_train = any(f.split == "train" for f in layout.folders) or any(
            x.split == "train" for x in layout.lists
        )
        n_train = max(1, len(pids) // 2) if has_train else 0
        self.train_pids, self.test_pids = pids[:n_train], pids[n_train:]
        self.counter: dict[tuple[str, int], int] = defaultdict(int)
        self.list_lines: dict[str, list[str]] = defaultdict(list)

    def folder(self, split: str | None, content: str | None = None) -> Folder | None:
        for f in self.layout.protocol_folders(self.subset) + self.layout.unused_folders(self.subset):
            if f.split == split and (content is None or f.content == content):
                return f
        return None

    def name(self, folder: Folder, pid: int, spec: ImageSpec) -> str:
        n = self.counter[(folder.path, pid)]
        self.counter[(folder.path, pid)] += 1
        stem = folder.pattern.format(pid, spec.camid, n, spec.frame)
        inner = f"{folder.pattern.pid_text(pid)}/" if folder.per_identity else ""
        return f"{folder.path}/{inner}{stem}{self.layout.suffix}"

    def add(self, folder: Folder, role: str, pid: int, spec: ImageSpec, partial: bool = False) -> None:
        if folder.pattern.one_per_identity and self.counter[(folder.path, pid)]:
            return
        camid = folder.camera if folder.camera is not None else spec.camid
        self.files.append(
            _File(
                self.name(folder, pid, spec),
                role if folder.split else "unused",
                pid,
                camid,
                folder.occluded,
                spec,
                partial,
            )  # fmt: skip
        )

    # --- assignments ----------------------------------------------------------------------------

    def queries(self, specs: list[ImageSpec], occluded_only: bool, k: int) -> set[int]:
        """Indices of a test identity's query images: at most one per camera, each keeping a gallery
        image from another camera; every fourth test identity gives none (a gallery-only identity)."""
        if k % 4 == 3:
            return set()
        chosen: set[int] = set()
        for cam in sorted({s.camid for s in specs}):
            pick = next(
                (i for i, s in enumerate(specs) if s.camid == cam and (s.occluded or not occluded_only)), None
            )
            if pick is None:
                continue
            trial = chosen | {pick}
            rest = [s for i, s in enumerate(specs) if i not in trial]
            if all(any(g.camid != specs[q].camid for g in rest) for q in trial):
                chosen = trial
        return chosen

    def market(self) -> None:
        train, query, gallery = self.folder("train"), self.folder("query"), self.folder("gallery")
        for pid in self.train_pids:
            for spec in self.by_pid[pid]:
                self.add(train, "train", pid, spec)
        for k, pid in enumerate(self.test_pids):
            specs = self.by_pid[pid]
            chosen = self.queries(specs, query.content == "occluded", k)
            for i, spec in enumerate(specs):
                self.add(query if i in chosen else gallery, "query" if i in chosen else "gallery", pid, spec)

    def content(self) -> None:
        for side, pids in (("train", self.train_pids), ("test", self.test_pids)):
            for pid in pids:
                occluded = [s for s in self.by_pid[pid] if s.occluded]
                holistic = [s for s in self.by_pid[pid] if not s.occluded]
                if side == "train":
                    targets = [
                        (self.folder("train", "occluded"), occluded),
                        (self.folder("train", "holistic"), holistic),
                    ]
                else:
                    partial = self.folder("query", "partial")
                    whole = self.folder("gallery", "holistic")
                    if partial is not None:
                        half = (len(holistic) + 1) // 2
                        for spec in holistic[:half]:
                            self.add(partial, "query", pid, spec, partial=True)
                        holistic = holistic[half:]
                        targets = [(self.folder(None, "occluded"), occluded), (whole, holistic)]
                    else:
                        targets = [(self.folder("query", "occluded"), occluded), (whole, holistic)]
                for folder, specs in targets:
                    for spec in specs if folder is not None else []:
                        self.add(folder, _role(folder), pid, spec)

    def lists(self) -> None:
        """MSMT17: per-identity folders under train/ and test/, named by list files; test ids from 0."""
        by_split = {lst.split: lst for lst in self.layout.lists}
        for pids, side in ((self.train_pids, "train"), (self.test_pids, "test")):
            for number, pid in enumerate(pids):
                specs = self.by_pid[pid]
                chosen = self.queries(specs, False, number) if side == "test" else set()
                for i, spec in enumerate(specs):
                    if side == "train":
                        lst = by_split[None] if i % 8 == 7 else by_split["train"]
                    else:
                        lst = by_split["query"] if i in chosen else by_split["gallery"]
                    self.list_image(lst, number, spec)

    def list_image(self, lst: ListFile, pid: int, spec: ImageSpec) -> None:
        folder = Folder(lst.images, lst.split, lst.pattern)
        n = self.counter[(lst.images, pid)]
        self.counter[(lst.images, pid)] += 1
        stem = lst.pattern.format(pid, spec.camid, n, spec.frame)
        path = f"{lst.images}/{lst.pattern.pid_text(pid)}/{stem}{self.layout.suffix}"
        role = lst.split or "unused"
        self.files.append(_File(path, role, pid, spec.camid, folder.occluded, spec, pid_in_list=pid))
        self.list_lines[lst.path].append(f"{path[len(lst.images) + 1 :]} {pid}")

    # --- what real copies hold besides the protocol ---------------------------------------------

    def extras(self, extra_specs: list[ImageSpec]) -> None:
        gallery = self.folder("gallery")
        if gallery is not None and self.layout.has_distractors:
            for spec in extra_specs[:4]:
                self.add_raw(gallery, "distractor", DISTRACTOR_PID, spec)
        if gallery is not None and gallery.junk:
            for spec in extra_specs[4:7]:
                self.add_raw(gallery, "junk", JUNK_PID, spec)
        if gallery is not None:
            self.files.append(_File(f"{gallery.path}/{_EXTRA}", "extra"))
        else:  # list layouts: an image no list names, and the same stray file
            lst = next(x for x in self.layout.lists if x.split == "gallery")
            spec = extra_specs[0]
            stem = lst.pattern.format(0, spec.camid, 999, spec.frame)
            self.files.append(_File(f"{lst.images}/{lst.pattern.pid_text(0)}/{stem}{self.layout.suffix}", "extra",
                                    spec=spec))  # fmt: skip
            self.files.append(_File(f"{lst.images}/{_EXTRA}", "extra"))

    def add_raw(self, folder: Folder, role: str, pid: int, spec: ImageSpec) -> None:
        camid = folder.camera if folder.camera is not None else spec.camid
        self.files.append(_File(self.name(folder, pid, spec), role, pid, camid, folder.occluded, spec))


def _role(folder: Folder) -> str:
    return folder.split if folder.split else "unused"


def _encode(image: np.ndarray, suffix: str) -> bytes:
    buf = io.BytesIO()
    fmt = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF"}[suffix]
    Image.fromarray(image).save(buf, format=fmt, **({"quality": JPEG_QUALITY} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _render(config: SynthConfig, file: _File) -> tuple[bytes, np.ndarray, bool]:
    """The file's bytes, its keypoints (17 x 3) and whether the paper's rule calls it occluded."""
    crop = render_crop(config, file.spec)
    image, keypoints = crop.image, crop.keypoints.copy()
    if file.partial:
        keep = max(16, int(round(image.shape[0] * PARTIAL_HEIGHT)))
        image = image[:keep].copy()
        keypoints[keypoints[:, 1] >= keep, 2] = 0.0
    drawn = evaluate(keypoints, image.shape[1], image.shape[0], PAPER_RULE).occluded
    return _encode(image, Path(file.path).suffix), keypoints, bool(drawn)


def generate_layout(
    out_dir: str | Path, fmt: str, config: SynthConfig, progress: bool = False
) -> LayoutSummary:
    """Write the layout `fmt` under OUT/<its folder name>/, with truth.parquet and keypoints.parquet."""
    layout = get_layout(fmt)
    out_dir = Path(out_dir)
    cameras = min(config.cameras, layout.cameras) if layout.cameras else config.cameras
    config = dataclasses.replace(config, cameras=cameras)
    specs = plan(config)
    root = out_dir / layout.root_names[0]
    if root.exists() or (out_dir / TRUTH_NAME).exists():
        raise SynthOutputError(
            f"{out_dir} already holds the {fmt} layout or a truth.parquet; use an empty folder"
        )
    extra_plan = plan(
        dataclasses.replace(config, identities=2, images_per_identity=(4, 4), seed=config.seed + 1)
    )
    files: list[_File] = []
    lines: dict[str, list[str]] = {}
    for subset in layout.subsets or (None,):
        planner = _Planner(layout, subset, specs)
        if layout.lists:
            planner.lists()
        elif layout.assignment == "market":
            planner.market()
        else:
            planner.content()
        planner.extras(extra_plan)
        files += planner.files
        lines.update(planner.list_lines)
    try:
        root.mkdir(parents=True)
    except OSError as exc:
        raise SynthOutputError(f"cannot create {root}: {exc.strerror or exc}") from None
    truth: dict[str, list] = {name: [] for name in LAYOUT_TRUTH.columns}
    keypoints: dict[str, list] = {"file": [], "keypoints": []}
    for file in progress_bar(files, total=len(files), desc="synth", enabled=progress):
        target = root / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        drawn = None
        if file.spec is None:
            target.write_bytes(b"\x00" * 64)  # what Windows leaves behind
        else:
            render_config = (
                config
                if not file.path.startswith("labeled/")
                else dataclasses.replace(config, seed=config.seed + 7)
            )
            data, kps, drawn = _render(render_config, file)
            target.write_bytes(data)
            keypoints["file"].append(file.path)
            keypoints["keypoints"].append(kps.reshape(-1).tolist())
        split = _SPLIT_OF_ROLE.get(file.role)
        for name, value in (("file", file.path), ("role", file.role), ("split", split), ("pid", file.pid),
                            ("camid", file.camid if split else None), ("occluded", file.occluded if split else None),
                            ("drawn_occluded", drawn)):  # fmt: skip
            truth[name].append(value)
    for name, body in sorted(lines.items()):
        (root / name).write_text("\n".join(body) + "\n", encoding="utf-8")
    write_manifest(keypoints, out_dir / KEYPOINTS_NAME, KEYPOINTS_FILE)
    order = np.argsort(np.array(truth["file"], dtype=object), kind="stable")
    write_manifest({k: [v[i] for i in order] for k, v in truth.items()}, out_dir / TRUTH_NAME, LAYOUT_TRUTH)
    roles = {role: truth["role"].count(role) for role in ROLES if role in truth["role"]}
    log.info("wrote the %s layout to %s: %d files", fmt, root, len(files))
    return LayoutSummary(str(out_dir), fmt, layout.root_names[0], len(files), roles)
