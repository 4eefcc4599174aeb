"""Sources: layouts, labels, refusals and robust decoding."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support.curation import CORRUPT_EXPECTED, make_corrupt_corpus

from opreid_builder.curation.sources import decode_image, detect_layout, read_and_decode, scan_sources
from opreid_builder.errors import SourceError


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_market_names_junk_and_distractors(tmp_path):
    for name in ("0002_c1s1_000451_03.jpg", "0000_c3s2_000001_01.jpg", "-1_c2s1_000100_00.jpg", "sub/0010_c6s1_1.png",
                 "nonsense.jpg", "notes.txt"):  # fmt: skip
        touch(tmp_path / name)
    scan = scan_sources(tmp_path)
    assert scan.layout == "market"
    got = {(i.source_path, i.pid, i.camid) for i in scan.items}
    assert got == {
        ("0002_c1s1_000451_03.jpg", 2, 1),
        ("0000_c3s2_000001_01.jpg", 0, 3),
        ("sub/0010_c6s1_1.png", 10, 6),
    }
    assert scan.junk == 1
    assert [p for p, _ in scan.refused] == ["nonsense.jpg"]
    assert [i.source_path for i in scan.items] == sorted(i.source_path for i in scan.items)


def test_identity_folders(tmp_path):
    touch(tmp_path / "0007" / "a_c2_001.jpg")
    touch(tmp_path / "0007" / "cam3" / "b.jpg")
    touch(tmp_path / "0008" / "nocamera.jpg")
    assert detect_layout(tmp_path) == "folders"
    scan = scan_sources(tmp_path)
    assert {(i.source_path, i.pid, i.camid) for i in scan.items} == {
        ("0007/a_c2_001.jpg", 7, 2),
        ("0007/cam3/b.jpg", 7, 3),
    }
    assert scan.refused and "camera" in scan.refused[0][1]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_index_file(tmp_path, fmt):
    touch(tmp_path / "imgs" / "x.jpg")
    touch(tmp_path / "imgs" / "y.jpg")
    touch(tmp_path.parent / f"{tmp_path.name}_escape.jpg")
    rows = {
        "path": ["imgs/x.jpg", "./imgs/y.jpg", f"../{tmp_path.name}_escape.jpg"],
        "pid": [5, 6, 7],
        "camid": [1, 2, 3],
    }
    if fmt == "csv":
        (tmp_path / "index.csv").write_text(
            "path,pid,camid\n" + "".join(f"{p},{i},{c}\n" for p, i, c in zip(*rows.values(), strict=True))
        )
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table(rows), tmp_path / "index.parquet")
    scan = scan_sources(tmp_path)
    assert scan.layout == "index"
    assert [(i.source_path, i.pid, i.camid) for i in scan.items] == [
        ("imgs/x.jpg", 5, 1),
        ("imgs/y.jpg", 6, 2),
    ]
    assert scan.refused == [(f"../{tmp_path.name}_escape.jpg", "path leaves RAW")]
    # RAW may also be the index file itself
    assert len(scan_sources(tmp_path / f"index.{fmt}").items) == 2


def test_bad_index_and_layout(tmp_path):
    (tmp_path / "index.csv").write_text("path,pid\nx.jpg,1\n")
    with pytest.raises(SourceError, match="camid"):
        scan_sources(tmp_path)
    with pytest.raises(SourceError, match="layout"):
        scan_sources(tmp_path, layout="voc")
    with pytest.raises(SourceError, match="no such"):
        scan_sources(tmp_path / "missing")


def test_symlinks_leaving_raw_are_refused(tmp_path):
    raw = tmp_path / "raw"
    touch(raw / "0001_c1s1_000001_00.jpg")
    touch(tmp_path / "elsewhere" / "0002_c1s1_000001_00.jpg")
    (raw / "0003_c1s1_000001_00.jpg").symlink_to(tmp_path / "elsewhere" / "0002_c1s1_000001_00.jpg")
    (raw / "0004_c1s1_000001_00.jpg").symlink_to(raw / "0001_c1s1_000001_00.jpg")  # stays inside: fine
    (raw / "linked_dir").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    scan = scan_sources(raw)
    assert {i.source_path for i in scan.items} == {"0001_c1s1_000001_00.jpg", "0004_c1s1_000001_00.jpg"}
    assert sorted(scan.refused) == [
        ("0003_c1s1_000001_00.jpg", "symlink leaves RAW"),
        ("linked_dir", "symlink leaves RAW"),
    ]


def test_corrupt_corpus_decodes_to_the_documented_statuses(tmp_path):
    raw = make_corrupt_corpus(tmp_path / "raw")
    for name, (status, what) in CORRUPT_EXPECTED.items():
        data, decoded = read_and_decode(raw / name)
        if status == "unreadable":
            assert not decoded.ok and decoded.detail, what
        else:
            assert decoded.ok, (what, decoded.detail)
            assert decoded.rgb.dtype == np.uint8 and decoded.rgb.ndim == 3 and decoded.rgb.shape[2] == 3, what


def test_conversions_are_reported():
    buf = io.BytesIO()
    Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(buf, format="PNG")
    d = decode_image(buf.getvalue())
    assert d.ok and "PNG" in d.detail and "8 bit" in d.detail
    assert abs(int(d.rgb[0, 0, 0]) - round(40000 * 255 / 65535)) <= 1
    assert decode_image(b"").detail == "zero-byte file"
    assert not decode_image(b"not an image at all").ok


@pytest.mark.slow
def test_decoding_is_robust_after_ultralytics_patches_pillow():
    pytest.importorskip("ultralytics.utils.patches")  # replaces PIL.Image.open with a HEIF-installing wrapper
    d = decode_image(b"not an image at all")
    assert not d.ok and d.detail.startswith("cannot decode")
