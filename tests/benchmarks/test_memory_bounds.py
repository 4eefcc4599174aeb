"""Memory stays bounded whatever the input: peak RSS measured in a subprocess, with generous margins.

Each measurement runs in a fresh interpreter that prints its own peak resident set size
(`ru_maxrss`) before and after the work, so the test process's own memory never counts.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from support.submissions import many_member_npz

MB = 1024  # ru_maxrss is in KiB on Linux


def _run(code: str, timeout: int = 600) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_npz_with_a_million_members_is_refused_in_bounded_memory(tmp_path):
    """zipfile lists every member before anything can be checked: ~0.5-0.7 GB and seconds here."""
    path = many_member_npz(tmp_path / "million.npz", np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32),
                           extra=1_000_000)  # fmt: skip
    got = _run(f"""
        import json, resource, time
        from benchmarks.errors import InvalidSubmissionError
        from benchmarks.submission.formats import load_submission
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        try:
            load_submission({str(path)!r}, 2, 3)
            message = None
        except InvalidSubmissionError as exc:
            message = str(exc)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"message": message, "grown_kb": after - before, "seconds": time.perf_counter() - start}}))
    """)
    assert got["grown_kb"] < 64 * MB, got
    assert got["message"] and "more than 64 members" in got["message"]


def _huge_jpegs(folder: Path, count: int = 6, side: int = 12000) -> list[Path]:
    """`count` distinct side x side greyscale JPEGs (~2.5 MB each), made in a subprocess."""
    names = [f"{9000 + i:04d}_c1s1_000001_00.jpg" for i in range(count)]
    _run(f"""
        import io, json
        from PIL import Image
        img = Image.linear_gradient("L").resize(({side}, {side}))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=80)
        data = bytearray(buf.getvalue())
        for i, name in enumerate({names!r}):
            data[14:16] = (i + 1).to_bytes(2, "big")  # JFIF density: distinct bytes, no duplicates
            open({str(folder)!r} + "/" + name, "wb").write(bytes(data))
        print(json.dumps({{}}))
    """)
    return [folder / n for n in names]


@pytest.mark.slow
def test_build_split_with_huge_jpegs_stays_in_bounded_memory(tmp_path):
    """Six 12000 x 12000 JPEGs (a 4.1 GB peak when decoded in full) are refused from their headers."""
    from opreid_builder.synth.generator import SynthConfig, generate

    plain = tmp_path / "plain"
    generate(plain, SynthConfig(identities=60, cameras=3, images_per_identity=(8, 12), seed=1))
    huge = tmp_path / "huge"
    shutil.copytree(plain, huge)
    _huge_jpegs(huge)
    got = _run(f"""
        import json, resource
        from opreid_builder.build import SplitRequest, build_release
        from opreid_builder.curation.config import CurateConfig
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        split = SplitRequest(scale=0.005, counts={{"train_ids": 20, "train_images": 200}}, seed=2)
        cfg = CurateConfig(keypoints={str(plain / "keypoints.parquet")!r})
        build_release({str(plain)!r}, {str(tmp_path / "out_plain")!r}, cfg, split)
        plain_kb = peak()
        result = build_release({str(huge)!r}, {str(tmp_path / "out_huge")!r}, cfg, split)
        print(json.dumps({{"plain_kb": plain_kb, "huge_kb": peak(),
                           "unreadable": result.curation["counts"]["status_unreadable"]}}))
    """)
    assert got["huge_kb"] - got["plain_kb"] < 256 * MB, got
    assert got["unreadable"] == 6
