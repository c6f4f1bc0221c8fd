"""`syllabus stats RUN_OR_DATASET`: what is in a run or a dataset, as tables, JSON and charts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import console, err_console


def stats(
    source: Annotated[
        Path, typer.Argument(help="Run folder, datasets folder (save_to_disk), JSONL or Parquet.", show_default=False)
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", help="Folder for stats.json and the charts. Default: RUN/stats, or NAME-stats beside a dataset."
        ),
    ] = None,
    charts: Annotated[bool, typer.Option("--charts/--no-charts", help="Draw the PNG charts.")] = True,
) -> None:
    """Counts per node, stage and filter; Skill-Mix pairs; duplicates; lengths; Bloom, level, difficulty.

    Examples:

    `syllabus stats runs/default`            (tables here; runs/default/stats/stats.json + PNG charts)

    `syllabus stats mixes/round2/dataset.jsonl --out reports/round2`
    """
    from ..data.stats import dataset_stats

    result = dataset_stats(source, out, charts=charts)
    for warning in result.get("warnings", []):  # a damaged summary.json or dropped.jsonl: read in part
        err_console.print(f"[yellow]warning:[/] {escape(warning)}")
    print_stats(result)
    outputs = result["outputs"]
    pngs = [Path(v).name for k, v in outputs.items() if k.endswith("_chart")]
    console.print(
        f"[green]wrote[/] {escape(outputs['json'])}"
        + (f" and {len(pngs)} chart(s): {escape(', '.join(pngs))}" if pngs else "")
    )


def _dist(d: Optional[dict[str, Any]]) -> list[str]:
    if not d:
        return ["-"] * 5
    return [str(d["min"]), f"{d['median']:g}", str(d["p90"]), str(d["max"]), f"{d['mean']:g}"]


def print_stats(result: dict[str, Any]) -> None:
    dropped = result["dropped"]
    title = f"{result['rows']} rows in {escape(result['source'])} ({result['kind']})"
    if dropped is not None:
        title += f"; {dropped} dropped of {result['generated']} generated"
    planned = any("requested" in n for n in result["nodes"])
    columns = (
        ["node", "rows"]
        + (["dropped"] if dropped is not None else [])
        + (["requested", "delivered", "note"] if planned else [])
    )
    console.print(f"[bold]{title}[/]")
    table = Table(*columns, title="Rows per taxonomy node")
    for n in result["nodes"]:
        cells = [escape(n["node"]), str(n["rows"])]
        if dropped is not None:
            cells.append(str(n.get("dropped", 0)))
        if planned:
            cells += [str(n.get("requested", "")), str(n.get("delivered", "")), escape(n.get("note", ""))]
        table.add_row(*cells)
    console.print(table)
    if result["stages"]:
        stages = Table(
            "stage", "requested", "from cache", "answered", "parsed", "failed", "kept", title="Stages (summary.json)"
        )
        for stage, s in result["stages"].items():
            failed = ", ".join(f"{n} {r}" for r, n in {**s.get("failed", {}), **s.get("unparsed", {})}.items()) or "0"
            stages.add_row(
                stage,
                *(str(s.get(k, "")) for k in ("requested", "from_cache", "answered", "parsed")),
                escape(failed),
                str(s.get("kept", "")),
            )
        console.print(stages)
    if result["filters"] is not None:
        filters = Table("filter", "dropped", title="Dropped per filter")
        for reason, count in result["filters"].items():
            filters.add_row(escape(reason), str(count))
        if not result["filters"]:
            filters.add_row("(none)", "0")
        console.print(filters)
    mixed = result.get("skill_mix")
    if mixed:
        ks = ", ".join(f"k={k}: {n}" for k, n in mixed["k"].items()) or "none kept"
        dropped_column = mixed["dropped"] is not None
        pairs = Table(
            "discipline",
            "with discipline",
            "rows",
            *(["dropped"] if dropped_column else []),
            title=f"Skill-Mix: {mixed['rows']} mixed rows ({ks}), disciplines combined",
        )
        for pair in mixed["pairs"]:
            cells = [escape(pair["a"]), escape(pair["b"]), str(pair["rows"])]
            pairs.add_row(*cells, *([str(pair.get("dropped", 0))] if dropped_column else []))
        console.print(pairs)
    quality = Table("measure", "rows", "exact", "normalised", title="Duplicate questions")
    for scope, d in result["duplicates"].items():
        quality.add_row(
            scope,
            str(d["rows_with_question"]),
            f"{d['exact']} ({d['exact_rate']:.1%})",
            f"{d['normalised']} ({d['normalised_rate']:.1%})",
        )
    console.print(quality)
    lengths = Table("words", "min", "median", "p90", "max", "mean", title="Lengths")
    lengths.add_row("question", *_dist(result["lengths"]["question_words"]))
    lengths.add_row("answer", *_dist(result["lengths"]["answer_words"]))
    console.print(lengths)
    for column, label in (
        ("bloom_level", "Bloom level"),
        ("level", "education level"),
        ("difficulty", "difficulty"),
        ("strategy", "answer strategy"),
        ("round", "round"),
        ("mix_source", "mix source"),
    ):
        counts = result.get(column)
        if counts:
            hist = Table(label, "rows", title=label.capitalize())
            for value, count in counts.items():
                hist.add_row(escape(value), str(count))
            console.print(hist)
    missing = [c for c in result.get("missing_columns", []) if c in ("bloom_level", "level", "difficulty")]
    if missing:
        console.print(f"[dim]no {', '.join(missing)} column in these rows[/]")
