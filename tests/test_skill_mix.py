"""Skill-Mix questions: k concepts of k different disciplines in one question.

The draw is seeded and crosses disciplines; the share of the budget is exact at small totals;
a mixed row names every discipline it combines and `stats`, `mix` and the run's counts credit
each; the rubric's template agrees with itself and the program's points (the length, the
literal-name rule, the majority) are right; bad settings stop with file:line. The end-to-end
test runs a real llama.cpp server.
"""

from __future__ import annotations

import json
import re
import textwrap
from fractions import Fraction
from pathlib import Path

import pytest
from conftest import run_cli, tune_project
from test_stats import make_row, make_run, write_jsonl

from syllabus.data.mix import mix
from syllabus.data.read import read_source
from syllabus.data.shares import allocate
from syllabus.data.stats import compute_stats
from syllabus.errors import UserError
from syllabus.generators.filters import FilterChain
from syllabus.generators.job import GenerateOptions, dry_run, prepare
from syllabus.generators.parsers import ParseError
from syllabus.generators.skill_mix import draw_mix, mixed_count, pairs_of, split_budget
from syllabus.generators.skill_mix_judge import (
    SkillGrade,
    award,
    check_rubric,
    count_sentences,
    named_literally,
    parse_skill_grade,
)
from syllabus.project import CONFIG_FILE, FiltersConfig, Project, init_project
from syllabus.prompts import Templates
from syllabus.taxonomy.curriculum import Session, Subject
from syllabus.taxonomy.model import Node
from syllabus.yamlio import dump, load

PATHS = ("humanities/ethics", "mathematics/probability", "natural-sciences/chemistry", "natural-sciences/physics")


def curricula(tmp_path: Path) -> list[tuple[Node, list[Subject]]]:
    """Four disciplines, each with two courses of two sessions whose concepts name their discipline."""
    out = []
    for path in PATHS:
        node = Node(path, tmp_path / path, "discipline", path.rsplit("/", 1)[-1].title(), "")
        slug = node.slug
        subjects = [
            Subject(
                f"{slug} {c}",
                "undergraduate",
                [],
                [Session(f"{slug} {c} session {s}", [f"{slug}-{c}{s}-{i}" for i in range(3)]) for s in range(2)],
            )
            for c in range(2)
        ]
        out.append((node, subjects))
    return out


def draw(pool, index, *, seed=0, k=2, round_index=0):
    return draw_mix(
        pool,
        index,
        seed=seed,
        k=k,
        sentences=4,
        bloom={"apply": 1.0, "analyse": 1.0},
        strategies={"direct": 1.0, "step_by_step": 1.0},
        round_index=round_index,
    )


def signature(item) -> list:
    return [(p.node.path, p.subject.name, p.session_index, p.concept) for p in item.parts] + [item.bloom, item.strategy]


# The draw and the budget ------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 4])
def test_the_draw_is_seeded_and_crosses_disciplines(tmp_path, k):
    pool = curricula(tmp_path)
    items = [draw(pool, i, k=k) for i in range(60)]
    assert [signature(it) for it in items] == [signature(draw(pool, i, k=k)) for i in range(60)]  # same seed, same
    assert [signature(draw(list(reversed(pool)), i, k=k)) for i in range(60)] == [signature(it) for it in items]
    for item in items:
        paths = item.paths
        assert len(paths) == k and len(set(paths)) == k  # k different disciplines
        for part in item.parts:
            node, subjects = next(entry for entry in pool if entry[0] is part.node)
            assert part.subject in subjects and part.concept in part.session.concepts
            assert part.concept.startswith(node.slug)  # the concept is that discipline's
        assert item.variables()["concepts"] == [p.concept for p in item.parts]
    assert {p for it in items for p in it.paths} == set(PATHS)  # every discipline is drawn
    assert len({tuple(it.paths) for it in items}) > 6  # many combinations, not one
    other_seed = [signature(draw(pool, i, k=k, seed=1)) for i in range(60)]
    next_round = [signature(draw(pool, i, k=k, round_index=1)) for i in range(60)]
    assert other_seed != [signature(it) for it in items] and next_round != [signature(it) for it in items]


