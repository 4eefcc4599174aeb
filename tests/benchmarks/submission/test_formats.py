"""Submission formats and validation: every bad file is refused with its reasons, before scoring."""

from __future__ import annotations

import resource

import numpy as np
import pytest
from support.submissions import bad_submissions

from benchmarks.errors import InvalidSubmissionError
from benchmarks.submission.formats import load_submission

Q, G = 6, 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return bad_submissions(tmp_path_factory.mktemp("bad"), Q, G)


CASES = [
    "pickled_objects", "nan", "inf", "wrong_shape", "transposed", "zero_d", "three_d", "complex", "strings",
    "bytes", "bool", "structured", "truncated", "trailing", "cut_header", "zero_bytes", "text_named_npy",
    "huge_header_shape", "malformed_header", "ranked_duplicates", "ranked_out_of_range", "ranked_negative",
    "ranked_too_long", "ranked_empty_rows", "ranked_wrong_rows", "npz_missing_gallery", "npz_extra_member",
    "npz_dim_mismatch", "npz_int_features", "npz_nan_features", "npz_zero_row_cosine", "npz_wrong_rows",
    "npz_zip_bomb", "npz_corrupt_member", "npz_not_a_zip", "unbalanced_header", "npz_many_members",
    "npz_forged_member_count",
]  # fmt: skip


def test_corpus_is_complete(corpus):
    assert sorted(corpus) == sorted(CASES)


@pytest.mark.parametrize("name", CASES)
def test_bad_submission_is_refused_with_its_reason(corpus, name):
    path, phrase = corpus[name]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InvalidSubmissionError) as info:
        load_submission(path, Q, G)
    assert phrase in str(info.value)
    assert all("\n" not in p for p in info.value.problems)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200  # nothing declared by a header (10^12 elements, a 5 GB member) was allocated


def test_all_problems_are_reported_together(tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, np.zeros((G, Q, 2), dtype=np.complex128))
    with pytest.raises(InvalidSubmissionError) as info:
        load_submission(path, Q, G)
    assert len(info.value.problems) == 2
    assert "complex128" in info.value.problems[0] and "3-D" in info.value.problems[1]


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InvalidSubmissionError, match="no such file"):
        load_submission(tmp_path / "nope.npy", Q, G)
    with pytest.raises(InvalidSubmissionError, match="not a regular file"):
        load_submission(tmp_path, Q, G)


@pytest.mark.parametrize("dtype", ["<f2", "<f4", "<f8", ">f4", ">f8"])
@pytest.mark.parametrize("fortran", [False, True])
def test_distance_matrices_load_in_any_float_layout(tmp_path, dtype, fortran):
    values = np.random.default_rng(0).random((Q, G)).astype(dtype)
    values = np.asfortranarray(values) if fortran else values
    path = tmp_path / "d.npy"
    np.save(path, values)
    sub = load_submission(path, Q, G, similarity=True)
    assert sub.kind == "distances" and sub.similarity and sub.truncated_at is None
    assert sub.distances.dtype.isnative
    np.testing.assert_array_equal(np.asarray(sub.distances), values.astype(values.dtype.newbyteorder("=")))


def test_distance_matrix_is_memory_mapped(tmp_path):
    path = tmp_path / "d.npy"
    np.save(path, np.zeros((Q, G), np.float32))
    assert isinstance(load_submission(path, Q, G).distances, np.memmap)


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint16, np.uint32])
def test_ranked_lists_load(tmp_path, dtype):
    ranked = np.stack([np.random.default_rng(i).permutation(G)[:5] for i in range(Q)]).astype(dtype)
    path = tmp_path / "r.npy"
    np.save(path, ranked)
    sub = load_submission(path, Q, G)
    assert sub.kind == "ranked" and sub.truncated_at == 5
    np.testing.assert_array_equal(np.asarray(sub.ranked), ranked)


@pytest.mark.parametrize("compressed", [False, True])
def test_features_load(tmp_path, compressed):
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((Q, 7)).astype(np.float16), rng.standard_normal((G, 7))
    path = tmp_path / "f.npz"
    (np.savez_compressed if compressed else np.savez)(path, query=q, gallery=g)
    sub = load_submission(path, Q, G, metric="euclidean")
    assert sub.kind == "features" and sub.shape == (Q, G, 7) and sub.metric == "euclidean"
    np.testing.assert_array_equal(sub.query_features, q)
    np.testing.assert_array_equal(sub.gallery_features, g)


def test_npz_size_limit_is_checked_before_extraction(tmp_path):
    path = tmp_path / "f.npz"
    np.savez(path, query=np.ones((Q, 64), np.float32), gallery=np.ones((G, 64), np.float32))
    with pytest.raises(InvalidSubmissionError, match="over the 1000-byte limit"):
        load_submission(path, Q, G, max_npz_bytes=1000)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::SyntaxWarning")  # backslashes in the text
@pytest.mark.slow
def test_npy_header_parser_raises_only_its_own_error():
    """Random damage to a header's text: numpy's parser raises TokenError, RecursionError, ... on some;
    every one must come out as NpyHeaderError (an invalid submission), never as another exception."""
    import io

    from benchmarks.submission.npy_header import NpyHeaderError, read_npy_header

    buf = io.BytesIO()
    np.save(buf, np.zeros((Q, G), np.float32))
    good = buf.getvalue()[:128]
    rng = np.random.default_rng(16)
    alphabet = np.frombuffer(b"{}()[],:' 0123456789abcdefghijklmnopqrstuvwxyz<>|\\\"\n\t%#", np.uint8)
    refused = 0
    for _ in range(3000):
        data = bytearray(good)
        for at in rng.integers(10, len(good), size=int(rng.integers(1, 5))):
            data[at] = int(rng.choice(alphabet))
        try:
            read_npy_header(io.BytesIO(bytes(data)))
        except NpyHeaderError:
            refused += 1
    assert refused > 1000
