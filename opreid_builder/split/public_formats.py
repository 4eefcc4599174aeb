"""The public ReID benchmarks `opreid import` reads, as data: folders, file names, conventions, counts.

Each `BenchmarkLayout` describes one dataset exactly as it ships: its protocol folders (or list
files) and the split each feeds, how a file name gives the person id and camera, what the dataset
itself says about occlusion, and the counts published with it. The scanner
(`benchmark_scan.py`), the importer and `opreid synth --layout` all read these records; nothing
else in the code knows a dataset by name.

Conventions, as fast-reid and torchreid apply them:
- pid -1 names junk boxes (Market-1501): left out;
- pid 0 names distractors (Market-1501's background and other-person boxes): gallery only;
- datasets without cameras get camera 1 on the query side and camera 2 on the gallery side, so
  every same-pid gallery image counts as a cross-camera match;
- MSMT17 numbers its test identities from 0 again: train and test ids are separate namespaces.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from opreid_builder.errors import BenchmarkImportError

#: Cameras of the community convention for datasets without camera ids.
QUERY_SIDE_CAMERA = 1
GALLERY_SIDE_CAMERA = 2
#: What a folder's images show, as the dataset states it; the occlusion flag that follows from it.
CONTENT_FLAGS: dict[str, bool | None] = {"any": None, "occluded": True, "partial": True, "holistic": False}


@dataclass(frozen=True)
class NamePattern:
    """How a file name (without its suffix) gives the person id and, where it has one, the camera."""

    regex: re.Pattern  # full match of the stem; named groups `pid` and optionally `cam`
    template: str  # in words, e.g. <pid>_c<cam>s<seq>_<frame>_<box>
    example: str  # a real name of the dataset
    synth: str  # format string `opreid synth --layout` writes: {pid} (pre-formatted), {cam}, {n}, {frame}
    pid_digits: int = 4

    def parse(self, stem: str) -> tuple[int, int | None] | None:
        """(pid, camera or None), or None when the stem does not match."""
        m = self.regex.fullmatch(stem)
        if m is None:
            return None
        cam = m.groupdict().get("cam")
        return int(m.group("pid")), None if cam is None else int(cam)

    def pid_text(self, pid: int) -> str:
        """The pid as the dataset writes it (zero-padded; junk as -1), also its identity folders' name."""
        return f"{pid:0{self.pid_digits}d}" if pid >= 0 else str(pid)

    def format(self, pid: int, cam: int = 1, n: int = 0, frame: int = 0) -> str:
        """A stem of this pattern (what the dataset would name such an image)."""
        return self.synth.format(pid=self.pid_text(pid), cam=cam, n=n, frame=frame)

    @property
    def one_per_identity(self) -> bool:
        """The name is the pid alone, so a folder holds one image per identity."""
        return "{n" not in self.synth and "{frame" not in self.synth


MARKET_NAME = NamePattern(
    re.compile(r"(?P<pid>-?\d+)_c(?P<cam>\d+)s\d+_\d+_\d+"), "<pid>_c<cam>s<seq>_<frame>_<box>",
    "0002_c1s1_000451_03.jpg", "{pid}_c{cam}s1_{frame:06d}_{n:02d}",
)  # fmt: skip
DUKE_NAME = NamePattern(
    re.compile(r"(?P<pid>\d+)_c(?P<cam>\d+)_f\d+"), "<pid>_c<cam>_f<frame>", "0001_c2_f0046182.jpg",
    "{pid}_c{cam}_f{frame:07d}",
)  # fmt: skip
CUHK03_NAME = NamePattern(
    re.compile(r"(?P<pid>\d+)_c(?P<cam>\d+)_\d+"), "<pid>_c<cam>_<n>", "0001_c1_1.png", "{pid}_c{cam}_{n}"
)
MSMT17_NAME = NamePattern(
    re.compile(r"(?P<pid>\d+)_\d+_(?P<cam>\d+)_[0-9A-Za-z]+_\d+_\d+"),
    "<pid>_<n>_<cam>_<date><time>_<frame>_<k>", "0000_000_01_0303morning_0015_0.jpg",
    "{pid}_{n:03d}_{cam:02d}_0303morning_{frame:04d}_0",
)  # fmt: skip
BODY_NAME = NamePattern(
    re.compile(r"(?P<pid>\d+)_\d+"), "<pid>_<n>", "001_01.tif", "{pid}_{n:02d}", pid_digits=3
)
PID_NAME = NamePattern(re.compile(r"(?P<pid>\d+)"), "<pid>", "001.jpg", "{pid}", pid_digits=3)
PDUKE_NAME = NamePattern(
    re.compile(r"(?P<pid>\d+)_.+"), "<pid>_<anything>", "0005_c2_f0046985.jpg", "{pid}_c{cam}_f{frame:07d}"
)


