"""How a dropped row names the row it duplicates or overlaps, in its `filter_detail`.

What a row's question and answer are, and the normalisation every filter compares by,
are the data layer's (`syllabus/data/rows.py`, `syllabus/data/keys.py`).
"""

from __future__ import annotations

from typing import Any


def row_ref(row: dict[str, Any], position: int) -> str:
    """How a dropped row names the row it duplicates: node#question_index (skill-mix#question_index
    for a mixed question: its index counts the run's mixed questions), else its position."""
    if isinstance(row.get("skill_mix"), int) and "question_index" in row:
        return f"skill-mix#{row['question_index']}"
    if "taxonomy_path" in row and "question_index" in row:
        return f"{row['taxonomy_path']}#{row['question_index']}"
    return f"row {position}"


def refs_for(rows: list[dict[str, Any]], refs=None):
    """Names of `rows` for drop details: the given ones (positions in the whole run), else computed."""
    return refs if refs is not None else [row_ref(row, i) for i, row in enumerate(rows)]
