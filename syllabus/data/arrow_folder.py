"""A `datasets` save_to_disk folder written with pyarrow alone, for rows of JSON types.

What `load_from_disk` reads (datasets 2.x to 5.x): `data-KKKKK-of-NNNNN.arrow` files in
Arrow's IPC stream format, whose schema carries the features as JSON under the metadata key
"huggingface"; `dataset_info.json` with the same features; `state.json` naming the files, a
fingerprint and the split. `datasets` checks on load that the features describe the
files' schema, so the features are derived from that schema here as
`datasets.Features.from_arrow_schema` derives them (tests/test_data_layer.py compares the
two, and reads the folder back with `load_from_disk`). Shards close at about 500 MB, as
`save_to_disk` cuts them.

No Python object goes through pyarrow's own conversion (`Table.from_pylist`, `pa.array`):
that imports pandas (about 0.5 s and 48 MB here) to ask whether each input is a pandas
object. The column types are inferred here as `from_pylist` infers them (`infer_schema`,
compared with it in tests/test_data_layer.py) and the rows are parsed from their JSONL by
pyarrow's JSON reader against that schema.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SHARD_BYTES = 500 * 10**6  # datasets.config.MAX_SHARD_SIZE
# Arrow type names whose `datasets` dtype differs from str(type).
_DTYPES = {"double": "float64", "float": "float32", "halffloat": "float16"}
_PLAIN = {
    "null",
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "double",
    "float",
    "halffloat",
    "string",
    "large_string",
    "binary",
    "large_binary",
}


class UnknownType(ValueError):
    """A column type this module does not describe; the caller writes through `datasets`."""


# Column types are inferred as light "shapes" (names and tuples, compared as Python values),
# turned into Arrow types once per batch: building an Arrow type per value cost more than
# pyarrow's own conversion.
_SCALARS = {type(None): "null", bool: "bool", int: "int", float: "float", str: "str"}
_ARROW_NAMES = {"null": "null", "bool": "bool_", "int": "int64", "float": "float64", "str": "string"}


def shape_of(value: Any) -> Any:
    """The shape of one JSON value: a scalar's name, ("list", shape) or ("struct", ((name, shape), ...))."""
    scalar = _SCALARS.get(type(value))
    if scalar is not None:
        return scalar
    if isinstance(value, list):
        element: Any = "null"
        for item in value:
            item_shape = shape_of(item)
            if item_shape != element:
                element = unify_shapes(element, item_shape)
        return ("list", element)
    if isinstance(value, dict):
        return ("struct", tuple((str(key), shape_of(item)) for key, item in value.items()))
    raise UnknownType(f"no Arrow type inferred here for a {type(value).__name__}")


def unify_shapes(a: Any, b: Any) -> Any:
    """As `unify`, on shapes."""
    if a == b or b == "null":
        return a
    if a == "null":
        return b
    if {a, b} == {"int", "float"}:
        return "float"
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "list":
        return ("list", unify_shapes(a[1], b[1]))
    if isinstance(a, tuple) and isinstance(b, tuple) and a[0] == b[0] == "struct":
        fields = dict(a[1])
        for name, kind in b[1]:
            fields[name] = unify_shapes(fields[name], kind) if name in fields else kind
        return ("struct", tuple(fields.items()))
    raise UnknownType(f"values of types {a} and {b} in one column")


def arrow_type(shape: Any):
    import pyarrow as pa

    if isinstance(shape, str):
        return getattr(pa, _ARROW_NAMES[shape])()
    if shape[0] == "list":
        return pa.list_(arrow_type(shape[1]))
    return pa.struct([(name, arrow_type(kind)) for name, kind in shape[1]])


def infer_type(value: Any):
    """The Arrow type pyarrow infers for one JSON value (None: null; ints and floats: int64, double)."""
    return arrow_type(shape_of(value))


