"""The generate command's promises around the pipeline: dry runs, clear errors, empty-output reasons."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli

from syllabus.prompts import BUILTIN_DIR
from syllabus.taxonomy.store import Taxonomy
from syllabus.yamlio import dump, load

NODE = "mathematics/linear-algebra"


def test_dry_run_counts_requests_and_calls_nothing(make_project):
    project = make_project(questions=10)
    result = run_cli("generate", "--project", str(project), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Dry run: 7 discipline(s)" in result.stdout
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") >= 4}
    assert set(lines) >= {"subjects", "syllabus", "question", "answer"}
    assert lines["question"].split("│")[2].strip() == "10"  # 10 questions in all, shared by weight
    assert lines["subjects"].split("│")[2].strip() == "7"  # one sample per discipline (tuned project)
    assert not (project / "runs").exists()
    assert not list((project / "taxonomy").rglob("subjects"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nodes", "no-such-node/*"], "matches no node"),
        (["--questions", "-3"], "--questions must be >= 0"),
        (["--teacher", "nonsense"], "unknown teacher 'nonsense'"),
        (["--teacher", "openai:"], "needs a model name"),
    ],
)
def test_bad_options_exit_2_with_a_message(make_project, args, message):
    project = make_project()
    result = run_cli("generate", "--project", str(project), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_broken_template_override_is_named_before_any_work(make_project):
    project = make_project()
    (project / "prompts/question.j2").write_text("[[user]]\n{% for x in %}broken{% endfor %}\n")
    result = run_cli("generate", "--project", str(project))
    assert result.returncode == 2
    assert "question.j2:2" in result.stderr and "template syntax error" in result.stderr
    assert not (project / "runs").exists()


def test_outside_a_project_says_how_to_make_one(tmp_path):
    result = run_cli("generate", cwd=tmp_path)
    assert result.returncode == 2
    assert "no syllabus.yaml" in result.stderr and "syllabus init" in result.stderr


@pytest.mark.slow
def test_a_stage_that_drops_everything_is_named(embedded_run, tmp_path):
    project = shutil.copytree(embedded_run, tmp_path / "empty")
    config = load(project / "syllabus.yaml")
    config["generation"]["stages"]["question"]["max_tokens"] = 2  # no question fits in two tokens
    dump(config, project / "syllabus.yaml")
    shutil.rmtree(project / "runs/default/dataset")
    result = run_cli("generate", "--project", str(project), "--nodes", NODE, "--questions", "2")
    assert result.returncode == 1
    assert "no dataset written" in result.stderr and "stage 'question' kept nothing" in result.stderr
    summary = json.loads((project / "runs/default/summary.json").read_text())
    assert summary["rows"] == 0 and "question" in summary["empty_reason"]
    assert not (project / "runs/default/dataset").exists()


@pytest.mark.slow
def test_expand_writes_a_review_file_that_accept_merges(make_project):
    project = make_project()
    result = run_cli("taxonomy", "expand", "natural-sciences", "--count", "3", "--project", str(project))
    assert result.returncode in (0, 2), result.stderr
    if result.returncode == 2:  # the 135M teacher may write no usable line: then it must say so
        assert "could not read the teacher's proposals" in result.stderr
        return
    review = project / "review/natural-sciences.yaml"
    proposals = load(review)["proposals"]
    assert 1 <= len(proposals) <= 3 and all(p["name"] and p["description"] for p in proposals)
    before = {n.path for n in Taxonomy.load(project / "taxonomy").walk()}
    result = run_cli("taxonomy", "accept", "review/natural-sciences.yaml", "--project", str(project))
    assert result.returncode == 0, result.stderr
    after = {n.path for n in Taxonomy.load(project / "taxonomy").walk()}
    added = after - before
    assert added and all(path.startswith("natural-sciences/") for path in added)
    assert not review.exists()
    assert run_cli("taxonomy", "validate", "--project", str(project)).returncode == 0


def test_accept_rejects_a_file_that_is_not_a_review(make_project):
    project = make_project()
    (project / "bogus.yaml").write_text("hello: world\n")
    result = run_cli("taxonomy", "accept", "bogus.yaml", "--project", str(project))
    assert result.returncode == 2 and "not a review file" in result.stderr


def test_builtin_templates_are_shipped():
    assert {p.stem for p in BUILTIN_DIR.glob("*.j2")} >= {"subjects", "syllabus", "question", "answer", "expand"}


def test_unknown_order_is_refused_before_any_work(make_project):
    project = make_project()
    result = run_cli("generate", "--project", str(project), "--order", "alphabetical")
    assert result.returncode == 2 and "unknown --order 'alphabetical'" in result.stderr
    assert not (project / "runs").exists()


def test_output_that_is_not_a_terminal_gets_a_line_per_stage_every_few_seconds_with_time_left():
    import io

    from rich.console import Console

    from syllabus.cli.common import PlainProgress

    now = [0.0]
    out = io.StringIO()
    progress = PlainProgress(Console(file=out, width=200), every=5.0, clock=lambda: now[0])
    progress.add_total("answer", 10)
    for _ in range(4):  # 4 answers in 2 seconds: too soon for a line
        now[0] += 0.5
        progress.advance("answer")
    assert out.getvalue() == ""
    now[0] += 4.0  # 6 s since the start: a line, at the pace so far (5 answers in 6 s) 6 s left
    progress.advance("answer")
    assert out.getvalue().splitlines() == ["answer: 5/10, 6s, about 6s left"]
    for _ in range(5):
        progress.advance("answer")
    assert out.getvalue().splitlines()[-1] == "answer: 10/10, 6s (done)"


def test_generate_into_a_log_prints_progress_lines_not_bars(embedded_run):
    log = (embedded_run / "generate.stderr").read_text()
    assert "question: " in log and "(done)" in log and "\x1b[" not in log


def test_a_taxonomy_path_is_never_cut_in_an_80_column_table():
    import io

    from rich.console import Console

    from syllabus.cli.distill import round_table

    nodes = {
        "mathematics/arithmetic-and-number-sense": {"dev": 0.25, "exam": 0.5, "dev_logprob": -3.2},
        "reasoning/calendar": {"dev": 1.0, "exam": 0.75, "dev_logprob": -1.0},
    }
    out = io.StringIO()
    Console(file=out, width=80).print(round_table({"round": 1, "nodes": nodes, "dev": 0.6, "exam": 0.6}))
    assert "mathematics/arithmetic-and-number-sense" in out.getvalue() and "…" not in out.getvalue()
