"""Tiny scoring datasets for the scorer's tests: manifests only (scoring needs no images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from manifests import GALLERY, GROUND_TRUTH, QUERY, DatasetLayout, write_manifest


def write_dataset(root: Path, q_pids, q_cams, g_pids, g_cams, q_occ=None, g_occ=None, seed: int = 0) -> Path:
    """Write OUT/query.parquet, OUT/gallery.parquet and OUT/private/ground_truth.parquet.

    The ground truth's rows are shuffled so that scoring must join on image_id, not rely on order.
    """
    layout = DatasetLayout(root)
    nq, ng = len(q_pids), len(g_pids)
    q_occ = np.ones(nq, bool) if q_occ is None else np.asarray(q_occ, bool)
    g_occ = (np.arange(ng) % 2 == 0) if g_occ is None else np.asarray(g_occ, bool)
    q_ids = [f"q{i:05d}x" for i in range(nq)]
    g_ids = [f"g{i:05d}x" for i in range(ng)]
    write_manifest({"image_id": q_ids, "path": [f"images/query/{i}.jpg" for i in q_ids],
                    "camid": np.asarray(q_cams, np.int32)}, layout.query, QUERY)  # fmt: skip
    write_manifest({"image_id": g_ids, "path": [f"images/gallery/{i}.jpg" for i in g_ids],
                    "camid": np.asarray(g_cams, np.int32)}, layout.gallery, GALLERY)  # fmt: skip
    order = np.random.default_rng(seed).permutation(nq + ng)
    cols = {
        "image_id": np.asarray(q_ids + g_ids, dtype=object)[order],
        "split": np.asarray(["query"] * nq + ["gallery"] * ng, dtype=object)[order],
        "pid": np.concatenate([q_pids, g_pids]).astype(np.int64)[order],
        "camid": np.concatenate([q_cams, g_cams]).astype(np.int32)[order],
        "occluded": np.concatenate([q_occ, g_occ])[order],
    }
    write_manifest(
        {k: list(v) if v.dtype == object else v for k, v in cols.items()}, layout.ground_truth, GROUND_TRUTH
    )
    return Path(root)


def opreid_like(rng: np.random.Generator, num_query: int = 12, distractors: int = 30):
    """OPReID-style labels: each query pid has one occluded and one holistic gallery image from other
    cameras; distractor pids add more. Returns q_pids, q_cams, g_pids, g_cams, g_occ."""
    q_pids = np.arange(num_query, dtype=np.int64)
    q_cams = rng.integers(0, 3, num_query)
    g_pids = np.concatenate([np.repeat(q_pids, 2), rng.integers(1000, 1000 + distractors, distractors)])
    g_cams = np.concatenate([np.repeat(q_cams + 1, 2), rng.integers(0, 5, distractors)])
    g_occ = np.concatenate([np.tile([True, False], num_query), rng.random(distractors) < 0.5])
    perm = rng.permutation(len(g_pids))
    return q_pids, q_cams, g_pids[perm], g_cams[perm], g_occ[perm]


def _npy_with_header(path: Path, header: dict, data: bytes = b"") -> Path:
    """A .npy whose header says whatever the test needs, followed by `data` (maybe nothing)."""
    import io

    from numpy.lib import format as npformat

    buf = io.BytesIO()
    npformat.write_array_header_1_0(buf, header)
    path.write_bytes(buf.getvalue() + data)
    return path


def _zip_bomb(path: Path, num_query: int, num_gallery: int, inflated_bytes: int = 5 << 30) -> Path:
    """An .npz whose `query` member is a genuine deflate stream inflating to `inflated_bytes` (zip64),
    a few MB on disk. Its CRC field is left 0: a validator that extracted it would already have spent
    the memory and time before finding out."""
    import io
    import struct
    import zlib

    from numpy.lib import format as npformat

    piece = 1 << 24
    dim = -(-(inflated_bytes - 2 * piece) // (4 * num_query))
    header = io.BytesIO()
    npformat.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (num_query, dim)}
    )
    head = header.getvalue()
    data_bytes = num_query * dim * 4
    repeats, rest = divmod(data_bytes, piece)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = comp.compress(head + bytes(rest)) + comp.flush(zlib.Z_FULL_FLUSH)
    zeros = comp.compress(bytes(piece)) + comp.flush(zlib.Z_FULL_FLUSH)  # independent of history: repeatable
    body = first + zeros * repeats + comp.flush(zlib.Z_FINISH)
    usize = len(head) + data_bytes
    name = b"query.npy"
    extra = struct.pack("<HHQQ", 1, 16, usize, len(body))
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 45, 0, 8, 0, 0x21, 0, 0xFFFFFFFF, 0xFFFFFFFF, len(name), len(extra)
    )
    gallery = io.BytesIO()
    np.save(gallery, np.zeros((num_gallery, 4), np.float32))
    g_data, g_name = gallery.getvalue(), b"gallery.npy"
    g_crc = zlib.crc32(g_data)
    g_offset = len(local) + len(name) + len(extra) + len(body)
    g_local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, g_crc, len(g_data), len(g_data), len(g_name), 0
    )
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 8, 0, 0x21, 0, 0xFFFFFFFF, 0xFFFFFFFF,
                          len(name), len(extra), 0, 0, 0, 0, 0) + name + extra  # fmt: skip
    central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, g_crc, len(g_data), len(g_data),
                           len(g_name), 0, 0, 0, 0, 0, g_offset) + g_name  # fmt: skip
    cd_offset = g_offset + len(g_local) + len(g_name) + len(g_data)
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 2, 2, len(central), cd_offset, 0)
    path.write_bytes(local + name + extra + body + g_local + g_name + g_data + central + eocd)
    return path


def unbalanced_header_npy(path: Path, array: np.ndarray) -> Path:
    """`array` saved with a header dict that never closes (numpy's tokenizer raises TokenError on it)."""
    header = f"{{'descr': '{array.dtype.str}', 'fortran_order': False, 'shape': {array.shape}, ".encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + array.tobytes())
    return path


