"""The dataset card of a run: a README.md saying what is in it and where it came from.

The rows themselves are written by `data/write.py`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from ..backends.redact import redact_urls


def dataset_card(
    *,
    title: str,
    rows: int,
    per_node: Counter,
    difficulties: Counter,
    nodes: list,
    stats: dict[str, Any],
    teacher: str,
    backend: str,
    templates: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    command: str,
    filters: dict[str, Any] | None = None,
) -> str:
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
        "| node | requested | replaced | kept | note |",
        "|---|---:|---:|---:|---|",
    ]
    for node in nodes:
        kept = per_node.get(node.path, 0)
        lines.append(f"| `{node.path}` | {node.requested} | {node.replaced} | {kept} | {node.note or ''} |")
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
        lines.append(
            f"| {stage} | {s['requested']} | {s['from_cache']} | {s['answered']} | {s['parsed']} | "
            f"{s['kept']} | {failed} | {unparsed} |"
        )
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
        lines += [f"| {reason} | {count} |" for reason, count in filters["counts"].items()] or [
            "| (none enabled) | 0 |"
        ]
        if filters.get("per_eval_set"):
            lines += [
                "",
                "Decontamination, rows overlapping each evaluation set:",
                "",
                "| evaluation set | rows |",
                "|---|---:|",
            ]
            lines += [f"| `{name}` | {count} |" for name, count in filters["per_eval_set"].items()]
    lines += ["", "## Difficulty", ""]
    lines += [f"- {level}: {count}" for level, count in sorted(levels.items())] or ["- (none)"]
    lines += ["", "## Templates", "", "| template | version | source |", "|---|---|---|"]
    for name, info in templates.items():
        lines.append(f"| {name} | `{info['version']}` | {info['source']} |")
    lines += ["", "## Settings", "", "```json", json.dumps(settings, indent=2, sort_keys=True), "```", ""]
    return "\n".join(lines)
