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
from pathlib import Path

import pytest
from conftest import run_cli
from report_helpers import SUMMARY_LOOP_CHARTS, Page, assert_loop_numbers, check_in_browser

LOOP_RUN = Path(__file__).parent / "data" / "loop-run"


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
    assert (
        "round 2 (stopped in step examine, steps done: allocate, answer, correct, restate, select, generate, assemble, "
        "train)" in page
    )
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
