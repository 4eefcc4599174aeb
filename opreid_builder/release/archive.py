"""Public packages as archives: written reproducibly, unpacked without trusting them.

`release pack` writes a folder, a `.tar`, a `.tar.gz` (`.tgz`) or a `.zip`, told by the output's
name. An archive holds one top folder named after it (`public.tar` -> `public/`), its members in
sorted order with fixed times, owners and modes, so that packing the same release twice gives
the same bytes. Unpacking (for `validate --public` on an archive) reads the member headers first
and extracts nothing from an archive holding more members than its own dataset.json lists; then
takes regular files and folders only, refuses absolute paths, `..`, links, devices and a name
given twice or as both a file and a folder, and stops a member at its declared size.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from opreid_builder.errors import ReleaseError

#: Output name endings and the format each selects ("folder" for anything else).
ARCHIVE_SUFFIXES = {".tar": "tar", ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".zip": "zip"}
#: 1980-01-01 UTC: the earliest time a zip can hold; tar members get the same.
FIXED_MTIME = 315532800
_STORED = {".jpg", ".jpeg", ".png"}  # already compressed: zip stores them as they are
_CHUNK = 1 << 20
FILE_MODE, DIR_MODE = 0o644, 0o755


def package_format(path: str | Path) -> str:
    name = Path(path).name.lower()
    for suffix, fmt in sorted(ARCHIVE_SUFFIXES.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    return "folder"


def archive_stem(path: str | Path) -> str:
    """The top folder inside an archive: its name without the archive suffix."""
    name = Path(path).name
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or "public"
    return name


def _members(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX path, path) of every folder and file under `folder`, sorted, folders first."""
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        yield path.relative_to(folder).as_posix(), path


def write_archive(folder: Path, target: Path, fmt: str, top: str) -> None:
    """Write `folder` as an archive at `target` (which the caller then renames into place), its members
    under the folder `top`."""
    if fmt in ("tar", "tar.gz"):
        with open(target, "wb") as raw:
            stream = gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) if fmt == "tar.gz" else raw
            try:
                with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    tar.addfile(_tar_info(f"{top}/", None))
                    for rel, path in _members(folder):
                        info = _tar_info(f"{top}/{rel}", path)
                        if path.is_dir():
                            tar.addfile(info)
                        else:
                            with open(path, "rb") as fh:
                                tar.addfile(info, fh)
            finally:
                if stream is not raw:
                    stream.close()
    elif fmt == "zip":
        with zipfile.ZipFile(target, "w", allowZip64=True) as zf:
            for rel, path in _members(folder):
                name = f"{top}/{rel}" + ("/" if path.is_dir() else "")
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.create_system = 3  # unix, so that the modes below are read back
                if path.is_dir():
                    info.external_attr = (0o040000 | DIR_MODE) << 16
                    zf.writestr(info, b"")
                    continue
                info.external_attr = (0o100000 | FILE_MODE) << 16
                info.compress_type = (
                    zipfile.ZIP_STORED if path.suffix.lower() in _STORED else zipfile.ZIP_DEFLATED
                )
                size = path.stat().st_size
                info.file_size = size
                with open(path, "rb") as src, zf.open(info, "w", force_zip64=size > (1 << 31)) as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    else:
        raise ValueError(f"not an archive format: {fmt}")


