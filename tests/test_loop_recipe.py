"""The loop's recipe: what a round trains on, and from what; the comparison that says whether it taught.

Each round's steps read and write files, so a round is built here from hand-made files
(an examination, the student's retries, the teacher's drafts) and one step is run on it:
the decision is checked without training a model. The likelihood choice and DPO's
settings are checked on the real embedded student and the installed TRL.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_cli, small_example, write_jsonl

from syllabus.loop import examination as exams
from syllabus.loop import steps
from syllabus.loop.select import choose, near_copy, unsound, whole_sentences
from syllabus.project import Project
from syllabus.students.compare import compare_answers, mcnemar_exact, paired

# Soundness -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "reference", "draft", "why"),
    [
        # The three wrong rows the issue found among kept corrections: each contains the reference.
        ("What is the chemical symbol of antimony?", "Sb", "Antimony is not the chemical symbol Sb.", "negates"),
        (
            "How many centimeters are in 30 millimeters?",
            "3",
            "30 millimeters is equivalent to 3000 centimeters, which is the same as 3 centimeters.",
            "names another number (3000)",
        ),
        (
            "What is 345 + 237?",
            "582",
            "To add 345 and 237, we can add 3 + 237 = 582.",
            "names another number (3)",
        ),
        (
            "What day comes after Monday?",
            "Tuesday",
            "On Friday, the day that comes after Monday is Tuesday.",
            "names another day",
        ),
        ("What is the capital of Peru?", "Lima", "Lima.", "does not restate the question"),
        ("What is the capital of Peru?", "Lima", "The capital of Peru is Cusco.", "does not reach the reference"),
    ],
)
def test_rows_that_reach_the_reference_but_teach_something_false_are_refused(question, reference, draft, why):
    assert unsound(question, reference, draft).startswith(why)


def test_a_full_sentence_that_restates_the_question_and_names_only_the_answer_is_sound():
    assert unsound("How many metres are in 12 kilometres?", "12000", "There are 12000 metres in 12 kilometres.") is None
    assert unsound("What is the capital of Peru?", "Lima", "The capital of Peru is Lima.") is None
    assert unsound("What is the capital of Peru?", "Lima", "The capital of Peru is Lima", "length") == (
        "cut at max_tokens"
    )


def test_a_draft_cut_at_max_tokens_keeps_its_whole_sentences():
    cut = "There are 800 centimeters in 8 meters. To see why, multiply 8 by 1."
    assert whole_sentences(cut + " So", "length") == cut
    assert whole_sentences("It is 3.5 metres and so on", "length") == ""  # a decimal point ends no sentence
    assert whole_sentences("Lima. And", "stop") == "Lima. And"  # only a cut draft is trimmed
    kept = whole_sentences("There are 800 centimeters in 8 meters. Then 8", "length")
    assert unsound("How many centimeters are in 8 meters?", "800", kept) is None


def test_the_choice_is_the_most_likely_draft_or_the_shortest():
    drafts = ["The capital of Peru is Lima, a city on the coast.", "The capital of Peru is Lima."]
    assert choose(drafts, [-0.4, -1.2], "likelihood") == 0
    assert choose(drafts, [-2.0, -1.2], "likelihood") == 1
    assert choose(drafts, None, "shortest") == 1
    with pytest.raises(ValueError):
        choose(drafts, None, "likelihood")


@pytest.mark.slow
def test_the_likelihood_choice_picks_what_the_real_student_scores_highest(embedded_dir):
    """On the embedded student: its own greedy answer against a sound but unusual rewording."""
    import asyncio

    from syllabus.backends.base import ChatRequest
    from syllabus.backends.local import LocalBackend

    question = [{"role": "user", "content": "What is the capital of France?"}]
    backend = LocalBackend(embedded_dir, batch_size=2)

    async def main():
        try:
            own = await backend.complete(ChatRequest.from_messages(question, temperature=0.0, max_tokens=24))
            odd = "Capital of France? Verily, forsooth: Paris it be."
            scores = await backend.score(question, [odd, own.text])
            return own.text, odd, [s.mean for s in scores]
        finally:
            await backend.aclose()

    own, odd, likely = asyncio.run(main())
    assert likely[1] > likely[0]
    assert [odd, own][choose([odd, own], likely, "likelihood")] == own


def test_a_pair_whose_rejected_answer_nearly_copies_the_chosen_one_is_measured_as_such():
    assert near_copy("The capital of Peru is Lima.", "The capital of Peru is Cusco.") >= 0.8
    assert near_copy("The capital of Peru is Lima.", "I think it might be somewhere in Asia.") < 0.3


# A round built from hand-made files ------------------------------------------------------


def _answer(node, question, reference, said, correct, split="exam", finish="stop"):
    return {
        "split": split,
        "node": node,
        "question": question,
        "reference": reference,
        "student_answer": said,
        "kind": "short",
        "correct": correct,
        "reference_logprob": -1.0,
        "truncated": False,
        "finish_reason": finish,
    }


@pytest.fixture
def round_one(tmp_path):
    """A loop on the small example whose round 0 examination and round 1 budgets are hand-made."""
    from syllabus.loop.distill import DistillOptions, Loop

    folder = small_example(tmp_path / "p", exam=3)
    config = folder / "syllabus.yaml"
    text = config.read_text()
    for was, now in (
        ("choose: likelihood", "choose: shortest"),
        ("rehearsal: 0.3", "rehearsal: 0.5"),
        ("dpo: false", "dpo: true"),
    ):
        assert f"  {was} " in text
        text = text.replace(f"  {was} ", f"  {now} ", 1)
    config.write_text(text)
    loop = Loop(Project.load(folder), DistillOptions(budget=12))
    node = "geography/capitals"
    exam = [p for p in loop.items.exam if p.node == node]
    answers = [
        _answer(node, exam[0].question, exam[0].answer, "I am not sure.", False),
        _answer(node, exam[1].question, exam[1].answer, _restating(exam[1].question, "Cusco"), False),
        _answer(node, exam[2].question, exam[2].answer, f"The {exam[2].question[8:-1]} is {exam[2].answer}.", True),
    ]
    answers += [_answer(node, p.question, p.answer, p.answer, True, split="dev") for p in loop.items.dev]
    from syllabus.students.examine import ProbeResult

    results = [ProbeResult(**{k: v for k, v in a.items() if k != "split"}) for a in answers]
    examination = exams._examination([a["split"] for a in answers], results, ("exam", "dev"))
    r0, r1 = loop.layout.round(0), loop.layout.round(1)
    exams.write(examination, r0.examination, "embedded")
    r1.root.mkdir(parents=True)
    steps.write_json(r1.budgets, {"decisions": [{"node": n, "rows": 4 if n == node else 0} for n in loop.nodes]})
    return loop, node, exam


def _restating(question: str, answer: str) -> str:
    return f"The {question.removeprefix('What is the ').rstrip('?')} is {answer}."


def test_a_sound_self_answer_is_preferred_over_the_teachers_draft_and_rehearsal_is_only_right_answers(round_one):
    loop, node, exam = round_one
    r1 = loop.layout.round(1)
    tried = [
        # The first mistake: one of the student's own samples is sound.
        {
            **_answer(node, exam[0].question, exam[0].answer, "I am not sure.", False),
            "samples": [
                {"text": "Paris.", "finish_reason": "stop"},
                {"text": _restating(exam[0].question, exam[0].answer), "finish_reason": "stop"},
            ],
        },
        # The second: none of its samples is sound, so the teacher's draft is used.
        {
            **_answer(node, exam[1].question, exam[1].answer, _restating(exam[1].question, "Cusco"), False),
            "samples": [{"text": "No idea.", "finish_reason": "stop"}],
        },
    ]
    write_jsonl(r1.self_answers, tried)
    teacher = _restating(exam[1].question, exam[1].answer)
    write_jsonl(
        r1.corrections,
        [
            {**tried[0], "drafts": [_restating(exam[0].question, exam[0].answer) + " Indeed."]},
            {**tried[1], "drafts": [teacher]},
        ],
    )
    steps.select_rows(loop, 1)
    selected = [json.loads(line) for line in r1.selected.read_text().splitlines()]
    fixes = {r["question"]: r for r in selected if r["kind"] == "fix"}
    assert fixes[exam[0].question]["source"] == "self"
    assert fixes[exam[0].question]["answer"] == _restating(exam[0].question, exam[0].answer)
    assert fixes[exam[1].question]["source"] == "correction" and fixes[exam[1].question]["answer"] == teacher
    rehearsal = [r for r in selected if r["kind"] == "rehearsal" and r.get("used")]
    assert [r["question"] for r in rehearsal] == [exam[2].question]  # the one exam item it answered right
    assert rehearsal[0]["answer"] == f"The {exam[2].question[8:-1]} is {exam[2].answer}."
    # The wrong answer "The capital of X is Cusco." nearly copies the teacher's fix: no DPO pair, and the reason.
    assert fixes[exam[1].question]["pair"] is False
    assert fixes[exam[1].question]["no_pair"].startswith("rejected nearly copies chosen")
    assert fixes[exam[0].question]["pair"] is True


def test_a_worked_solution_is_the_row_before_the_teachers_drafts_and_after_a_sound_own_answer(round_one):
    from dataclasses import replace

    loop, node, exam = round_one
    r1 = loop.layout.round(1)
    solved = {p.question: f"Its capital city is {p.answer}." for p in exam[:2]}
    loop.items = replace(loop.items, solutions={p.key: solved[p.question] for p in exam[:2]})
    own = _restating(exam[0].question, exam[0].answer)
    tried = [
        {
            **_answer(node, exam[0].question, exam[0].answer, "No.", False),
            "samples": [{"text": own, "finish_reason": "stop"}],
        },
        {
            **_answer(node, exam[1].question, exam[1].answer, "No.", False),
            "samples": [{"text": "No idea.", "finish_reason": "stop"}],
        },
    ]
    write_jsonl(r1.self_answers, tried)
    # Neither item needs the teacher: one has a sound own answer, the other a solution. No teacher
    # is opened at all (this project's teacher is the embedded model: it would be loaded).
    steps.correct(loop, 1)
    steps.restate(loop, 1)
    assert r1.corrections.read_text() == "" and r1.restatements.read_text() == ""
    write_jsonl(r1.corrections, [{**tried[1], "drafts": [_restating(exam[1].question, exam[1].answer)]}])
    steps.select_rows(loop, 1)
    fixes = {r["question"]: r for r in map(json.loads, r1.selected.read_text().splitlines()) if r["kind"] == "fix"}
    assert (fixes[exam[0].question]["source"], fixes[exam[0].question]["answer"]) == ("self", own)
    assert (fixes[exam[1].question]["source"], fixes[exam[1].question]["answer"]) == (
        "solution",
        solved[exam[1].question],
    )
    # Switched off, the teacher's draft is the row again.
    loop.settings = loop.settings.model_copy(update={"solutions": False})
    steps.select_rows(loop, 1)
    fixes = {r["question"]: r for r in map(json.loads, r1.selected.read_text().splitlines()) if r["kind"] == "fix"}
    assert fixes[exam[1].question]["source"] == "correction"


def test_a_restatement_filled_with_the_reference_is_the_row_where_nothing_else_is_sound(round_one):
    loop, node, exam = round_one
    r1 = loop.layout.round(1)
    wrong = _answer(node, exam[1].question, exam[1].answer, _restating(exam[1].question, "Cusco"), False)
    tried = [{**wrong, "samples": [{"text": "No idea.", "finish_reason": "stop"}]}]
    write_jsonl(r1.self_answers, tried)
    write_jsonl(r1.corrections, [{**tried[0], "drafts": ["The capital is somewhere else."]}])
    restated = _restating(exam[1].question, "___")
    write_jsonl(r1.restatements, [{**tried[0], "drafts": [restated.replace("___", exam[1].answer)]}])
    steps.select_rows(loop, 1)
    fix = next(json.loads(line) for line in r1.selected.read_text().splitlines() if '"fix"' in line)
    assert fix["used"] and fix["source"] == "restatement"
    assert fix["answer"] == _restating(exam[1].question, exam[1].answer)
    assert fix["unsound"] == {"does not reach the reference": 2}  # the retry and the correction, each refused


@pytest.mark.parametrize(
    ("question", "restatement", "keeps"),
    [
        ("Which element has the chemical symbol Sb?", "The element with the chemical symbol Sb is ___.", True),
        ("Which element has the chemical symbol Sb?", "The chemical symbol of silver is ___.", False),
        ("If today is Wednesday, what day will it be in 3 days?", "If today is Wednesday, in 3 days it is ___.", True),
        ("If today is Wednesday, what day will it be in 3 days?", "If today is Wednesday, it will be ___.", False),
        ("What is 14 times 12?", "14 times 21 is ___.", False),
    ],
)
def test_a_restatement_that_asks_another_question_is_refused(question, restatement, keeps):
    from syllabus.loop.select import keeps_the_question

    assert keeps_the_question(question, restatement) is keeps


def test_a_restatement_has_one_blank_and_a_sound_answer_blanked_is_a_shot():
    from syllabus.generators.parsers import ParseError
    from syllabus.generators.restatement import cloze_of, filled, parse_restatement

    assert parse_restatement("  86 times 3 is  ____.\nSo it is.") == "86 times 3 is ___."
    assert filled("86 times 3 is ___.", " 258 ") == "86 times 3 is 258."
    # What follows the answer's clause is the model's own invention, not the reference: cut.
    assert parse_restatement("The opposite of smooth is ___, which is a type of furniture.") == (
        "The opposite of smooth is ___."
    )
    assert parse_restatement("There are ___ grams in 3.5 kilograms") == "There are ___ grams in 3.5 kilograms."
    for reply, why in (
        ("86 times 3 is 258.", "no blank"),
        ("__ times 3 is ___.", "more than one blank"),
        ("", "empty"),
    ):
        with pytest.raises(ParseError, match=why):
            parse_restatement(reply)
    assert cloze_of("The capital of Peru is Lima.", "lima") == "The capital of Peru is ___."
    # The reference as a whole word: 12000 is not 12, and a reference said twice is no shot.
    assert cloze_of("There are 12000 metres in 12 kilometres.", "12000") == "There are ___ metres in 12 kilometres."
    assert cloze_of("12 and 12 make 24, so 12 it is.", "12") is None
    assert cloze_of("14 times 12 is 168.", "168") == "14 times 12 is ___."
    assert cloze_of("The opposite of summer is winter, a season.", "winter") == "The opposite of summer is ___."


@pytest.mark.slow
def test_the_restate_step_asks_the_teacher_with_the_nodes_own_shots_and_fills_the_reference(round_one):
    """On the embedded teacher: what it restates is checked, not what it says (a 135M model may miss)."""
    loop, node, exam = round_one
    r1 = loop.layout.round(1)
    right = _answer(node, exam[0].question, exam[0].answer, "I am not sure.", False)
    wrong = _answer(node, exam[1].question, exam[1].answer, "No idea.", False)
    tried = [
        {**right, "samples": [{"text": _restating(exam[0].question, exam[0].answer), "finish_reason": "stop"}]},
        {**wrong, "samples": [{"text": "No idea.", "finish_reason": "stop"}]},
    ]
    write_jsonl(r1.self_answers, tried)
    write_jsonl(r1.corrections, [{**tried[1], "drafts": ["I do not know."]}])
    steps.restate(loop, 1)
    records = [json.loads(line) for line in r1.restatements.read_text().splitlines()]
    assert [r["question"] for r in records] == [exam[1].question]  # only what nothing made sound
    record = records[0]
    assert record["shots"] == 1  # the node's one sound answer, its reference blanked
    assert len(record["restatements"]) == len(record["drafts"]) <= 2
    for cloze, draft in zip(record["restatements"], record["drafts"]):
        assert cloze.count("___") == 1 and draft == cloze.replace("___", exam[1].answer)
    from syllabus.generators.cache import RequestCache

    asked = RequestCache(loop.layout.cache)
    try:
        assert asked.count() >= 2  # its two samples, cached: a rerun of the step asks nothing again
    finally:
        asked.close()


def test_restart_from_base_trains_the_starting_student_on_every_kept_row_once(round_one):
    loop, node, exam = round_one
    assert loop.settings.restart == "previous"  # the default, measured (docs/benchmarks.md)
    loop.settings = loop.settings.model_copy(update={"restart": "base"})
    rows = {
        1: [(exam[0].question, "a"), (exam[1].question, "b")],
        2: [(exam[1].question, "b"), (exam[2].question, "c")],
    }
    for k, pairs in rows.items():
        folder = loop.layout.round(k)
        folder.root.mkdir(parents=True, exist_ok=True)
        (folder.data).mkdir(exist_ok=True)
        write_jsonl(
            folder.selected,
            [
                {"node": node, "question": q, "answer": a, "kind": "fix", "source": "self", "used": True}
                for q, a in pairs
            ],
        )
        steps.assemble(loop, k)
    train = [json.loads(line) for line in loop.layout.round(2).train.read_text().splitlines()]
    assert sorted(r["completion"][0]["content"] for r in train) == ["a", "b", "c"]  # the union, each once
    steps.write_json(loop.layout.round(1).trained, {"student": "/somewhere/round-1"})
    assert steps.starting_point(loop, 2) == loop.student == "embedded"
    previous = loop.settings.model_copy(update={"restart": "previous"})
    loop.settings = previous
    assert steps.starting_point(loop, 2) == "/somewhere/round-1"


def test_a_run_folder_of_either_restart_made_before_the_default_changed_keeps_its_fingerprint():
    """`restart` was `base` by default and is `previous` now; a folder's recorded settings are those
    changed from the defaults, so each value must be recorded as it was before the change."""
    from syllabus.loop.distill import loop_fingerprint
    from syllabus.project import LoopConfig

    assert LoopConfig().restart == "previous"
    assert loop_fingerprint(LoopConfig(restart="base")) == {}  # as older builds recorded their default
    assert loop_fingerprint(LoopConfig(restart="previous")) == {"restart": "previous"}
    assert loop_fingerprint(LoopConfig(restart="base", rounds=5, budget=30)) == {"budget": 30}


def test_a_generated_skill_mix_row_keeps_every_node_it_combines(round_one):
    loop, node, _ = round_one
    folder = loop.layout.round(1)
    folder.data.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder.selected, [])
    mixed = {
        "question": "How would the capital of a country matter to a unit conversion?",
        "answer": "It would not: units convert alike everywhere.",
        "taxonomy_path": node,
        "taxonomy_paths": [node, "physics/units"],
    }
    write_jsonl(folder.data / "dataset.jsonl", [mixed])
    steps.assemble(loop, 1)
    (kept,) = [json.loads(line) for line in folder.kept.read_text().splitlines()]
    assert kept["taxonomy_path"] == node and kept["taxonomy_paths"] == [node, "physics/units"]
    assert kept["source"] == "generated"


# DPO's own settings -----------------------------------------------------------------------


def test_dpo_runs_at_its_own_learning_rate_with_an_nll_term(tmp_path):
    from trl import DPOConfig

    from syllabus.students.train import TrainOptions, default_learning_rate, dpo_loss

    config = Project.load(small_example(tmp_path / "p")).config.student
    sft = TrainOptions.from_config(config, method="sft", dataset=tmp_path, out_dir=tmp_path)
    dpo = TrainOptions.from_config(config, method="dpo", dataset=tmp_path, out_dir=tmp_path)
    assert default_learning_rate(sft) == config.learning_rate == 2e-5
    assert default_learning_rate(dpo) == config.dpo_learning_rate == 1e-6
    from syllabus.backends.device import training_precision

    made = DPOConfig(
        output_dir=str(tmp_path / "o"), report_to=[], **training_precision("auto"), **dpo_loss(DPOConfig, 0.5)
    )
    assert list(made.loss_type) == ["sigmoid", "sft"] and list(made.loss_weights) == [1.0, 0.5]
    assert dpo_loss(DPOConfig, 0.0) == {}


def test_bad_recipe_settings_exit_2_with_the_file_and_line(tmp_path):
    folder = small_example(tmp_path / "p")
    config = folder / "syllabus.yaml"
    config.write_text(config.read_text().replace("  restart: previous ", "  restart: sideways ", 1))
    done = run_cli("distill", cwd=folder)
    assert done.returncode == 2
    assert "loop.restart" in done.stderr and "syllabus.yaml:" in done.stderr


# The comparison ----------------------------------------------------------------------------


def test_paired_difference_se_and_mcnemar_match_a_hand_computation():
    # 10 items: both right on 4, only B on 4, only A on 1, both wrong on 1.
    a = [True] * 4 + [False] * 4 + [True] + [False]
    b = [True] * 4 + [True] * 4 + [False] + [False]
    block = paired(a, b)
    diffs = [0] * 4 + [1] * 4 + [-1] + [0]
    mean = 0.3
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 9 / 10)
    assert block.difference == pytest.approx(mean) and block.se == pytest.approx(se)
    # Exact two-sided binomial on 5 discordant items, 1 one way: 2 * (C(5,0) + C(5,1)) / 32.
    assert block.p_value == pytest.approx(2 * 6 / 32) == mcnemar_exact(1, 4)
    assert block.verdict == "no detectable change" and block.smallest_detectable == pytest.approx(0.6)
    strong = paired([False] * 7, [True] * 7)
    assert strong.verdict == "gain" and strong.p_value == pytest.approx(2 / 2**7)
    assert paired([True] * 7, [False] * 7).verdict == "loss"


def test_eval_compare_on_two_examinations_prints_and_writes_the_comparison(tmp_path):
    def exam(folder: Path, correct: list[bool]) -> Path:
        folder.mkdir(parents=True)
        rows = [
            _answer("n/a" if i < 6 else "n/b", f"Question {i}?", "x", "x", c, split="test")
            for i, c in enumerate(correct)
        ]
        write_jsonl(folder / "answers.jsonl", rows)
        return folder

    a = exam(tmp_path / "a", [False] * 6 + [True, True])
    b = exam(tmp_path / "b", [True] * 6 + [True, False])
    done = run_cli("eval", "--compare", str(a), "--compare", str(b), "--out", str(tmp_path / "c.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "c.json").read_text())
    assert result["nodes"]["n/a"]["difference"] == 1.0 and result["nodes"]["n/a"]["verdict"] == "gain"
    assert result["nodes"]["n/b"]["difference"] == -0.5 and result["nodes"]["n/b"]["verdict"] == "no detectable change"
    assert result["pooled"]["items"] == 8 and result["pooled"]["difference"] == pytest.approx(5 / 8)
    assert "gain" in done.stdout and "n/a" in done.stdout
    once = run_cli("eval", "--compare", str(a), cwd=tmp_path)
    assert once.returncode == 2 and "twice" in once.stderr


def test_compare_answers_pools_a_named_group_and_counts_what_it_left_out():
    a = [_answer("w", "q1", "x", "", False), _answer("w", "q2", "x", "", False), _answer("s", "q3", "x", "", True)]
    b = [_answer("w", "q1", "x", "", True), _answer("w", "q2", "x", "", False), _answer("s", "q4", "x", "", True)]
    result = compare_answers(a, b, nodes=["w"])
    assert result["group"]["items"] == 2 and result["group"]["difference"] == 0.5
    assert result["unmatched"] == 2 and result["pooled"]["items"] == 2


def test_an_align_section_sets_the_defaults_and_a_bad_value_names_its_line(tmp_path):
    from syllabus.align.run import Aligner, AlignOptions

    folder = small_example(tmp_path / "p")
    config = folder / "syllabus.yaml"
    config.write_text(config.read_text() + "align:\n  drafts: 3\n  scorer: both\n")
    aligner = Aligner(Project.load(folder), AlignOptions(rationales=1))
    assert (aligner.options.drafts, aligner.options.scorer, aligner.options.rationales) == (3, "both", 1)
    config.write_text(config.read_text().replace("scorer: both", "scorer: magic"))
    done = run_cli("align", cwd=folder)
    assert done.returncode == 2 and "align.scorer" in done.stderr and "syllabus.yaml:" in done.stderr
