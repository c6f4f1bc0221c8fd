"""One reader for every source of rows: run folder, save_to_disk folder, JSONL, Parquet.

`stats`, `mix`, decontamination, training, probe splits and probe files all read here,
so they accept the same files and name a bad one the same way:

- a run folder (`RUN/dataset`, else `RUN/dataset.jsonl`; with `RUN/dropped.jsonl` and
  `RUN/summary.json` read when present), or a mix folder, which has the same layout;
- a folder written by `datasets`' save_to_disk (a DatasetDict gives its `train` split,
  or every split where asked);
- JSONL (`.jsonl`, `.ndjson`, `.json`; a `.json` file that is one JSON array also works),
  every broken line named by its number;
- Parquet, read batch by batch, a truncated or broken file named as such.

A path that is a FIFO, a socket or a device is refused before it is opened (it would hang).
Rows come with their position (the JSONL line, else the row index), so any check of a row
can name it (`Rows.where`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..safefile import read_text, require_regular_file

HINT = "give a run folder, a datasets folder (save_to_disk), a .jsonl or a .parquet file"
SAVED_MARKERS = ("state.json", "dataset_info.json", "dataset_dict.json")  # what save_to_disk leaves
RUN_FILES = ("dataset", "dataset.jsonl", "summary.json", "dropped.jsonl", "mix.json")  # what a run or mix leaves
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
JSON_LIMIT = 1 << 30  # a .json array is parsed whole: refuse one past 1 GiB rather than run out of memory
SIDE_FILE_LIMIT = 64 << 20  # summary.json of a run
BATCH = 1024


# Where the rows are ------------------------------------------------------------------
def is_saved_dataset(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_file() for name in SAVED_MARKERS)


@dataclass(frozen=True)
class Located:
    path: Path  # as given
    kind: str  # "run" | "dataset" | "jsonl" | "parquet"
    rows_at: Path | None  # the saved folder or file that holds the rows; None: a run that kept none
    format: str | None  # "dataset" | "jsonl" | "parquet": how rows_at is read

    @property
    def is_run(self) -> bool:
        return self.kind == "run"


def _format_of(path: Path, where: str | Path, hint: str, what: str) -> str:
    """jsonl or parquet by the suffix; `what` names the thing in the message ("" for none)."""
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise UserError(
        f"unsupported {what + ' ' if what else ''}format '{suffix or '(no suffix)'}'"
        + (f": {path}" if where != path else ""),
        where=where,
        hint=hint,
    )


def locate(
    path: str | Path,
    *,
    what: str = "source",
    where: str | None = None,
    missing: str | None = None,
    hint: str = HINT,
    splits: tuple[str, ...] = ("dataset",),
    unsupported: str = "",
) -> Located:
    """Where the rows of `path` are, without reading them (cheap); a UserError for a path we do not read.

    `splits`: the folders of a run folder to take, in order (`train` reads `RUN/train`, the
    probe split, before `RUN/dataset`). `what` names the thing in messages."""
    path = Path(path).expanduser()
    shown: str | Path = where or path
    if not path.exists():
        message = missing or f"{what} not found"
        raise UserError(f"{message}: {path}" if where else message, where=shown, hint=hint)
    if not path.is_dir():
        fmt = _format_of(path, shown, hint, unsupported)
        require_regular_file(path, "file")
        return Located(path, fmt, path, fmt)
    if is_saved_dataset(path):
        return Located(path, "dataset", path, "dataset")
    if not any((path / name).exists() for name in RUN_FILES + tuple(splits)):
        raise UserError(
            "folder holds no dataset: it is not a dataset saved with datasets' save_to_disk, nor a run folder",
            where=path,
            hint="expected a run folder (dataset/, dataset.jsonl, summary.json) or a save_to_disk folder",
        )
    for split in splits:
        if is_saved_dataset(path / split):
            return Located(path, "run", path / split, "dataset")
    if (path / "dataset.jsonl").exists():
        require_regular_file(path / "dataset.jsonl", "dataset file")
        return Located(path, "run", path / "dataset.jsonl", "jsonl")
    return Located(path, "run", None, None)  # a run whose filters dropped everything: summary.json says why


# JSONL -------------------------------------------------------------------------------
def _starts_with_array(path: Path) -> bool:
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    return head.startswith(b"[")


def iter_jsonl(path: Path, *, skipped: list[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, read a line at a time.

    A broken line is a UserError naming `file:line`; with `skipped`, it is noted there and
    passed over instead (for files a killed run may have cut short)."""
    path = require_regular_file(Path(path), "JSONL file")
    if path.suffix.lower() == ".json" and _starts_with_array(path):
        yield from _iter_json_array(path)
        return

    def bad(message: str, number: int, hint: str | None = None) -> None:
        if skipped is None:
            raise UserError(message, where=f"{path}:{number}", hint=hint)
        skipped.append(f"{path}:{number}: {message}")

    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed by the `with` below; its open error is ours to word)
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", where=path) from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad(
                    f"file is not UTF-8 text (line {number}, byte {exc.start}: {exc.reason})",
                    number,
                    "save the file as UTF-8 JSONL",
                )
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                bad(
                    f"line {number} is not valid JSON ({exc.msg})",
                    number,
                    "each line must hold one JSON object; this one is not a JSON line: fix or remove it",
                )
                continue
            if not isinstance(row, dict):
                bad(f"line {number} is not a JSON object", number, "each line must hold one JSON object")
                continue
            yield number, row


