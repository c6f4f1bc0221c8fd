"""The tolerant reply parsers, on the messy replies weak teachers really write."""

from __future__ import annotations

import pytest

from syllabus.generators.parsers import ParseError, parse_answer, parse_question, parse_subjects, parse_syllabus

# --- subjects ---------------------------------------------------------------------------------


def test_subjects_numbered_bold_bullets_and_repeats():
    reply = """Here are some courses that teach Physics:

1. **Classical Mechanics** | undergraduate | Newton's laws, energy; momentum
2. Classical Mechanics | undergraduate | the same course again
3) `Electromagnetism` | Undergraduate. | charges, fields, Maxwell's equations
- Thermodynamics - graduate - entropy, heat engines
* Fluid Dynamics
Which of these would you like?
"""
    subjects = parse_subjects(reply, limit=10)
    assert [s.name for s in subjects] == ["Classical Mechanics", "Electromagnetism", "Thermodynamics", "Fluid Dynamics"]
    mechanics, em, thermo, fluids = subjects
    assert mechanics.level == "undergraduate"
    assert mechanics.subtopics == ["Newton's laws", "energy", "momentum"]
    assert em.level == "undergraduate"  # lower-cased, trailing '.' dropped
    assert em.subtopics == ["charges", "fields", "Maxwell's equations"]
    assert (thermo.level, thermo.subtopics) == ("graduate", ["entropy", "heat engines"])
    assert (fluids.level, fluids.subtopics) == (None, [])
    assert all(s.sessions == [] for s in subjects)


def test_subjects_repeat_detected_by_slug_not_exact_text():
    subjects = parse_subjects("Linear Algebra | undergraduate | vectors\nlinear algebra! | graduate | again\n", limit=5)
    assert [s.name for s in subjects] == ["Linear Algebra"]


def test_subjects_limit_is_respected():
    reply = "\n".join(f"{i}. Course number {i} | undergraduate | topic {i}" for i in range(1, 11))
    subjects = parse_subjects(reply, limit=3)
    assert [s.name for s in subjects] == ["Course number 1", "Course number 2", "Course number 3"]


def test_subjects_keep_at_most_eight_subtopics():
    topics = ", ".join(f"topic {i}" for i in range(12))
    (subject,) = parse_subjects(f"Big Course | undergraduate | {topics}", limit=5)
    assert subject.subtopics == [f"topic {i}" for i in range(8)]


def test_subjects_skip_too_short_and_too_long_names():
    reply = "AB | undergraduate | x\n" + "X" * 101 + " | graduate | y\nGood Course | graduate | z\n"
    assert [s.name for s in parse_subjects(reply, limit=5)] == ["Good Course"]


@pytest.mark.parametrize("reply", ["", "   \n\n", "Here are the courses:\nWhat level do you want?\n", "AB\n- x\n"])
def test_subjects_nothing_usable_raises_with_reason(reply):
    with pytest.raises(ParseError, match="Name \\| level \\| topics"):
        parse_subjects(reply, limit=5)


# --- syllabus ---------------------------------------------------------------------------------

MESSY_SYLLABUS = """Sure! Here is a syllabus for the course.

**Session 1: Kinematics - 30 minutes**
- **displacement** and velocity
- displacement and velocity
- acceleration (45 minutes)
1. projectile motion
This session is an introduction, and then the teacher keeps talking about it.
Session 2: Newton's Laws (60 minutes)
* first law
* second law
Session 2: newton's laws
- should be dropped with its repeated session
### Session 3: Energy – 30 minutes
- kinetic energy - 10 minutes
- potential energy
Lesson 4. A session without concepts
Session 5) Momentum
• impulse
I hope this helps! Let me know if you want more sessions.
"""


def test_syllabus_messy_reply():
    sessions = parse_syllabus(MESSY_SYLLABUS, max_sessions=10)
    assert [s.title for s in sessions] == ["Kinematics", "Newton's Laws", "Energy", "Momentum"]
    assert sessions[0].concepts == ["displacement and velocity", "acceleration", "projectile motion"]
    assert sessions[1].concepts == ["first law", "second law"]  # the repeated session's concept is not added
    assert sessions[2].concepts == ["kinetic energy", "potential energy"]  # durations stripped
    assert sessions[3].concepts == ["impulse"]
    # run-on prose is never a concept
    assert not any("hope" in c or "introduction" in c for s in sessions for c in s.concepts)


def test_syllabus_session_duration_stripped_from_title():
    (session,) = parse_syllabus("Session 3: Thermal Physics - 30 minutes\n- heat\n", max_sessions=5)
    assert session.title == "Thermal Physics"
    (session,) = parse_syllabus("Week 1: Waves (2 hours)\n- frequency\n", max_sessions=5)
    assert session.title == "Waves"


def test_syllabus_repeated_session_ignored_with_its_concepts():
    reply = "Session 1: Optics\n- lenses\nSession 2: Optics\n- mirrors\n- prisms\nSession 3: Sound\n- pitch\n"
    sessions = parse_syllabus(reply, max_sessions=10)
    assert [(s.title, s.concepts) for s in sessions] == [("Optics", ["lenses"]), ("Sound", ["pitch"])]


def test_syllabus_concept_lines_before_any_session_are_ignored():
    sessions = parse_syllabus("- stray concept\nSession 1: Start\n- real concept\n", max_sessions=3)
    assert [(s.title, s.concepts) for s in sessions] == [("Start", ["real concept"])]


