"""Read a public benchmark's folders as they ship: every protocol image with its split, pid and camera.

Read-only: nothing is written, so a copy that breaks its layout fails here, before any output
exists. What breaks the layout is a one-line `BenchmarkLayoutError` naming the file (a name that
does not parse, pid 0 outside the gallery, a train identity in the test set, a bad list line); a
missing protocol folder is a `BenchmarkImportError` naming it. Anything else found (a `Thumbs.db`,
a stray folder, a symbolic link, an image no list names) is recorded as unexpected and skipped.
Only regular files are taken; symbolic links are listed, never followed: a path is read only when
it resolves to itself under the dataset root, so a link anywhere along it (a protocol folder, its
parent, an identity folder, a folder a list line passes through) is refused, whether it leaves the
root or loops back into it. List files are streamed, their paths normalised (`./0000//x.jpg` is
`0000/x.jpg`), and a file listed twice, by one list or two, is refused.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from opreid_builder.curation.sources import IMAGE_SUFFIXES, JUNK_PID, id_problem
from opreid_builder.errors import BenchmarkImportError, BenchmarkLayoutError
from opreid_builder.split.protocol import DISTRACTOR_PID
from opreid_builder.split.public_formats import BenchmarkLayout, Folder, ListFile

TEST_SPLITS = ("query", "gallery")
#: The longest list-file line read (a real one is a path and a pid: well under 200 characters).
MAX_LIST_LINE = 4096
LINKED = "reached through a symbolic link (only real folders and regular files are read)"


@dataclass(frozen=True)
class SourceImage:
    """One protocol image: where it is (relative to the dataset root, POSIX) and its labels."""

    path: str
    split: str
    pid: int
    camid: int
    occluded: bool | None  # the dataset's own flag (None: the dataset has none for this folder)


@dataclass
class BenchmarkScan:
    """The protocol images of a dataset copy, in path order, and everything set aside."""

    layout: BenchmarkLayout
    root: Path
    subset: str | None
    images: list[SourceImage] = field(default_factory=list)
    junk: list[str] = field(default_factory=list)  # pid -1 images, left out
    unused: dict[str, int] = field(default_factory=dict)  # shipped folder or list -> images not used
    unexpected: list[tuple[str, str]] = field(default_factory=list)  # (path, why it was skipped)

    def split_images(self, split: str) -> list[SourceImage]:
        return [im for im in self.images if im.split == split]


def _entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted(it, key=lambda e: e.name)


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _holds(base: Path, required: list[str]) -> bool:
    """Every required list file is a file and every required folder a folder under `base`."""
    return all((base / p).is_file() if p.endswith(".txt") else (base / p).is_dir() for p in required)


def _subset_folder(layout: BenchmarkLayout, src: Path, subset: str | None) -> tuple[Path, str | None]:
    """SRC may be one subset's folder itself (cuhk03-np/labeled): the root is then its parent."""
    if src.name in layout.subsets and _holds(src.parent, layout.required(src.name)):
        if subset is not None and subset != src.name:
            raise BenchmarkImportError(f"--subset {subset} asks for another subset than SRC, {src}")
        return src.parent, src.name
    return src, subset


def locate_root(layout: BenchmarkLayout, src: Path, subset: str | None) -> Path:
    """The dataset root: SRC itself, or the one folder under SRC named as the dataset ships."""
    if not src.is_dir():
        raise BenchmarkImportError(f"{src}: no such folder")
    required = layout.required(subset)
    if _holds(src, required):
        return src
    for name in layout.root_names:
        if _holds(src / name, required):
            return src / name
    # name what is missing where the user most likely has the dataset: the one shipped folder under SRC
    base = next((src / name for name in layout.root_names if _is_real_dir(src / name)), src)
    missing = next(p for p in required if not _holds(base, [p]))
    kind = "file" if Path(missing).suffix == ".txt" else "folder"
    needs = ", ".join(p if Path(p).suffix else f"{p}/" for p in required)
    raise BenchmarkImportError(
        f"{base / missing}: missing {kind}; the {layout.name} layout needs {needs} (SRC may also be the "
        f"folder holding {layout.root_names[0]}/)"
    )