def many_member_npz(
    path: Path, query: np.ndarray, gallery: np.ndarray, extra: int, declared: int | None = None
) -> Path:
    """An .npz with `query`, `gallery` and `extra` empty members, written directly (fast for millions).

    The empty members' directory entries all point at one local header. `declared` forges the member
    count of the end record (zip64 end records are written when the real count needs them).
    """
    import io
    import struct
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, array in (("query.npy", query), ("gallery.npy", gallery)):
            member = io.BytesIO()
            np.save(member, array)
            zf.writestr(name, member.getvalue())
    small = buf.getvalue()
    start = zipfile.ZipFile(io.BytesIO(small)).start_dir
    directory = small[start : small.rfind(b"PK\x05\x06")]
    empty_at = start
    body = small[:start] + struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, 1, 0) + b"e"
    entry = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, empty_at)
    total = extra + 2
    shown = total if declared is None else declared
    size = len(directory) + extra * (len(entry) + 1)
    with open(path, "wb") as fh:
        fh.write(body)
        fh.write(directory)
        chunk = (entry + b"e") * 4096
        for _ in range(extra // 4096):
            fh.write(chunk)
        fh.write((entry + b"e") * (extra % 4096))
        dir_at = len(body)
        if shown > 0xFFFF:
            fh.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, shown, shown, size, dir_at))
            fh.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, dir_at + size, 1))
            fh.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
        else:
            fh.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, shown, shown, size, dir_at, 0))
    return path


