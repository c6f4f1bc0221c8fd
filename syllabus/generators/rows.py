"""What the tools that read generated rows share: reading any source, and the level orders.

A *source* is what `syllabus stats` and `syllabus mix` accept:

- a run folder (`RUN/dataset` written by `generate` or `mix`, else `RUN/dataset.jsonl`),
  with `RUN/dropped.jsonl`, `RUN/summary.json` and `RUN/mix.json` read when present;
- a folder written by `datasets`' save_to_disk (a DatasetDict gives its `train` split);
- a JSONL file (line-numbered errors) or a Parquet file.

The level columns have a natural order that both sort and display by: Bloom's revised
taxonomy (`bloom_level`), the education level (`level`), and the GLAN `difficulty`.
Unknown values rank after the known ones, by name; a missing column ranks every row alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import UserError
from ..jsonlio import read_jsonl
from ..taxonomy.model import BLOOM_LEVELS
from .filters.text import answer_of, question_of

_HINT = "give a run folder, a datasets folder (save_to_disk), a .jsonl or a .parquet file"
_SAVED_MARKERS = ("state.json", "dataset_info.json", "dataset_dict.json")


@dataclass
class Source:
    path: Path
    kind: str  # "run" | "dataset" | "jsonl" | "parquet"
    rows: list[dict[str, Any]]
    dropped: list[dict[str, Any]] | None = None  # a run's dropped.jsonl (None: not a run, or none there)
    summary: dict[str, Any] | None = None  # a run's summary.json
    extra: dict[str, Any] = field(default_factory=dict)  # other run files read (mix.json)

    @property
    def is_run(self) -> bool:
        return self.kind == "run"


# Reading ----------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read as JSON: {exc}", where=path) from None
    return value if isinstance(value, dict) else None


def is_saved_dataset(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).is_file() for name in _SAVED_MARKERS)


def _read_saved(folder: Path) -> list[dict[str, Any]]:
    from datasets import DatasetDict, load_from_disk

    try:
        data = load_from_disk(str(folder))
    except Exception as exc:  # noqa: BLE001 - a folder datasets cannot read, for any of its reasons
        raise UserError(f"cannot read the dataset folder: {exc}", where=folder, hint=_HINT) from None
    if isinstance(data, DatasetDict):
        if "train" not in data:
            raise UserError(f"dataset has splits {', '.join(data)} but no 'train'", where=folder,
                            hint="save the split to read with save_to_disk on its own")
        data = data["train"]
    return data.to_list()


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise UserError(f"cannot read as Parquet: {exc}", where=path, hint=_HINT) from None


def check_source(path: str | Path, *, where: str | None = None) -> Path:
    """The path if it exists and is of a kind we read; else a UserError (cheap: nothing is read)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"source not found: {path}" if where else "source not found", where=where or path, hint=_HINT)
    if path.is_file() and path.suffix.lower() not in (".jsonl", ".json", ".ndjson", ".parquet", ".pq"):
        raise UserError(f"unsupported format '{path.suffix or '(no suffix)'}': {path}", where=where or path,
                        hint=_HINT)
    return path


def load_source(path: str | Path) -> Source:
    """Read every row of a run folder, a datasets folder, a JSONL or a Parquet file."""
    path = check_source(path)
    if path.is_file():
        if path.suffix.lower() in (".parquet", ".pq"):
            return Source(path, "parquet", _read_parquet(path))
        return Source(path, "jsonl", read_jsonl(path))
    if is_saved_dataset(path):
        return Source(path, "dataset", _read_saved(path))
    run_files = [path / name for name in ("dataset", "dataset.jsonl", "summary.json", "dropped.jsonl", "mix.json")]
    if not any(p.exists() for p in run_files):
        raise UserError("folder holds no dataset", where=path,
                        hint="expected a run folder (dataset/, dataset.jsonl, summary.json) or a save_to_disk folder")
    if is_saved_dataset(path / "dataset"):
        rows = _read_saved(path / "dataset")
    elif (path / "dataset.jsonl").is_file():
        rows = read_jsonl(path / "dataset.jsonl")
    else:
        rows = []  # a run whose filters dropped everything: summary.json says why
    dropped = read_jsonl(path / "dropped.jsonl") if (path / "dropped.jsonl").is_file() else None
    extra = {}
    mix = _read_json(path / "mix.json")
    if mix is not None:
        extra["mix"] = mix
    return Source(path, "run", rows, dropped=dropped, summary=_read_json(path / "summary.json"), extra=extra)


