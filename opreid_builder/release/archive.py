"""Public packages as archives: written reproducibly, unpacked without trusting them.

`release pack` writes a folder, a `.tar`, a `.tar.gz` (`.tgz`) or a `.zip`, told by the output's
name. An archive holds one top folder named after it (`public.tar` -> `public/`), its members in
sorted order with fixed times, owners and modes, so that packing the same release twice gives
the same bytes. Unpacking (for `validate --public` on an archive) takes regular files and folders
only, refuses absolute paths, `..`, links and devices, and stops a member at its declared size.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import zipfile
from collections.abc import Iterator
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


def unpack_archive(archive: Path, into: Path) -> Path:
    """Unpack `archive` into the empty folder `into`; returns the package root (its one top folder,
    or `into` when the members sit at the top). Refuses links, devices and escaping names, and an
    archive whose declared size exceeds the free space."""
    fmt = package_format(archive)
    try:
        if fmt == "zip":
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
                _check_space(archive, into, sum(i.file_size for i in infos))
                for info in infos:
                    rel = _safe_name(info.filename, archive)
                    kind = (info.external_attr >> 16) & 0o170000
                    if kind not in (0, 0o100000, 0o040000):
                        raise ReleaseError(
                            f"{archive}: member {info.filename!r} is not a regular file or folder"
                        )
                    target = into.joinpath(*rel.parts)
                    if info.is_dir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(info) as src:
                        _copy_bounded(src, target, info.file_size, info.filename, archive)
        elif fmt in ("tar", "tar.gz"):
            with tarfile.open(archive, "r:*") as tar:
                members = tar.getmembers()
                _check_space(archive, into, sum(m.size for m in members if m.isfile()))
                for member in members:
                    rel = _safe_name(member.name, archive)
                    target = into.joinpath(*rel.parts)
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                    elif member.isfile() and not member.issparse():
                        target.parent.mkdir(parents=True, exist_ok=True)
                        src = tar.extractfile(member)
                        _copy_bounded(src, target, member.size, member.name, archive)
                    else:
                        raise ReleaseError(
                            f"{archive}: member {member.name!r} is not a regular file or folder"
                        )
        else:
            raise ReleaseError(f"{archive} is not a .tar, .tar.gz, .tgz or .zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, gzip.BadGzipFile) as exc:
        if isinstance(exc, OSError) and exc.filename:
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
