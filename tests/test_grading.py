"""The examination's grader against answer styles, on the example project's own items.

Issue 13 measured it: a student trained on full sentences writes "There are 12000 metres in 12
kilometres." and a grader that takes the last number marks it wrong, while "If today is Tuesday, in
7 days it will be Wednesday." was credited for "Tuesday" only because the question was restated.
A round that changes the student's style must not move its score by itself, so every discipline
of the `distill` example is graded here in four styles: the bare answer, the answer restated as a
sentence, the same sentence with a wrong value, and the question's words with no answer at all.
"""

from __future__ import annotations

import json

import pytest

from syllabus.project import SCAFFOLD
from syllabus.students.examine import NUMBER, _number, _words, grade

ITEMS = {
    row["question"]: row
    for row in map(json.loads, (SCAFFOLD / "examples" / "distill" / "items.jsonl").read_text().splitlines())
}
STYLES = ("bare", "restated", "restated-wrong", "question-only")

# (question of an example item, style, the student's answer, whether it is right)
CASES = [
    # geography/capitals
    ("What is the capital of Australia?", "bare", "Canberra", True),
    ("What is the capital of Australia?", "bare", "canberra.", True),
    ("What is the capital of Australia?", "restated", "The capital of Australia is Canberra.", True),
    ("What is the capital of Australia?", "restated", "Canberra is the capital of Australia.", True),
    ("What is the capital of Australia?", "restated", "What is the capital of Australia? Canberra.", True),
    ("What is the capital of Australia?", "restated-wrong", "The capital of Australia is Sydney.", False),
    ("What is the capital of Australia?", "question-only", "The capital of Australia.", False),
    ("What is the capital of the United Arab Emirates?", "bare", "Abu Dhabi", True),
    (
        "What is the capital of the United Arab Emirates?",
        "restated",
        "The capital of the United Arab Emirates is Abu Dhabi.",
        True,
    ),
    (
        "What is the capital of the United Arab Emirates?",
        "restated-wrong",
        "The capital of the United Arab Emirates is Dubai.",
        False,
    ),
    ("What is the capital of the United Arab Emirates?", "restated-wrong", "The capital is Abu.", False),
    (
        "What is the capital of the United Arab Emirates?",
        "question-only",
        "The United Arab Emirates has a capital.",
        False,
    ),
    # chemistry/elements: symbols, names from symbols, atomic numbers
    ("What is the chemical symbol of iron?", "bare", "Fe", True),
    ("What is the chemical symbol of iron?", "restated", "The chemical symbol of iron is Fe.", True),
    ("What is the chemical symbol of iron?", "restated", "Iron has the chemical symbol FE.", True),
    ("What is the chemical symbol of iron?", "restated-wrong", "The chemical symbol of iron is Ir.", False),
    ("What is the chemical symbol of iron?", "question-only", "The chemical symbol of iron is iron.", False),
    ("Which element has the chemical symbol Pb?", "bare", "Lead.", True),
    ("Which element has the chemical symbol Pb?", "restated", "The element with the chemical symbol Pb is lead.", True),
    ("Which element has the chemical symbol Pb?", "restated", "Lead has the chemical symbol Pb.", True),
    (
        "Which element has the chemical symbol Pb?",
        "restated-wrong",
        "The element with the chemical symbol Pb is platinum.",
        False,
    ),
    ("Which element has the chemical symbol Pb?", "question-only", "The element has the chemical symbol Pb.", False),
    ("What is the atomic number of fluorine?", "bare", "9", True),
    ("What is the atomic number of fluorine?", "restated", "The atomic number of fluorine is 9.", True),
    ("What is the atomic number of fluorine?", "restated-wrong", "The atomic number of fluorine is 19.", False),
    ("What is the atomic number of fluorine?", "question-only", "The atomic number of fluorine.", False),
    # linguistics/antonyms
    ("What is the opposite of love?", "bare", "Hate", True),
    ("What is the opposite of love?", "restated", "The opposite of love is hate.", True),
    ("What is the opposite of love?", "restated", "Hate is the opposite of love.", True),
    ("What is the opposite of love?", "restated-wrong", "The opposite of love is like.", False),
    ("What is the opposite of love?", "question-only", "The opposite of love is love.", False),
    ("What is the opposite of plus?", "restated", "The opposite of plus is minus.", True),
    ("What is the opposite of plus?", "question-only", "What is the opposite of plus?", False),
    # mathematics/arithmetic
    ("What is 451 minus 186?", "bare", "265", True),
    ("What is 451 minus 186?", "restated", "451 minus 186 is 265.", True),
    ("What is 451 minus 186?", "restated", "451 - 186 = 265", True),
    ("What is 451 minus 186?", "restated", "451-186=265.", True),
    ("What is 451 minus 186?", "restated-wrong", "451 minus 186 is 275.", False),
    ("What is 451 minus 186?", "question-only", "451 minus 186.", False),
    ("What is 451 minus 186?", "question-only", "It is 186.", False),
    ("What is 92 times 19?", "bare", "1,748", True),
    ("What is 92 times 19?", "restated", "92 times 19 equals 1,748.", True),
    ("What is 92 times 19?", "restated-wrong", "92 times 19 equals 1,738.", False),
    ("What is 92 times 19?", "question-only", "What is 92 times 19?", False),
    ("What is 84 divided by 7?", "restated", "84 divided by 7 is 12.", True),
    ("What is 84 divided by 7?", "restated-wrong", "84 divided by 7 is 7.", False),
    # physics/units
    ("How many meters are in 12 kilometers?", "bare", "12000", True),
    ("How many meters are in 12 kilometers?", "bare", "12,000 meters", True),
    ("How many meters are in 12 kilometers?", "restated", "There are 12000 meters in 12 kilometers.", True),
    ("How many meters are in 12 kilometers?", "restated", "There are 12000 metres in 12 kilometres.", True),
    ("How many meters are in 12 kilometers?", "restated", "12 kilometers is 12,000 meters.", True),
    (
        "How many meters are in 12 kilometers?",
        "restated",
        "There are 1000 meters in a kilometer, so 12 kilometers is 12000 meters.",
        True,
    ),
    ("How many meters are in 12 kilometers?", "restated-wrong", "There are 1200 meters in 12 kilometers.", False),
    ("How many meters are in 12 kilometers?", "question-only", "There are 12 kilometers.", False),
    ("How many meters are in 12 kilometers?", "question-only", "How many meters are in 12 kilometers?", False),
    ("How many hours are in 120 minutes?", "restated", "There are 2 hours in 120 minutes.", True),
    ("How many hours are in 120 minutes?", "restated-wrong", "There are 120 hours in 120 minutes.", False),
    # reasoning/calendar: the reference may legitimately be the question's own day
    ("If today is Monday, what day was it 6 days ago?", "bare", "Tuesday", True),
    (
        "If today is Monday, what day was it 6 days ago?",
        "restated",
        "If today is Monday, 6 days ago it was Tuesday.",
        True,
    ),
    ("If today is Monday, what day was it 6 days ago?", "restated", "Monday minus 6 days is Tuesday.", True),
    (
        "If today is Monday, what day was it 6 days ago?",
        "restated-wrong",
        "If today is Monday, 6 days ago it was Wednesday.",
        False,
    ),
    ("If today is Monday, what day was it 6 days ago?", "restated-wrong", "Today is Monday, so it was Monday.", False),
    ("If today is Monday, what day was it 6 days ago?", "question-only", "Today is Monday.", False),
    ("If today is Friday, what day will it be in 7 days?", "bare", "Friday.", True),
    (
        "If today is Friday, what day will it be in 7 days?",
        "restated",
        "If today is Friday, in 7 days it will be Friday.",
        True,
    ),
    ("If today is Friday, what day will it be in 7 days?", "restated", "In 7 days it will be Friday again.", True),
    (
        "If today is Friday, what day will it be in 7 days?",
        "restated-wrong",
        "If today is Friday, in 7 days it will be Saturday.",
        False,
    ),
    (
        "If today is Friday, what day will it be in 7 days?",
        "restated-wrong",
        "Today being Friday, a week later it is Saturday.",
        False,
    ),
    ("If today is Friday, what day will it be in 7 days?", "question-only", "Today is Friday.", False),
    (
        "If today is Friday, what day will it be in 7 days?",
        "question-only",
        "If today is Friday, what day will it be in 7 days?",
        False,
    ),
    ("If this month is October, what month will it be in 3 months?", "bare", "January", True),
    (
        "If this month is October, what month will it be in 3 months?",
        "restated",
        "If this month is October, in 3 months it will be January.",
        True,
    ),
    (
        "If this month is October, what month will it be in 3 months?",
        "restated-wrong",
        "In 3 months it will be October.",
        False,
    ),
    ("If this month is October, what month will it be in 3 months?", "question-only", "This month is October.", False),
]