def test_syllabus_caps_sessions_and_concepts():
    reply = "\n".join(
        f"Session {i}: Topic {i}\n" + "\n".join(f"- concept {i}.{j}" for j in range(10)) for i in range(1, 9)
    )
    sessions = parse_syllabus(reply, max_sessions=3, max_concepts=4)
    assert [s.title for s in sessions] == ["Topic 1", "Topic 2", "Topic 3"]
    assert all(len(s.concepts) == 4 for s in sessions)
    assert sessions[2].concepts == ["concept 3.0", "concept 3.1", "concept 3.2", "concept 3.3"]


def test_syllabus_max_sessions_counts_only_sessions_with_concepts():
    reply = "Session 1: Empty\nSession 2: Full\n- a concept\nSession 3: Also full\n- another\n"
    sessions = parse_syllabus(reply, max_sessions=1)
    assert [s.title for s in sessions] == ["Full"]


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "Here is a syllabus:\n- kinematics\n- dynamics\n",  # concepts but no session header
        "Session 1: Kinematics\nSession 2: Dynamics\n",  # headers without concepts
        "Session 1: Kinematics\nthe displacement and velocity\n",  # concepts not written as list items
    ],
)
def test_syllabus_nothing_usable_raises_with_reason(reply):
    with pytest.raises(ParseError, match="Session N: title"):
        parse_syllabus(reply, max_sessions=5)


# --- question ---------------------------------------------------------------------------------


def test_question_label_and_bold_removed():
    assert (
        parse_question("**Question:** What is the derivative of x^2 with respect to x?")
        == "What is the derivative of x^2 with respect to x?"
    )
    assert parse_question("Question 3: Why is the sky blue on a clear day?") == "Why is the sky blue on a clear day?"
    assert parse_question("Homework question: Explain why ice floats on water.") == "Explain why ice floats on water."


def test_question_answer_after_question_is_cut():
    reply = "Question: What is the kinetic energy of a 2 kg ball moving at 3 m/s?\nAnswer: 9 J, since KE = mv^2/2."
    assert parse_question(reply) == "What is the kinetic energy of a 2 kg ball moving at 3 m/s?"
    reply = "Why does a compass needle point north?\n\n**Answer:** Because the Earth has a magnetic field."
    assert parse_question(reply) == "Why does a compass needle point north?"
    reply = "Solve x^2 - 5x + 6 = 0 for x.\nSolution: x = 2 or x = 3."
    assert parse_question(reply) == "Solve x^2 - 5x + 6 = 0 for x."


def test_question_keeps_paragraphs_up_to_the_one_that_asks():
    reply = (
        "A ball of mass 2 kg is dropped from a height of 10 m.\n\n"
        "Ignoring air resistance, how fast is it moving when it reaches the ground?\n\n"
        "This question tests energy conservation. Is it too easy? Let me know!"
    )
    assert parse_question(reply) == (
        "A ball of mass 2 kg is dropped from a height of 10 m.\n\n"
        "Ignoring air resistance, how fast is it moving when it reaches the ground?"
    )


def test_question_run_on_text_without_question_mark_keeps_first_paragraph():
    reply = (
        "Explain how a heat engine converts heat into work, and why no engine is fully efficient.\n\n"
        "This question covers the second law of thermodynamics.\n\nIt is a good homework question."
    )
    assert (
        parse_question(reply)
        == "Explain how a heat engine converts heat into work, and why no engine is fully efficient."
    )


def test_question_numbers_in_text_are_not_mistaken_for_labels():
    assert (
        parse_question("A 2.5 kg ball rolls down a 3 m ramp. What is its speed at the bottom?")
        == "A 2.5 kg ball rolls down a 3 m ramp. What is its speed at the bottom?"
    )
    assert (
        parse_question("A.I. models learn from data. Why can they be biased?")
        == "A.I. models learn from data. Why can they be biased?"
    )
    assert parse_question("Q. Why do planets orbit the Sun in ellipses?") == "Why do planets orbit the Sun in ellipses?"


def test_question_is_capped():
    assert len(parse_question("Why " + "very " * 2000 + "long?")) == 4000


@pytest.mark.parametrize(
    "reply, reason",
    [
        ("", "empty question"),
        ("Answer: 42", "empty question"),
        ("Question:", "empty question"),
        ("Q: Why so?", "question too short"),
        ("What would you like me to write a question about?", "asked the user instead"),
        ("I'd be happy to help! Could you please provide the topic of the course?", "asked the user instead"),
        ("Please provide the key concepts you want the question to test.", "asked the user instead"),
        ("As an AI language model, I cannot write homework questions.", "asked the user instead"),
    ],
)
def test_question_parse_errors(reply, reason):
    with pytest.raises(ParseError, match=reason):
        parse_question(reply)


# --- answer -----------------------------------------------------------------------------------


def test_answer_label_removed_and_text_kept():
    assert parse_answer("Answer: The speed is 14 m/s.\n\nStep 1: ...") == "The speed is 14 m/s.\n\nStep 1: ..."
    assert parse_answer("  A 2.5 kg ball has 5 J of energy. ") == "A 2.5 kg ball has 5 J of energy."
    with pytest.raises(ParseError, match="empty answer"):
        parse_answer("Answer:   \n")