def unify(a, b):
    """The type both `a` and `b` fit, as pyarrow's permissive promotion finds it for JSON types:
    null gives way to anything, int64 to double, lists and structs field by field (the fields
    of `a` first, then those only `b` has)."""
    import pyarrow as pa

    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    numbers = {"int64", "double"}
    if {str(a), str(b)} == numbers:
        return pa.float64()
    if pa.types.is_list(a) and pa.types.is_list(b):
        return pa.list_(unify(a.value_type, b.value_type))
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields = {a.field(i).name: a.field(i).type for i in range(a.num_fields)}
        for i in range(b.num_fields):
            name, kind = b.field(i).name, b.field(i).type
            fields[name] = unify(fields[name], kind) if name in fields else kind
        return pa.struct(list(fields.items()))
    raise UnknownType(f"values of types {a} and {b} in one column")


def infer_schema(rows: list[dict[str, Any]], columns: list[str]):
    """The schema of `rows` over `columns` (a column a row lacks is null there)."""
    import pyarrow as pa

    shapes: dict[str, Any] = dict.fromkeys(columns, "null")
    for row in rows:
        for column in columns:
            value = row.get(column)
            if value is not None:
                shape = shape_of(value)
                if shape != shapes[column]:
                    shapes[column] = unify_shapes(shapes[column], shape)
    return pa.schema([(column, arrow_type(shape)) for column, shape in shapes.items()])


def unify_schemas(schemas: list) -> Any:
    import pyarrow as pa

    types: dict[str, Any] = {}
    for schema in schemas:
        for field in schema:
            types[field.name] = unify(types[field.name], field.type) if field.name in types else field.type
    return pa.schema(list(types.items()))


def feature_of(arrow_type) -> Any:
    """The `datasets` feature JSON of one Arrow type."""
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        return {arrow_type.field(i).name: feature_of(arrow_type.field(i).type) for i in range(arrow_type.num_fields)}
    if pa.types.is_list(arrow_type):
        return {"feature": feature_of(arrow_type.value_type), "_type": "List"}
    name = str(arrow_type)
    if name in _PLAIN:
        return {"dtype": _DTYPES.get(name, name), "_type": "Value"}
    raise UnknownType(f"no datasets feature written here for the Arrow type {name}")


def features_of(schema) -> dict[str, Any]:
    return {field.name: feature_of(field.type) for field in schema}


def write_arrow_folder(batches: Iterable[bytes], schema, features: dict[str, Any], folder: Path) -> None:
    """`folder` as save_to_disk writes it, from batches of JSONL rows (JSON objects, one a line)."""
    import io

    import pyarrow as pa
    import pyarrow.json as pa_json

    folder.mkdir(parents=True)
    schema = schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    shards: list[Path] = []
    writer = None
    size = rows = 0
    try:
        parse = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        for batch in batches:
            read = pa_json.ReadOptions(use_threads=False, block_size=max(1 << 20, len(batch) + 1))
            table = pa_json.read_json(io.BytesIO(batch), read_options=read, parse_options=parse)
            table = table.select(schema.names).replace_schema_metadata(schema.metadata)
            if writer is None or size >= SHARD_BYTES:
                if writer is not None:
                    writer.close()
                shards.append(folder / f".shard-{len(shards)}.arrow")
                writer = pa.ipc.new_stream(str(shards[-1]), schema)
                size = 0
            writer.write_table(table)
            size += table.nbytes
            rows += table.num_rows
        if writer is None:  # no rows: one empty file, as save_to_disk writes
            shards.append(folder / ".shard-0.arrow")
            writer = pa.ipc.new_stream(str(shards[-1]), schema)
    finally:
        if writer is not None:
            writer.close()
    names = [f"data-{k:05d}-of-{len(shards):05d}.arrow" for k in range(len(shards))]
    for shard, name in zip(shards, names):
        os.replace(shard, folder / name)
    nbytes = sum((folder / name).stat().st_size for name in names)
    info = {
        "citation": "",
        "description": "",
        "features": features,
        "homepage": "",
        "license": "",
        "splits": {"train": {"name": "train", "num_bytes": nbytes, "num_examples": rows, "dataset_name": None}},
    }
    state: dict[str, Any] = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": uuid.uuid4().hex[:16],
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": "train",
    }
    (folder / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    (folder / "state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
