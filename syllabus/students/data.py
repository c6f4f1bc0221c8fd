"""Training data, checked row by row before any model loads.

A dataset may be a `datasets` folder (save_to_disk), a run folder (its `train/` split, else
its `dataset/`), JSONL or Parquet: the data layer's one reader (`syllabus/data/read.py`).
TRL takes prompt/completion as plain text (standard) or as messages (conversational),
`messages`, or `text`; so do we, and OpenAI content parts too (made plain text, which every
chat template renders). Every row is checked, not a sample: a bad row found by TRL after the
model has loaded costs minutes and shows a traceback; found here, it is one message naming
its file:line (JSONL) or row index.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..data.read import Rows, open_rows
from ..data.rows import cell_problem, has_content_parts, plain_row
from ..errors import UserError

SFT_FORMATS = (("prompt", "completion"), ("messages",), ("text",))
DPO_COLUMNS = ("prompt", "chosen", "rejected")
TRAIN_SPLITS = ("train", "dataset")  # of a run folder: the probe split first, as `probes split` leaves it
_HINT = "give a run folder, a datasets folder, JSONL or Parquet"
_MESSAGES_HINT = 'messages look like {"role": "user", "content": "..."}'


def open_dataset(source: str | Path, *, splits: tuple[str, ...] = TRAIN_SPLITS) -> Rows:
    return open_rows(source, what="dataset", missing="dataset does not exist", hint=_HINT, splits=splits)


def training_format(rows: Rows, method: str, source: Path) -> tuple[str, ...]:
    """The columns TRL will train on, chosen from the columns the rows have."""
    columns = set(rows.columns)
    if len(rows) == 0:
        raise UserError("dataset is empty", where=source, hint="generate data first with `syllabus generate`")
    if method == "sft":
        chosen = next((fmt for fmt in SFT_FORMATS if set(fmt) <= columns), None)
        if chosen is None:
            raise UserError(
                f"dataset has none of the SFT formats (columns: {', '.join(sorted(columns)) or 'none'})",
                where=source,
                hint="SFT needs prompt + completion, or messages, or text",
            )
        return chosen
    missing = [c for c in DPO_COLUMNS if c not in columns]
    if missing:
        raise UserError(
            f"dataset lacks the DPO column(s) {', '.join(missing)} (columns: {', '.join(sorted(columns)) or 'none'})",
            where=source,
            hint="DPO needs prompt, chosen and rejected (see `syllabus eval`, which writes pairs)",
        )
    return DPO_COLUMNS


def check_cells(rows: Rows, columns: Iterable[str]) -> bool:
    """Every row's `columns` as TRL takes them, one format per column across the rows; a
    UserError names the first row that is not. True when some message has content parts."""
    columns = tuple(columns)
    first: dict[str, tuple[str, str]] = {}  # column -> (text | messages, the row that set it)
    parts = False
    for position, row in rows.iter(columns=columns):
        for column in columns:
            value = row.get(column)
            problem = cell_problem(value)
            if problem is None and column == "text" and not isinstance(value, str):
                problem = "must be text"
            if problem is not None:
                where, label = rows.where(position)
                raise UserError(
                    f"{label}: '{column}' {problem}", where=where, hint=_MESSAGES_HINT if "message" in problem else None
                )
            kind = "text" if isinstance(value, str) else "messages"
            if column not in first:
                first[column] = (kind, rows.where(position)[1])
            elif first[column][0] != kind:
                where, label = rows.where(position)
                raise UserError(
                    f"{label}: '{column}' is {kind} here but {first[column][0]} in {first[column][1]}",
                    where=where,
                    hint="TRL trains on one format per dataset: every row plain text "
                    "(standard) or every row a list of messages (conversational)",
                )
            parts = parts or has_content_parts(value)
    return parts


def load_checked(rows: Rows, columns: Iterable[str]):
    """The rows as a `datasets.Dataset` once every row's `columns` passed `check_cells`."""
    parts = check_cells(rows, columns)
    return rows.to_dataset(plain_row if parts else None)


def load_training_data(source: str | Path, method: str):
    """The dataset TRL trains on (`sft` or `dpo`), every row checked first."""
    source = Path(source)
    rows = open_dataset(source)
    return load_checked(rows, training_format(rows, method, rows.path or source))
