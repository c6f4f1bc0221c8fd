"""Write a generated dataset the way people open it: `datasets` folder, JSONL, and a card.

The SFT rows are TRL's conversational prompt-completion format, so
`SFTTrainer(train_dataset=load_from_disk(RUN/dataset))` trains on it as it is.
Everything is written to temporary names and renamed into place, so a kill
never leaves a half-written dataset where a reader would find it.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from ..fsutil import atomic_write_text, replace_dir


def write_dataset(rows: list[dict[str, Any]], run_dir: Path, name: str = "dataset") -> dict[str, Path]:
    from datasets import Dataset
    from datasets.utils.logging import disable_progress_bar

    disable_progress_bar()

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dataset = Dataset.from_list(rows)
    staging = run_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
    dataset.save_to_disk(str(staging))
    replace_dir(staging, run_dir / name)
    jsonl = run_dir / f"{name}.jsonl"
    atomic_write_text(jsonl, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return {"dataset": run_dir / name, "jsonl": jsonl}


def dataset_card(*, title: str, rows: list[dict[str, Any]], nodes: list, stats: dict[str, Any], teacher: str,
                 backend: str, templates: dict[str, dict[str, Any]], settings: dict[str, Any], command: str,
                 filters: dict[str, Any] | None = None) -> str:
    """A README.md for the run: what is in it, where it came from, what was dropped.

    `filters` is the filter report (`FilterReport.as_dict()`): rows dropped per reason and
    per evaluation set; the dropped rows themselves are in dropped.jsonl beside the card."""
    per_node = Counter(row["taxonomy_path"] for row in rows)
    levels = Counter(row["difficulty"] for row in rows)
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
        f"taxonomy > subjects > syllabi > homework questions > answers. {len(rows)} rows in TRL's conversational "
        "prompt-completion format (`prompt`, `completion`), each with its provenance.",
        "",
        "## Teacher",
        "",
        f"- model: `{teacher}` (backend: {backend})",
        f"- command: `{command}`",
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