@pytest.mark.parametrize(
    "question, style, answer, right",
    CASES,
    ids=[f"{ITEMS[q]['node'] if q in ITEMS else '?'}-{s}-{i}" for i, (q, s, _, _) in enumerate(CASES)],
)
def test_answer_styles_of_the_example_items(question, style, answer, right):
    item = ITEMS[question]  # the case is about a real item of the example project, with its own reference
    kind, correct = grade(item["answer"], answer, question)
    assert kind == ("numeric" if _number(item["answer"]) is not None else "short")
    assert correct is right, (style, answer, item["answer"])


def test_every_discipline_is_graded_in_every_style():
    covered = {(ITEMS[q]["node"], style) for q, style, _, _ in CASES}
    nodes = {row["node"] for row in ITEMS.values()}
    assert len(nodes) == 6
    assert covered == {(node, style) for node in nodes for style in STYLES}


def test_what_issue_13_measured():
    """The two verdicts the issue measured on a student trained on full sentences, before and after."""
    units = "How many meters are in 12 kilometers?"
    assert grade("12000", "There are 12000 metres in 12 kilometres.", units) == ("numeric", True)
    calendar = "If today is Tuesday, what day is it in 7 days?"
    assert grade("Tuesday", "If today is Tuesday, in 7 days it will be Wednesday.", calendar) == ("short", False)
    assert grade("Tuesday", "Tuesday.", calendar) == ("short", True)
    assert grade("Tuesday", "If today is Tuesday, in 7 days it will be Tuesday.", calendar) == ("short", True)
    assert grade("Wednesday", "If today is Tuesday, in 7 days it will be Wednesday.", calendar) == ("short", True)
    assert grade("Lima", "The capital of Peru is Lima.", "What is the capital of Peru?") == ("short", True)
    assert grade("Lima", "Lima.", "What is the capital of Peru?") == ("short", True)
    assert grade("cold", "The opposite of hot is cold.", "What is the opposite of hot?") == ("short", True)
    assert grade("cold", "The opposite of hot is hot.", "What is the opposite of hot?") == ("short", False)


