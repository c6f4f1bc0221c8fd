"""The LLM judge: its template agrees with its own rubric, its replies parse, and as a
filter it drops rows under the threshold, marks every row it scored, and resumes from
the cache. The end-to-end test runs it against the real llama.cpp server."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_filters import PROVENANCE, row

from syllabus.generators.filters import FilterChain, run_filters
from syllabus.generators.judge import check_rubric, rubric_score
from syllabus.generators.parsers import Judgement, ParseError, parse_judgement
from syllabus.project import FiltersConfig, init_project
from syllabus.prompts import Templates
from syllabus.yamlio import dump, load

NODE = "mathematics/linear-algebra"


# The template against its own rubric --------------------------------------------------
def test_builtin_examples_agree_with_the_rubric():
    assert check_rubric(Templates()) == []


def test_builtin_examples_show_both_sides_of_the_default_threshold():
    threshold = FiltersConfig().judge.threshold
    replies = [
        m["content"]
        for m in Templates().render("judge", question="q", answer="a", discipline="d", subject="s", bloom_level="apply")
        if m["role"] == "assistant"
    ]
    scores = [parse_judgement(reply).score for reply in replies]
    assert any(s >= threshold for s in scores) and any(s < threshold for s in scores)
    assert len(set(scores)) >= 3  # the examples teach the scale, not one answer


def override(tmp_path, source: str) -> Templates:
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "prompts/judge.j2").write_text(source)
    return Templates(tmp_path / "prompts")


RUBRIC = "[[system]]\nFlaws:\n- wrong: it is wrong.\n- vague: it is vague.\n"


@pytest.mark.parametrize(
    "example, problem",
    [
        ("Flaws: wrong\nScore: 5", "example 1 scores 5 but lists 1 flaw(s): the rubric gives 4"),
        ("Flaws: rude\nScore: 4", "example 1 names flaws not in the rubric: rude"),
        ("Looks fine to me.", "example 1 does not parse"),
    ],
)
def test_an_override_whose_examples_break_its_rubric_is_caught(tmp_path, example, problem):
    templates = override(tmp_path, RUBRIC + f"[[user]]\nQ\n[[assistant]]\n{example}\n[[user]]\n{{{{ question }}}}\n")
    assert any(problem in p for p in check_rubric(templates)), check_rubric(templates)


def test_an_override_that_keeps_to_its_rubric_passes(tmp_path):
    templates = override(
        tmp_path, RUBRIC + "[[user]]\nQ\n[[assistant]]\nFlaws: wrong, vague\nScore: 3\n[[user]]\n{{ question }}\n"
    )
    assert check_rubric(templates) == []


def test_generate_refuses_an_inconsistent_judge_before_any_request(tmp_path):
    project = init_project(tmp_path / "proj")
    config = load(project / "syllabus.yaml")
    config["generation"]["filters"]["judge"]["enabled"] = True
    dump(config, project / "syllabus.yaml")
    (project / "prompts").mkdir(exist_ok=True)
    (project / "prompts/judge.j2").write_text(
        RUBRIC + "[[user]]\nQ\n[[assistant]]\nFlaws: none\nScore: 2\n[[user]]\n{{ question }}\n"
    )
    # An unreachable teacher: the rubric check must fail first, so nothing is ever sent.
    result = run_cli(
        "generate", "--project", str(project), "--teacher", "openai:x", "--base-url", "http://127.0.0.1:9/v1"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "judge.j2" in result.stderr and "example 1 scores 2 but lists 0 flaw(s)" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "runs").exists()


def test_threshold_out_of_range_is_refused(tmp_path):
    project = init_project(tmp_path / "proj")
    config = load(project / "syllabus.yaml")
    config["generation"]["filters"]["judge"]["threshold"] = 6
    dump(config, project / "syllabus.yaml")
    result = run_cli("generate", "--project", str(project), "--dry-run")
    assert result.returncode == 2 and "threshold" in result.stderr and "syllabus.yaml" in result.stderr


# Parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Flaws: incorrect, incomplete\nScore: 3", Judgement(3, ("incorrect", "incomplete"))),
        ("**Flaws:** none\n**Score:** 5/5", Judgement(5, ())),
        ("Flaws: Off topic.\nScore: 4 out of 5", Judgement(4, ("off_topic",))),
        ("Hmm. Score: 2\nOn reflection:\nFlaws: unclear\nScore: 4", Judgement(4, ("unclear",))),  # the last one wins
        ("Score: 1", Judgement(1, ())),
    ],
)
def test_judgements_parse(text, expected):
    assert parse_judgement(text) == expected


@pytest.mark.parametrize("text", ["", "Great answer!", "Score: 9", "Score: zero"])
def test_replies_without_a_score_do_not_parse(text):
    with pytest.raises(ParseError):
        parse_judgement(text)


def test_rubric_score_never_falls_below_one():
    assert [rubric_score(["x"] * n) for n in range(7)] == [5, 4, 3, 2, 1, 1, 1]


# The judge as a filter --------------------------------------------------------------------
def scorer(scores: dict[str, Judgement | None]):
    """Scores by answer text: the filter's own interface (a teacher is tested end to end below)."""
    seen = []

    def score(rows):
        seen.extend(r["question_index"] for r in rows)
        return [scores[r["completion"][0]["content"]] for r in rows]

    score.seen = seen
    return score