class _Scanner:
    def __init__(self, layout: BenchmarkLayout, root: Path, subset: str | None):
        self.scan = BenchmarkScan(layout, root, subset)
        self.layout, self.root = layout, root
        self.real_root = os.path.realpath(root)
        distractor = [f.path for f in layout.protocol_folders(subset) if f.distractors]
        self.distractor_folder = distractor[0] if distractor else None

    def skip(self, rel: str, why: str) -> None:
        self.scan.unexpected.append((rel, why))

    def linked(self, rel: str) -> str | None:
        """The first component of `rel` (a normalised path under the root) that is a symbolic link, or
        None: the path then resolves to itself, inside the root."""
        if os.path.realpath(self.root / rel) == os.path.join(self.real_root, rel):
            return None
        parts = rel.split("/")
        for n in range(1, len(parts) + 1):
            if (self.root.joinpath(*parts[:n])).is_symlink():
                return "/".join(parts[:n])
        return rel  # changed while we looked: refused all the same

    def check_id(self, rel: str, pid: int, camid: int) -> None:
        if problem := id_problem(pid, camid):
            raise BenchmarkLayoutError(f"{rel}: {problem}")

    # --- folders ---------------------------------------------------------------------------

    def folder(self, folder: Folder) -> None:
        path = self.root / folder.path
        link = self.linked(folder.path) if os.path.lexists(path) else None
        if folder.split is None:
            if link is not None:
                self.skip(f"{folder.path}/", f"{LINKED}: {link}")
            if link is not None or not path.is_dir():
                return
        elif link is not None:
            raise BenchmarkLayoutError(f"{folder.path}: {LINKED}: {link} is a symbolic link")
        for entry in _entries(path):
            rel = f"{folder.path}/{entry.name}"
            if entry.is_symlink():
                self.skip(rel, "a symbolic link (only regular files are read)")
            elif not folder.per_identity:
                self.image(entry, rel, folder, None)
            elif not entry.is_dir():
                self.skip(rel, "not inside an identity folder")
            elif not entry.name.isdigit():
                self.skip(f"{rel}/", "not an identity folder (its name is no pid)")
            else:
                for sub in _entries(Path(entry.path)):
                    self.image(sub, f"{rel}/{sub.name}", folder, entry.name)

    def image(self, entry: os.DirEntry, rel: str, folder: Folder, folder_pid: str | None) -> None:
        if entry.is_symlink():
            return self.skip(rel, "a symbolic link (only regular files are read)")
        if entry.is_dir():
            return self.skip(f"{rel}/", "a folder where images are expected")
        suffix = PurePosixPath(rel).suffix
        if suffix.lower() not in IMAGE_SUFFIXES:
            return self.skip(rel, "not an image")
        if not entry.is_file(follow_symlinks=False):
            return self.skip(rel, "not a regular file")
        if folder.split is None:
            self.scan.unused[folder.path] = self.scan.unused.get(folder.path, 0) + 1
            return None
        parsed = folder.pattern.parse(PurePosixPath(rel).stem)
        if parsed is None:
            raise BenchmarkLayoutError(
                f"{rel}: file name does not parse as {folder.pattern.template}{suffix} "
                f"(e.g. {folder.pattern.example})"
            )
        pid, cam = parsed
        camid = folder.camera if folder.camera is not None else cam
        self.check_id(rel, pid, int(camid))
        if folder_pid is not None and pid != int(folder_pid):
            raise BenchmarkLayoutError(
                f"{rel}: the name's pid {pid} differs from its identity folder {folder_pid}/"
            )
        if pid == JUNK_PID and folder.junk:
            self.scan.junk.append(rel)
            return None
        if pid < 0:
            raise BenchmarkLayoutError(f"{rel}: negative pid {pid}")
        if pid == DISTRACTOR_PID and self.layout.has_distractors and not folder.distractors:
            raise BenchmarkLayoutError(
                f"{rel}: pid 0 marks a distractor, allowed only in {self.distractor_folder}/"
            )
        self.scan.images.append(SourceImage(rel, folder.split, pid, int(camid), folder.occluded))
        return None

    # --- list files (MSMT17) ---------------------------------------------------------------

    def list_file(self, lst: ListFile, listed: dict[str, str]) -> None:
        """Read one list file line by line; `listed` maps every path listed so far to its list."""
        path = self.root / lst.path
        if lst.split is None and not path.is_file():
            return
        if self.linked(lst.path) is not None or not path.is_file():
            raise BenchmarkLayoutError(f"{lst.path}: not a regular file")
        if lst.split is not None and (link := self.linked(lst.images)) is not None:
            raise BenchmarkLayoutError(f"{lst.images}: {LINKED}: {link} is a symbolic link")
        try:
            with open(path, encoding="utf-8") as fh:
                for number, line in enumerate(_lines(fh, lst.path), 1):
                    if line.strip():
                        self.list_line(lst, number, line, listed)
        except UnicodeDecodeError:
            raise BenchmarkLayoutError(f"{lst.path}: not a UTF-8 text file") from None

    def list_line(self, lst: ListFile, number: int, line: str, listed: dict[str, str]) -> None:
        parts = line.split()
        name = parts[0] if parts else ""
        normal = PurePosixPath(name)
        if (
            len(parts) != 2
            or not parts[1].lstrip("-").isdigit()
            or normal.is_absolute()
            or ".." in normal.parts
            or not normal.parts
        ):
            raise BenchmarkLayoutError(
                f"{lst.path}: line {number} does not parse as '<path> <pid>' "
                f"(e.g. '{lst.pattern.example.split('_')[0]}/{lst.pattern.example} 0')"
            )  # fmt: skip
        rel = f"{lst.images}/{normal.as_posix()}"
        if rel in listed:
            other = "" if listed[rel] == lst.path else f" (first in {listed[rel]})"
            raise BenchmarkLayoutError(f"{lst.path}: line {number}: {rel} is listed twice{other}")
        listed[rel] = lst.path
        if (link := self.linked(rel)) is not None:
            return self.skip(rel, f"{LINKED}: {link}")
        full = self.root / rel
        if not full.is_file():
            raise BenchmarkLayoutError(f"{lst.path}: line {number}: {rel} is missing")
        if lst.split is None:
            self.scan.unused[lst.path] = self.scan.unused.get(lst.path, 0) + 1
            return None
        parsed = lst.pattern.parse(PurePosixPath(rel).stem)
        if parsed is None or PurePosixPath(rel).suffix.lower() not in IMAGE_SUFFIXES:
            raise BenchmarkLayoutError(
                f"{rel}: file name does not parse as {lst.pattern.template}.jpg (e.g. {lst.pattern.example})"
            )
        pid = int(parts[1])
        if pid < 0:
            raise BenchmarkLayoutError(f"{lst.path}: line {number}: negative pid {pid}")
        self.check_id(f"{lst.path}: line {number}", pid, int(parsed[1]))
        self.scan.images.append(SourceImage(rel, lst.split, pid, int(parsed[1]), None))
        return None

    def unlisted(self, folders: list[str], listed: dict[str, str]) -> None:
        """Files under the list files' image folders that no list names."""
        for folder in folders:
            if not (self.root / folder).is_dir() or self.linked(folder) is not None:
                continue
            for dirpath, dirnames, filenames in os.walk(self.root / folder):
                here = Path(dirpath)
                for d in sorted(dirnames):
                    if (here / d).is_symlink():
                        self.skip((here / d).relative_to(self.root).as_posix() + "/", "a symbolic link")
                dirnames[:] = sorted(d for d in dirnames if not (here / d).is_symlink())
                for name in sorted(filenames):
                    rel = (here / name).relative_to(self.root).as_posix()
                    if rel not in listed:
                        self.skip(rel, "named by no list file")

    # --- what else the root holds ----------------------------------------------------------

    def extras(self) -> None:
        """Entries beside the layout's own, in the root and in the folders that hold protocol folders."""
        layout, subset = self.layout, self.scan.subset
        known = {f.path for f in layout.protocol_folders(subset) + layout.unused_folders(subset)}
        known |= {lst.path for lst in layout.lists} | {lst.images for lst in layout.lists}
        known |= set(layout.known_extras) | {s for s in layout.subsets if s != subset}
        containers = {""} | {str(PurePosixPath(p).parent) for p in known if "/" in p}
        for container in sorted(containers):
            base = self.root / container if container else self.root
            if not _is_real_dir(base):
                continue
            for entry in _entries(base):
                rel = f"{container}/{entry.name}" if container else entry.name
                if rel in known or rel in containers:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    self.skip(f"{rel}/", f"not part of the {layout.name} layout")
                else:
                    self.skip(rel, f"not part of the {layout.name} layout")
        for other in (s for s in layout.subsets if s != subset):
            if _is_real_dir(self.root / other):
                self.scan.unused[f"{other}/"] = sum(1 for _ in (self.root / other).rglob("*") if _.is_file())
        for extra in layout.known_extras:
            if (self.root / extra).exists():
                self.scan.unused.setdefault(extra, 0)


