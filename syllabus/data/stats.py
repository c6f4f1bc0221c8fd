"""What is in a dataset: `syllabus stats RUN_OR_DATASET`, usable from Python as `dataset_stats`.

For a run folder (`RUN/dataset` + `RUN/dropped.jsonl` + `RUN/summary.json`) or any dataset
(datasets folder, JSONL, Parquet) it counts:

- rows per taxonomy node (with the dropped rows and, from summary.json, requested/delivered);
  a mixed (Skill-Mix) row counts for every node it combines (`taxonomy_paths`);
- mixed rows: how many, per k, and how often each pair of disciplines was combined (`skill_mix`,
  None when no row is mixed);
- the pipeline stages (summary.json, when there) and the rows dropped per filter reason
  (`filtered_by` of dropped.jsonl, with every reason summary.json lists, zeros included);
- duplicates among the rows that have a question: exact (same text) and normalised
  (same text after the filters' normalisation: case, Unicode forms, punctuation, spacing);
- question and answer lengths in words (whitespace-separated): min, median, p90 (nearest
  rank), max, mean, and the rows per length;
- histograms of `bloom_level`, `level` (education level), `difficulty`, `strategy` (the
  answer strategy), `round` and `mix_source` (a mix's rows per source), each in its natural order and only when the
  column is there (None in the dict, and listed in `missing_columns`, when it is not).

`write_stats` writes `stats.json` and PNG charts (matplotlib, Agg, no pyplot state) into the
stats folder (`RUN/stats/` by default); charts a dataset cannot have (no Bloom column) are
removed from the folder so it never shows an older dataset's picture. The folder is claimed
first (`outdir.claim`): a folder `stats` did not make is refused, never cleaned.

A damaged run (summary.json that does not parse or has another shape, broken lines in
dropped.jsonl) is reported as far as it reads, with `warnings` saying what was left out.
"""

from __future__ import annotations

import io
import json
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsutil import atomic_write_bytes, atomic_write_text
from ..outdir import claim
from .keys import normalise
from .levels import ordered_counts
from .read import Source, read_source
from .rows import answer_of, has_column, node_of, nodes_of, question_of

STATS_DIR = "stats"
STATS_FILE = "stats.json"
CHARTS = ("nodes.png", "lengths.png", "bloom.png", "level.png", "difficulty.png")
HISTOGRAMS = ("bloom_level", "level", "difficulty", "strategy", "round", "mix_source")
NO_NODE = "(none)"
MAX_CHART_NODES = 60


# Numbers ------------------------------------------------------------------------------
def distribution(values: list[int]) -> dict[str, Any] | None:
    """min / median / p90 (nearest rank) / max / mean of `values`, and the count of each value
    (`histogram`, what the length chart draws); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {
        "count": len(ordered),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p90": p90,
        "max": ordered[-1],
        "mean": round(sum(ordered) / len(ordered), 2),
        "histogram": {str(k): v for k, v in sorted(Counter(ordered).items())},
    }


def duplicate_rates(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows whose question repeats an earlier row's: exactly, and after normalisation."""
    texts = [question_of(row) for row in rows]
    texts = [t for t in texts if t.strip()]
    exact = len(texts) - len(set(texts))
    normalised = len(texts) - len({normalise(t) for t in texts})
    total = len(texts)
    return {
        "rows_with_question": total,
        "exact": exact,
        "exact_rate": round(exact / total, 4) if total else 0.0,
        "normalised": normalised,
        "normalised_rate": round(normalised / total, 4) if total else 0.0,
    }


def _words(text: str) -> int:
    return len(text.split())


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _counts(value: Any) -> dict[str, int]:
    return {str(k): v for k, v in value.items() if _count(v) is not None} if isinstance(value, dict) else {}


