"""Reading a `.npy` header without trusting it: bounded reads, no pickle, no data touched.

numpy's own parser (`read_array_header_1_0/2_0`) does the literal-eval of the header dict; the
header length is checked here first so a forged length cannot make us read gigabytes.
"""

from __future__ import annotations

import io
import math
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npformat

MAX_HEADER_BYTES = 1 << 16
_MAGIC = npformat.MAGIC_PREFIX  # b"\x93NUMPY"


class NpyHeaderError(ValueError):
    """The stream is not a readable .npy header; the message says why in a few words."""


@dataclass(frozen=True)
class NpyHeader:
    version: tuple[int, int]
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int  # bytes from the start of the .npy stream to the first data byte

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize


def _read_exact(fp: BinaryIO, n: int, what: str) -> bytes:
    data = fp.read(n)
    if len(data) != n:
        raise NpyHeaderError(f"file ends inside the {what} ({len(data)} of {n} bytes)")
    return data


def read_npy_header(fp: BinaryIO) -> NpyHeader:
    """Parse the header at the stream's position; leave the stream at the first data byte."""
    magic = fp.read(len(_MAGIC) + 2)
    if len(magic) == 0:
        raise NpyHeaderError("empty file")
    if not magic.startswith(_MAGIC) or len(magic) < len(_MAGIC) + 2:
        raise NpyHeaderError("not a .npy file (no NumPy magic string)")
    version = (magic[-2], magic[-1])
    if version == (1, 0):
        len_fmt = "<H"
    elif version in ((2, 0), (3, 0)):
        len_fmt = "<I"
    else:
        raise NpyHeaderError(f"unsupported .npy format version {version[0]}.{version[1]}")
    len_bytes = _read_exact(fp, struct.calcsize(len_fmt), "header length")
    (header_len,) = struct.unpack(len_fmt, len_bytes)
    if header_len > MAX_HEADER_BYTES:
        raise NpyHeaderError(f"header declares {header_len} bytes (limit {MAX_HEADER_BYTES})")
    header = _read_exact(fp, header_len, "header")
    if version == (3, 0):
        # 3.0 only differs by allowing utf-8 in the header (structured field names); parse as 2.0
        # when the header is ascii, which is all a numeric submission can need.
        try:
            header.decode("ascii")
        except UnicodeDecodeError:
            raise NpyHeaderError("header is not ascii (structured dtypes are not accepted)") from None
        version_for_parse = (2, 0)
    else:
        version_for_parse = version
    buf = io.BytesIO(_MAGIC + bytes(version_for_parse) + len_bytes + header)
    npformat.read_magic(buf)
    reader = npformat.read_array_header_1_0 if version_for_parse == (1, 0) else npformat.read_array_header_2_0
    try:
        shape, fortran_order, dtype = reader(buf, max_header_size=MAX_HEADER_BYTES)
    except Exception as exc:  # noqa: BLE001 - untrusted text through numpy's tokenizer and literal_eval
        # They raise more than ValueError: an unbalanced dict gives tokenize.TokenError, deep nesting
        # RecursionError or MemoryError. Whatever it is, the file is not a valid submission.
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NpyHeaderError(f"malformed header ({reason[:160]})") from None
    if any(int(n) < 0 for n in shape):
        raise NpyHeaderError(f"header declares a negative dimension {tuple(shape)}")
    offset = len(magic) + len(len_bytes) + header_len
    return NpyHeader(version, tuple(int(n) for n in shape), np.dtype(dtype), bool(fortran_order), offset)