def _iter_json_array(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    text = read_text(path, limit=JSON_LIMIT, what="JSON file")
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc.msg}", where=f"{path}:{exc.lineno}", hint=HINT) from None
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise UserError(
                f"record {number} of the JSON array is not a JSON object",
                where=path,
                hint="each record must be a JSON object",
            )
        yield number, record


# Parquet and saved folders -----------------------------------------------------------
def _parquet(path: Path):
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as exc:
        raise UserError(f"cannot read as Parquet: {exc}", where=path, hint=HINT) from None


def _parquet_batches(path: Path, columns: list[str] | None) -> Iterator[list[dict[str, Any]]]:
    handle = _parquet(path)
    done = 0
    try:
        for batch in handle.iter_batches(batch_size=BATCH, columns=columns):
            rows = batch.to_pylist()
            done += len(rows)
            yield rows
    except Exception as exc:
        raise UserError(
            f"cannot read as Parquet (after row {done}): {exc}",
            where=path,
            hint="the file is damaged or cut short; write it again",
        ) from None


def load_saved(folder: Path, *, all_splits: bool = False) -> list:
    """The `datasets.Dataset`(s) of a save_to_disk folder: a DatasetDict's `train` split, or all."""
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(folder))
    except Exception as exc:
        raise UserError(f"cannot read the dataset folder: {exc}", where=folder, hint=HINT) from None
    if isinstance(data, DatasetDict):
        if all_splits:
            return list(data.values())
        if "train" not in data:
            raise UserError(
                f"dataset has splits {', '.join(data)} but no 'train'",
                where=folder,
                hint="save the split to read with save_to_disk on its own",
            )
        return [data["train"]]
    return [data]


