"""Counting a zip's members without trusting it: bounded reads of the end records and the directory.

`zipfile.ZipFile` builds a `ZipInfo` for every central-directory entry before anything can be
checked, so an .npz of a million empty members costs most of a gigabyte and seconds before it can
be refused. `count_members` reads the end-of-central-directory record (and its zip64 form) and
then walks the directory entry by entry, stopping as soon as the count passes the limit: the cost
is bounded by the limit, whatever the file declares. The directory is located the way `zipfile`
locates it, so both see the same entries.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD_SIG = b"PK\x05\x06"
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_LOCATOR_SIG = b"PK\x06\x07"
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_EOCD_SIG = b"PK\x06\x06"
_ENTRY = struct.Struct("<4s6H3L5H2L")  # central directory file header (fixed part)
_ENTRY_SIG = b"PK\x01\x02"
_MAX_COMMENT = (1 << 16) - 1


class ZipDirectoryError(ValueError):
    """The file has no readable zip central directory; the message says why in a few words."""


def _end_record(fp: BinaryIO) -> tuple[int, int, int]:
    """(declared member count, directory size, directory start) from the end records."""
    size = fp.seek(0, 2)
    tail_len = min(size, _EOCD.size + _MAX_COMMENT)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    at = len(tail) - _EOCD.size  # no archive comment: the record ends the file (zipfile looks there first)
    if at < 0 or tail[at : at + 4] != _EOCD_SIG or tail[-2:] != b"\0\0":
        at = tail.rfind(_EOCD_SIG)
    if at < 0 or len(tail) - at < _EOCD.size:
        raise ZipDirectoryError("no end-of-central-directory record")
    _, _, _, _, count, dir_size, _, _ = _EOCD.unpack_from(tail, at)
    record_at = size - tail_len + at  # the directory ends where the end record (or its zip64 form) starts
    locator_at = record_at - _ZIP64_LOCATOR.size
    if locator_at >= 0:
        fp.seek(locator_at)
        locator = fp.read(_ZIP64_LOCATOR.size)
        if locator[:4] == _ZIP64_LOCATOR_SIG:
            record64_at = locator_at - _ZIP64_EOCD.size
            if record64_at < 0:
                raise ZipDirectoryError("zip64 locator without a zip64 end record")
            fp.seek(record64_at)
            record64 = fp.read(_ZIP64_EOCD.size)
            if len(record64) != _ZIP64_EOCD.size or record64[:4] != _ZIP64_EOCD_SIG:
                raise ZipDirectoryError("zip64 locator without a zip64 end record")
            fields = _ZIP64_EOCD.unpack(record64)
            count, dir_size, record_at = fields[7], fields[8], record64_at
    start = record_at - dir_size
    if start < 0:
        raise ZipDirectoryError(f"central directory of {dir_size} bytes does not fit in the file")
    return count, dir_size, start


def count_members(fp: BinaryIO, limit: int) -> int:
    """The number of members of the zip in `fp`, or a number above `limit` as soon as it is known
    to exceed it (the declared count, or `limit + 1` after walking that many entries).

    Reads at most `limit + 1` directory entry headers, whatever the file declares.
    """
    declared, dir_size, start = _end_record(fp)
    if declared > limit:
        return declared
    fp.seek(start)
    pos = count = 0
    while pos < dir_size:
        header = fp.read(_ENTRY.size)
        if len(header) != _ENTRY.size or header[:4] != _ENTRY_SIG:
            raise ZipDirectoryError(f"corrupt central directory (entry {count + 1})")
        count += 1
        if count > limit:
            return count
        name_len, extra_len, comment_len = _ENTRY.unpack(header)[10:13]
        skip = name_len + extra_len + comment_len
        fp.seek(skip, 1)
        pos += _ENTRY.size + skip
    return count
