"""Read training and probe data from the files people have, and check it before any training.

A dataset may be a `datasets` folder (save_to_disk), a run folder (its `dataset/`),
JSONL or Parquet. Bad input is named precisely: the missing columns, the first row
with an empty message, the line of a broken JSONL record.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..jsonlio import read_jsonl

SFT_FORMATS = (("prompt", "completion"), ("messages",), ("text",))
DPO_COLUMNS = ("prompt", "chosen", "rejected")


def load_dataset_any(source: str | Path):
    """A `datasets.Dataset` from a saved folder, a run folder, JSONL or Parquet."""
    from datasets import Dataset, load_from_disk

    path = Path(source)
    if not path.exists():
        raise UserError("dataset does not exist", where=path, hint="give a run folder, a datasets folder, JSONL or Parquet")
    if path.is_dir():
        for candidate in (path, path / "train", path / "dataset"):
            if (candidate / "dataset_info.json").is_file() or (candidate / "state.json").is_file():
                try:
                    return load_from_disk(str(candidate))
                except Exception as exc:  # a folder datasets cannot read
                    raise UserError(f"cannot read the dataset folder: {exc}", where=candidate) from None
        raise UserError("folder holds no saved dataset", where=path,
                        hint="expected a folder written by datasets' save_to_disk, or a run folder with dataset/")
    if path.suffix in (".jsonl", ".json"):
        rows = read_jsonl(path)
        return Dataset.from_list(rows) if rows else Dataset.from_dict({})
    if path.suffix == ".parquet":
        return Dataset.from_parquet(str(path))
    raise UserError(f"unknown dataset format '{path.suffix}'", where=path, hint="use .jsonl, .parquet or a datasets folder")


def _check_messages(value: Any, column: str, index: int, where: Path) -> None:
    if isinstance(value, str):
        if not value.strip():
            raise UserError(f"row {index}: '{column}' is empty", where=where)
        return
    if not isinstance(value, list) or not value:
        raise UserError(f"row {index}: '{column}' must be text or a non-empty list of messages", where=where)
    for message in value:
        if not isinstance(message, dict) or not message.get("role") or not isinstance(message.get("content"), str):
            raise UserError(f"row {index}: '{column}' has a message without role or text content", where=where,
                            hint="messages look like {\"role\": \"user\", \"content\": \"...\"}")


def check_training_data(dataset, method: str, source: Path) -> None:
    columns = set(dataset.column_names)
    if len(dataset) == 0:
        raise UserError("dataset is empty", where=source, hint="generate data first with `syllabus generate`")
    if method == "sft":
        chosen = next((fmt for fmt in SFT_FORMATS if set(fmt) <= columns), None)
        if chosen is None:
            raise UserError(f"dataset has none of the SFT formats (columns: {', '.join(sorted(columns)) or 'none'})",
                            where=source, hint="SFT needs prompt + completion, or messages, or text")
    else:
        missing = [c for c in DPO_COLUMNS if c not in columns]
        if missing:
            raise UserError(f"dataset lacks the DPO column(s) {', '.join(missing)} "
                            f"(columns: {', '.join(sorted(columns)) or 'none'})", where=source,
                            hint="DPO needs prompt, chosen and rejected (see `syllabus eval`, which writes pairs)")
        chosen = DPO_COLUMNS
    for index, row in enumerate(dataset.select(range(min(len(dataset), 1000)))):
        for column in chosen:
            _check_messages(row[column], column, index, source)


def question_text(row: dict[str, Any]) -> str:
    """The user's question of a row in any of our formats."""
    for column in ("question", "prompt", "messages"):
        value = row.get(column)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            users = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "user"]
            if users:
                return users[-1]
    return ""


def question_hash(text: str) -> str:
    """Hash of a question with case, spacing and punctuation normalised: the probe-leak key."""
    normal = re.sub(r"[\W_]+", " ", text.casefold()).strip()
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()[:16]
