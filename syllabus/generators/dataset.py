"""Write a generated dataset the way people open it: `datasets` folder, JSONL, and a card.

The SFT rows are TRL's conversational prompt-completion format, so
`SFTTrainer(train_dataset=load_from_disk(RUN/dataset))` trains on it as it is.
Everything is written to temporary names and renamed into place, so a kill
never leaves a half-written dataset where a reader would find it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

from ..backends.redact import redact_urls
from ..fsutil import replace_dir

SCHEMA_BATCH = 1000  # rows per Arrow schema inference while the JSONL is written


def write_dataset(rows: Iterable[dict[str, Any]], run_dir: Path, name: str = "dataset") -> dict[str, Path]:
    """`RUN/name/` (save_to_disk) and `RUN/name.jsonl` from rows in any iterable, a batch at a
    time: the JSONL is written as the rows come (the column types inferred batch by batch
    and unified, so a column that is null early and filled later keeps its type), then
    converted to Arrow through a scratch cache. Memory holds a batch, not the dataset;
    both outputs appear only once complete."""
    import pyarrow as pa
    from datasets import Dataset, Features
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()
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
            for batch in _batched(rows):
                schemas.append(pa.Table.from_pylist(list(batch)).schema)
                handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in batch)
            handle.flush()
            os.fsync(handle.fileno())
        schema = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
        features = Features.from_arrow_schema(schema)

        def read_back():
            with open(staged_jsonl, encoding="utf-8") as handle:
                for line in handle:
                    yield json.loads(line)

        dataset = Dataset.from_generator(read_back, features=features, cache_dir=str(scratch / "cache"),
                                         fingerprint=uuid.uuid4().hex)
        dataset.save_to_disk(str(scratch / "dataset"))
        del dataset
        replace_dir(scratch / "dataset", run_dir / name)
        os.replace(staged_jsonl, jsonl)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"dataset": run_dir / name, "jsonl": jsonl}


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


def dataset_card(*, title: str, rows: int, per_node: Counter, difficulties: Counter, nodes: list,
                 stats: dict[str, Any], teacher: str, backend: str, templates: dict[str, dict[str, Any]],
                 settings: dict[str, Any], command: str, filters: dict[str, Any] | None = None) -> str:
    """A README.md for the run: what is in it, where it came from, what was dropped.

    `rows` is the count written, `per_node` and `difficulties` its counts by node and by
    difficulty; `filters` is the filter report (`FilterReport.as_dict()`): rows dropped per
    reason and per evaluation set; the dropped rows themselves are in dropped.jsonl."""
    levels = difficulties
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files: dataset.jsonl",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- synthetic",
        "- glan",
        "- syllabus",
        "---",
        f"# {title}",
        "",
        f"Synthetic instruction data made by [syllabus](https://pypi.org/project/syllabus/) with the GLAN method: "
        f"taxonomy > subjects > syllabi > homework questions > answers. {rows} rows in TRL's conversational "
        "prompt-completion format (`prompt`, `completion`), each with its provenance.",
        "",
        "## Teacher",
        "",
        f"- model: `{teacher}` (backend: {backend})",
        f"- command: `{redact_urls(command)}`",  # --base-url may carry credentials
        "",
        "## Rows per taxonomy node",
        "",
        "| node | requested | delivered | note |",
        "|---|---:|---:|---|",
    ]
    for node in nodes:
        lines.append(f"| `{node.path}` | {node.requested} | {per_node.get(node.path, 0)} | {node.note or ''} |")
    lines += [
        "",
        "## Stages",
        "",
        "| stage | requested | from cache | answered | parsed | kept | failed | unparsed |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for stage, s in stats.items():
        s = s.as_dict() if hasattr(s, "as_dict") else s
        failed = ", ".join(f"{n} {r}" for r, n in s["failed"].items()) or "0"
        unparsed = ", ".join(f"{n} {r}" for r, n in s["unparsed"].items()) or "0"
        lines.append(f"| {stage} | {s['requested']} | {s['from_cache']} | {s['answered']} | {s['parsed']} | "
                     f"{s['kept']} | {failed} | {unparsed} |")
    if filters is not None:
        lines += [
            "",
            "## Filters",
            "",
            f"{filters['rows_in']} rows generated, {filters['kept']} kept, {filters['dropped']} dropped. "
            "Dropped rows are in `dropped.jsonl`, each with its reason (`filtered_by`) and `filter_detail`.",
            "",
            "| filter | dropped |",
            "|---|---:|",
        ]
        lines += [f"| {reason} | {count} |" for reason, count in filters["counts"].items()] or ["| (none enabled) | 0 |"]
        if filters.get("per_eval_set"):
            lines += ["", "Decontamination, rows overlapping each evaluation set:", "",
                      "| evaluation set | rows |", "|---|---:|"]
            lines += [f"| `{name}` | {count} |" for name, count in filters["per_eval_set"].items()]
    lines += ["", "## Difficulty", ""]
    lines += [f"- {level}: {count}" for level, count in sorted(levels.items())] or ["- (none)"]
    lines += ["", "## Templates", "", "| template | version | source |", "|---|---|---|"]
    for name, info in templates.items():
        lines.append(f"| {name} | `{info['version']}` | {info['source']} |")
    lines += ["", "## Settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)
