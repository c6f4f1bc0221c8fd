"""The one writer of a dataset: a `datasets` folder (save_to_disk) and its JSONL beside it.

Rows are written in TRL's formats as they are, so `SFTTrainer(train_dataset=load_from_disk(...))`
trains on the folder unchanged. Everything is written under a temporary name and renamed
into place, so a kill never leaves a half-written dataset where a reader would find it.

The folder is written with pyarrow alone (arrow_folder.py): importing `datasets` costs a
run about 1 s and 90 MB on these cores, for a format it reads back itself. A schema that
module cannot describe as `datasets` features is written through `datasets` as before.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..fsutil import replace_dir
from .rows import plain_row

SCHEMA_BATCH = 1000  # rows per Arrow schema inference while the JSONL is written


def write_dataset(rows: Iterable[dict[str, Any]], run_dir: Path, name: str = "dataset") -> dict[str, Path]:
    """`RUN/name/` (save_to_disk) and `RUN/name.jsonl` from rows in any iterable, a batch at a
    time: the JSONL is written as the rows come (the column types inferred batch by batch
    and unified, so a column that is null early and filled later keeps its type), then
    parsed from it into Arrow shards (arrow_folder.py). Memory holds a batch, not the dataset;
    both outputs appear only once complete. Text-only content parts are written as their
    text (`rows.plain_row`): Arrow cannot hold a conversation that mixes the two forms."""
    from .arrow_folder import UnknownType, features_of, infer_schema, unify_schemas, write_arrow_folder

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    jsonl = run_dir / f"{name}.jsonl"
    # One fixed staging name, cleared first: a write killed half-way leaves nothing behind
    # once the next one has run.
    scratch = run_dir / f".{name}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        staged_jsonl = scratch / "rows.jsonl"
        schemas = []
        with open(staged_jsonl, "w", encoding="utf-8") as handle:
            for batch in _batched(map(plain_row, rows)):
                # Every column any row of the batch has (pyarrow infers from the first row's keys
                # alone: a Skill-Mix row's `taxonomy_paths` after single-node rows would be lost).
                columns = list(dict.fromkeys(key for row in batch for key in row))
                schemas.append(_schema_of(batch, columns, infer_schema))
                handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in batch)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            schema = unify_schemas(schemas)
            features = features_of(schema)
        except UnknownType:
            _write_with_datasets(staged_jsonl, schemas, scratch)
        else:
            write_arrow_folder(_line_batches(staged_jsonl), schema, features, scratch / "dataset")
        replace_dir(scratch / "dataset", run_dir / name)
        os.replace(staged_jsonl, jsonl)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"dataset": run_dir / name, "jsonl": jsonl}


def _schema_of(batch: list[dict[str, Any]], columns: list[str], infer_schema):
    """The batch's schema as arrow_folder infers it; where it cannot, as pyarrow does (whose own
    error, for values no column can hold, is the one a user sees)."""
    from .arrow_folder import UnknownType

    try:
        return infer_schema(batch, columns)
    except UnknownType:
        import pyarrow as pa

        return pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in batch]).schema


def _line_batches(path: Path, size: int = SCHEMA_BATCH):
    """The JSONL file's lines, `size` at a time, as bytes."""
    with open(path, "rb") as handle:
        while lines := list(itertools.islice(handle, size)):
            yield b"".join(lines)


def _write_with_datasets(staged_jsonl: Path, schemas: list, scratch: Path) -> None:
    """`scratch/dataset` through `datasets` itself: columns whose types arrow_folder.py does not
    know, or does not unify (pyarrow's permissive promotion may)."""
    import pyarrow as pa
    from datasets import Dataset, Features
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
    schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])

    def read_back():
        with open(staged_jsonl, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                yield {c: row.get(c) for c in schema.names}  # a column a row lacks is null there

    dataset = Dataset.from_generator(
        read_back,
        features=Features.from_arrow_schema(schema),
        cache_dir=str(scratch / "cache"),
        fingerprint=uuid.uuid4().hex,
    )
    dataset.save_to_disk(str(scratch / "dataset"))
    del dataset


def _batched(rows: Iterable[dict[str, Any]]):
    """Lists of SCHEMA_BATCH rows (itertools.batched arrives only in Python 3.12)."""
    rows = iter(rows)
    while batch := list(itertools.islice(rows, SCHEMA_BATCH)):
        yield batch


def remove_dataset(run_dir: Path, name: str = "dataset") -> None:
    """Take an older run's dataset out of the folder, so it is never read as this run's."""
    shutil.rmtree(Path(run_dir) / name, ignore_errors=True)
    for leftover in (Path(run_dir) / f"{name}.jsonl", Path(run_dir) / "README.md"):
        leftover.unlink(missing_ok=True)


def save_dataset(dataset, target: Path) -> Path:
    """A `datasets.Dataset` saved at `target` in one rename (staged beside it under one fixed
    name that the next save clears, so a killed save leaves nothing a reader would take)."""
    target = Path(target)
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    dataset.save_to_disk(str(staging))
    replace_dir(staging, target)
    return target