# Rows ----------------------------------------------------------------------------------
@dataclass
class Rows:
    """The rows of a located source, streamed as often as asked, each with its position."""

    located: Located
    all_splits: bool = False
    _jsonl: list[tuple[int, dict[str, Any]]] | None = field(default=None, repr=False)
    _saved: list[Any] | None = field(default=None, repr=False)
    _array: bool | None = field(default=None, repr=False)  # a .json file holding one JSON array

    @property
    def path(self) -> Path | None:
        return self.located.rows_at

    @property
    def _at(self) -> Path:
        """rows_at where there is a format to read it by (a run that kept no rows has neither)."""
        assert self.located.rows_at is not None, "locate() names a format only with the rows it reads"
        return self.located.rows_at

    def _jsonl_rows(self) -> list[tuple[int, dict[str, Any]]]:
        if self._jsonl is None:
            self._jsonl = list(iter_jsonl(self._at))
        return self._jsonl

    def _saved_parts(self) -> list[Any]:
        if self._saved is None:
            self._saved = load_saved(self._at, all_splits=self.all_splits)
        return self._saved

    def _load(self) -> None:
        fmt = self.located.format
        if fmt == "jsonl":
            self._jsonl_rows()
        elif fmt == "dataset":
            self._saved_parts()
        elif fmt == "parquet":
            _parquet(self._at)  # a broken footer is found before any row is asked for

    @property
    def columns(self) -> list[str]:
        """Every column a row has (JSONL: the union, in order of first appearance)."""
        self._load()
        fmt = self.located.format
        if fmt == "jsonl":
            seen: dict[str, None] = {}
            for _, row in self._jsonl_rows():
                seen.update(dict.fromkeys(row))
            return list(seen)
        if fmt == "dataset":
            return list(dict.fromkeys(c for part in self._saved_parts() for c in part.column_names))
        if fmt == "parquet":
            return list(_parquet(self._at).schema_arrow.names)
        return []

    def __len__(self) -> int:
        self._load()
        fmt = self.located.format
        if fmt == "jsonl":
            return len(self._jsonl_rows())
        if fmt == "dataset":
            return sum(len(part) for part in self._saved_parts())
        if fmt == "parquet":
            return _parquet(self._at).metadata.num_rows
        return 0

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return self.iter()

    def iter(self, columns: Iterable[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
        """(position, row); `columns` limits what is read from Arrow sources (a cheap pass)."""
        self._load()
        fmt = self.located.format
        if fmt == "jsonl":
            yield from self._jsonl_rows()
            return
        wanted = None if columns is None else [c for c in dict.fromkeys(columns) if c in self.columns]
        position = 0
        if fmt == "parquet":
            for batch in _parquet_batches(self._at, wanted):
                for row in batch:
                    yield position, row
                    position += 1
        elif fmt == "dataset":
            for part in self._saved_parts():
                names = part.column_names if wanted is None else [c for c in wanted if c in part.column_names]
                if not names:
                    position += len(part)
                    continue
                for batch in part.select_columns(names).iter(batch_size=BATCH):
                    values = [batch[c] for c in names]
                    for cells in zip(*values):
                        yield position, dict(zip(names, cells))
                        position += 1

    def where(self, position: int) -> tuple[str, str]:
        """(where, what) of a row for a message: (`file:line`, "line N") or (folder, "row N")."""
        if self.located.format == "jsonl":
            if self._array is None:
                self._array = self._at.suffix.lower() == ".json" and _starts_with_array(self._at)
            if self._array:
                return str(self._at), f"record {position}"
            return f"{self._at}:{position}", f"line {position}"
        return str(self.path), f"row {position}"

    def to_dataset(self, transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        """A `datasets.Dataset` of the rows (DatasetDict: the train split), `transform` applied to
        each. For JSONL, a column whose type differs between rows is named first (Arrow holds one
        type per column), rather than failing inside pyarrow."""
        from datasets import Dataset, concatenate_datasets

        self._load()
        fmt = self.located.format
        if fmt == "dataset":
            parts = self._saved_parts()
            data = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
            return data.map(transform, keep_in_memory=True) if transform is not None else data
        if fmt == "parquet":
            pairs = list(self.iter())
        elif fmt == "jsonl":
            pairs = self._jsonl_rows()
        else:
            return Dataset.from_dict({})
        rows = [transform(row) if transform is not None else row for _, row in pairs]
        if not rows:
            return Dataset.from_dict({})
        kinds = ColumnKinds()
        for (position, _), row in zip(pairs, rows):
            kinds.check(row, position, self.where)
        try:
            return Dataset.from_list(rows)
        except Exception as exc:
            raise UserError(
                f"the rows cannot be held as one dataset: {exc}",
                where=self.path,
                hint="every row must give each column the same type (as datasets and TRL read it)",
            ) from None


def open_rows(path: str | Path, *, all_splits: bool = False, **locate_options) -> Rows:
    return Rows(locate(path, **locate_options), all_splits=all_splits)


# Column types -----------------------------------------------------------------------------
def kind_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class ColumnKinds:
    """The first type each column holds; a row that gives a column another type is named,
    with the row that set it (Arrow, so datasets and TRL, hold one type per column)."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[str, str]] = {}  # column -> (kind, what named the row that set it)

    def check(
        self, row: dict[str, Any], position: int, where: Callable[[int], tuple[str, str]], source: str = ""
    ) -> None:
        """`source`, when given, starts each row's name (`mix`: which of its sources)."""
        for column, value in row.items():
            kind = kind_of(value)
            if kind is None:
                continue
            seen = self.first.get(column)
            if seen is None:
                self.first[column] = (kind, source + where(position)[1])
            elif seen[0] != kind:
                at, label = where(position)
                raise UserError(
                    f"{source}{label}: column '{column}' is {kind} here but {seen[0]} in {seen[1]}",
                    where=at,
                    hint="a dataset holds one type per column (as datasets and TRL read it); make the rows agree",
                )


# A source for stats and mix -------------------------------------------------------------
@dataclass
class Source:
    """Every row of a source in memory, with a run's dropped rows and summary."""

    path: Path
    kind: str  # "run" | "dataset" | "jsonl" | "parquet"
    rows: list[dict[str, Any]]
    dropped: list[dict[str, Any]] | None = None  # a run's dropped.jsonl (None: not a run, or none there)
    summary: dict[str, Any] | None = None  # a run's summary.json (None: absent or unreadable)
    positions: list[int] = field(default_factory=list)  # each row's line (JSONL) or index
    reader: Rows | None = None
    warnings: list[str] = field(default_factory=list)  # run files that were read in part or not at all

    @property
    def is_run(self) -> bool:
        return self.kind == "run"

    def where(self, i: int) -> tuple[str, str]:
        """(where, what) of row `i` (its place in `rows`)."""
        if self.reader is None:
            return str(self.path), f"row {i}"
        return self.reader.where(self.positions[i])


def check_source(path: str | Path, *, where: str | None = None) -> Path:
    """The path if it exists and is of a kind we read; else a UserError (cheap: nothing is read)."""
    return locate(path, where=where).path


def _side_json(path: Path, warnings: list[str]) -> dict[str, Any] | None:
    """A run's summary.json, or None (noted in `warnings`) when it is absent or unreadable:
    stats still reports the rows."""
    if not path.exists():
        return None
    try:
        value = json.loads(read_text(path, limit=SIDE_FILE_LIMIT, what="summary file"))
    except UserError as exc:
        warnings.append(f"{exc.where}: {exc.message}; read without it")
        return None
    except json.JSONDecodeError as exc:
        warnings.append(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); read without it")
        return None
    if not isinstance(value, dict):
        warnings.append(f"{path}: not a JSON object; read without it")
        return None
    return value


def read_source(path: str | Path) -> Source:
    """Every row of a run folder, a datasets folder, a JSONL or a Parquet file."""
    located = locate(path)
    reader = Rows(located) if located.rows_at is not None else None
    pairs = list(reader) if reader is not None else []
    source = Source(
        located.path, located.kind, [row for _, row in pairs], positions=[p for p, _ in pairs], reader=reader
    )
    if located.is_run:
        dropped = located.path / "dropped.jsonl"
        if dropped.exists():
            skipped: list[str] = []
            try:
                source.dropped = [row for _, row in iter_jsonl(dropped, skipped=skipped)]
            except UserError as exc:  # a folder or FIFO where dropped.jsonl should be
                source.warnings.append(f"{exc.where}: {exc.message}; read without the dropped rows")
            if skipped:
                source.warnings.append(
                    f"{len(skipped)} unreadable line(s) of {dropped} passed over (first: {skipped[0]})"
                )
        source.summary = _side_json(located.path / "summary.json", source.warnings)
    return source
