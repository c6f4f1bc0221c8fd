"""`syllabus report`: the page of a real run, opened in a real headless Chromium from file://.

The browser is Debian's `chromium` (.ci/run installs it), driven from the command line:
`--dump-dom` gives the DOM after plotly drew, `--screenshot` a PNG, `--enable-logging=stderr`
the console. Every host name resolves nowhere, so a page that needed the network would show
it (charts missing, console errors). `tests/data/loop-run` holds the records (JSON only: no
models, no cache) of a real two-round loop on the embedded models, for the quick tests; the
slow one reports on a fresh generation (`embedded_run`); the loop's report is checked in
test_distill.py, beside the loop run it reads (`two_rounds`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import run_cli

LOOP_RUN = Path(__file__).parent / "data" / "loop-run"
SUMMARY_LOOP_CHARTS = {"dev_lines", "dev_heatmap", "budgets", "rows", "loss"}


# The browser ------------------------------------------------------------------------------
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: `apt-get install -y --no-install-recommends chromium` (.ci/run does)")
    return found


def browse(page: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """Chromium on `page` with no network (every host resolves nowhere) and its own profile."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=5000",
            "--enable-logging=stderr",
            "--v=0",
            *extra,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


class Page(HTMLParser):
    """The charts of a DOM (drawn or not) and the text of every element with a data- attribute."""

    VOID = frozenset(
        {"meta", "link", "br", "img", "input", "hr", "path", "rect", "line", "circle", "stop", "use", "image"}
    )

    def __init__(self, html: str):
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, chart name of an open figure.chart)
        self.charts: dict[str, set[str]] = {}  # chart name -> classes seen inside it
        self.cells: list[tuple[dict[str, str], list[str]]] = []
        self.open_cells: list[int] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        name = a.get("data-chart") if tag == "figure" else None
        if name is not None:
            self.charts[name] = set()
        inside = [n for _, n in self.stack if n]
        for chart in inside:
            self.charts[chart].update(a.get("class", "").split())
        if tag in self.VOID:
            return
        self.stack.append((tag, name))
        data = {k: v for k, v in a.items() if k.startswith("data-") and k != "data-chart"}
        self.open_cells.append(len(self.cells) if data else -1)
        if data:
            self.cells.append((data, []))

    def handle_endtag(self, tag):
        if tag in self.VOID or not self.stack:
            return
        if tag not in (t for t, _ in self.stack):  # a stray end tag
            return
        while self.stack:  # tolerate an unclosed element
            top, _ = self.stack.pop()
            self.open_cells.pop()
            if top == tag:
                break

    def handle_data(self, data):
        for index in self.open_cells:
            if index >= 0:
                self.cells[index][1].append(data)

    def text(self, **attrs: str) -> list[str]:
        return ["".join(t).strip() for a, t in self.cells if all(a.get(f"data-{k}") == v for k, v in attrs.items())]

    def one(self, **attrs: str) -> str:
        found = self.text(**attrs)
        assert len(found) == 1, (attrs, found)
        return found[0]


def check_in_browser(page: Path, tmp_path: Path, charts: set[str]) -> Page:
    """Open the page as a user would; every chart drawn, no console message, a non-blank picture."""
    raw = page.read_text(encoding="utf-8")
    # Self-contained: no script, style, image or frame from anywhere else.
    assert not re.search(r"""<(script|link|img|iframe|source|embed)\b[^>]*\b(src|href)\s*=""", raw, re.I)
    assert not re.search(r"""url\(\s*['"]?\s*(https?:)?//|@import""", raw, re.I)
    import plotly.offline

    bundle = plotly.offline.get_plotlyjs()
    assert raw.count(bundle) == 1  # plotly.js inlined, once
    outside = raw.replace(bundle, "")
    for script in re.findall(r"<script\b[^>]*>(.*?)</script>", outside, re.S):
        assert not re.search(r"https?://", script), script[:200]

    shown = browse(page, tmp_path, "--dump-dom")
    assert shown.returncode == 0, shown.stderr[-2000:]
    console = [line for line in shown.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = Page(shown.stdout)
    assert set(dom.charts) == charts
    for name, classes in dom.charts.items():
        assert {"plot-container", "main-svg"} <= classes, f"chart {name} was not drawn"

    png = tmp_path / f"{page.stem}.png"
    shot = browse(page, tmp_path, "--window-size=1200,3000", f"--screenshot={png}")
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    from PIL import Image

    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200  # text, bars, lines: far from a blank page
    return dom


def pct(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}%}"


