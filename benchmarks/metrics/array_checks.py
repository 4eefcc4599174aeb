"""Value checks of submission arrays, done chunk by chunk so a memory-mapped matrix is never copied whole.

Each check returns a list of one-line problems (empty when the array is fine).

NaN or infinite distances make a submission invalid: a NaN has no place in an order (every
comparison with it is false, so its rank would be an accident of the algorithm), and an infinity
ties with every other infinity, silently turning the metric into a tie-breaking rule.
"""

from __future__ import annotations

import numpy as np

CHUNK_ELEMENTS = 1 << 22


def _row_chunks(num_rows: int, num_cols: int):
    step = max(1, CHUNK_ELEMENTS // max(num_cols, 1))
    for start in range(0, num_rows, step):
        yield start, min(start + step, num_rows)


def nonfinite_problems(array: np.ndarray, what: str) -> list[str]:
    """Count NaN and +-Inf values of a 2-D float array; name the first one's position."""
    nan = inf = 0
    first: tuple[int, int] | None = None
    rows, cols = array.shape
    for start, stop in _row_chunks(rows, cols):
        block = np.asarray(array[start:stop])
        if block.dtype != np.float16 and np.isfinite(np.sum(block)):
            continue  # one cheap pass: NaN and Inf propagate into the sum (an overflow only costs a recount)
        finite = np.isfinite(block)
        if finite.all():
            continue
        n_nan = int(np.count_nonzero(np.isnan(block)))
        nan += n_nan
        inf += int(block.size - np.count_nonzero(finite)) - n_nan
        if first is None:
            r, c = np.unravel_index(int(np.argmin(finite)), finite.shape)
            first = (int(r) + start, int(c))
    if not (nan or inf):
        return []
    parts = [f"{n} {label}" for n, label in ((nan, "NaN"), (inf, "infinite")) if n]
    assert first is not None
    return [f"{what} holds {' and '.join(parts)} value(s) (first at row {first[0]}, column {first[1]})"]


def ranked_index_problems(ranked: np.ndarray, num_gallery: int, what: str = "ranked list") -> list[str]:
    """Every index must lie in [0, G) and appear at most once in its row."""
    rows, k = ranked.shape
    out_of_range_rows = dup_rows = 0
    first_range = first_dup = None
    for start, stop in _row_chunks(rows, max(k, num_gallery)):
        block = np.asarray(ranked[start:stop])
        bad = (block < 0) | (block >= num_gallery)
        bad_rows = np.flatnonzero(bad.any(axis=1))
        if len(bad_rows):
            out_of_range_rows += len(bad_rows)
            if first_range is None:
                r = int(bad_rows[0])
                first_range = (start + r, int(block[r][bad[r]][0]))
        ok_rows = np.flatnonzero(~bad.any(axis=1))
        if len(ok_rows) == 0:
            continue
        # Mark every (row, index) seen; a row with duplicates marks fewer than K distinct cells.
        seen = np.zeros((len(ok_rows), num_gallery), dtype=bool)
        seen[np.arange(len(ok_rows))[:, None], block[ok_rows].astype(np.int64)] = True
        dups = np.flatnonzero(np.count_nonzero(seen, axis=1) < k)
        if len(dups):
            dup_rows += len(dups)
            if first_dup is None:
                row = block[ok_rows[dups[0]]].astype(np.int64)
                values, counts = np.unique(row, return_counts=True)
                first_dup = (start + int(ok_rows[dups[0]]), int(values[counts > 1][0]))
    problems = []
    if out_of_range_rows:
        problems.append(
            f"{what}: {out_of_range_rows} row(s) hold indices outside [0, {num_gallery}) "
            f"(first: row {first_range[0]}, index {first_range[1]})"
        )
    if dup_rows:
        problems.append(
            f"{what}: {dup_rows} row(s) repeat a gallery index (first: row {first_dup[0]}, index {first_dup[1]})"
        )
    return problems
