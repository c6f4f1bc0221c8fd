"""`syllabus mix RECIPE.yaml`: combine runs and rounds into one dataset by a recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import console, err_console, path_column


def mix(
    recipe: Annotated[
        Path,
        typer.Argument(help="Recipe YAML: sources, node globs with count or share, seed, order.", show_default=False),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            help="Output folder (dataset/, dataset.jsonl, mix.json). "
            "Default: the recipe's out:, else beside the recipe, named after it.",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the recipe and show what it would take; write nothing.")
    ] = False,
) -> None:
    """Mix runs and rounds: per node glob a count or a share of the total, seeded, ordered.

    Example recipe (paths relative to the recipe):

        seed: 7
        order: easy_to_hard      # shuffled | easy_to_hard | interleaved
        total: 1000
        sources: [runs/round1, runs/round2]
        nodes:
          - match: mathematics/linear-algebra
            count: 200
          - match: "mathematics/*"
            share: 0.5

    `syllabus mix recipes/round2.yaml --out mixes/round2`

    Short nodes are never capped silently: the table and mix.json show requested against
    delivered for every entry and node, and why.
    """
    from ..data.mix import mix as run_mix

    outcome = run_mix(recipe, out, write=not dry_run)
    summary = outcome.summary
    table = Table(
        "match",
        "requested",
        "available",
        "delivered",
        "why short",
        title=f"Mix: {summary['delivered']} of {summary['requested']} rows requested"
        + (f" (total {summary['total']})" if summary["total"] else ""),
    )
    for e in outcome.entries:
        quantity = f" (share {e.share:g})" if e.share is not None else ""
        table.add_row(
            escape(e.match) + quantity,
            str(e.requested),
            str(e.available),
            str(e.delivered),
            escape(e.why() or ""),
            style="yellow" if e.short > 0 else None,
        )
    console.print(table)
    nodes = Table(
        path_column("node", [node for e in outcome.entries for node in e.nodes]),
        "entry",
        "available",
        "delivered",
        title="Per node",
    )
    for e in outcome.entries:
        for node, n in e.nodes.items():
            nodes.add_row(escape(node), escape(e.match), str(n["available"]), str(n["delivered"]))
    console.print(nodes)
    sources = ", ".join(f"{escape(s['source'])}: {s['rows']}" for s in summary["sources"])
    console.print(
        f"sources: {sources}"
        + (f"; {summary['duplicates_skipped']} duplicate row(s) skipped" if summary["duplicates_skipped"] else "")
        + f"; order {summary['order']}, seed {summary['seed']}"
    )
    if outcome.short:
        err_console.print(
            f"[yellow]{len(outcome.short)} entr{'y is' if len(outcome.short) == 1 else 'ies are'} short[/] "
            f"of what was asked ({summary['short']} row(s)): the sources do not hold enough rows"
        )
    if dry_run:
        console.print(f"[dim]dry run: nothing written (would write to {escape(summary['out'])})[/]")
        return
    console.print(
        f"[green]wrote {len(outcome.rows)} rows[/] to {escape(str(outcome.outputs['dataset']))} "
        f"(+ dataset.jsonl, {escape(outcome.outputs['mix'].name)})"
    )
