"""User-supplied tables (index files, review corrections): CSV or Parquet, read the same way."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from opreid_builder.errors import TableFileError


def read_table_file(
    path: Path, column_types: dict, optional_types: dict | None = None, *, newlines_in_values: bool = False
) -> pa.Table:
    """Read `path` (Parquet by suffix, CSV otherwise) and check it has every column of `column_types`.

    CSV columns are parsed with the given Arrow types (`optional_types` too, where present), so an id
    like "0012" stays a string. `newlines_in_values` accepts quoted cells holding a line break (a file
    name may), at the price of single-threaded parsing: for small files such as review corrections.
    """
    try:
        if path.suffix.lower() == ".parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(column_types={**(optional_types or {}), **column_types}),
                parse_options=pacsv.ParseOptions(newlines_in_values=newlines_in_values),
            )
    except (OSError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise TableFileError(
            f"{path}: not a readable CSV/Parquet file ({str(exc).splitlines()[0]})"
        ) from None
    missing = [c for c in column_types if c not in table.column_names]
    if missing:
        raise TableFileError(
            f"{path}: lacks column(s) {', '.join(missing)} (needs {', '.join(column_types)})"
        )
    return table