def judged_config(threshold: int = 3, **more) -> FiltersConfig:
    base = {
        "checks": {"empty_answer": False, "restated_question": False, "truncated": False},
        "exact": "off",
        "minhash": {"enabled": False},
        "judge": {"enabled": True, "threshold": threshold},
    }
    return FiltersConfig.model_validate({**base, **more})


def test_rows_under_the_threshold_are_dropped_and_every_judged_row_keeps_its_score():
    rows = [
        row(0, "What is 2 + 2?", "good"),
        row(1, "Name a prime.", "poor"),
        row(2, "What is pi?", "fine"),
        row(3, "Define a group.", "silent"),
    ]
    score = scorer(
        {
            "good": Judgement(5, ()),
            "poor": Judgement(2, ("incorrect", "off_topic", "unclear")),
            "fine": Judgement(3, ("incomplete", "unclear")),
            "silent": None,
        }
    )
    kept, dropped, report = run_filters(rows, judged_config(3), judge=score)
    assert [r["question_index"] for r in kept] == [0, 2, 3]
    assert [(r["question_index"], r["filtered_by"]) for r in dropped] == [(1, "judge")]
    assert (
        "score 2 < 3" in dropped[0]["filter_detail"] and "incorrect, off_topic, unclear" in dropped[0]["filter_detail"]
    )
    assert [r["judge_score"] for r in kept] == [5, 3, None] and dropped[0]["judge_score"] == 2
    assert report.counts["judge"] == 1 and report.unjudged == 1 and report.as_dict()["unjudged"] == 1
    for out in kept + dropped:
        assert {k: out[k] for k in PROVENANCE} == PROVENANCE
    assert all("judge_score" not in r for r in rows)  # the input rows are not changed


def test_the_judge_only_sees_rows_the_cheaper_filters_kept():
    rows = [row(0, "What is a ring?", "a"), row(1, "What is a ring?", "a"), row(2, "Define a field.", "")]
    score = scorer({"a": Judgement(5, ())})
    config = judged_config(
        3, exact="question", checks={"empty_answer": True, "restated_question": False, "truncated": False}
    )
    _, dropped, _ = run_filters(rows, config, judge=score)
    assert score.seen == [0]  # the duplicate and the empty answer never cost a judge request
    assert {r["question_index"]: r["filtered_by"] for r in dropped} == {1: "exact_duplicate", 2: "empty_answer"}


def test_an_enabled_judge_needs_a_scorer():
    with pytest.raises(ValueError, match="no judge"):
        FilterChain(judged_config())


# End to end against the real server ---------------------------------------------------
@pytest.mark.server
def test_judge_scores_every_surviving_row_through_the_cache(llama_server, make_project):
    project = make_project(questions=4)
    config = load(project / "syllabus.yaml")
    config["generation"]["filters"]["judge"] = {"enabled": True, "threshold": 4}
    dump(config, project / "syllabus.yaml")
    args = [
        "generate",
        "--project",
        str(project),
        "--nodes",
        NODE,
        "--teacher",
        "openai:smollm2",
        "--base-url",
        llama_server.base_url,
    ]
    first = run_cli(*args)
    assert first.returncode in (0, 1), first.stdout + first.stderr  # 1: the judge may drop every row
    run = project / "runs/default"
    summary = json.loads((run / "summary.json").read_text())
    dropped = [json.loads(line) for line in (run / "dropped.jsonl").read_text().splitlines()]
    kept = [json.loads(line) for line in (run / "dataset.jsonl").read_text().splitlines()] if summary["rows"] else []
    reached_judge = kept + [r for r in dropped if r["filtered_by"] == "judge"]
    assert summary["stages"]["judge"]["requested"] == len(reached_judge) > 0
    for r in kept:
        assert r["judge_score"] is None or r["judge_score"] >= 4
    for r in dropped:
        if r["filtered_by"] == "judge":
            assert r["judge_score"] < 4 and "judge score" in r["filter_detail"]
    assert summary["filters"]["unjudged"] == sum(r["judge_score"] is None for r in reached_judge)
    assert "| judge |" in (run / "README.md").read_text() if summary["rows"] else True

    before = llama_server.wait_idle()
    again = run_cli(*args)
    assert again.returncode == first.returncode
    assert llama_server.chat_requests() == before  # every judgement came from the cache
    assert json.loads((run / "summary.json").read_text())["filters"] == summary["filters"] | {
        "seconds": json.loads((run / "summary.json").read_text())["filters"]["seconds"]
    }