def test_fewer_disciplines_than_k_is_refused_by_the_draw(tmp_path):
    with pytest.raises(ValueError, match="2 discipline"):
        draw(curricula(tmp_path)[:2], 0, k=3)


SHARES = [0.0, 0.1, 0.25, 1 / 3, 0.35, 0.5, 0.75, 1.0]


@pytest.mark.parametrize("share", SHARES)
def test_the_share_is_honoured_exactly_at_small_totals(share):
    weights = {"a": 1.0, "b": 2.0, "c": 1.0}
    for total in range(0, 13):
        budget = allocate(total, weights)
        singles, mixed = split_budget(budget, share, 2, list(budget))
        exact = Fraction(share).limit_denominator(1000) * total
        expected = int(exact) + (1 if exact - int(exact) >= Fraction(1, 2) else 0)  # halves up
        if sum(1 for n in budget.values() if n) < 2:  # one discipline asked anything: nothing to mix with
            expected = 0
        assert mixed == expected, (total, share)
        assert sum(singles.values()) + mixed == total  # the budget is the total asked
        assert all(0 <= singles[p] <= budget[p] for p in budget)
    assert mixed_count(10, 0.35) == 4 and mixed_count(10, 0.25) == 3 and mixed_count(3, 0.5) == 2


def test_excluded_and_idle_disciplines_keep_their_own_questions():
    budget = {"a": 3, "b": 3, "c": 2, "d": 0}
    singles, mixed = split_budget(budget, 0.5, 2, ["a", "b", "d"])  # c excluded, d asked nothing
    assert mixed == 3 and singles["c"] == 2 and singles["d"] == 0 and singles["a"] + singles["b"] == 3
    assert split_budget(budget, 0.5, 3, ["a", "b", "d"]) == (budget, 0)  # 2 to mix, 3 needed: none
    assert pairs_of(["b", "a", "c"]) == [("a", "b"), ("b", "c"), ("a", "c")]


# The rubric -------------------------------------------------------------------------------
def test_the_rubric_template_agrees_with_itself_and_shows_both_verdicts():
    templates = Templates()
    assert check_rubric(templates) == []
    messages = templates.render(
        "skill_mix_judge",
        question="q",
        topic="t",
        skills=[{"concept": "c", "discipline": "d", "subject": "s"}],
    )
    replies = [(messages[i - 1]["content"], m["content"]) for i, m in enumerate(messages) if m["role"] == "assistant"]
    grades = [parse_skill_grade(reply, len(re.findall(r"^\d\. ", asked, re.MULTILINE))) for asked, reply in replies]
    assert any(g.yes == len(g.skills) + 2 for g in grades) and any(g.yes < len(g.skills) + 2 for g in grades)
    assert {len(g.skills) for g in grades} == {2, 3}  # the examples teach more than one k


def override(tmp_path: Path, reply: str) -> Templates:
    source = (Templates().get("skill_mix_judge").source).replace(
        "Skill 1: yes; Skill 2: no; Topic: yes; Sense: yes; Points: 3", reply
    )
    (tmp_path / "prompts").mkdir(exist_ok=True)
    (tmp_path / "prompts/skill_mix_judge.j2").write_text(source)
    return Templates(tmp_path / "prompts")


@pytest.mark.parametrize(
    "reply, problem",
    [
        ("Skill 1: yes; Skill 2: no; Topic: yes; Sense: yes; Points: 4", "states Points: 4 but has 3 yes point"),
        ("Skill 1: yes; Topic: yes; Sense: yes; Points: 3", "example 2 does not parse: no skill 2 line"),
        ("Skill 1: yes; Skill 2: no; Topic: yes; Sense: yes; Style: no; Points: 3", "not in the rubric: style"),
        ("Skill 1: yes; Skill 2: no; Skill 3: no; Topic: yes; Sense: yes; Points: 3", "another number of skills"),
    ],
)
def test_an_override_whose_examples_break_the_rubric_is_caught(tmp_path, reply, problem):
    problems = check_rubric(override(tmp_path, reply))
    assert any(problem in p for p in problems), problems