def summary_parts(summary: dict[str, Any] | None, warnings: list[str]) -> dict[str, Any]:
    """The parts of a run's summary.json stats reads, each only when it has the shape
    `generate` writes: a hand-edited or damaged summary is reported in part, never a crash."""
    summary = summary or {}
    parts: dict[str, Any] = {
        "nodes": [],
        "stages": None,
        "failed_requests": _count(summary.get("failed_requests")),
        "filter_reasons": [],
    }
    nodes = summary.get("nodes", [])
    nodes = nodes if isinstance(nodes, list) else [nodes]
    for n in nodes:
        if isinstance(n, dict) and isinstance(n.get("path"), str):
            parts["nodes"].append(
                {
                    "path": n["path"],
                    "requested": _count(n.get("requested")),
                    "delivered": _count(n.get("delivered")),
                    "note": n["note"] if isinstance(n.get("note"), str) else "",
                }
            )
    if len(parts["nodes"]) != len(nodes):
        warnings.append("summary.json: some 'nodes' entries are not {path, requested, delivered}; left out")
    stages = summary.get("stages")
    if isinstance(stages, dict):
        parts["stages"] = {
            str(name): {**s, "failed": _counts(s.get("failed")), "unparsed": _counts(s.get("unparsed"))}
            for name, s in stages.items()
            if isinstance(s, dict)
        }
        if len(parts["stages"]) != len(stages):
            warnings.append("summary.json: some 'stages' entries are not objects; left out")
    elif stages is not None:
        warnings.append("summary.json: 'stages' is not an object; left out")
    filters = summary.get("filters")
    counts = filters.get("counts") if isinstance(filters, dict) else None
    if isinstance(counts, dict):
        parts["filter_reasons"] = [str(reason) for reason in counts]
    elif filters is not None:
        warnings.append("summary.json: 'filters' has no 'counts' object; reasons come from dropped.jsonl alone")
    return parts


def _pairs(rows: list[dict[str, Any]]) -> Counter:
    """(a, b) -> mixed rows combining disciplines a and b (a < b), over rows naming several nodes."""
    pairs: Counter = Counter()
    for row in rows:
        paths = nodes_of(row)
        pairs.update((a, b) if a < b else (b, a) for i, a in enumerate(paths) for b in paths[i + 1 :])
    return pairs


