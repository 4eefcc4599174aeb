"""Write and read contract Parquet files: atomic writes, validating reads.

Files are plain Parquet (readable by pandas, polars and duckdb without this package); the kind and
schema version travel in the key-value metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from manifests.atomic import atomic_path
from manifests.errors import (
    ColumnTypeError,
    ManifestError,
    MissingColumnError,
    SchemaKindError,
    SchemaVersionError,
    UnreadableManifestError,
)
from manifests.schemas import KIND_KEY, SCHEMAS, VERSION_KEY, ManifestSchema


def _resolve(schema: ManifestSchema | str) -> ManifestSchema:
    return SCHEMAS[schema] if isinstance(schema, str) else schema


def _with_metadata(table: pa.Table, schema: ManifestSchema, extra: dict[str, str] | None) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta.pop(b"pandas", None)  # pandas index metadata would leak row provenance; not part of the contract
    meta[KIND_KEY] = schema.kind.encode()
    meta[VERSION_KEY] = schema.version.encode()
    for key, value in (extra or {}).items():
        meta[f"opreid.{key}".encode()] = str(value).encode()
    return table.replace_schema_metadata(meta)


def conform(data: Any, schema: ManifestSchema | str, path: str | Path = "<memory>") -> pa.Table:
    """Turn a pyarrow Table, a pandas DataFrame or a dict of columns into the schema's exact table.

    Columns are put in schema order; extra columns are refused (nothing unplanned reaches a file);
    types are cast safely (an unsafe cast, e.g. a string pid, raises ColumnTypeError).
    """
    schema = _resolve(schema)
    if isinstance(data, pa.Table):
        table = data
    elif isinstance(data, dict):
        table = pa.table(data)
    else:  # pandas DataFrame
        table = pa.Table.from_pandas(data, preserve_index=False)
    extra = [c for c in table.column_names if c not in schema.columns]
    if extra:
        raise ManifestError(
            path, f"unexpected column(s) {', '.join(map(repr, extra))} for a {schema.kind} manifest"
        )
    arrays = []
    for field in schema.schema:
        if field.name not in table.column_names:
            raise MissingColumnError(path, field.name)
        column = table.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                raise ColumnTypeError(path, field.name, str(field.type), str(column.type)) from None
        if not field.nullable and column.null_count:
            raise ManifestError(path, f"column {field.name!r} has {column.null_count} null value(s)")
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema.schema)


def write_manifest(
    data: Any,
    path: str | Path,
    schema: ManifestSchema | str,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Validate `data` against `schema` and write it atomically to `path`."""
    schema = _resolve(schema)
    path = Path(path)
    table = _with_metadata(conform(data, schema, path), schema, extra_metadata)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `opreid.*` key-value metadata of a Parquet file (keys without the prefix)."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except (OSError, pa.ArrowInvalid) as exc:
        raise UnreadableManifestError(path, f"not a readable Parquet file ({exc})") from None
    return {k.decode()[len("opreid.") :]: v.decode() for k, v in meta.items() if k.startswith(b"opreid.")}


def _check_header(path: Path, arrow_schema: pa.Schema, schema: ManifestSchema) -> None:
    meta = arrow_schema.metadata or {}
    kind = meta.get(KIND_KEY, b"").decode() or None
    version = meta.get(VERSION_KEY, b"").decode() or None
    if kind != schema.kind:
        raise SchemaKindError(path, kind, schema.kind)
    if version is None or version.split(".")[0] != schema.version.split(".")[0]:
        raise SchemaVersionError(path, version, schema.version)


def read_manifest(
    path: str | Path, schema: ManifestSchema | str, columns: list[str] | None = None
) -> pa.Table:
    """Read and validate a contract file: kind, major version, every column and its type.

    Raises a ManifestError subclass naming the file (and the column) on any violation.
    """
    schema = _resolve(schema)
    path = Path(path)
    if not path.is_file():
        raise UnreadableManifestError(path, "no such file")
    try:
        file_schema = pq.read_schema(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UnreadableManifestError(path, f"not a readable Parquet file ({exc})") from None
    _check_header(path, file_schema, schema)
    for field in schema.schema:
        if field.name not in file_schema.names:
            raise MissingColumnError(path, field.name)
        found = file_schema.field(field.name).type
        if not found.equals(field.type):
            raise ColumnTypeError(path, field.name, str(field.type), str(found))
    try:
        table = pq.read_table(path, columns=columns or schema.columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise UnreadableManifestError(path, f"cannot read data ({exc})") from None
    for field in schema.schema:
        if field.name in table.column_names and not field.nullable and table.column(field.name).null_count:
            raise ManifestError(path, f"column {field.name!r} has null value(s)")
    return table