def scan_benchmark(layout: BenchmarkLayout, src: str | Path, subset: str | None = None) -> BenchmarkScan:
    """Every protocol image of the copy in SRC, checked against the layout and its protocol."""
    src, subset = _subset_folder(layout, Path(src), subset)
    subset = layout.choose_subset(subset)
    root = locate_root(layout, src, subset)
    if root.parent == src and root.is_symlink():
        raise BenchmarkLayoutError(
            f"{root}: a symbolic link inside SRC; only real folders are read (give the folder it points to "
            "as SRC)"
        )
    scanner = _Scanner(layout, root, subset)
    for folder in layout.protocol_folders(subset) + layout.unused_folders(subset):
        scanner.folder(folder)
    listed: dict[str, str] = {}
    for lst in layout.lists:
        scanner.list_file(lst, listed)
    scanner.unlisted(sorted({lst.images for lst in layout.lists}), listed)
    scanner.extras()
    scan = scanner.scan
    scan.images.sort(key=lambda im: im.path)
    scan.unexpected.sort()
    _check_protocol(scan)
    return scan


def _lines(fh, name: str):
    """The lines of a text file, one at a time, each at most MAX_LIST_LINE characters."""
    while line := fh.readline(MAX_LIST_LINE + 1):
        if len(line) > MAX_LIST_LINE:
            raise BenchmarkLayoutError(
                f"{name}: a line longer than {MAX_LIST_LINE} characters (not a list file?)"
            )
        yield line


def _check_protocol(scan: BenchmarkScan) -> None:
    """Every split the layout has holds images; train and test identities are disjoint."""
    layout = scan.layout
    splits = {f.split: f.path for f in layout.protocol_folders(scan.subset)}
    splits.update({lst.split: lst.path for lst in layout.lists if lst.split is not None})
    for split, where in splits.items():
        if not scan.split_images(split):
            raise BenchmarkLayoutError(f"{where}: no image of the {split} split")
    if layout.separate_test_ids:
        return
    train_ids = {im.pid for im in scan.split_images("train")}
    for im in scan.images:
        if im.split in TEST_SPLITS and im.pid in train_ids:
            raise BenchmarkLayoutError(
                f"train pid {im.pid} is also in the test set ({im.path}): train and test identities must "
                "be disjoint"
            )