def test_grader_replies_parse_tolerantly_and_incomplete_ones_are_refused():
    grade = parse_skill_grade("**Skill 1:** Yes\nSkill 2 (ratio): no; Topic: yes | Makes sense: YES\nPoints: 3", 2)
    assert grade == SkillGrade((True, False), True, True, 3)
    assert parse_skill_grade("Skill 1: no; Skill 2: yes; Skill 3: yes; Topic: no; Sense: yes", 2).skills == (
        False,
        True,
    )
    for reply, reason in (("Looks fine.", "no 'Skill N"), ("Skill 1: yes; Skill 2: yes; Sense: yes", "no topic line")):
        with pytest.raises(ParseError, match=reason):
            parse_skill_grade(reply, 2)


# The points the program decides -----------------------------------------------------------
@pytest.mark.parametrize(
    "text, sentences",
    [
        ("How fast does it fall?", 1),
        ("A ball weighs 0.5 kg. It falls for 2.5 s! How fast is it then?", 3),
        ("Dr. Smith lends $1,000 at 3.5% a year, e.g. to a farm. What is owed after 2 years?", 2),
        ('He said "Stop." Then he left. Why?', 3),
        ("The U.S. Army buys 3 trucks.\n\nHow much do they cost?", 2),
        ("first line without a stop\nstill the same sentence? yes", 1),
    ],
)
def test_sentences_are_counted_by_program(text, sentences):
    assert count_sentences(text) == sentences


def test_a_concept_named_literally_earns_no_point_and_each_point_goes_by_majority():
    question = "Using opportunity cost, decide which crop pays more. Then compute the ratio of yields."
    assert named_literally("Opportunity-cost", question) and not named_literally("cost of capital", question)
    assert not named_literally("ratio test", question) and named_literally("ratio", question)
    yes = SkillGrade((True, True, True), True, True, 5)
    split = SkillGrade((True, False, True), False, True, 3)
    verdict = award(question, ["opportunity cost", "crop rotation", "yield"], [yes, split, split], sentences=2)
    # skill 1 named (void); skill 2 2-of-3 no; skill 3 yes; topic 2-of-3 no; sense yes; 2 sentences <= 2.
    assert (verdict.points, verdict.total) == (3, 6)
    assert verdict.lost == (
        "skill 1 'opportunity cost' named literally",
        "skill 2 'crop rotation' not needed (graders)",
        "topic (graders)",
    )
    tie = award(question, ["crop rotation", "yield"], [yes, split], sentences=1)  # two graders: a 1-1 tie is no
    assert tie.lost == ("skill 2 'yield' not needed (graders)", "topic (graders)", "2 sentences > 1")
    assert (tie.points, tie.total, tie.graders) == (2, 5, 2)  # crop rotation, sense


def test_the_filter_step_drops_mixed_rows_short_of_the_threshold_and_passes_the_rest():
    rows = [
        make_row("a/x", 0, "A single question?"),
        make_row("a/x", 0, "Mixed and fine?", taxonomy_paths=["a/x", "b/y"], skill_mix=2, key_concepts=["p", "q"]),
        make_row("a/x", 1, "Mixed and poor?", taxonomy_paths=["a/x", "b/y"], skill_mix=2, key_concepts=["p", "q"]),
        make_row("a/x", 2, "Mixed, ungraded?", taxonomy_paths=["b/y", "a/x"], skill_mix=2, key_concepts=["p", "q"]),
    ]
    asked = []

    def grade(mixed):
        asked.append([r["question_index"] for r in mixed])
        full = SkillGrade((True, True), True, True, 4)
        poor = SkillGrade((False, True), True, False, 2)
        by_index = {0: [full], 1: [poor], 2: None}
        return [
            award(r["prompt"][0]["content"], r["key_concepts"], g, 4) if g else None
            for r in mixed
            for g in [by_index[r["question_index"]]]
        ]

    settings = FiltersConfig.model_validate(
        {"skill_mix_judge": {"enabled": True, "threshold": 0.8}, "minhash": {"enabled": False}}
    )
    chain = FilterChain(settings, eval_sets=[], grade=grade)
    verdicts = chain.run(rows)
    assert asked == [[0, 1, 2]]  # only the mixed rows are graded
    assert verdicts[0] is None and verdicts[1] is None and verdicts[3] is None
    assert verdicts[2] == (
        "skill_mix_judge",
        "3/5 points, 4 needed (lost: skill 1 'p' not needed (graders); sense (graders))",
    )
    assert [r.get("skill_mix_score") for r in rows] == [None, 5, 3, None]
    assert chain.report.counts["skill_mix_judge"] == 1 and chain.report.as_dict()["ungraded"] == 1