def assert_loop_numbers(dom: Page, run: Path) -> None:
    """The scores and budgets on the page are summary.json's and budgets.json's."""
    summary = json.loads((run / "summary.json").read_text())
    for record in summary["rounds"]:
        k = str(record["round"])
        for node, scores in record["nodes"].items():
            assert dom.one(node=node, round=k) == pct(scores["dev"])
        assert dom.one(**{"mean-round": k}) == pct(record["dev"], 1)
        for node, rows in record["budgets"].items():
            assert dom.one(**{"budget-node": node, "round": k}).startswith(f"{rows} ·")
    assert dom.one(value="best-round") == str(summary["best_round"])
    assert dom.one(value="rounds-finished") == str(len(summary["rounds"]) - 1)


# Quick tests on the records of a real loop ----------------------------------------------------
def test_a_loop_report_opens_offline_with_every_chart_drawn_and_summary_numbers(tmp_path):
    run = shutil.copytree(LOOP_RUN, tmp_path / "distill")
    done = run_cli("report", str(run))
    assert done.returncode == 0, done.stderr
    page = run / "report.html"
    dom = check_in_browser(page, tmp_path, SUMMARY_LOOP_CHARTS)
    assert_loop_numbers(dom, run)
    # Each allocator decision's reason is on the page beside its rows.
    budgets = json.loads((run / "rounds/2/budgets.json").read_text())["decisions"]
    for d in budgets:
        assert dom.one(**{"budget-node": d["node"], "round": "2"}) == f"{d['rows']} · {d['reason']}"
    assert "Not finished" not in page.read_text()  # a finished loop lacks nothing


def test_compare_sets_another_loop_against_this_one_per_node(tmp_path):
    run = shutil.copytree(LOOP_RUN, tmp_path / "distill")
    other = shutil.copytree(LOOP_RUN, tmp_path / "distill-baseline")
    # The other run's last round scored otherwise on one node.
    results = other / "rounds/2/examination/results.json"
    data = json.loads(results.read_text())
    data["dev"]["nodes"]["physics/units"]["accuracy"] = 0.5
    results.write_text(json.dumps(data))
    out = tmp_path / "pages" / "compare.html"
    done = run_cli("report", str(run), "--compare", str(other), "--out", str(out))
    assert done.returncode == 0, done.stderr
    dom = check_in_browser(out, tmp_path, SUMMARY_LOOP_CHARTS | {"compare_nodes", "compare_overall"})
    assert dom.one(compare="distill-baseline", node="physics/units") == "50%"
    assert dom.one(compare="distill-baseline", node="geography/capitals") == "100%"
    assert not (run / "report.html").exists()  # --out is where it goes


ALIGNMENT = {
    "aligned_teacher": "runs/distill/align/teacher/final",
    "mode": "dpo",
    "mode_reason": "the teacher's weights are on this machine",
    "scorer": "icl",
    "influence": None,
    "pairs": 3,
    "pair_levels": {"question": 1, "rationale": 2},
    "nodes": {
        "geography/capitals": {"drafts": 4, "pairs": 2, "noise_floor": 6.4e-06, "score_spread": 0.812, "mode": "dpo"},
        "physics/units": {"drafts": 4, "pairs": 1, "noise_floor": 9.1e-06, "score_spread": 0.305, "mode": "dpo"},
    },
}


def test_where_align_ran_the_report_shows_its_summary_per_node(tmp_path):
    run = shutil.copytree(LOOP_RUN, tmp_path / "distill")
    (run / "align").mkdir()
    (run / "align" / "summary.json").write_text(json.dumps(ALIGNMENT))
    done = run_cli("report", str(run))
    assert done.returncode == 0, done.stderr
    dom = check_in_browser(run / "report.html", tmp_path, SUMMARY_LOOP_CHARTS)
    assert dom.one(value="align-pairs") == "3 (question 1, rationale 2)"
    # node, drafts, score spread, noise floor, pairs, mode: the row's cells, as the summary has them
    assert dom.one(**{"align-node": "geography/capitals"}) == "geography/capitals" + "4" + "0.812" + "6.4e-06" + "2dpo"
    # A run folder that `syllabus align` alone wrote is a report of its own.
    alone = tmp_path / "align-run"
    (alone / "align").mkdir(parents=True)
    (alone / "align" / "summary.json").write_text(json.dumps(ALIGNMENT))
    done = run_cli("report", str(alone))
    assert done.returncode == 0, done.stderr
    page = (alone / "report.html").read_text()
    assert "alignment run" in page and 'data-align-node="physics/units"' in page


