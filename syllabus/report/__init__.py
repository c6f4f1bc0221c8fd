"""`syllabus report RUN`: one self-contained HTML page of a generation run or a loop run.

model.py reads the run into a plain dict, figures.py draws its charts with plotly, and
render.py fills the jinja2 template and writes the page (plotly.js inlined once, no network
at view time). `distill` calls `write_report` after every round, so a loop can be watched.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class ReportOutcome:
    path: Path
    kind: str  # "generate" | "loop" | "align"
    charts: list[str]
    missing: list[str]  # what the run lacks (a killed round's files, a summary not written yet)
    seconds: float
    bytes: int


def write_report(
    run: str | Path,
    out: str | Path | None = None,
    *,
    compare: Sequence[str | Path] = (),
    template_dir: str | Path | None = None,
    taxonomy: list[str] | None = None,
) -> ReportOutcome:
    """Read `run`, draw its charts, render the template (the project's override in
    `template_dir` if it has one) and write the page to `out` (default RUN/report.html).
    `taxonomy` (the project's node paths) adds the nodes a generation run was not asked for."""
    import plotly.offline

    from .figures import generation_charts, loop_charts
    from .model import compare_entry, read_run
    from .render import render_page, template_file, write_page

    started = time.perf_counter()
    model = read_run(run, taxonomy=taxonomy)
    target = Path(out) if out is not None else Path(run) / REPORT_FILE
    if model["kind"] == "loop":
        model["compare"] = [compare_entry(read_run(other)) for other in compare]
        charts = loop_charts(model)
    else:
        if compare:
            from ..errors import UserError

            raise UserError("--compare is for loop runs: this is a generation run", where=str(run))
        charts = generation_charts(model) if model["kind"] == "generate" else {}
    template = template_file(template_dir)
    model["template"] = "built-in" if template.parent == Path(__file__).parent else str(template)
    page = render_page(model, charts, plotly.offline.get_plotlyjs(), template=template)
    write_page(target, page)
    missing = [*model["missing"]] + [
        f"round {r['index']}: {name}" for r in model.get("rounds", []) for name in r["missing"]
    ]
    return ReportOutcome(
        target, model["kind"], sorted(charts), missing, time.perf_counter() - started, len(page.encode("utf-8"))
    )


def model_of(run: str | Path) -> dict[str, Any]:
    """The report's numbers without charts or page (for tests and other tools)."""
    from .model import read_run

    return read_run(run)
