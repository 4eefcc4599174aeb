"""Export a release as a Hugging Face dataset folder: Parquet shards with the images inside.

`datasets.load_dataset(DIR)` reads it as one config with the splits train, query and gallery, the
images as `Image` features. Every split has the same columns (`image, image_id, path, pid, camid,
occluded`); query and gallery keep the public manifests' row order (the order of a submission's rows
and columns), and their `pid` and `occluded` are null: the public export reads the public files only,
so it works on a participant's copy and never carries the private ground truth. `with_ground_truth`
fills them from `private/ground_truth.parquet`, for the host's own use, and says so loudly.

Written only with pyarrow (the `hf` extra brings `datasets` for loading). Beside the shards:
`README.md` (YAML front matter with the configs, splits and features, then the release's card) and
`croissant.json`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests import (
    GALLERY,
    GROUND_TRUTH,
    QUERY,
    SPLITS,
    TRAIN,
    DatasetLayout,
    ManifestError,
    atomic_folder,
    atomic_write_text,
    progress_bar,
    read_manifest,
)
from opreid.version import __version__
from opreid_builder.errors import ExportError
from opreid_builder.export.result import ExportResult
from opreid_builder.release import croissant

log = logging.getLogger(__name__)

#: Bytes of image data per Parquet shard (Hugging Face's own default shard size) and per row group.
MAX_SHARD_BYTES = 500 << 20
MAX_ROW_GROUP_BYTES = 32 << 20
MAX_ROW_GROUP_ROWS = 500
DATA_DIR = "data"
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema(
    [
        ("image", IMAGE), ("image_id", pa.string()), ("path", pa.string()), ("pid", pa.int64()),
        ("camid", pa.int32()), ("occluded", pa.bool_()),
    ]
)  # fmt: skip
#: The `datasets` feature types of SCHEMA (Parquet metadata key `huggingface` and README front matter).
FEATURES = {
    "image": {"_type": "Image"},
    "image_id": {"dtype": "string", "_type": "Value"},
    "path": {"dtype": "string", "_type": "Value"},
    "pid": {"dtype": "int64", "_type": "Value"},
    "camid": {"dtype": "int32", "_type": "Value"},
    "occluded": {"dtype": "bool", "_type": "Value"},
}
GROUND_TRUTH_WARNING = (
    "this export holds the private ground truth (query and gallery pids and occlusion flags): "
    "for the benchmark host only, never publish it or give it to participants"
)


def _split_rows(out: Path, with_ground_truth: bool) -> dict[str, pa.Table]:
    """Each split's rows in its manifest's order, with the columns of SCHEMA (less the image)."""
    layout = DatasetLayout(out)
    try:
        tables = {
            "train": read_manifest(layout.train, TRAIN),
            "query": read_manifest(layout.query, QUERY),
            "gallery": read_manifest(layout.gallery, GALLERY),
        }
        truth = read_manifest(layout.ground_truth, GROUND_TRUTH) if with_ground_truth else None
    except ManifestError as exc:
        if with_ground_truth and not layout.ground_truth.is_file():
            raise ExportError(
                f"{layout.ground_truth} is missing: --with-ground-truth needs the private ground truth"
            ) from None
        raise ExportError(str(exc)) from None
    out_tables = {}
    for split in SPLITS:
        t = tables[split]
        n = t.num_rows
        if split == "train":
            pid, occluded = t.column("pid"), t.column("occluded")
        elif truth is None:
            pid, occluded = pa.nulls(n, pa.int64()), pa.nulls(n, pa.bool_())
        else:
            index = pc.index_in(t.column("image_id"), value_set=truth.column("image_id"))
            if index.null_count:
                raise ExportError(f"{split} images without a ground-truth row; run `opreid validate {out}`")
            pid, occluded = truth.column("pid").take(index), truth.column("occluded").take(index)
        out_tables[split] = pa.table(
            {"image_id": t.column("image_id"), "path": t.column("path"), "pid": pid,
             "camid": t.column("camid"), "occluded": occluded}
        )  # fmt: skip
    return out_tables


def _shards(out: Path, table: pa.Table) -> list[tuple[int, int]]:
    """Row ranges of the shards: consecutive rows up to MAX_SHARD_BYTES of image files each."""
    bounds, start, size = [], 0, 0
    for i, rel in enumerate(table.column("path").to_pylist()):
        path = DatasetLayout(out).resolve(rel)
        if not path.is_file():
            raise ExportError(
                f"released image {path} is missing or not a regular file; run `opreid validate {out}`"
            )
        nbytes = path.stat().st_size
        if size and size + nbytes > MAX_SHARD_BYTES:
            bounds.append((start, i))
            start, size = i, 0
        size += nbytes
    bounds.append((start, table.num_rows))
    return bounds


def _write_shard(out: Path, table: pa.Table, dest: Path, bar) -> None:
    metadata = {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}
    with pq.ParquetWriter(dest, SCHEMA.with_metadata(metadata), compression="zstd") as writer:
        rows, size, images = [], 0, []

        def flush() -> None:
            part = table.slice(rows[0], len(rows))
            image = pa.array(images, IMAGE)
            writer.write_table(pa.Table.from_arrays([image, *part.columns], schema=writer.schema))
            bar.update(len(rows))

        for i, rel in enumerate(table.column("path").to_pylist()):
            data = DatasetLayout(out).resolve(rel).read_bytes()
            rows.append(i)
            images.append({"bytes": data, "path": Path(rel).name})
            size += len(data)
            if size >= MAX_ROW_GROUP_BYTES or len(rows) >= MAX_ROW_GROUP_ROWS:
                flush()
                rows, size, images = [], 0, []
        if rows:
            flush()


def _front_matter(counts: dict[str, int]) -> str:
    lines = ["---", "pretty_name: OPReID-protocol benchmark", "task_categories:", "- image-feature-extraction",
             "tags:", "- person-re-identification", "- occlusion", "- opreid", "configs:", "- config_name: default",
             "  data_files:"]  # fmt: skip
    for split in SPLITS:
        lines += [f"  - split: {split}", f"    path: {DATA_DIR}/{split}-*.parquet"]
    lines += ["dataset_info:", "  features:"]
    for name, feature in FEATURES.items():
        lines += [
            f"  - name: {name}",
            f"    dtype: {'image' if feature['_type'] == 'Image' else feature['dtype']}",
        ]
    lines += ["  splits:"]
    for split in SPLITS:
        lines += [f"  - name: {split}", f"    num_examples: {counts[split]}"]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _readme(out: Path, counts: dict[str, int], with_ground_truth: bool) -> str:
    card = DatasetLayout(out).card
    body = card.read_text(encoding="utf-8") if card.is_file() else "# OPReID-protocol benchmark\n"
    truth = (
        f"**Host only: {GROUND_TRUTH_WARNING}.** Query and gallery rows carry `pid` and `occluded`."
        if with_ground_truth
        else "Query and gallery rows have `pid` and `occluded` set to null: the ground truth stays with the "
        "benchmark host, who scores submissions with `opreid score`."
    )
    usage = f"""## Loading with Hugging Face datasets