def test_a_round_killed_before_its_examination_shows_what_finished_and_names_what_is_missing(tmp_path):
    run = shutil.copytree(LOOP_RUN, tmp_path / "distill")
    (run / "rounds/2/examination/results.json").unlink()
    (run / "rounds/2/round.json").unlink()
    (run / "summary.json").unlink()  # the loop writes it when it ends
    state = json.loads((run / "state.json").read_text())
    state["done"].remove("2:examine")
    state["current"] = "2:examine"
    (run / "state.json").write_text(json.dumps(state))
    done = run_cli("report", str(run))
    assert done.returncode == 0, done.stderr
    assert "round 2: examination/results.json" in done.stderr and "round 2: round.json" in done.stderr
    page = (run / "report.html").read_text()
    assert "round 2 (stopped in step examine, steps done: allocate, correct, generate, assemble, train)" in page
    assert "missing examination/results.json, round.json" in page
    assert "summary.json (written when the loop ends" in page
    dom = Page(page)
    assert dom.one(node="physics/units", round="2") == "missing"
    assert dom.one(node="physics/units", round="1") == "0%"  # what finished is shown
    assert dom.one(**{"budget-node": "physics/units", "round": "2"}).startswith("1 ·")
    assert dom.one(value="best-round") == "0"  # provisional: the highest mean dev so far, the earliest on ties