def _tar_info(name: str, path: Path | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.mtime, info.uid, info.gid, info.uname, info.gname = FIXED_MTIME, 0, 0, "", ""
    if path is None or path.is_dir():
        info.type, info.mode = tarfile.DIRTYPE, DIR_MODE
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, FILE_MODE, path.stat().st_size
    return info


def _safe_name(name: str, archive: Path) -> PurePosixPath:
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or not posix.parts or ":" in posix.parts[0]:
        raise ReleaseError(f"{archive}: member {name!r} would land outside the folder it is unpacked in")
    return posix


def _copy_bounded(src, dst_path: Path, size: int, name: str, archive: Path) -> None:
    left = size
    with open(dst_path, "wb") as dst:
        while left > 0:
            chunk = src.read(min(_CHUNK, left))
            if not chunk:
                raise ReleaseError(f"{archive}: member {name!r} ends before its declared {size} bytes")
            dst.write(chunk)
            left -= len(chunk)
        if src.read(1):
            raise ReleaseError(f"{archive}: member {name!r} holds more than its declared {size} bytes")


#: Members an archive may hold before its own dataset.json is known (far above any benchmark's
#: images); once it is, the files it lists, itself and PACKAGE_FOLDERS.
MAX_MEMBERS = 2_000_000
#: Folders a package holds besides its files: the top folder, images/ and one per split.
PACKAGE_FOLDERS = 5
#: The largest dataset.json read from an archive (a 1.5 M-image release lists ~150 MB of checksums).
MAX_DATASET_JSON = 256 << 20


@dataclass
class _Survey:
    """What an archive's member headers say, read before anything is extracted."""

    members: int = 0
    declared_bytes: int = 0
    dataset_json: bytes | None = None


def _is_dataset_json(rel: PurePosixPath) -> bool:
    return rel.name == "dataset.json" and len(rel.parts) <= 2


def _tar_headers(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Member headers one by one, without tarfile keeping them all (a tar has no directory)."""
    while (member := tar.next()) is not None:
        yield member
        tar.members.clear()


def _zip_entries(archive: Path) -> int:
    """The number of entries a zip's end-of-central-directory record declares (before zipfile lists them)."""
    size = archive.stat().st_size
    with open(archive, "rb") as fh:
        fh.seek(max(0, size - (1 << 16) - 22))
        tail = fh.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            raise ReleaseError(f"{archive}: not a readable zip archive (no end of central directory)")
        (entries,) = struct.unpack("<H", tail[at + 10 : at + 12])
        if entries == 0xFFFF and at >= 20 and tail[at - 20 : at - 16] == b"PK\x06\x07":
            (offset,) = struct.unpack("<Q", tail[at - 12 : at - 4])
            fh.seek(offset)
            record = fh.read(56)
            if record[:4] == b"PK\x06\x06":
                (entries,) = struct.unpack("<Q", record[32:40])
    return entries


def _read_json_member(read, size: int, name: str, archive: Path) -> bytes:
    if size > MAX_DATASET_JSON:
        raise ReleaseError(f"{archive}: member {name!r} is {size} bytes, over the {MAX_DATASET_JSON} read")
    return read()


def _survey(archive: Path, fmt: str) -> _Survey:
    """Count the members and read dataset.json from the headers, extracting nothing; stop as soon as the
    count passes what the dataset.json read so far allows."""
    survey = _Survey()
    cap = MAX_MEMBERS

    def counted(name: str, size: int, is_file: bool, read) -> None:
        nonlocal cap
        parts = name.replace("\\", "/").split("/")
        if not parts[0] or ".." in parts or ":" in parts[0]:
            _safe_name(name, archive)  # raises for a name that would escape
        survey.members += 1
        if survey.members > cap:
            raise _TooMany(cap)
        survey.declared_bytes += size
        if is_file and name.endswith("dataset.json") and _is_dataset_json(_safe_name(name, archive)):
            survey.dataset_json = _read_json_member(read, size, name, archive)
            cap = min(cap, _member_cap(archive, survey))
            if survey.members > cap:
                raise _TooMany(cap)

    if fmt == "zip":
        entries = _zip_entries(archive)
        if entries > MAX_MEMBERS:
            raise ReleaseError(f"{archive}: {entries} members, over the {MAX_MEMBERS} a package may hold")
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                counted(info.filename, info.file_size, not info.is_dir(), lambda i=info: zf.read(i))
        return survey
    with tarfile.open(archive, "r:*") as tar:
        for member in _tar_headers(tar):
            size = member.size if member.isfile() else 0
            counted(member.name, size, member.isfile(), lambda m=member: tar.extractfile(m).read())
    return survey


class _TooMany(Exception):
    def __init__(self, cap: int):
        self.cap = cap


def _member_cap(archive: Path, survey: _Survey) -> int:
    """How many members the package may hold: what its dataset.json lists, itself, PACKAGE_FOLDERS."""
    try:
        listed = json.loads(survey.dataset_json or b"").get("checksums")
    except (ValueError, UnicodeDecodeError, AttributeError):
        listed = None
    if not isinstance(listed, dict):
        raise ReleaseError(f"{archive}: no readable dataset.json listing its files; nothing was extracted")
    return len(listed) + 1 + PACKAGE_FOLDERS


class _Tree:
    """The paths extracted so far: a name may be a file or a folder, once."""

    def __init__(self, archive: Path):
        self.archive, self.files, self.folders = archive, set(), set()

    def add(self, rel: PurePosixPath, folder: bool) -> None:
        name = rel.as_posix()
        parents = [p.as_posix() for p in rel.parents if p.parts]
        under = next((p for p in parents if p in self.files), None)
        if under is not None:
            raise ReleaseError(f"{self.archive}: member {name!r} lies under {under!r}, which is a file")
        if name in (self.folders if not folder else self.files):
            raise ReleaseError(f"{self.archive}: {name!r} is both a file and a folder")
        if not folder and name in self.files:
            raise ReleaseError(f"{self.archive}: member {name!r} is given twice")
        (self.folders if folder else self.files).add(name)
        self.folders.update(parents)


def unpack_archive(archive: Path, into: Path) -> Path:
    """Unpack `archive` into the empty folder `into`; returns the package root (its one top folder,
    or `into` when the members sit at the top). First reads the member headers alone: an archive
    with more members than its dataset.json lists (plus itself and its folders), or without a
    dataset.json, is refused before anything is extracted. Refuses links, devices, escaping names,
    a name given twice or as both a file and a folder, and an archive whose declared size exceeds
    the free space."""
    fmt = package_format(archive)
    if fmt not in ("zip", "tar", "tar.gz"):
        raise ReleaseError(f"{archive} is not a .tar, .tar.gz, .tgz or .zip archive")
    try:
        try:
            survey = _survey(archive, fmt)
            if survey.members > _member_cap(archive, survey):
                raise _TooMany(_member_cap(archive, survey))
        except _TooMany as many:
            raise ReleaseError(
                f"{archive} holds more than {many.cap} members: its dataset.json lists {many.cap - 1 - PACKAGE_FOLDERS} "
                f"file(s), and a package holds them, itself and at most {PACKAGE_FOLDERS} folders; nothing was extracted"
            ) from None
        _check_space(archive, into, survey.declared_bytes)
        tree = _Tree(archive)
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    rel = _safe_name(info.filename, archive)
                    kind = (info.external_attr >> 16) & 0o170000
                    if kind not in (0, 0o100000, 0o040000):
                        raise ReleaseError(
                            f"{archive}: member {info.filename!r} is not a regular file or folder"
                        )
                    tree.add(rel, info.is_dir())
                    target = into.joinpath(*rel.parts)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src:
                        _copy_bounded(src, target, info.file_size, info.filename, archive)
        else:
            with tarfile.open(archive, "r:*") as tar:
                for member in _tar_headers(tar):
                    rel = _safe_name(member.name, archive)
                    target = into.joinpath(*rel.parts)
                    if member.isdir():
                        tree.add(rel, True)
                        target.mkdir(parents=True, exist_ok=True)
                    elif member.isfile() and not member.issparse():
                        tree.add(rel, False)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        _copy_bounded(src, target, member.size, member.name, archive)
                    else:
                        raise ReleaseError(
                            f"{archive}: member {member.name!r} is not a regular file or folder"
                        )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, gzip.BadGzipFile, struct.error) as exc:
        if (
            isinstance(exc, OSError)
            and exc.filename
            and not isinstance(exc, FileExistsError | NotADirectoryError | IsADirectoryError)
        ):
            raise
        raise ReleaseError(f"{archive}: not a readable {fmt} archive ({exc})") from None
    entries = [p for p in into.iterdir()]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return into


def _check_space(archive: Path, into: Path, declared: int) -> None:
    free = shutil.disk_usage(into).free
    if declared > free:
        raise ReleaseError(
            f"{archive} declares {declared} bytes of members, more than the {free} bytes free in {into}"
        )


def fix_modes(folder: Path) -> None:
    """Readable by everyone, as released files should be (mkdtemp makes 0700 folders)."""
    os.chmod(folder, DIR_MODE)
    for _, path in _members(folder):
        os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)