# Every node credited ----------------------------------------------------------------------
A, B, C = "humanities/ethics", "mathematics/probability", "natural-sciences/chemistry"


def mixed(index: int, paths: list[str], **extra) -> dict:
    return make_row(
        paths[0],
        index,
        f"Mixed question {index} about {' and '.join(paths)}?",
        difficulty="skill-mix",
        taxonomy_paths=paths,
        skill_mix=len(paths),
        key_concepts=[f"concept {p}" for p in paths],
        content_hash=f"mixed#{index}",
        templates={"skill_mix": "m-version", "answer": "a-version"},
        sampling={"skill_mix": {"temperature": 0.9}, "answer": {"temperature": 0.3}},
        **extra,
    )


def test_stats_and_mix_credit_every_node_a_row_combines(tmp_path):
    rows = [
        make_row(A, 0, "Is lying ever right?"),
        make_row(B, 0, "What is P(two heads)?"),
        mixed(0, [A, B]),
        mixed(1, [B, C]),
        mixed(2, [C, A, B]),
    ]
    dropped = [{**mixed(3, [A, B]), "filtered_by": "skill_mix_judge", "filter_detail": "2/5 points"}]
    run = tmp_path / "run"
    run.mkdir()
    write_jsonl(run / "dataset.jsonl", rows)
    write_jsonl(run / "dropped.jsonl", dropped)
    stats = compute_stats(read_source(run))
    per_node = {n["node"]: (n["rows"], n.get("dropped")) for n in stats["nodes"]}
    assert per_node == {A: (3, 1), B: (4, 1), C: (2, 0)}
    assert stats["skill_mix"]["rows"] == 3 and stats["skill_mix"]["k"] == {"2": 2, "3": 1}
    pairs = {(p["a"], p["b"]): (p["rows"], p["dropped"]) for p in stats["skill_mix"]["pairs"]}
    assert pairs == {(A, B): (2, 1), (B, C): (2, 0), (A, C): (1, 0)}
    assert "difficulty" in stats and list(stats["difficulty"]) == ["single-session", "skill-mix"]

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"seed: 1\nsources: [run]\nnodes:\n  - match: {C}\n    count: 5\n  - match: {A}\n    count: 5\n")
    outcome = mix(recipe, tmp_path / "out")
    first, second = outcome.entries
    # The chemistry entry takes both rows that combine chemistry; the ethics entry the rest of ethics's, once each.
    assert (first.available, first.delivered) == (2, 2)
    assert (second.matching, second.taken_earlier, second.available, second.delivered) == (3, 1, 2, 2)
    assert len(outcome.rows) == 4 and len({r["content_hash"] for r in outcome.rows}) == 4
    assert outcome.summary["nodes"] == {A: 3, B: 3, C: 2}  # each row credits each of its nodes


def test_the_report_shows_how_often_each_pair_was_combined(tmp_path):
    from syllabus.report import write_report

    run = make_run(
        tmp_path / "run",
        [make_row(A, 0, "Is lying ever right?"), mixed(0, [A, B]), mixed(1, [B, A]), mixed(2, [B, C])],
        [{**mixed(3, [A, C]), "filtered_by": "skill_mix_judge", "filter_detail": "2/5 points"}],
        {"nodes": [], "stages": {}, "filters": {"counts": {"skill_mix_judge": 1}}},
    )
    outcome = write_report(run)
    page = outcome.path.read_text()
    assert "skill_mix" in outcome.charts and 'data-chart="skill_mix"' in page
    for (a, b), rows, dropped in (((A, B), 2, 0), ((B, C), 1, 0), ((A, C), 0, 1)):
        cells = f'<tr data-pair="{a}|{b}"><td>{a}</td><td>{b}</td><td class="n" data-count="rows">{rows}</td>'
        assert cells + f'<td class="n">{dropped}</td></tr>' in page