@pytest.mark.parametrize(
    "reference, answer, question, right",
    [
        ("12000", "12,000", "", True),
        ("12,000", "12000 metres", "", True),
        ("12000", "12000 metres", "How many meters are in 12 kilometers?", True),
        ("-3", "5 minus 8 is -3.", "What is 5 minus 8?", True),
        ("-3", "5 - 8 = -3", "What is 5 minus 8?", True),
        ("-3", "It is 3.", "What is 5 minus 8?", False),
        ("3.5", "7 divided by 2 is 3.5.", "What is 7 divided by 2?", True),
        ("3.5", "It is 3.", "What is 7 divided by 2?", False),
        ("0.5", "One half is .5", "", True),
        ("5", "5 times 1 is 5.", "What is 5 times 1?", True),  # the answer may equal a number of the question
        ("5", "5.", "What is 5 times 1?", True),
        ("5", "It is 1.", "What is 5 times 1?", False),
        ("123", "1,2,3", "", False),  # a list, not one number with thousands commas
        ("3", "1,2,3", "", True),
        ("Fe", "fe", "What is the chemical symbol of iron?", True),
        ("Fe", "F", "What is the chemical symbol of iron?", False),
        ("Fe", "The chemical symbol of iron is Fe!!", "What is the chemical symbol of iron?", True),
        ("Abu Dhabi", "ABU-DHABI", "What is the capital of the United Arab Emirates?", True),
        ("May", "It may be June.", "If this month is February, what month will it be in 3 months?", False),
        ("May", "It will be May.", "If this month is February, what month will it be in 3 months?", True),
        # two days named: the day the question gives is not the answer while another remains
        ("Thursday", "Thursday plus 7 days is Thursday.", "If today is Thursday, what day was it 7 days ago?", True),
        ("Thursday", "Thursday or Friday.", "If today is Thursday, what day was it 7 days ago?", False),
        ("Tuesday", "It was Tuesday, the day after Monday.", "If today is Monday, what day was it 6 days ago?", True),
    ],
)
def test_numbers_spellings_and_named_days(reference, answer, question, right):
    assert grade(reference, answer, question)[1] is right


def test_without_the_question_nothing_is_removed():
    """Old two-argument calls still grade the whole answer."""
    assert grade("Tuesday", "If today is Tuesday, in 7 days it will be Wednesday.") == ("short", False)
    assert grade("Wednesday", "If today is Tuesday, in 7 days it will be Wednesday.") == ("short", True)
    assert grade("12000", "There are 12000 metres in 12 kilometres.") == ("numeric", False)  # last number
    assert grade("42", "Adding them gives 40 + 2 = 42.") == ("numeric", True)
    assert grade("A long reference answer that explains many things in detail here", "x", "y") == ("long", None)


def test_numbers_and_words_are_normalised_alike():
    assert [_number(n) for n in NUMBER.findall("12,000 and -3, 3.5; 451-186, 1,2,3")] == [
        12000,
        -3,
        3.5,
        451,
        186,
        1,
        2,
        3,
    ]
    assert _words("The capital of the UNITED Kingdom is London!") == [
        "capital",
        "of",
        "united",
        "kingdom",
        "is",
        "london",
    ]
    assert _words("12,000 metres") == _words("12000 Metres") == ["12000", "metres"]