def skill_mix_stats(rows: list[dict[str, Any]], dropped: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Mixed rows (those naming several nodes): their count, their count per k, and how often each
    pair of disciplines was combined among kept rows (and dropped ones, for a run); None when none is."""
    mixed = [row for row in rows if len(nodes_of(row)) > 1]
    mixed_dropped = [row for row in dropped or [] if len(nodes_of(row)) > 1]
    if not mixed and not mixed_dropped:
        return None
    kept, lost = _pairs(mixed), _pairs(mixed_dropped)
    pairs = [
        {
            "a": a,
            "b": b,
            "rows": kept.get((a, b), 0),
            **({"dropped": lost.get((a, b), 0)} if dropped is not None else {}),
        }
        for a, b in sorted(set(kept) | set(lost), key=lambda pair: (-kept.get(pair, 0), -lost.get(pair, 0), pair))
    ]
    return {
        "rows": len(mixed),
        "dropped": len(mixed_dropped) if dropped is not None else None,
        "k": {str(k): n for k, n in sorted(Counter(len(nodes_of(row)) for row in mixed).items())},
        "pairs": pairs,
    }


def _reason(row: dict[str, Any]) -> str:
    value = row.get("filtered_by")
    return "(no reason)" if not value else value if isinstance(value, str) else str(value)


def compute_stats(source: Source) -> dict[str, Any]:
    """Every number of the stats, as a JSON-ready dict."""
    rows, dropped, summary = source.rows, source.dropped, source.summary
    warnings = list(source.warnings)
    parts = summary_parts(summary, warnings)
    per_node = Counter(node for row in rows for node in nodes_of(row) or [NO_NODE])
    dropped_per_node = Counter(node for row in dropped or [] for node in nodes_of(row) or [NO_NODE])
    planned = {n["path"]: n for n in parts["nodes"]}
    nodes = []
    for path in sorted(set(per_node) | set(dropped_per_node) | set(planned)):
        entry: dict[str, Any] = {"node": path, "rows": per_node.get(path, 0)}
        if dropped is not None:
            entry["dropped"] = dropped_per_node.get(path, 0)
        if path in planned:
            entry["requested"] = planned[path].get("requested")
            entry["delivered"] = planned[path].get("delivered")
            if planned[path].get("note"):
                entry["note"] = planned[path]["note"]
        nodes.append(entry)

    filters = None
    if dropped is not None or summary is not None:
        listed = parts["filter_reasons"]
        counted = Counter(_reason(row) for row in dropped or [])
        filters = {reason: counted.get(reason, 0) for reason in listed}
        filters.update({reason: n for reason, n in sorted(counted.items()) if reason not in filters})

    duplicates = {"dataset": duplicate_rates(rows)}
    if dropped:
        duplicates["generated"] = duplicate_rates([*rows, *dropped])

    columns = sorted({key for row in rows for key in row})
    histograms = {
        column: ordered_counts((row.get(column) for row in rows), column) if has_column(rows, column) else None
        for column in HISTOGRAMS
    }
    return {
        "source": str(source.path),
        "kind": source.kind,
        "rows": len(rows),
        "dropped": len(dropped) if dropped is not None else None,
        "generated": len(rows) + len(dropped) if dropped is not None else None,
        "columns": columns,
        "nodes": nodes,
        "stages": parts["stages"],
        "failed_requests": parts["failed_requests"],
        "filters": filters,
        "skill_mix": skill_mix_stats(rows, dropped),
        "duplicates": duplicates,
        "lengths": {
            "question_words": distribution([n for n in map(_words, map(question_of, rows)) if n]),
            "answer_words": distribution([n for n in map(_words, map(answer_of, rows)) if n]),
        },
        **histograms,
        "missing_columns": [c for c in HISTOGRAMS if histograms[c] is None],
        "warnings": warnings,
    }


def check_rows(source: Source) -> None:
    """A dataset with no rows, or rows that are not generated data, is a wrong path, not a result.

    A run whose filters dropped every row is still read (its dropped rows and summary say why)."""
    if source.is_run:
        return
    if not source.rows:
        raise UserError("dataset is empty", where=source.path, hint="give a run folder or a dataset with rows")
    if not any(question_of(row) or answer_of(row) or node_of(row) for row in source.rows):
        columns = sorted({key for row in source.rows for key in row})
        raise UserError(
            f"no row has a question, an answer or a taxonomy_path (columns: {', '.join(columns) or 'none'})",
            where=source.path,
            hint="stats reads generated data: prompt/completion or messages (TRL), or question/answer columns",
        )


# Files --------------------------------------------------------------------------------
def default_out_dir(source: Source) -> Path:
    """RUN/stats for a run; beside anything else (`NAME-stats`), never inside a saved dataset."""
    if source.is_run:
        return source.path / STATS_DIR
    name = source.path.name if source.kind == "dataset" else source.path.stem
    return source.path.parent / f"{name}-{STATS_DIR}"


def dataset_stats(
    path: str | Path, out_dir: str | Path | None = None, *, charts: bool = True, write: bool = True
) -> dict[str, Any]:
    """Read `path` (run folder or dataset), compute the stats, write stats.json and the charts.

    Returns the stats dict; with `write`, its `outputs` names the files written."""
    source = read_source(path)
    check_rows(source)
    result = compute_stats(source)
    if write:
        out = Path(out_dir) if out_dir is not None else default_out_dir(source)
        result["outputs"] = write_stats(result, out, charts=charts)
    return result


def write_stats(result: dict[str, Any], out_dir: Path, *, charts: bool = True) -> dict[str, str]:
    """stats.json and the charts into `out_dir`, once it is claimed as a stats folder: the
    stale charts removed below are only ever ones an earlier `stats` wrote there."""
    out_dir = claim(Path(out_dir), "stats", legacy=(STATS_FILE,), option="--out")
    outputs: dict[str, str] = {}
    written = draw_charts(result, out_dir) if charts else {}
    for name in CHARTS:  # a chart this dataset cannot have must not survive from an older one
        if name not in written.values():
            (out_dir / name).unlink(missing_ok=True)
    outputs.update({key: str(out_dir / name) for key, name in written.items()})
    outputs["json"] = str(out_dir / STATS_FILE)
    atomic_write_text(
        out_dir / STATS_FILE,
        json.dumps({**result, "outputs": outputs}, indent=2, ensure_ascii=False, default=str) + "\n",
    )
    return outputs


# Charts -------------------------------------------------------------------------------
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def draw_charts(result: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """The PNGs the data allows: {chart key: file name}."""
    written: dict[str, str] = {}
    nodes = [n for n in result["nodes"] if n["rows"] or n.get("dropped")]
    if nodes:
        shown = sorted(nodes, key=lambda n: (-(n["rows"] + (n.get("dropped") or 0)), n["node"]))[:MAX_CHART_NODES]
        shown.reverse()  # the largest at the top of a horizontal bar chart
        fig = _figure(8, 1.2 + 0.3 * len(shown))
        ax = fig.add_subplot()
        labels = [n["node"] for n in shown]
        kept = [n["rows"] for n in shown]
        ax.barh(labels, kept, label="rows", color="tab:blue")
        if result["dropped"] is not None:
            ax.barh(labels, [n.get("dropped") or 0 for n in shown], left=kept, label="dropped", color="tab:gray")
            ax.legend(loc="best", fontsize=8)
        title = "Rows per taxonomy node"
        if len(nodes) > len(shown):
            title += f" (largest {len(shown)} of {len(nodes)})"
        ax.set_title(title)
        ax.set_xlabel("rows")
        ax.tick_params(axis="y", labelsize=8)
        _save(fig, out_dir / "nodes.png")
        written["nodes_chart"] = "nodes.png"
    lengths = result["lengths"]
    if result["rows"] and (lengths["question_words"] or lengths["answer_words"]):
        fig = _figure(9, 3.5)
        for i, (key, label) in enumerate((("question_words", "question"), ("answer_words", "answer")), 1):
            ax = fig.add_subplot(1, 2, i)
            d = lengths[key]
            if d:
                words = [int(k) for k in d["histogram"]]
                low, high = min(words), max(words)
                # One bar per word count while that is readable, else 30 even bins.
                bins = [w - 0.5 for w in range(low, high + 2)] if high - low <= 60 else 30
                ax.hist(
                    words,
                    weights=list(d["histogram"].values()),
                    bins=bins,
                    color="tab:green" if i == 1 else "tab:purple",
                )
                ax.axvline(d["median"], color="black", linestyle="--", linewidth=1, label=f"median {d['median']:g}")
                ax.axvline(d["p90"], color="red", linestyle=":", linewidth=1, label=f"p90 {d['p90']:g}")
                ax.legend(fontsize=8)
            ax.set_title(f"{label} length")
            ax.set_xlabel("words")
            ax.set_ylabel("rows")
        _save(fig, out_dir / "lengths.png")
        written["lengths_chart"] = "lengths.png"
    for column, name, title in (
        ("bloom_level", "bloom.png", "Bloom level"),
        ("level", "level.png", "Education level"),
        ("difficulty", "difficulty.png", "Difficulty"),
    ):
        counts = result.get(column)
        if not counts:
            continue
        fig = _figure(max(5, 1 + 0.9 * len(counts)), 3.5)
        ax = fig.add_subplot()
        ax.bar(list(counts), list(counts.values()), color="tab:orange")
        ax.set_title(f"{title} ({sum(counts.values())} rows)")
        ax.set_ylabel("rows")
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        _save(fig, out_dir / name)
        written[f"{column}_chart"] = name
    return written