@dataclass(frozen=True)
class Folder:
    """A folder of the dataset and what its images are.

    `split` None: shipped with the dataset but not part of the protocol (read for the card only).
    """

    path: str  # relative to the dataset root, POSIX; `{subset}` stands for the chosen subset
    split: str | None
    pattern: NamePattern
    content: str = "any"  # a key of CONTENT_FLAGS
    camera: int | None = None  # the convention's camera (camera-less datasets); None: from the name
    per_identity: bool = False  # images sit in <pid>/ sub-folders named like the names' pid
    junk: bool = False  # pid -1 names junk images, left out
    distractors: bool = False  # pid 0 names distractor images, kept as gallery distractors

    @property
    def occluded(self) -> bool | None:
        return CONTENT_FLAGS[self.content]


@dataclass(frozen=True)
class ListFile:
    """A list file naming a split's images (`<path> <pid>` per line, paths relative to `images`)."""

    path: str
    images: str
    split: str | None
    pattern: NamePattern  # the listed names give the camera; the list gives the pid


@dataclass(frozen=True)
class Counts:
    ids: int
    images: int


@dataclass(frozen=True)
class BenchmarkLayout:
    """One public benchmark exactly as it ships (see the module doc)."""

    name: str
    title: str
    reference: str
    root_names: tuple[str, ...]  # the folder(s) it unpacks to: SRC may be the folder holding one
    published: dict[str, dict[str, Counts]]  # subset ("" without subsets) -> split -> counts as published
    folders: tuple[Folder, ...] = ()
    lists: tuple[ListFile, ...] = ()
    subsets: tuple[str, ...] = ()  # alternatives chosen with --subset (CUHK03-NP: detected, labeled)
    known_extras: tuple[str, ...] = ()  # shipped top-level entries outside the protocol
    cameras: int | None = (
        None  # the dataset's cameras (None: it has none); `synth --layout` uses at most these
    )
    separate_test_ids: bool = False  # test ids restart at 0 (MSMT17): no train/test overlap check
    assignment: str = "market"  # how `opreid synth --layout` fills it: market (queries per camera) or content
    suffix: str = ".jpg"  # what `opreid synth --layout` writes
    notes: tuple[str, ...] = field(default_factory=tuple)  # protocol notes for the card

    def protocol_folders(self, subset: str | None) -> list[Folder]:
        return [self.resolve(f, subset) for f in self.folders if f.split is not None]

    def unused_folders(self, subset: str | None) -> list[Folder]:
        return [self.resolve(f, subset) for f in self.folders if f.split is None]

    def resolve(self, folder: Folder, subset: str | None) -> Folder:
        if "{subset}" not in folder.path:
            return folder
        return dataclasses.replace(folder, path=folder.path.format(subset=subset))

    def required(self, subset: str | None) -> list[str]:
        """What must exist under the dataset root: protocol folders, protocol lists and their folders."""
        paths = [f.path for f in self.protocol_folders(subset)]
        for lst in self.lists:
            if lst.split is not None:
                paths += [p for p in (lst.images, lst.path) if p not in paths]
        return paths

    @property
    def has_distractors(self) -> bool:
        return any(f.distractors for f in self.folders)

    @property
    def camera_convention(self) -> bool:
        """Cameras come from the query/gallery convention, not from the dataset."""
        return any(f.camera is not None for f in self.folders)

    def choose_subset(self, subset: str | None) -> str | None:
        if not self.subsets:
            if subset is not None:
                raise BenchmarkImportError(f"--subset: {self.name} has no subsets")
            return None
        chosen = subset or self.subsets[0]
        if chosen not in self.subsets:
            raise BenchmarkImportError(
                f"--subset: {self.name} has the subsets {', '.join(self.subsets)} (got {chosen!r})"
            )
        return chosen

    def published_counts(self, subset: str | None) -> dict[str, Counts]:
        return self.published.get(subset or "", {})


