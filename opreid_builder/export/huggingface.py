"""Export a release as a Hugging Face dataset folder: Parquet shards with the images inside.

Two configs, because `datasets` gives every split of a config the same features: `train` (the
default; `image, image_id, path, pid, camid, occluded`) and `test`, the splits query and gallery in
the public manifests' row order (the order of a submission's rows and columns), with `image,
image_id, path, camid` only: the public export reads the public files, works on a participant's
copy and carries no ground truth, not even as an all-null column. `with_ground_truth` adds `pid`
and `occluded` to them from `private/ground_truth.parquet`, for the host's own use, and says so
loudly. `datasets.load_dataset(DIR)` reads the train split, `load_dataset(DIR, "test")` the other two.

Written only with pyarrow (the `hf` extra brings `datasets` for loading). Beside the shards:
`README.md` (YAML front matter with the configs, their features and each split's size, then the
participants' card: never the host's, which names the split seed) and `croissant.json`.
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
    OPREID_PROTOCOL,
    QUERY,
    SPLITS,
    TRAIN,
    DatasetLayout,
    ManifestError,
    atomic_folder,
    atomic_write_text,
    progress_bar,
    read_dataset_json,
    read_manifest,
    release_protocol,
)
from opreid.version import __version__
from opreid_builder.errors import ExportError, ReleaseError
from opreid_builder.export.result import ExportResult
from opreid_builder.release import croissant
from opreid_builder.release.image_containers import ContainerError, clean_image
from opreid_builder.release.public_package import check_imported_naming, public_card
from opreid_builder.release.validate import PACKAGE_KIND

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
#: The labels a public export gives the train split only.
LABELS = ("pid", "occluded")
#: The configs and their splits: `datasets` gives every split of a config the same features.
CONFIGS = {"train": ("train",), "test": ("query", "gallery")}
#: The `datasets` feature types of SCHEMA (Parquet metadata key `huggingface` and README front matter).
FEATURES = {
    "image": {"_type": "Image"},
    "image_id": {"dtype": "string", "_type": "Value"},
    "path": {"dtype": "string", "_type": "Value"},
    "pid": {"dtype": "int64", "_type": "Value"},
    "camid": {"dtype": "int32", "_type": "Value"},
    "occluded": {"dtype": "bool", "_type": "Value"},
}


def split_schema(split: str, with_ground_truth: bool) -> pa.Schema:
    """A split's columns: all of SCHEMA, but the labels for query and gallery in a public export."""
    if split == "train" or with_ground_truth:
        return SCHEMA
    return pa.schema([f for f in SCHEMA if f.name not in LABELS])


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
        if split == "train":
            pid, occluded = t.column("pid"), t.column("occluded")
        elif truth is None:
            out_tables[split] = pa.table(
                {"image_id": t.column("image_id"), "path": t.column("path"), "camid": t.column("camid")}
            )
            continue
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


def _features(schema: pa.Schema) -> dict:
    return {name: FEATURES[name] for name in schema.names}


def _image_bytes(out: Path, rel: str) -> bytes:
    """A released image as it goes into a shard: pixels and the minimum container of its format."""
    data = DatasetLayout(out).resolve(rel).read_bytes()
    try:
        cleaned = clean_image(data)
    except ContainerError as exc:
        raise ExportError(
            f"released image {rel} holds more than its pixels ({exc}); run `opreid validate {out}`"
        ) from None
    return data if cleaned is None else cleaned


def _write_shard(out: Path, table: pa.Table, schema: pa.Schema, dest: Path, bar) -> int:
    """Write one shard; returns the Arrow size of what it holds (the split's `num_bytes`)."""
    metadata = {b"huggingface": json.dumps({"info": {"features": _features(schema)}}).encode()}
    nbytes = 0
    with pq.ParquetWriter(dest, schema.with_metadata(metadata), compression="zstd") as writer:
        rows, size, images = [], 0, []

        def flush() -> int:
            part = table.slice(rows[0], len(rows))
            image = pa.array(images, IMAGE)
            batch = pa.Table.from_arrays([image, *part.columns], schema=writer.schema)
            writer.write_table(batch)
            bar.update(len(rows))
            return batch.nbytes

        for i, rel in enumerate(table.column("path").to_pylist()):
            data = _image_bytes(out, rel)
            rows.append(i)
            images.append({"bytes": data, "path": Path(rel).name})
            size += len(data)
            if size >= MAX_ROW_GROUP_BYTES or len(rows) >= MAX_ROW_GROUP_ROWS:
                nbytes += flush()
                rows, size, images = [], 0, []
        if rows:
            nbytes += flush()
    return nbytes


