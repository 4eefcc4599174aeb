"""A JPEG's segments, and the whitelist a released JPEG keeps: pixel data and how to decode it.

A released JPEG holds SOI, the frame (SOF), its tables (DQT, DHT, DAC, DRI), the scans (SOS with
their entropy-coded data and RST markers), EOI, and at most one APP0 JFIF header without a
thumbnail and one APP14 Adobe header (its colour transform: how to read the components). Anything
else can carry identity: EXIF/XMP (APP1), ICC profiles (APP2), Photoshop/IPTC (APP13), any other
APPn, comments (COM), a JFIF thumbnail of the unmasked crop, bytes hidden behind fill bytes or
after EOI. `clean_jpeg` rebuilds a file from the whitelisted segments alone, losslessly (the
entropy-coded data is copied, never decoded), and `jpeg_problem` names the first thing a released
JPEG holds beyond them (`opreid validate` and `validate --public`).
"""

from __future__ import annotations

from dataclasses import dataclass

SOI = b"\xff\xd8"
_SOI, _EOI, _SOS, _APP0, _APP14, _COM = 0xD8, 0xD9, 0xDA, 0xE0, 0xEE, 0xFE
_RST = range(0xD0, 0xD8)
#: Frames (SOF0-SOF15 but DHT, JPG and DAC), Huffman and arithmetic tables, quantisation tables,
#: the restart interval and the scans: what a decoder needs, and nothing more.
_DECODING = frozenset(range(0xC0, 0xD0)) - {0xC8} | {0xDB, 0xDD, _SOS}
_JFIF = b"JFIF\x00"
_ADOBE = b"Adobe"
_JFIF_LENGTH, _ADOBE_LENGTH = 16, 14  # JFIF 1.0x without a thumbnail; Adobe's fixed 12-byte payload


class JpegStructureError(ValueError):
    """The bytes are not a JPEG whose segments can be followed from SOI to EOI."""


@dataclass(frozen=True)
class Segment:
    marker: int
    start: int  # offset of its 0xFF marker byte
    end: int  # offset after it (after the entropy-coded data, for a scan)


def _name(marker: int) -> str:
    if 0xE0 <= marker <= 0xEF:
        known = {0xE1: " (EXIF/XMP)", 0xE2: " (ICC profile/FlashPix)", 0xED: " (Photoshop/IPTC)"}
        return f"APP{marker - 0xE0}{known.get(marker, '')}"
    names = {_COM: "a comment (COM)", 0xDC: "DNL", 0xDE: "DHP", 0xDF: "EXP", 0xDB: "DQT", 0xC4: "DHT",
             0xDD: "DRI", 0xCC: "DAC", _SOS: "SOS"}  # fmt: skip
    return names.get(marker, f"SOF{marker - 0xC0}" if 0xC0 <= marker <= 0xCF else f"marker 0x{marker:02X}")


def _scan_end(data: bytes, at: int) -> int:
    """Where the entropy-coded data starting at `at` ends: at the first marker that is neither a
    stuffed 0xFF00 nor a restart marker (fill bytes before it are left to the marker reader)."""
    n = len(data)
    while True:
        k = data.find(b"\xff", at)
        if k < 0:
            raise JpegStructureError("the scan data ends without an end-of-image marker")
        m = k
        while m + 1 < n and data[m + 1] == 0xFF:
            m += 1
        if m + 1 >= n:
            raise JpegStructureError("the scan data ends without an end-of-image marker")
        following = data[m + 1]
        if following == 0x00 or following in _RST:
            at = m + 2
            continue
        return k


def segments(data: bytes) -> tuple[list[Segment], int]:
    """The segments between SOI and EOI, and the offset just after EOI; JpegStructureError when the
    bytes cannot be followed that far."""
    if data[:2] != SOI:
        raise JpegStructureError("no start-of-image marker")
    found: list[Segment] = []
    n, i = len(data), 2
    while True:
        if i >= n or data[i] != 0xFF:
            raise JpegStructureError(f"byte {i}: a marker was expected")
        while i + 1 < n and data[i + 1] == 0xFF:  # fill bytes
            i += 1
        if i + 1 >= n:
            raise JpegStructureError("the file ends inside a marker")
        marker = data[i + 1]
        if marker == _EOI:
            return found, i + 2
        if marker in _RST or marker in (0x00, 0x01, _SOI):
            raise JpegStructureError(f"byte {i}: {_name(marker)} outside a scan")
        if i + 4 > n:
            raise JpegStructureError("the file ends inside a segment header")
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        end = i + 2 + length
        if length < 2 or end > n:
            raise JpegStructureError(
                f"byte {i}: {_name(marker)} declares {length} bytes, past the file's end"
            )
        if marker == _SOS:
            end = _scan_end(data, end)
        found.append(Segment(marker, i, end))
        i = end