# What a row says ----------------------------------------------------------------------
def question(row: dict[str, Any]) -> str:
    """The user's question: `prompt`/`messages` (TRL formats), else a `question` text column."""
    text = question_of(row)
    if not text and isinstance(row.get("question"), str):
        return row["question"]
    return text


def answer(row: dict[str, Any]) -> str:
    text = answer_of(row)
    if not text and isinstance(row.get("answer"), str):
        return row["answer"]
    return text


def node_of(row: dict[str, Any]) -> str:
    value = row.get("taxonomy_path")
    return value if isinstance(value, str) else ""


def has_column(rows: Iterable[dict[str, Any]], column: str) -> bool:
    """True when any row carries a non-empty value in `column`."""
    return any(row.get(column) not in (None, "") for row in rows)


# The level orders ---------------------------------------------------------------------
_BLOOM_PREFIXES = (("rememb", "knowledge", "recall"), ("understand", "comprehen"), ("appl",), ("analy",),
                   ("evaluat",), ("creat", "synthes"))
EDUCATION_LEVELS = (
    ("preschool", "pre-school", "kindergarten", "early years"),
    ("elementary", "primary", "grade school"),
    ("middle school", "junior high", "lower secondary"),
    ("high school", "secondary", "upper secondary", "pre-university", "sixth form", "a-level"),
    ("undergraduate", "college", "bachelor", "university", "introductory university"),
    ("graduate", "master", "postgraduate", "post-graduate"),
    ("doctoral", "phd", "ph.d", "research", "doctorate"),
)
DIFFICULTIES = ("single-session", "two-session")
UNKNOWN = 99  # rank of a value we do not know: after every known one


def _clean(value: Any) -> str:
    return " ".join(str(value).casefold().replace("_", " ").split()) if value not in (None, "") else ""


def bloom_rank(value: Any) -> int:
    """remember < understand < apply < analyse < evaluate < create (also -ing forms, 'analyze',
    1..6); unknown after them, missing last."""
    text = _clean(value)
    if not text:
        return UNKNOWN + 1
    if text.isdigit() and 1 <= int(text) <= 6:
        return int(text) - 1
    for rank, prefixes in enumerate(_BLOOM_PREFIXES):
        if text.startswith(prefixes):
            return rank
    return UNKNOWN


def level_rank(value: Any) -> int:
    """Education level: preschool < elementary < middle school < high school < undergraduate <
    graduate < doctoral; an exact name first, else the longest name found in the text (so
    'undergraduate level' is never read as 'graduate'); unknown after them, missing last."""
    text = _clean(value)
    if not text:
        return UNKNOWN + 1
    for rank, names in enumerate(EDUCATION_LEVELS):
        if text in names:
            return rank
    found = [(len(name), rank) for rank, names in enumerate(EDUCATION_LEVELS) for name in names if name in text]
    return max(found)[1] if found else UNKNOWN


def difficulty_rank(value: Any) -> int:
    text = _clean(value).replace(" ", "-")
    if not text:
        return UNKNOWN + 1
    return DIFFICULTIES.index(text) if text in DIFFICULTIES else UNKNOWN


RANKS = {"bloom_level": bloom_rank, "level": level_rank, "difficulty": difficulty_rank}


def ordered_counts(values: Iterable[Any], column: str) -> dict[str, int]:
    """A histogram of a level column in its natural order; missing values counted as '(none)'."""
    counts: dict[str, int] = {}
    for value in values:
        key = "(none)" if value in (None, "") else str(value)
        counts[key] = counts.get(key, 0) + 1
    rank = RANKS.get(column)
    if rank is None:  # numbers in numeric order (round 2 before round 10), then text
        def plain(item: tuple[str, int]) -> tuple[int, float, str]:
            try:
                return (0, float(item[0]), item[0])
            except ValueError:
                return (1, 0.0, item[0])

        return dict(sorted(counts.items(), key=plain))
    return dict(sorted(counts.items(), key=lambda kv: (rank(None if kv[0] == "(none)" else kv[0]), kv[0])))