@pytest.mark.parametrize(
    "make",
    [
        lambda p: p.mkdir(),
        lambda p: (p.mkdir(), (p / "notes.txt").write_text("hello")),
        lambda p: p.write_text("a file"),
        lambda p: None,
        lambda p: (p / "rounds" / "1" / "data").mkdir(parents=True),
    ],
    ids=["empty-folder", "other-files", "a-file", "absent", "generated-rounds-only"],
)
def test_a_folder_that_is_not_a_run_is_exit_2_with_a_clear_message(tmp_path, make):
    target = tmp_path / "x"
    make(target)
    done = run_cli("report", str(target), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert str(target) in done.stderr.replace("\n", "")
    assert re.search(r"not a run folder|no such folder|report a round's data folder", done.stderr)
    assert not (tmp_path / "x" / "report.html").exists()


def test_a_template_override_with_a_syntax_error_is_exit_2_at_its_file_and_line(tmp_path):
    from syllabus.project import init_project

    project = tmp_path / "proj"
    init_project(project)
    run = shutil.copytree(LOOP_RUN, project / "runs" / "distill")
    template = project / "prompts" / "report.html.j2"
    template.write_text("<html>\n<body>\n{% for r in run.rounds %}\n{{ r.index }\n</body>\n", encoding="utf-8")
    done = run_cli("report", str(run), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{template}:4" in done.stderr.replace("\n", "") and "syntax error" in done.stderr
    assert not (run / "report.html").exists()


def test_a_template_override_is_used_and_its_render_error_names_the_line(tmp_path):
    from syllabus.project import init_project

    project = tmp_path / "proj"
    init_project(project)
    run = shutil.copytree(LOOP_RUN, project / "runs" / "distill")
    template = project / "prompts" / "report.html.j2"
    template.write_text(
        "<html><head>{{ marker }}</head><body>\n<p id=best>{{ run.best_round }}</p>\n"
        "{% for r in run.rounds %}<i>{{ r.scores.dev['physics/units'] }}</i>{% endfor %}\n</body></html>\n",
        encoding="utf-8",
    )
    done = run_cli("report", "runs/distill", cwd=project)
    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    assert "<p id=best>0</p>" in page and page.count("<i>0.0</i>") == 3
    template.write_text("<html>\n{{ run.no_such_field.x }}\n</html>\n", encoding="utf-8")
    done = run_cli("report", "runs/distill", cwd=project)
    assert done.returncode == 2 and f"{template}:2" in done.stderr.replace("\n", "")
    assert (run / "report.html").read_text() == page  # the last good page stays


def test_a_file_that_is_not_a_report_is_never_replaced(tmp_path):
    run = shutil.copytree(LOOP_RUN, tmp_path / "distill")
    mine = tmp_path / "notes.html"
    mine.write_text("<html>my notes</html>")
    done = run_cli("report", str(run), "--out", str(mine))
    assert done.returncode == 2 and "not a report" in done.stderr
    assert mine.read_text() == "<html>my notes</html>"


def test_teacher_text_reaches_the_page_as_text_never_as_markup(tmp_path):
    from syllabus.report import write_report

    run = tmp_path / "gen"
    run.mkdir()
    hostile = '</script><script>alert(1)</script><img src="https://example.com/x.png">'
    row = {
        "prompt": [{"role": "user", "content": hostile}],
        "completion": [{"role": "assistant", "content": hostile}],
        "taxonomy_path": "a/b",
        "filtered_by": "",
    }
    (run / "dataset.jsonl").write_text(json.dumps(row) + "\n")
    (run / "dropped.jsonl").write_text(json.dumps({**row, "filtered_by": "truncated"}) + "\n")
    outcome = write_report(run)
    page = outcome.path.read_text()
    assert "<script>alert(1)" not in page and '<img src="https' not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page


def test_a_report_failure_in_the_loop_is_a_warning_not_a_stop(tmp_path, caplog):
    from syllabus.loop.distill import Loop
    from syllabus.project import Project, init_project

    folder = tmp_path / "p"
    init_project(folder, example="distill")
    loop = Loop.__new__(Loop)  # only what _report reads: the run folder and the project
    loop.project = Project.load(folder)
    run = shutil.copytree(LOOP_RUN, tmp_path / "run")
    (run / "report.html").write_text("not ours")  # the report refuses to replace it
    from syllabus.layout import RunLayout

    loop.layout = RunLayout(run)
    with caplog.at_level("WARNING", logger="syllabus.loop.distill"):
        loop._report()
    assert "could not write" in caplog.text and "not a report" in caplog.text
    assert (run / "report.html").read_text() == "not ours"


# Slow: fresh real runs -----------------------------------------------------------------------
@pytest.mark.slow
def test_the_report_of_a_real_generation_shows_summary_numbers_in_the_browser(embedded_run, tmp_path):
    check_generation_report(shutil.copytree(embedded_run, tmp_path / "proj"), tmp_path)


def check_generation_report(project: Path, tmp_path: Path) -> None:
    run = project / "runs" / "default"
    done = run_cli("report", "runs/default", cwd=project)
    assert done.returncode == 0, done.stderr
    summary = json.loads((run / "summary.json").read_text())
    rows = [json.loads(line) for line in (run / "dataset.jsonl").read_text().splitlines()] if summary["rows"] else []
    # The charts this run's data allows: a mix only for a column the kept rows have.
    expected = {"stages", "coverage"} | ({"filters"} if summary["filters"]["counts"] else set())
    expected |= {"lengths"} if rows else set()
    expected |= {f"mix_{c}" for c in ("bloom_level", "level", "difficulty", "strategy") if any(r.get(c) for r in rows)}
    dom = check_in_browser(run / "report.html", tmp_path, expected)
    assert dom.one(total="rows") == str(summary["rows"])
    assert dom.one(total="dropped") == str(summary["dropped"])
    assert dom.one(total="generated") == str(summary["generated"])
    assert dom.one(total="failed_requests") == str(summary["failed_requests"])
    assert dom.one(setting="teacher") == summary["teacher"]
    for name, stage in summary["stages"].items():
        counts = stage_counts(dom, name)
        assert counts == {k: str(stage[k]) for k in ("requested", "from_cache", "answered", "parsed", "kept")}
    for node in summary["nodes"]:
        assert node_rows(dom, node["path"]) == str(node["kept"])
    from syllabus.project import Project

    asked = {n["path"] for n in summary["nodes"]}
    others = [n.path for n in Project.load(project).load_taxonomy().select(None) if n.path not in asked]
    assert others  # the run was asked for one node: the rest of the taxonomy is shown, with no rows
    for path in others:
        assert node_rows(dom, path) == "0"
    for reason, count in summary["filters"]["counts"].items():
        assert dom.one(filter=reason) == f"{reason}{count}"


def stage_counts(dom: Page, stage: str) -> dict[str, str]:
    """The count cells of one stage's row (they follow its `data-stage` row in document order)."""
    index = next(i for i, (a, _) in enumerate(dom.cells) if a.get("data-stage") == stage)
    counts = {}
    for a, t in dom.cells[index + 1 : index + 6]:
        counts[a["data-count"]] = "".join(t).strip()
    return counts


def node_rows(dom: Page, node: str) -> str:
    index = next(i for i, (a, _) in enumerate(dom.cells) if a.get("data-node") == node and "data-round" not in a)
    a, t = dom.cells[index + 1]
    assert a.get("data-count") == "rows"
    return "".join(t).strip()