def _jfif(data: bytes, seg: Segment) -> bool:
    return seg.marker == _APP0 and data[seg.start + 4 : seg.start + 9] == _JFIF and seg.end - seg.start >= 18


def _adobe(data: bytes, seg: Segment) -> bool:
    return (
        seg.marker == _APP14 and data[seg.start + 4 : seg.start + 9] == _ADOBE and seg.end - seg.start == 16
    )


def _minimal_jfif(data: bytes, seg: Segment) -> bytes:
    """The JFIF header with its version and density, without a thumbnail."""
    body = data[seg.start + 4 : seg.start + 16]  # 'JFIF\0', version (2), units, x and y density (2 each)
    return b"\xff\xe0" + _JFIF_LENGTH.to_bytes(2, "big") + body[:12] + b"\x00\x00"


def _minimal_adobe(data: bytes, seg: Segment) -> bytes:
    """The Adobe header with its colour transform only (version 100, no flags)."""
    transform = data[seg.start + 15 : seg.start + 16]
    return b"\xff\xee" + _ADOBE_LENGTH.to_bytes(2, "big") + _ADOBE + b"\x00\x64\x00\x00\x00\x00" + transform


def _tables_fill(payload: bytes, marker: int) -> bool:
    """Whether a DQT or DHT payload is exactly its tables (no byte beside them to hide anything in)."""
    i = 0
    while i < len(payload):
        if marker == 0xDB:  # DQT: precision/id, then 64 values of 1 or 2 bytes
            i += 1 + 64 * (2 if payload[i] >> 4 else 1)
        else:  # DHT: class/id, 16 counts, then that many symbols
            if i + 17 > len(payload):
                return False
            i += 17 + sum(payload[i + 1 : i + 17])
    return i == len(payload)


def _exact(data: bytes, seg: Segment) -> bool:
    """Whether a decoding segment holds exactly what its marker defines."""
    marker = seg.marker
    header_end = seg.start + 4 + int.from_bytes(data[seg.start + 2 : seg.start + 4], "big") - 2
    payload = data[seg.start + 4 : header_end]
    if marker in (0xDB, 0xC4):
        return _tables_fill(payload, marker)
    if marker == _SOS:
        return len(payload) >= 1 and len(payload) == 1 + 2 * payload[0] + 3
    if marker == 0xDD:  # DRI
        return len(payload) == 2
    if marker == 0xCC:  # DAC
        return len(payload) % 2 == 0
    return len(payload) >= 6 and len(payload) == 6 + 3 * payload[5]  # a frame: SOF0-SOF15


def clean_jpeg(data: bytes) -> bytes:
    """The JPEG rebuilt from its whitelisted segments (see the module doc); raises JpegStructureError."""
    found, _ = segments(data)
    parts = [SOI]
    jfif = adobe = False
    for seg in found:
        if seg.marker in _DECODING:
            if not _exact(data, seg):
                raise JpegStructureError(
                    f"{_name(seg.marker)} at byte {seg.start} holds bytes beside its tables"
                )
            parts.append(data[seg.start : seg.end])
        elif not jfif and _jfif(data, seg):
            parts.append(_minimal_jfif(data, seg))
            jfif = True
        elif not adobe and _adobe(data, seg):
            parts.append(_minimal_adobe(data, seg))
            adobe = True
    parts.append(b"\xff\xd9")
    return b"".join(parts)


def jpeg_problem(data: bytes) -> str | None:
    """The first thing a JPEG holds beyond the whitelist, in words, or None when it holds nothing more."""
    try:
        cleaned = clean_jpeg(data)
        found, end = segments(data)
    except JpegStructureError as exc:
        return f"a JPEG structure that cannot be checked ({exc})"
    if cleaned == data:
        return None
    jfif = adobe = False
    at = 2
    for seg in found:
        gap, at = seg.start - at, seg.end
        if seg.marker in _DECODING:
            pass
        elif not jfif and _jfif(data, seg):
            jfif = True
            if data[seg.start : seg.end] != _minimal_jfif(data, seg):
                return "a JFIF header with a thumbnail or extra bytes"
        elif not adobe and _adobe(data, seg):
            adobe = True
            if data[seg.start : seg.end] != _minimal_adobe(data, seg):
                return "an Adobe header with flags"
        else:
            return f"{_name(seg.marker)} at byte {seg.start}"
        if gap:
            return f"{gap} fill byte(s) before {_name(seg.marker)} at byte {seg.start}"
    if end < len(data):
        return f"{len(data) - end} byte(s) after the end-of-image marker"
    return "fill bytes before the end-of-image marker"