def _front_matter(counts: dict[str, int], sizes: dict[str, int], with_ground_truth: bool) -> str:
    lines = ["---", "pretty_name: OPReID-protocol benchmark", "task_categories:", "- image-feature-extraction",
             "tags:", "- person-re-identification", "- occlusion", "- opreid", "configs:"]  # fmt: skip
    for config, splits in CONFIGS.items():
        lines += (
            [f"- config_name: {config}"]
            + (["  default: true"] if config == "train" else [])
            + ["  data_files:"]
        )
        for split in splits:
            lines += [f"  - split: {split}", f"    path: {DATA_DIR}/{split}-*.parquet"]
    lines.append("dataset_info:")
    for config, splits in CONFIGS.items():
        lines += [f"- config_name: {config}", "  features:"]
        for name in split_schema(splits[0], with_ground_truth).names:
            feature = FEATURES[name]
            dtype = "image" if feature["_type"] == "Image" else feature["dtype"]
            lines += [f"  - name: {name}", f"    dtype: {dtype}"]
        lines.append("  splits:")
        for split in splits:
            lines += [
                f"  - name: {split}",
                f"    num_bytes: {sizes[split]}",
                f"    num_examples: {counts[split]}",
            ]
        lines.append(f"  dataset_size: {sum(sizes[s] for s in splits)}")
    lines.append("---")
    return "\n".join(lines) + "\n"


def _card(out: Path) -> str:
    """The participants' card of the release: a package's or an import's README as it is, else the public
    card rebuilt from the host's private tables; never the host's card, which names the split seed."""
    layout = DatasetLayout(out)
    try:
        info = read_dataset_json(out)
    except ManifestError:
        info = {}
    if info.get("kind") == PACKAGE_KIND or (info and release_protocol(info) != OPREID_PROTOCOL):
        if info.get("kind") != PACKAGE_KIND:
            check_imported_naming(out, info)
        return layout.card.read_text(encoding="utf-8") if layout.card.is_file() else ""
    try:
        return public_card(out, info)
    except (ReleaseError, KeyError) as exc:
        log.warning(
            "README.md holds no dataset card: the release's own names the split seed, and the participants' "
            "card cannot be rebuilt here (%s); export the package `opreid release pack` writes instead",
            exc,
        )
        return ""


def _readme(out: Path, counts: dict[str, int], sizes: dict[str, int], with_ground_truth: bool) -> str:
    body = _card(out) or "# OPReID-protocol benchmark\n"
    truth = (
        f"**Host only: {GROUND_TRUTH_WARNING}.** Query and gallery rows carry `pid` and `occluded`."
        if with_ground_truth
        else "Query and gallery rows have no `pid` or `occluded`: the ground truth stays with the benchmark "
        "host, who scores submissions with `opreid score`."
    )
    usage = f"""## Loading with Hugging Face datasets

Exported by `opreid export --format hf` (opreid {__version__}).

```python
from datasets import load_dataset

train = load_dataset("path/to/this/folder")          # config `train` (the default): the train split
test = load_dataset("path/to/this/folder", "test")   # config `test`: the query and gallery splits
# `image` is an Image feature in every split
```

Rows of `query` and `gallery` keep the order of `query.parquet` and `gallery.parquet`: the rows and
columns of a submission follow it. {truth} Counts: {", ".join(f"{s} {counts[s]:,}" for s in SPLITS)}.

"""
    return _front_matter(counts, sizes, with_ground_truth) + "\n" + usage + body


def _croissant(with_ground_truth: bool) -> dict:
    tables = []
    for split in SPLITS:
        schema = split_schema(split, with_ground_truth)
        columns = [
            croissant.Column(name, "sc:ImageObject" if name == "image" else croissant.data_type(schema.field(name).type),
                             croissant.COLUMN_DESCRIPTIONS[name], json_path="bytes" if name == "image" else None)
            for name in schema.names
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
    sizes = dict.fromkeys(SPLITS, 0)
    with atomic_folder(dest) as staging:
        (staging / DATA_DIR).mkdir()
        with progress_bar(total=sum(counts.values()), enabled=progress, desc="export hf") as bar:
            for split in SPLITS:
                n = len(shards[split])
                schema = split_schema(split, with_ground_truth)
                for k, (a, b) in enumerate(shards[split]):
                    name = f"{DATA_DIR}/{split}-{k:05d}-of-{n:05d}.parquet"
                    sizes[split] += _write_shard(
                        out, tables[split].slice(a, b - a), schema, staging / name, bar
                    )
        atomic_write_text(staging / "README.md", _readme(out, counts, sizes, with_ground_truth))
        atomic_write_text(staging / "croissant.json", croissant.dumps(_croissant(with_ground_truth)))
    warnings = [GROUND_TRUTH_WARNING] if with_ground_truth else []
    for w in warnings:
        log.warning(w)
    return ExportResult(dest=dest, images=counts, cameras={}, warnings=warnings,
                        contains_ground_truth=with_ground_truth)  # fmt: skip
