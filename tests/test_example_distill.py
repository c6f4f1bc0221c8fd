"""The `distill` example project: its taxonomy validates and its exam items are right.

The example is what `syllabus distill` is first run on, offline, with the embedded student;
a wrong reference answer there would make the loop look broken (or a student look better
than it is), so every computed answer is recomputed here from the question's own text.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from fractions import Fraction

import pytest

from syllabus.data.keys import question_key
from syllabus.project import SCAFFOLD
from syllabus.students.probes import load_probes
from syllabus.taxonomy import Taxonomy

EXAMPLE = SCAFFOLD / "examples" / "distill"
DISCIPLINES = {
    "geography/capitals",
    "chemistry/elements",
    "linguistics/antonyms",
    "mathematics/arithmetic",
    "physics/units",
    "reasoning/calendar",
}
SPLITS = {"exam", "dev", "test"}

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
# Each unit in the smallest unit of its quantity, so any pair of one quantity converts exactly.
UNITS = {
    "millimeters": ("length", 1),
    "centimeters": ("length", 10),
    "meters": ("length", 1000),
    "kilometers": ("length", 1_000_000),
    "grams": ("mass", 1),
    "kilograms": ("mass", 1000),
    "milliliters": ("volume", 1),
    "liters": ("volume", 1000),
    "seconds": ("time", 1),
    "minutes": ("time", 60),
    "hours": ("time", 3600),
    "days": ("time", 86400),
    "weeks": ("time", 604800),
}
ARITHMETIC = re.compile(r"What is (\d+) (plus|minus|times|divided by) (\d+)\?")
CONVERSION = re.compile(r"How many (\w+) are in (\d+) (\w+)\?")
DAYS_AFTER = re.compile(r"If today is (\w+), what day will it be in (\d+) days\?")
DAYS_BEFORE = re.compile(r"If today is (\w+), what day was it (\d+) days ago\?")
MONTHS_AFTER = re.compile(r"If this month is (\w+), what month will it be in (\d+) months\?")


def expected_answer(node: str, question: str) -> str | None:
    """The answer recomputed from the question's phrasing; None for nodes of recalled facts."""
    if node == "mathematics/arithmetic":
        match = ARITHMETIC.fullmatch(question)
        assert match, f"unknown arithmetic phrasing: {question!r}"
        a, op, b = int(match[1]), match[2], int(match[3])
        if op == "divided by":
            assert a % b == 0, f"division is not exact: {question!r}"
            return str(a // b)
        return str({"plus": a + b, "minus": a - b, "times": a * b}[op])
    if node == "physics/units":
        match = CONVERSION.fullmatch(question)
        assert match, f"unknown conversion phrasing: {question!r}"
        (target_kind, target), count, (source_kind, source) = UNITS[match[1]], int(match[2]), UNITS[match[3]]
        assert target_kind == source_kind, f"converts {source_kind} to {target_kind}: {question!r}"
        value = Fraction(count * source, target)
        assert value.denominator == 1, f"conversion is not a whole number: {question!r}"
        return str(value.numerator)
    if node == "reasoning/calendar":
        if match := DAYS_AFTER.fullmatch(question):
            return DAYS[(DAYS.index(match[1]) + int(match[2])) % 7]
        if match := DAYS_BEFORE.fullmatch(question):
            return DAYS[(DAYS.index(match[1]) - int(match[2])) % 7]
        match = MONTHS_AFTER.fullmatch(question)
        assert match, f"unknown calendar phrasing: {question!r}"
        return MONTHS[(MONTHS.index(match[1]) + int(match[2])) % 12]
    return None


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return Taxonomy.load(EXAMPLE / "taxonomy")


@pytest.fixture(scope="module")
def items() -> list[dict]:
    lines = (EXAMPLE / "items.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_taxonomy_validates_with_exactly_the_six_disciplines(taxonomy):
    assert taxonomy.issues == []
    assert {node.path for node in taxonomy.disciplines()} == DISCIPLINES
    for node in taxonomy.disciplines():
        assert node.description.strip(), node.path
        assert 3 <= len(node.seeds) <= 6, node.path


def test_seeds_are_right_and_not_among_the_items(taxonomy, items):
    asked = {question_key(item["question"]) for item in items}
    for node in taxonomy.disciplines():
        for seed in node.seeds:
            assert question_key(seed.question) not in asked, f"seed of {node.path} is an item: {seed.question!r}"
            expected = expected_answer(node.path, seed.question)
            assert expected is None or seed.answer == expected, (node.path, seed.question, seed.answer)


def test_every_node_has_enough_items_in_every_split(taxonomy, items):
    nodes = {node.path for node in taxonomy.disciplines()}
    per_node = Counter(item["node"] for item in items)
    assert set(per_node) == nodes
    for node in nodes:
        assert per_node[node] >= 60, node
        assert {item["split"] for item in items if item["node"] == node} == SPLITS, node
    assert {item["split"] for item in items} == SPLITS


def test_items_are_short_distinct_and_readable_as_probes(items):
    for item in items:
        assert (
            {"question", "answer", "node", "split"} <= set(item) <= {"question", "answer", "node", "split", "solution"}
        )
        # Worked solutions only on exam items (dev and test ones would never be read), ending at the answer.
        assert "solution" not in item or item["split"] == "exam", item
        assert isinstance(item["answer"], str) and item["answer"].strip() == item["answer"] != "", item
        assert len(item["answer"].split()) <= 3, item
        if any(ch.isdigit() for ch in item["answer"]):
            assert re.fullmatch(r"[1-9]\d*", item["answer"]), f"not a plain integer: {item}"
    keys = Counter(question_key(item["question"]) for item in items)
    repeated = [item["question"] for item in items if keys[question_key(item["question"])] > 1]
    assert repeated == [], repeated
    probes = load_probes(EXAMPLE / "items.jsonl")  # the loader the examination reads them with
    assert [(p.question, p.answer, p.node) for p in probes] == [(i["question"], i["answer"], i["node"]) for i in items]


def test_computed_answers_are_right(items):
    checked = Counter()
    for item in items:
        expected = expected_answer(item["node"], item["question"])
        if expected is not None:
            assert item["answer"] == expected, item
            checked[item["node"]] += 1
    assert set(checked) == {"mathematics/arithmetic", "physics/units", "reasoning/calendar"}
    assert all(count >= 60 for count in checked.values()), checked


def test_the_weak_nodes_exam_items_carry_solutions_that_the_grader_credits(items):
    from syllabus.students.examine import grade

    weak = ("mathematics/arithmetic", "physics/units", "reasoning/calendar")
    solved = [i for i in items if "solution" in i]
    assert {i["node"] for i in solved} == set(weak)
    assert len(solved) == sum(1 for i in items if i["node"] in weak and i["split"] == "exam")
    for item in solved:
        assert grade(item["answer"], item["solution"], item["question"])[1] is True, item


def test_the_checker_recomputes_known_answers():
    """The recomputation is not vacuous: each phrasing gives the answer worked out by hand."""
    assert expected_answer("mathematics/arithmetic", "What is 347 minus 128?") == "219"
    assert expected_answer("physics/units", "How many kilograms are in 7000 grams?") == "7"
    assert expected_answer("physics/units", "How many minutes are in 3 hours?") == "180"
    assert expected_answer("reasoning/calendar", "If today is Tuesday, what day will it be in 3 days?") == "Friday"
    assert expected_answer("reasoning/calendar", "If today is Monday, what day was it 2 days ago?") == "Saturday"
    assert (
        expected_answer("reasoning/calendar", "If this month is November, what month will it be in 3 months?")
        == "February"
    )
