"""After the stages: the spooled rows through the filters, a chunk at a time, then out to the
dataset (in the order asked for) and `dropped.jsonl`. Memory holds a chunk of rows, never the
run. Apart from the run so that a caller with rows of its own can filter and write them alike."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..data.rows import nodes_of
from ..data.write import remove_dataset, write_dataset
from ..fsutil import atomic_writer
from ..progress import Progress
from .filters import CHUNK, EvalSet, FilterChain, FilterReport, mark
from .spool import RowSpool

DROPPED_FILE = "dropped.jsonl"
ORDER_FIELDS = ("taxonomy_path", "subject", "level", "bloom_level", "difficulty")  # what order_rows reads


@dataclass
class Filtered:
    """What the filters and writers made of the spooled rows."""

    report: FilterReport
    outputs: dict[str, Path] = field(default_factory=dict)  # dropped, and dataset + jsonl when rows were kept
    kept: int = 0
    dropped: int = 0
    per_node: Counter = field(default_factory=Counter)
    difficulties: Counter = field(default_factory=Counter)


def filter_and_write(
    spool: RowSpool,
    run_dir: Path,
    settings,
    eval_sets: list[EvalSet],
    progress: Progress,
    score: Callable[[list[dict]], list] | None = None,
    grade: Callable[[list[dict]], list] | None = None,
) -> Filtered:
    """Run the filters over the spooled rows a chunk at a time: dropped rows stream into
    dropped.jsonl (written every run, empty or not, so it never describes an older run), kept
    rows out to the dataset in the order asked for. The spool is already in taxonomy order, so
    in that order the kept rows go straight to the writer; a curriculum order needs them all
    first, so they wait in a second spool."""
    chain = FilterChain(settings.filters, eval_sets=eval_sets, judge=score, grade=grade)
    progress.add_total("filters", len(spool))
    filtered = Filtered(chain.report)
    with atomic_writer(run_dir / DROPPED_FILE) as dropped_file:
        kept = _kept(spool, chain, dropped_file, filtered, progress)
        if settings.order == "taxonomy":
            first = next(kept, None)
            if first is not None:
                ordered = (row for _, row in itertools.chain([first], kept))
                filtered.outputs.update(write_dataset(_counted(ordered, filtered), run_dir))
        else:
            with RowSpool(run_dir) as kept_rows:
                order_keys: list[dict[str, Any]] = []  # the few fields the curriculum orders read, per kept row
                for key, row in kept:
                    kept_rows.add(*key, row)
                    order_keys.append({"_key": key, **{name: row.get(name) for name in ORDER_FIELDS}})
                if order_keys:
                    from ..data.mix import order_rows

                    keys = [light["_key"] for light in order_rows(order_keys, settings.order, settings.seed)]
                    del order_keys
                    filtered.outputs.update(write_dataset(_counted(kept_rows.rows(keys), filtered), run_dir))
    filtered.outputs["dropped"] = run_dir / DROPPED_FILE
    if not filtered.kept:
        remove_dataset(run_dir)  # an older run's dataset must not pass for this one's
    return filtered


def _kept(
    spool: RowSpool, chain: FilterChain, dropped_file: IO[str], filtered: Filtered, progress: Progress
) -> Iterator[tuple[tuple[int, int], dict[str, Any]]]:
    """The rows the filters keep, with their keys, in taxonomy order; the dropped ones written
    to `dropped_file` on the way. Counts both in `filtered`."""
    for chunk in spool.chunks(CHUNK):
        rows = [row for _, row in chunk]
        for (key, _), row, verdict in zip(chunk, rows, chain.run(rows)):
            if verdict is not None:
                dropped_file.write(json.dumps(mark(row, verdict), ensure_ascii=False) + "\n")
                filtered.dropped += 1
                continue
            filtered.kept += 1
            yield key, mark(row, None)
        progress.advance("filters", len(chunk))


def _counted(rows: Iterable[dict[str, Any]], filtered: Filtered) -> Iterator[dict[str, Any]]:
    """The rows, counted per node (a mixed row for each node it combines) and difficulty on their
    way to the writer (for the card)."""
    for row in rows:
        filtered.per_node.update(nodes_of(row))
        filtered.difficulties[row["difficulty"]] += 1
        yield row