def _market_style(pattern: NamePattern, market: bool = False, query_content: str = "any", root: str = ""):
    """bounding_box_train/, query/ and bounding_box_test/ (under `root`), named by `pattern`."""
    return (
        Folder(f"{root}bounding_box_train", "train", pattern, junk=market),
        Folder(f"{root}query", "query", pattern, query_content, junk=market),
        Folder(f"{root}bounding_box_test", "gallery", pattern, junk=market, distractors=market),
    )


def _c(ids: int, images: int) -> Counts:
    return Counts(ids, images)


def _body_folders(root: str, query: str, split_query: str, split_gallery: str, pattern=BODY_NAME,
                  per_identity: bool = True, query_content: str = "occluded") -> tuple[Folder, ...]:  # fmt: skip
    """An occluded (or partial) folder on the query side and a whole-body folder on the gallery side."""
    return (
        Folder(f"{root}{query}", split_query, pattern, query_content, QUERY_SIDE_CAMERA, per_identity),
        Folder(f"{root}whole_body_images", split_gallery, pattern, "holistic", GALLERY_SIDE_CAMERA, per_identity),
    )  # fmt: skip


LAYOUTS: dict[str, BenchmarkLayout] = {
    layout.name: layout
    for layout in (
        BenchmarkLayout(
            "market1501", "Market-1501",
            "L. Zheng et al., Scalable Person Re-identification: A Benchmark, ICCV 2015",
            ("Market-1501-v15.09.15", "Market-1501", "market1501"),
            {"": {"train": _c(751, 12936), "query": _c(750, 3368), "gallery": _c(751, 15913)}},
            folders=_market_style(MARKET_NAME, market=True), cameras=6,
            known_extras=("gt_bbox", "gt_query", "images", "readme.txt"),
        ),
        BenchmarkLayout(
            "dukemtmc", "DukeMTMC-reID",
            "Z. Zheng et al., Unlabeled Samples Generated by GAN Improve the Person Re-identification "
            "Baseline in vitro, ICCV 2017",
            ("DukeMTMC-reID",),
            {"": {"train": _c(702, 16522), "query": _c(702, 2228), "gallery": _c(1110, 17661)}},
            folders=_market_style(DUKE_NAME), cameras=8,
            known_extras=("CITATION.txt", "CITATION_DukeMTMC.txt", "LICENSE_DukeMTMC.txt",
                          "LICENSE_DukeMTMC-reID.txt", "README.md"),
        ),
        BenchmarkLayout(
            "occluded_duke", "Occluded-DukeMTMC",
            "J. Miao et al., Pose-Guided Feature Alignment for Occluded Person Re-Identification, ICCV 2019",
            ("Occluded_Duke", "Occluded-DukeMTMC"),
            {"": {"train": _c(702, 15618), "query": _c(519, 2210), "gallery": _c(1110, 17661)}},
            folders=_market_style(DUKE_NAME, query_content="occluded"), cameras=8,
            notes=("every query image is occluded (the dataset's definition); train and gallery images "
                   "carry no occlusion label",),
        ),
        BenchmarkLayout(
            "msmt17", "MSMT17 (V1)",
            "L. Wei et al., Person Transfer GAN to Bridge Domain Gap for Person Re-Identification, CVPR 2018",
            ("MSMT17_V1", "MSMT17"),
            {"": {"train": _c(1041, 30248), "query": _c(3060, 11659), "gallery": _c(3060, 82161)}},
            lists=(
                ListFile("list_train.txt", "train", "train", MSMT17_NAME),
                ListFile("list_val.txt", "train", None, MSMT17_NAME),
                ListFile("list_query.txt", "test", "query", MSMT17_NAME),
                ListFile("list_gallery.txt", "test", "gallery", MSMT17_NAME),
            ),
            known_extras=("README.txt",),
            cameras=15, separate_test_ids=True,
            notes=("list_val.txt is not used for training, as in fast-reid and torchreid (their "
                   "'combineall' adds it)", "test ids restart at 0: they are a namespace of their own"),
        ),
        BenchmarkLayout(
            "cuhk03", "CUHK03-NP (new protocol)",
            "W. Li et al., DeepReID, CVPR 2014; Z. Zhong et al., Re-ranking Person Re-identification with "
            "k-reciprocal Encoding, CVPR 2017 (the 767/700 split)",
            ("cuhk03-np", "CUHK03-NP"),
            {
                "detected": {"train": _c(767, 7365), "query": _c(700, 1400), "gallery": _c(700, 5332)},
                "labeled": {"train": _c(767, 7368), "query": _c(700, 1400), "gallery": _c(700, 5328)},
            },
            folders=_market_style(CUHK03_NAME, root="{subset}/"),
            subsets=("detected", "labeled"), cameras=2,
            suffix=".png",
        ),
        BenchmarkLayout(
            "occluded_reid", "Occluded-REID",
            "J. Zhuo et al., Occluded Person Re-identification, ICME 2018",
            ("Occluded_REID", "OccludedREID"),
            {"": {"train": _c(0, 0), "query": _c(200, 1000), "gallery": _c(200, 1000)}},
            folders=_body_folders("", "occluded_body_images", "query", "gallery"),
            assignment="content", suffix=".tif",
            notes=("test only: train on another release (the paper trains on Market-1501)",),
        ),
        BenchmarkLayout(
            "partial_reid", "Partial-REID",
            "W.-S. Zheng et al., Partial Person Re-identification, ICCV 2015",
            ("Partial_REID", "Partial-REID_Dataset", "PartialREID"),
            {"": {"train": _c(0, 0), "query": _c(60, 300), "gallery": _c(60, 300)}},
            folders=(
                *_body_folders("", "partial_body_images", "query", "gallery", per_identity=False,
                               query_content="partial"),
                Folder("occluded_body_images", None, BODY_NAME, "occluded"),
            ),  # fmt: skip
            assignment="content",
            notes=("the probes are partial_body_images, as in fast-reid and the DSR protocol; "
                   "occluded_body_images is not used", "test only"),
        ),
        BenchmarkLayout(
            "partial_ilids", "Partial-iLIDS",
            "L. He et al., Deep Spatial Feature Reconstruction for Partial Person Re-identification, CVPR 2018",
            ("Partial_iLIDS", "PartialiLIDS", "Partial-iLIDS"),
            {"": {"train": _c(0, 0), "query": _c(119, 119), "gallery": _c(119, 119)}},
            folders=(
                Folder("Probe", "query", PID_NAME, "partial", QUERY_SIDE_CAMERA),
                Folder("Gallery", "gallery", PID_NAME, "holistic", GALLERY_SIDE_CAMERA),
            ),
            assignment="content", notes=("test only",),
        ),
        BenchmarkLayout(
            "p_dukemtmc", "P-DukeMTMC-reID",
            "J. Zhuo et al., Occluded Person Re-identification, ICME 2018 (P-DukeMTMC-reID)",
            ("P-DukeMTMC-reID", "P-DukeMTMC-reid"),
            {"": {"train": _c(665, 12927), "query": _c(634, 2163), "gallery": _c(634, 9053)}},
            folders=(
                *_body_folders("train/", "occluded_body_images", "train", "train", PDUKE_NAME),
                *_body_folders("test/", "occluded_body_images", "query", "gallery", PDUKE_NAME),
            ),
            assignment="content",
            notes=("cameras follow the occluded/whole-body folders (occluded camera 1, whole body camera 2), "
                   "as in PVPM and BPBReID, not the DukeMTMC cameras in the names",),
        ),
    )
}  # fmt: skip
FORMATS = tuple(LAYOUTS)


def get_layout(name: str) -> BenchmarkLayout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise BenchmarkImportError(f"unknown format {name!r}; known: {', '.join(FORMATS)}") from None