Exported by `opreid export --format hf` (opreid {__version__}).

```python
from datasets import load_dataset

ds = load_dataset("path/to/this/folder")  # splits: train, query, gallery; `image` is an Image feature
```

Rows of `query` and `gallery` keep the order of `query.parquet` and `gallery.parquet`: the rows and
columns of a submission follow it. {truth} Counts: {", ".join(f"{s} {counts[s]:,}" for s in SPLITS)}.

"""
    return _front_matter(counts) + "\n" + usage + body


def _croissant() -> dict:
    tables = []
    for split in SPLITS:
        columns = [
            croissant.Column(name, "sc:ImageObject" if name == "image" else croissant.data_type(SCHEMA.field(name).type),
                             croissant.COLUMN_DESCRIPTIONS[name], json_path="bytes" if name == "image" else None)
            for name in SCHEMA.names
        ]  # fmt: skip
        tables.append(croissant.Table(split, croissant.SPLIT_DESCRIPTIONS[split], f"{DATA_DIR}/{split}-*.parquet",
                                      columns))  # fmt: skip
    info = croissant.DatasetInfo(
        name="OPReID-protocol benchmark (Hugging Face export)",
        description="Parquet shards of an opreid release, images embedded; see README.md.",
        version=__version__,
    )
    return croissant.croissant_metadata(info, tables)


def export_hf(out: str | Path, dest: str | Path, progress: bool = False, with_ground_truth: bool = False):
    """Write DEST/data/{split}-NNNNN-of-NNNNN.parquet, DEST/README.md and DEST/croissant.json."""
    out, dest = Path(out), Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise ExportError(f"{dest} exists and is not empty; choose a new folder")
    tables = _split_rows(out, with_ground_truth)
    shards = {split: _shards(out, tables[split]) for split in SPLITS}
    counts = {split: tables[split].num_rows for split in SPLITS}
    with atomic_folder(dest) as staging:
        (staging / DATA_DIR).mkdir()
        with progress_bar(total=sum(counts.values()), enabled=progress, desc="export hf") as bar:
            for split in SPLITS:
                n = len(shards[split])
                for k, (a, b) in enumerate(shards[split]):
                    name = f"{DATA_DIR}/{split}-{k:05d}-of-{n:05d}.parquet"
                    _write_shard(out, tables[split].slice(a, b - a), staging / name, bar)
        atomic_write_text(staging / "README.md", _readme(out, counts, with_ground_truth))
        atomic_write_text(staging / "croissant.json", croissant.dumps(_croissant()))
    warnings = [GROUND_TRUTH_WARNING] if with_ground_truth else []
    for w in warnings:
        log.warning(w)
    return ExportResult(dest=dest, images=counts, cameras={}, warnings=warnings,
                        contains_ground_truth=with_ground_truth)  # fmt: skip