def bad_submissions(folder: Path, num_query: int, num_gallery: int) -> dict[str, tuple[Path, str]]:
    """Name -> (file, a phrase its one-line reason must contain), for a dataset of Q x G."""
    q, g = num_query, num_gallery
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = rng.random((q, g)).astype(np.float32)
    out: dict[str, tuple[Path, str]] = {}

    def save(name: str, array, phrase: str, **kw) -> None:
        path = folder / f"{name}.npy"
        np.save(path, array, **kw)
        out[name] = (path, phrase)

    save(
        "pickled_objects", np.array([{"a": 1}, None], dtype=object), "pickled"
    )  # np.save pickles object arrays by default
    nan = good.copy()
    nan[1, 2] = np.nan
    nan[0, 0] = np.nan
    save("nan", nan, "2 NaN")
    inf = good.astype(np.float64)
    inf[2, 3] = np.inf
    save("inf", inf, "1 infinite")
    save("wrong_shape", good[:, :-1], "does not match the dataset")
    save("transposed", good.T.copy(), "transposed")
    save("zero_d", np.float32(1.5), "0-D")
    save("three_d", good[None], "3-D")
    save("complex", good.astype(np.complex64), "dtype complex64")
    save("strings", good.astype("U3"), "dtype <U3")
    save("bytes", good.astype("S3"), "dtype |S3")
    save("bool", good > 0.5, "dtype bool")
    save("structured", np.zeros((q, g), dtype=[("a", "<f4")]), "not accepted")
    full = folder / "full.npy"
    np.save(full, good)
    raw = full.read_bytes()
    truncated = folder / "truncated.npy"
    truncated.write_bytes(raw[: len(raw) - 10])
    out["truncated"] = (truncated, "truncated")
    trailing = folder / "trailing.npy"
    trailing.write_bytes(raw + b"\0" * 7)
    out["trailing"] = (trailing, "7 unexpected bytes")
    cut_header = folder / "cut_header.npy"
    cut_header.write_bytes(raw[:40])
    out["cut_header"] = (cut_header, "file ends inside the header")
    empty = folder / "empty.npy"
    empty.write_bytes(b"")
    out["zero_bytes"] = (empty, "empty file")
    text = folder / "text.npy"
    text.write_text("0.1, 0.2, 0.3\n0.4, 0.5, 0.6\n")
    out["text_named_npy"] = (text, "not a .npy or .npz")
    huge = {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)}  # 10^12 elements, no data
    out["huge_header_shape"] = (_npy_with_header(folder / "huge.npy", huge), "1000000000000 elements")
    bad_header = folder / "bad_header.npy"
    bad_header.write_bytes(b"\x93NUMPY\x01\x00" + (20).to_bytes(2, "little") + b"{'descr': os.system}")
    out["malformed_header"] = (bad_header, "malformed header")
    out["unbalanced_header"] = (unbalanced_header_npy(folder / "unbalanced.npy", good), "malformed header")
    save("ranked_duplicates", np.tile(np.array([0, 1, 1], np.int64), (q, 1)), "repeat a gallery index")
    save("ranked_out_of_range", np.tile(np.array([0, g], np.int32), (q, 1)), f"outside [0, {g})")
    save("ranked_negative", np.tile(np.array([-1, 0], np.int32), (q, 1)), "index -1")
    save("ranked_too_long", np.tile(np.arange(g + 1, dtype=np.int64), (q, 1)), f"K = {g + 1}")
    save("ranked_empty_rows", np.zeros((q, 0), np.int64), "K = 0")
    save("ranked_wrong_rows", np.tile(np.arange(3, dtype=np.int64), (q + 1, 1)), f"expected {q}")

    def savez(name: str, phrase: str, **members) -> None:
        path = folder / f"{name}.npz"
        np.savez(path, **members)
        out[name] = (path, phrase)

    fq = rng.standard_normal((q, 8)).astype(np.float32)
    fg = rng.standard_normal((g, 8)).astype(np.float32)
    savez("npz_missing_gallery", "lacks member(s) gallery", query=fq)
    savez("npz_extra_member", "unexpected member(s) 'labels.npy'", query=fq, gallery=fg, labels=np.arange(q))
    savez("npz_dim_mismatch", "dimension 8 but gallery features 5", query=fq, gallery=fg[:, :5])
    savez("npz_int_features", "float16/32/64 features", query=fq.astype(np.int32), gallery=fg)
    fg_nan = fg.copy()
    fg_nan[0, 0] = np.nan
    savez("npz_nan_features", "gallery features holds 1 NaN", query=fq, gallery=fg_nan)
    zero = fq.copy()
    zero[3] = 0
    savez("npz_zero_row_cosine", "all zero", query=zero, gallery=fg)
    savez("npz_wrong_rows", f"has {q - 1} rows, expected {q}", query=fq[:-1], gallery=fg)
    out["npz_zip_bomb"] = (_zip_bomb(folder / "bomb.npz", q, g), "over the 4294967296-byte limit")
    many = "more than 64 members"
    out["npz_many_members"] = (many_member_npz(folder / "many.npz", fq, fg, 100), many)
    out["npz_forged_member_count"] = (many_member_npz(folder / "forged.npz", fq, fg, 100, declared=2), many)
    corrupt = folder / "corrupt.npz"
    np.savez(corrupt, query=fq, gallery=fg)
    data = bytearray(corrupt.read_bytes())
    at = data.find(b"gallery.npy") + len(b"gallery.npy") + 200  # inside the stored gallery data
    data[at] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    out["npz_corrupt_member"] = (corrupt, "Bad CRC-32")
    not_zip = folder / "not_zip.npz"
    not_zip.write_bytes(b"PK\x03\x04garbage")
    out["npz_not_a_zip"] = (not_zip, "not a readable .npz")
    return out
