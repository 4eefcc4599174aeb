"""Croissant (MLCommons, JSON-LD) metadata: what a dataset's files hold, for dataset search and loaders.

Two writers use it: the release (`croissant.json` beside `README.md`, describing the public
manifests and images; never `private/`) and the Hugging Face export (its Parquet shards with the
images inside). Everything comes from the files themselves, so a rebuild gives the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa

from manifests import GALLERY, QUERY, SPLITS, TRAIN, DatasetLayout, sha256_file

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"
#: The Croissant 1.0 JSON-LD context, as the specification's examples give it.
CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
PARQUET = "application/x-parquet"
JPEG = "image/jpeg"
CITATION = (
    "Yan, C., Pang, G., Jiao, J., Bai, X., Feng, X., Shen, C. Occluded Person Re-Identification with "
    "Single-scale Global Representations. ICCV 2021."
)


def data_type(arrow_type: pa.DataType) -> str:
    """The Croissant dataType of an Arrow column type."""
    if pa.types.is_boolean(arrow_type):
        return "sc:Boolean"
    if pa.types.is_integer(arrow_type):
        return "sc:Integer"
    if pa.types.is_floating(arrow_type):
        return "sc:Float"
    return "sc:Text"


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str
    description: str
    #: `images/path`-style id of a field this column's values refer to (a join), if any
    references: str | None = None
    #: a JSON path inside the column's struct values (the images of a Parquet export: "bytes")
    json_path: str | None = None


@dataclass(frozen=True)
class Table:
    """One record set: a Parquet file (`sha256` given) or a set of shards (`includes` glob)."""

    name: str
    description: str
    content: str
    columns: list[Column]
    sha256: str | None = None
    key: str | None = "image_id"


@dataclass(frozen=True)
class ImageFiles:
    """Image files matched by globs, offered as a record set of (path, image)."""

    name: str
    description: str
    includes: list[str]
    encoding: str = JPEG


@dataclass
class DatasetInfo:
    name: str
    description: str
    version: str
    license: str = "https://choosealicense.com/licenses/other/"
    url: str = "https://github.com/opreid/opreid"
    keywords: list[str] = field(
        default_factory=lambda: ["person re-identification", "occlusion", "computer vision", "OPReID"]
    )


def _source(container: str, kind: str, extract: dict, json_path: str | None = None) -> dict:
    out = {kind: {"@id": container}, "extract": extract}
    if json_path:
        out["transform"] = {"jsonPath": json_path}
    return out


def croissant_metadata(info: DatasetInfo, tables: list[Table], images: list[ImageFiles] = ()) -> dict:
    """The Croissant JSON-LD object of a dataset made of Parquet tables and image files."""
    distribution, record_sets = [], []
    for table in tables:
        file_id = f"{table.name}-file"
        entry = {"@type": "cr:FileObject" if table.sha256 else "cr:FileSet", "@id": file_id, "name": file_id,
                 "encodingFormat": PARQUET}  # fmt: skip
        if table.sha256:
            entry.update(contentUrl=table.content, sha256=table.sha256)
        else:
            entry["includes"] = table.content
        distribution.append(entry)
        kind = "fileObject" if table.sha256 else "fileSet"
        fields = []
        for col in table.columns:
            f = {
                "@type": "cr:Field", "@id": f"{table.name}/{col.name}", "name": col.name,
                "description": col.description, "dataType": col.data_type,
                "source": _source(file_id, kind, {"column": col.name}, col.json_path),
            }  # fmt: skip
            if col.references:
                f["references"] = {"field": {"@id": col.references}}
            fields.append(f)
        rs = {"@type": "cr:RecordSet", "@id": table.name, "name": table.name, "description": table.description,
              "field": fields}  # fmt: skip
        if table.key:
            rs["key"] = {"@id": f"{table.name}/{table.key}"}
        record_sets.append(rs)
    for files in images:
        file_id = f"{files.name}-files"
        distribution.append({"@type": "cr:FileSet", "@id": file_id, "name": file_id,
                             "encodingFormat": files.encoding, "includes": list(files.includes)})  # fmt: skip
        record_sets.append({
            "@type": "cr:RecordSet", "@id": files.name, "name": files.name, "description": files.description,
            "key": {"@id": f"{files.name}/path"},
            "field": [
                {"@type": "cr:Field", "@id": f"{files.name}/path", "name": "path", "dataType": "sc:Text",
                 "description": "the image file, relative to the dataset folder",
                 "source": _source(file_id, "fileSet", {"fileProperty": "fullpath"})},
                {"@type": "cr:Field", "@id": f"{files.name}/image", "name": "image", "dataType": "sc:ImageObject",
                 "description": "the image", "source": _source(file_id, "fileSet", {"fileProperty": "content"})},
            ],
        })  # fmt: skip
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": info.name,
        "description": info.description,
        "conformsTo": CONFORMS_TO,
        "citeAs": CITATION,
        "license": info.license,
        "url": info.url,
        "version": info.version,
        "keywords": info.keywords,
        "isLiveDataset": False,
        "distribution": distribution,
        "recordSet": record_sets,
    }


def dumps(metadata: dict) -> str:
    return json.dumps(metadata, indent=2, ensure_ascii=False) + "\n"


#: What each public column holds (docs/data-contract.md §3 has the full contract).
COLUMN_DESCRIPTIONS = {
    "image": "the image (JPEG bytes)",
    "image_id": "opaque id of the released image (12 hex digits); says nothing about the identity",
    "path": "image file relative to the release folder",
    "pid": "person identity (train pids 0..N-1; null for query and gallery in a public export)",
    "camid": "camera id",
    "occluded": "occlusion flag from the pose rule or a reviewer (null for query and gallery in a public export)",
}
SPLIT_DESCRIPTIONS = {
    "train": "training images with their identity, camera and occlusion flag",
    "query": "query images (occluded), in submission row order",
    "gallery": "gallery images, in submission column order",
}


def release_croissant(root, version: str) -> dict:
    """Croissant metadata of a release's public part: the three manifests (with their sha256) and images/."""
    layout = DatasetLayout(root)
    schemas = {"train": TRAIN, "query": QUERY, "gallery": GALLERY}
    tables = []
    for split in SPLITS:
        schema = schemas[split].schema
        columns = [
            Column(name, data_type(schema.field(name).type), COLUMN_DESCRIPTIONS[name],
                   references="images/path" if name == "path" else None)
            for name in schema.names
        ]  # fmt: skip
        manifest = layout.manifest(split)
        tables.append(Table(split, SPLIT_DESCRIPTIONS[split], manifest.name, columns, sha256_file(manifest)))
    images = ImageFiles("images", "the released crops, face-masked", [layout.image_path("*", "*.jpg")])
    info = DatasetInfo(
        name="OPReID-protocol benchmark",
        description=(
            "Occluded person re-identification benchmark built by opreid after the OPReID protocol "
            "(Yan et al., ICCV 2021): train, query and gallery manifests with face-masked crops. The "
            "query/gallery ground truth is held back by the benchmark host."
        ),
        version=version,
    )
    return croissant_metadata(info, tables, [images])
