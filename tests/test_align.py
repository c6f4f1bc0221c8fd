"""`syllabus align`: pairs beyond the noise, bad input, the scorers on the real student, end to end.

The scorer tests load the embedded student once (module fixtures) and check what each
score must do: a draft that teaches an item's answer helps more than one about something
else, and the influence scorer leaves the student bitwise as it found it. The end-to-end
test runs `python -m syllabus align` on the shipped example shrunk to two nodes, kills it
while it scores, runs it again, trains the teacher on the pairs and regenerates with it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import cli_env, run_cli, small_example, write_jsonl

from syllabus.align.pairs import Scored, agreed, in_context_choices, question_pairs, rationale_pairs
from syllabus.generators.drafts import Draft

NODES = ["geography/capitals", "physics/units"]


def draft(q: int, r: int, *, strategy: str = "direct", bloom: str = "remember", node: str = NODES[0]) -> Draft:
    return Draft(node, q, r, f"question {q}", f"rationale {q}.{r}", strategy, bloom, (("user", f"ask {q}"),))


def scored(q: int, r: int, per_item: list[float], **kw) -> Scored:
    return Scored(draft(q, r, **kw), "icl", sum(per_item) / len(per_item), tuple(per_item))


# Pairs ------------------------------------------------------------------------------------


def test_a_rationale_pair_needs_a_gap_beyond_the_noise_floor_and_the_items_spread():
    clear = [scored(0, 0, [1.0, 1.1, 0.9]), scored(0, 1, [0.0, 0.1, -0.1])]
    (pair,) = rationale_pairs(clear, noise_floor=0.01, system_prompt="Be helpful.")
    assert pair["chosen"][0]["content"] == "rationale 0.0" and pair["rejected"][0]["content"] == "rationale 0.1"
    assert pair["prompt"] == [{"role": "system", "content": "Be helpful."}, {"role": "user", "content": "question 0"}]
    assert pair["margin"] >= 0.01 and pair["level"] == "rationale"
    # The same mean gap, but the items disagree: one item says the other way round.
    noisy = [scored(0, 0, [3.0, -1.0, 1.0]), scored(0, 1, [-1.0, 2.0, -1.0])]
    assert rationale_pairs(noisy, noise_floor=0.01) == []
    # A real gap smaller than the measured noise floor is no preference.
    assert rationale_pairs(clear, noise_floor=2.0) == []


def test_question_pairs_take_the_top_quarter_over_the_bottom_quarter_under_the_question_prompt():
    drafts = [scored(q, r, [q + 0.01 * r, q + 0.02, q - 0.01]) for q in range(8) for r in range(2)]
    pairs = question_pairs(drafts, noise_floor=0.0)
    chosen = Counter(p["chosen_id"].split("#")[1][:2] for p in pairs)
    rejected = Counter(p["rejected_id"].split("#")[1][:2] for p in pairs)
    assert set(chosen) == {"q7", "q6"} and set(rejected) == {"q0", "q1"} and len(pairs) == 4
    assert all(p["prompt"] == [{"role": "user", "content": f"ask {p['chosen_id'][-3]}"}] for p in pairs)


def test_both_scorers_keep_only_the_pairs_they_agree_on():
    icl = rationale_pairs(
        [scored(0, 0, [1, 1.1]), scored(0, 1, [0, 0.1]), scored(1, 0, [1, 1.2]), scored(1, 1, [0, 0])], 0
    )
    influence = [dict(icl[0], chosen_score=0.5, rejected_score=0.1, margin=0.01)]
    kept = agreed(icl, influence)
    assert [p["chosen_id"] for p in kept] == [icl[0]["chosen_id"]]
    assert kept[0]["scorer"] == "both" and kept[0]["influence_chosen_score"] == 0.5


def test_in_context_choices_lean_toward_what_helped_and_keep_exploring():
    drafts = [
        scored(0, 0, [1.0, 1.0], strategy="step_by_step", bloom="apply"),
        scored(0, 1, [0.8, 0.8], strategy="direct", bloom="apply"),
        scored(1, 0, [-1.0, -1.0], strategy="step_by_step", bloom="remember"),
        scored(1, 1, [-2.0, -2.0], strategy="direct", bloom="remember"),
    ]
    strategies = ["step_by_step", "direct", "explain_then_answer"]
    choices = in_context_choices(drafts, 0.05, strategies, ["remember", "apply", "create"])
    assert choices["seeds"] == [{"question": "question 0", "answer": "rationale 0.0"}]  # only drafts that helped
    for mix in (choices["strategies"], choices["bloom"]):
        assert sum(mix.values()) == pytest.approx(1.0, abs=1e-3) and min(mix.values()) > 0
    assert choices["bloom"]["apply"] > choices["bloom"]["create"] > choices["bloom"]["remember"]
    assert choices["strategies"]["step_by_step"] > choices["strategies"]["direct"]


# Bad input: exit 2, before any model loads -------------------------------------------------


@pytest.fixture
def example(tmp_path):
    return small_example(tmp_path / "p", exam=3, dev=1, test=1)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--drafts", "0"], "--drafts must be at least 1"),
        (["--items", "0"], "--items must be at least 1"),
        (["--rationales", "5"], "more strategies than"),
        (["--scorer", "vibes"], "unknown --scorer"),
        (["--mode", "dpo", "--teacher", "openai:gpt-4o-mini"], "--mode dpo trains the teacher"),
        (["--scorer", "influence", "--student", "openai:tiny"], "needs its weights here"),
        (["--nodes", "nowhere/*"], "matches no node"),
    ],
)
def test_bad_options_are_refused_naming_the_option(example, args, message):
    done = run_cli("align", *args, cwd=example, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in " ".join(done.stderr.split())
    assert not (example / "runs" / "align").exists()  # nothing written


def test_a_node_without_preference_items_is_named(example, tmp_path):
    probes = write_jsonl(
        tmp_path / "prefs.jsonl", [{"question": "Capital of Peru?", "answer": "Lima", "node": NODES[0]}]
    )
    done = run_cli("align", "--probes", str(probes), "--nodes", "physics/*", cwd=example, timeout=120)
    assert done.returncode == 2 and "node 'physics/units' has no preference item" in done.stderr


def test_a_dev_item_given_as_a_preference_item_is_refused(example, tmp_path):
    rows = [json.loads(line) for line in (example / "items.jsonl").read_text().splitlines()]
    dev = next(r for r in rows if r["split"] == "dev")
    probes = write_jsonl(tmp_path / "prefs.jsonl", [{k: dev[k] for k in ("question", "answer", "node")}])
    done = run_cli("align", "--probes", str(probes), "--nodes", dev["node"], cwd=example, timeout=120)
    assert done.returncode == 2 and "is a dev item of the loop" in " ".join(done.stderr.split())


# The scorers on the real student -------------------------------------------------------------

ITEMS = [
    ("What is the capital of Peru?", "The capital of Peru is Lima."),
    ("What is the capital of Kenya?", "The capital of Kenya is Nairobi."),
    ("What is the capital of Norway?", "The capital of Norway is Oslo."),
]
TEACHES = ("What is the capital of Peru?", "The capital of Peru is Lima.")
ELSEWHERE = ("Name a prime number.", "Seven is a prime number, since only one and seven divide it.")


@pytest.fixture(scope="module")
def influence_scorer(embedded_dir):
    from syllabus.students.influence import Example, InfluenceScorer

    scorer = InfluenceScorer(embedded_dir, learning_rate=2e-5, max_length=96)
    scorer.use_reference([Example.of([{"role": "user", "content": q}], a) for q, a in ITEMS])
    yield scorer
    scorer.close()


@pytest.mark.slow
def test_influence_scoring_leaves_the_student_bitwise_as_it_was(influence_scorer):
    import torch

    from syllabus.students.influence import Example

    before = influence_scorer.state_fingerprint()
    drafts = [Example.of([{"role": "user", "content": q}], a) for q, a in (TEACHES, ELSEWHERE, ITEMS[1])]
    first = [influence_scorer.exact(d) for d in drafts]
    after = influence_scorer.state_fingerprint()
    assert all(torch.equal(a, b) for a, b in zip(before, after))
    assert not influence_scorer.optimizer.state  # the optimizer's state is back to its snapshot too
    # Restored exactly, so the same draft scores the same however many came before it.
    assert influence_scorer.exact(drafts[0]) == first[0]


@pytest.mark.slow
def test_a_step_on_an_items_own_answer_helps_more_than_a_step_on_something_else(influence_scorer):
    from syllabus.students.influence import Example

    teaches = Example.of([{"role": "user", "content": TEACHES[0]}], TEACHES[1])
    elsewhere = Example.of([{"role": "user", "content": ELSEWHERE[0]}], ELSEWHERE[1])
    exact_teaches, exact_elsewhere = influence_scorer.exact(teaches), influence_scorer.exact(elsewhere)
    assert exact_teaches.change < 0 and exact_teaches.change < exact_elsewhere.change
    assert exact_teaches.per_item[0] < exact_elsewhere.per_item[0]  # the Peru item above all
    # The first-order estimate orders the two drafts the same way.
    assert influence_scorer.fast(teaches).change < influence_scorer.fast(elsewhere).change


@pytest.mark.slow
def test_an_in_context_example_that_answers_alike_helps_more_than_one_about_something_else(embedded_dir):
    import asyncio

    from syllabus.backends.local import LocalBackend
    from syllabus.students.preference import InContextScorer
    from syllabus.students.probes import Probe

    async def main():
        backend = LocalBackend(embedded_dir)
        try:
            items = [Probe(q, a, "geography/capitals") for q, a in ITEMS[1:]]
            scorer = InContextScorer(backend, items, max_tokens=24)
            baseline = await scorer.baseline()
            return (
                baseline,
                await scorer.noise_floor(baseline),
                await scorer.draft(*TEACHES),
                await scorer.draft(*ELSEWHERE),
            )
        finally:
            await backend.aclose()

    baseline, noise, alike, elsewhere = asyncio.run(main())
    assert 0 <= noise < 0.05  # batching moves a mean log-probability by little
    assert alike.mean > elsewhere.mean + noise
    assert alike.mean > baseline.mean  # an example in the reference's own style raises its likelihood
    assert alike.accuracy is not None and len(alike.correct) == 2


# End to end: drafts > both scores > pairs > DPO on the teacher > regeneration --------------


def _scores(folder: Path) -> list[dict]:
    path = folder / "runs" / "align" / "align" / "scores.jsonl"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.slow
def test_align_end_to_end_killed_while_scoring_resumes_trains_the_teacher_and_regenerates(tmp_path, embedded_dir):
    folder = small_example(tmp_path / "p", exam=4, dev=1, test=1)
    args = ["align", "--nodes", NODES[0], "--nodes", NODES[1], "--drafts", "2", "--rationales", "2", "--items", "3"]
    args += ["--scorer", "both", "--lr", "1e-5"]
    process = subprocess.Popen(
        [sys.executable, "-m", "syllabus", *args],
        cwd=folder,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 1500
    while time.monotonic() < deadline and process.poll() is None and len(_scores(folder)) < 3:
        time.sleep(0.2)
    assert process.poll() is None, "align ended before it had scored three drafts"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    scored_before = {(r["scorer"], r["id"]) for r in _scores(folder)}

    done = run_cli(*args, cwd=folder, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    align = folder / "runs" / "align" / "align"
    keys = [(r["scorer"], r["id"]) for r in _scores(folder)]
    assert len(keys) == len(set(keys)) and scored_before <= set(keys)  # no draft scored twice
    drafts = [json.loads(line) for line in (align / "drafts.jsonl").read_text().splitlines()]
    assert {(s, d["id"]) for d in drafts for s in ("icl", "influence")} <= set(keys)

    summary = json.loads((align / "summary.json").read_text())
    assert set(summary["nodes"]) == set(NODES)
    for block in summary["nodes"].values():
        assert {"drafts", "pairs", "noise_floor", "score_spread", "mode"} <= set(block)
        assert block["mode"] == "dpo" and block["drafts"] >= 2 and block["noise_floor"] >= 0
    pairs = [json.loads(line) for line in (align / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == summary["pairs"]
    for pair in pairs:
        assert pair["chosen_score"] - pair["rejected_score"] > pair["margin"] >= pair["noise_floor"]
        assert pair["influence_chosen_score"] - pair["influence_rejected_score"] > pair["influence_margin"]
    assert ("Alignment" in done.stdout and "aligned teacher" in done.stdout) or not pairs

    if not pairs:
        pytest.skip("the two scorers agreed on no pair beyond the margins: no teacher to train (said so above)")
    teacher = Path(summary["aligned_teacher"])
    assert (teacher / "config.json").is_file()
    metrics = json.loads((align / "teacher" / "metrics.json").read_text())
    assert metrics["method"] == "dpo" and metrics["steps"] >= 1
    regenerated = run_cli(
        "generate",
        "--teacher",
        str(teacher),
        "--nodes",
        NODES[0],
        "--questions",
        "2",
        "--run",
        "runs/regen",
        cwd=folder,
    )
    assert regenerated.returncode == 0, regenerated.stderr[-3000:]
    rows = [json.loads(line) for line in (folder / "runs" / "regen" / "dataset.jsonl").read_text().splitlines()]
    assert rows and all(r["teacher"] == teacher.name for r in rows)  # the folder's name; the cache keys it by more


def test_a_score_line_cut_short_by_a_kill_is_dropped_before_new_lines_are_appended(tmp_path):
    from syllabus.align.scores import ScoreJournal

    path = tmp_path / "scores.jsonl"
    path.write_text('{"scorer": "icl", "id": "a#q0r0"}\n{"scorer": "icl", "id": "a#q0')
    journal = ScoreJournal(path)
    assert journal.open_for_append() == {("icl", "a#q0r0")}
    journal.record({"scorer": "icl", "id": "a#q0r1"})
    assert [r["id"] for r in journal.rows()] == ["a#q0r0", "a#q0r1"]
    assert path.read_text().count("\n") == 2


def test_in_context_choices_become_a_generation_s_exemplars_and_mixes_and_bad_ones_are_refused(example, tmp_path):
    from syllabus.errors import UserError
    from syllabus.generators.job import GenerateOptions, prepare
    from syllabus.project import Project

    choices = {
        NODES[0]: {
            "seeds": [{"question": "Which city is the capital of Chile?", "answer": "Santiago is."}],
            "strategies": {"direct": 0.7, "step_by_step": 0.3},
            "bloom": {"remember": 1.0},
        }
    }
    path = tmp_path / "in_context.json"
    path.write_text(json.dumps(choices))
    job = prepare(Project.load(example), GenerateOptions(in_context=path, questions=6))
    nodes = {n.path: n for n in job.disciplines}
    chosen, untouched = nodes[NODES[0]], nodes[NODES[1]]
    assert chosen.seeds[0].question == "Which city is the capital of Chile?"
    assert chosen.strategies == {"direct": 0.7, "step_by_step": 0.3} and chosen.bloom == {"remember": 1.0}
    assert untouched.strategies is None and untouched.bloom is None
    assert not (example / "taxonomy" / "geography" / "capitals" / "node.yaml").read_text().count("Chile")

    choices[NODES[0]]["bloom"] = {"memorise": 1.0}
    path.write_text(json.dumps(choices))
    with pytest.raises(UserError, match="bloom must weigh"):
        prepare(Project.load(example), GenerateOptions(in_context=path))
    path.write_text("{not json")
    done = run_cli("generate", "--in-context", str(path), "--dry-run", cwd=example, timeout=120)
    assert done.returncode == 2 and "in_context.json" in done.stderr and "not valid JSON" in done.stderr