# Bad settings -------------------------------------------------------------------------------
def project_with(tmp_path: Path, skill_mix: str) -> Path:
    folder = tmp_path / "p"
    init_project(folder)
    text = (folder / CONFIG_FILE).read_text()
    start = text.index("  skill_mix:\n    share:")
    end = text.index("\n", text.index("    exclude:", start))
    block = "  skill_mix:\n" + textwrap.indent(textwrap.dedent(skill_mix).strip("\n"), "    ")
    (folder / CONFIG_FILE).write_text(text[:start] + block + text[end:])
    return folder


def line_of(folder: Path, needle: str) -> int:
    return next(i for i, line in enumerate((folder / CONFIG_FILE).read_text().splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    "setting, key, message",
    [
        ("share: 0.25\nk: 7", "k: 7", "generation.skill_mix.k"),
        ("share: 1.5", "share: 1.5", "generation.skill_mix.share"),
        ("share: 0.2\nsentences: 0", "sentences: 0", "generation.skill_mix.sentences"),
        ("share: 0.2\nmix: 3", "mix: 3", "generation.skill_mix.mix"),
    ],
)
def test_a_bad_setting_names_its_line(tmp_path, setting, key, message):
    folder = project_with(tmp_path, setting)
    with pytest.raises(UserError) as info:
        Project.load(folder)
    assert message in info.value.message
    assert str(info.value.where) == f"{folder / CONFIG_FILE}:{line_of(folder, key)}"


def test_an_exclude_pattern_that_matches_no_node_is_refused(tmp_path):
    folder = project_with(tmp_path, "share: 0.5\nexclude: [mathematics/algebra]")
    with pytest.raises(UserError, match="'mathematics/algebra' matches no node") as info:
        prepare(Project.load(folder), GenerateOptions(questions=4))
    assert str(info.value.where) == f"{folder / CONFIG_FILE}:{line_of(folder, 'exclude:')}"


def test_an_opt_out_that_leaves_fewer_than_k_disciplines_exits_2_naming_them(tmp_path):
    folder = project_with(tmp_path, "share: 0.5\nk: 3\nexclude: [humanities]")
    done = run_cli(
        "generate", "--project", str(folder), "--nodes", "mathematics/*", "--nodes", "humanities/*", "--dry-run"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    error = " ".join(done.stderr.split())
    assert f"{folder / CONFIG_FILE}:{line_of(folder, 'exclude:')}" in error
    assert "needs 3 different disciplines per question, but the selection leaves 2 to mix" in error
    assert "excluded: humanities/ethics, humanities/world-history" in error
    # A selection too small by itself names k's line; one large enough is priced.
    small = run_cli("generate", "--project", str(folder), "--nodes", "mathematics/*", "--dry-run")
    assert small.returncode == 2 and f"{CONFIG_FILE}:{line_of(folder, 'k: 3')}" in " ".join(small.stderr.split())
    wide = run_cli(
        "generate", "--project", str(folder), "--nodes", "mathematics/*", "--nodes", "natural-sciences/*", "--dry-run"
    )
    assert wide.returncode == 0 and "skill_mix" in wide.stdout, wide.stdout + wide.stderr


def test_a_dry_run_prices_the_mixed_questions_out_of_the_budget(tmp_path):
    folder = project_with(tmp_path, "share: 0.25\nk: 2")
    doc = load(folder / CONFIG_FILE)
    doc["generation"]["filters"]["skill_mix_judge"]["enabled"] = True
    dump(doc, folder / CONFIG_FILE)
    plan = dry_run(Project.load(folder), GenerateOptions(questions=10, nodes=["mathematics/*", "humanities/*"]))
    stages = plan["stages"]
    assert stages["skill_mix"]["requests"] == 3  # round(0.25 x 10) = 2.5 -> 3
    assert stages["question"]["requests"] == 7 and stages["answer"]["requests"] == 10
    assert stages["skill_mix_judge"]["requests"] == 3 * 3  # three graders per mixed question
    assert "skill_mix_judge" in plan["filters"]


# A real run ---------------------------------------------------------------------------------
@pytest.mark.server
def test_a_run_against_the_server_mixes_its_share_and_credits_every_node(llama_server, tmp_path):
    folder = tmp_path / "p"
    init_project(folder)
    tune_project(folder, max_tokens={"subjects": 60, "syllabus": 120, "question": 48, "answer": 48, "skill_mix": 64})
    doc = load(folder / CONFIG_FILE)
    doc["generation"]["skill_mix"]["share"] = 0.5
    doc["generation"]["filters"]["skill_mix_judge"].update({"enabled": True, "threshold": 0.6})
    dump(doc, folder / CONFIG_FILE)
    args = ["generate", "--project", str(folder), "--nodes", "mathematics/*", "--nodes", "humanities/ethics"]
    args += ["--questions", "4", "--teacher", "openai:smollm2", "--base-url", llama_server.base_url]
    done = run_cli(*args)
    assert done.returncode == 0, done.stdout + done.stderr
    run = folder / "runs/default"
    summary = json.loads((run / "summary.json").read_text())
    stages = summary["stages"]

    def first_draws(stage: str) -> int:  # requests less the redraws of replies that did not parse
        return stages[stage]["requested"] - sum(stages[stage]["redrawn"].values())

    assert summary["skill_mix"]["requested"] == 2 and first_draws("skill_mix") == 2
    assert first_draws("question") == 2  # 4 asked: 2 mixed, 2 of one discipline
    rows = [json.loads(line) for line in (run / "dataset.jsonl").read_text().splitlines()]
    dropped = [json.loads(line) for line in (run / "dropped.jsonl").read_text().splitlines()]
    graded = [r for r in rows + dropped if r.get("skill_mix") and r["filtered_by"] in ("", "skill_mix_judge")]
    assert first_draws("skill_mix_judge") == 3 * len(graded)  # three graders per mixed row that reached the rubric
    assert "skill_mix_judge" in summary["filters"]["counts"]
    mixed_rows = [r for r in rows + dropped if r.get("skill_mix")]
    assert len(mixed_rows) == summary["skill_mix"]["delivered"] > 0
    selected = {"mathematics/linear-algebra", "mathematics/probability", "humanities/ethics"}
    for row in mixed_rows:
        paths = row["taxonomy_paths"]
        assert row["skill_mix"] == 2 and len(set(paths)) == 2 and set(paths) <= selected
        assert row["taxonomy_path"] == paths[0] and row["difficulty"] == "skill-mix"
        assert len(row["disciplines"]) == len(row["subjects"]) == len(row["sessions"]) == len(row["key_concepts"]) == 2
        assert row["templates"].keys() == {"skill_mix", "answer"}
    for row in dropped:
        if row["filtered_by"] == "skill_mix_judge":
            assert "points" in row["filter_detail"] and row["skill_mix_score"] is not None
    # Per node, a mixed row counts for each discipline it combines.
    delivered = {n["path"]: n["delivered"] for n in summary["nodes"]}
    assert sum(delivered.values()) == summary["generated"] + summary["skill_mix"]["delivered"]
    kept = {n["path"]: n["kept"] for n in summary["nodes"]}
    assert sum(kept.values()) == len(rows) + sum(1 for r in rows if r.get("skill_mix"))
    saved = read_source(run).rows  # the datasets folder keeps the mixed rows' columns too
    assert [r.get("taxonomy_paths") for r in saved] == [r.get("taxonomy_paths") for r in rows]

    again = run_cli(*args)  # the same round again: every request from the cache, the same rows
    assert again.returncode == 0, again.stderr
    repeat = json.loads((run / "summary.json").read_text())
    assert all(s["answered"] == 0 for s in repeat["stages"].values())
    assert repeat["skill_mix"] == summary["skill_mix"]
