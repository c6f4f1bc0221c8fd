"""A `datasets` save_to_disk folder written with pyarrow alone, for rows of JSON types.

What `load_from_disk` reads (datasets 2.x to 5.x): `data-KKKKK-of-NNNNN.arrow` files in
Arrow's IPC stream format, whose schema carries the features as JSON under the metadata key
"huggingface"; `dataset_info.json` with the same features; `state.json` naming the files, a
fingerprint and the split. `datasets` checks on load that the features describe the
files' schema, so the features are derived from that schema here as
`datasets.Features.from_arrow_schema` derives them (tests/test_data_layer.py compares the
two, and reads the folder back with `load_from_disk`). Shards close at about 500 MB, as
`save_to_disk` cuts them.
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


def write_arrow_folder(batches: Iterable[list[dict[str, Any]]], schema, features: dict[str, Any], folder: Path) -> None:
    """`folder` as save_to_disk writes it, from lists of rows that all have `schema`'s columns."""
    import pyarrow as pa

    folder.mkdir(parents=True)
    schema = schema.with_metadata({"huggingface": json.dumps({"info": {"features": features}})})
    shards: list[Path] = []
    writer = None
    size = rows = 0
    try:
        for batch in batches:
            table = pa.Table.from_pylist(batch, schema=schema)
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
