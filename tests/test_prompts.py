"""Prompt templates: built-ins render to chat turns, overrides replace them, the sandbox holds."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from syllabus.errors import UserError
from syllabus.prompts import BUILTIN_DIR, Templates, builtin_names, split_messages
from syllabus.taxonomy.curriculum import Session, Subject
from syllabus.taxonomy.model import BLOOM_LEVELS, STRATEGIES, Node, Seed

STAGES = ("subjects", "syllabus", "question", "answer")


@pytest.fixture
def node(tmp_path) -> Node:
    folder = tmp_path / "taxonomy" / "natural-sciences" / "physics"
    folder.mkdir(parents=True)
    return Node(
        path="natural-sciences/physics",
        folder=folder,
        kind="discipline",
        name="Physics",
        description="  Matter, energy and their interactions.\n",
        level="undergraduate",
    )


@pytest.fixture
def course() -> Subject:
    return Subject(
        "Classical Mechanics",
        "undergraduate",
        ["Newton's laws", "energy"],
        [
            Session("Kinematics", ["velocity", "acceleration"]),
            Session("Dynamics", ["force", "mass"]),
            Session("Energy", ["work", "kinetic energy"]),
        ],
    )


def question_context(node, course, difficulty="single-session"):
    sessions = course.sessions[:1] if difficulty == "single-session" else [course.sessions[0], course.sessions[2]]
    return {
        "discipline": node,
        "subject": course,
        "sessions": sessions,
        "concepts": ["velocity", "work"],
        "learned": [],
        "syllabus": [s.title for s in course.sessions],
        "difficulty": difficulty,
        "seeds": node.seeds,
        "bloom_level": "apply",
        "strategy": "step_by_step",
    }


def contexts(node, course):
    """What syllabus.generators.glan passes to each template."""
    question = question_context(node, course)
    return {
        "subjects": {"discipline": node, "count": 3},
        "syllabus": {"subject": course, "discipline": node, "max_sessions": 12},
        "question": question,
        "answer": {**question, "question": "How fast is a ball moving 2 s after it is dropped from rest?"},
        "expand": {"node": node, "children": ["Mechanics"], "count": 4, "child_kind": "subfield"},
        "correction": {
            "discipline": node,
            "question": "How fast is a ball moving 2 s after it is dropped from rest?",
            "student_answer": "It moves at 9.8 m/s.",
            "reference": "19.6 m/s",
        },
        "restatement": {
            "discipline": node,
            "question": "How fast is a ball moving 2 s after it is dropped from rest?",
            "shots": [
                {"question": "How fast is a ball moving 1 s after it is dropped?", "restatement": "It moves at ___."}
            ],
        },
        "skill_mix": {
            **question,
            "parts": [
                {"discipline": node, "subject": course, "session": course.sessions[0], "concept": "velocity"},
                {
                    "discipline": node,
                    "subject": Subject("Algebra I", "undergraduate", [], [Session("Ratios", ["percentage change"])]),
                    "session": Session("Ratios", ["percentage change"]),
                    "concept": "percentage change",
                },
            ],
            "topic": "Kinematics (Classical Mechanics)",
            "sentences": 3,
        },
        "skill_mix_judge": {
            "question": "By how many percent does a cyclist's speed grow each second?",
            "topic": "Kinematics (Classical Mechanics)",
            "skills": [
                {"concept": "velocity", "discipline": "Physics", "subject": "Classical Mechanics"},
                {"concept": "percentage change", "discipline": "Mathematics", "subject": "Algebra I"},
            ],
        },
        "judge": {
            "question": "How fast is a ball moving 2 s after it is dropped from rest?",
            "answer": "v = g t = 9.8 m/s² × 2 s ≈ 19.6 m/s.",
            "discipline": node.name,
            "subject": course.name,
            "bloom_level": "apply",
        },
    }


def test_builtin_names():
    assert set(STAGES) <= set(builtin_names())
    assert "expand" in builtin_names()


@pytest.mark.parametrize("name", builtin_names())
def test_every_builtin_renders_to_turns_ending_with_user(name, node, course):
    messages = Templates().render(name, **contexts(node, course)[name])
    assert messages[-1]["role"] == "user"
    assert messages[0]["role"] == "system"
    assert all(m["role"] in ("system", "user", "assistant") and m["content"].strip() for m in messages)
    assert all("[[" not in m["content"] and "{{" not in m["content"] and "{%" not in m["content"] for m in messages)
    roles = [m["role"] for m in messages[1:]]
    assert all(a != b for a, b in itertools.pairwise(roles))  # turns alternate user/assistant


def test_rendered_turns_carry_the_context(node, course):
    templates = Templates()
    last = templates.render("subjects", discipline=node, count=3)[-1]["content"]
    assert '"Physics"' in last and "List 3 courses" in last and "Matter, energy and their interactions.)" in last
    last = templates.render("syllabus", subject=course, discipline=node, max_sessions=12)[-1]["content"]
    assert '"Classical Mechanics"' in last and "Newton's laws, energy" in last and "at most 12 sessions" in last

    single = templates.render("question", **question_context(node, course))[-1]["content"]
    assert 'about "Kinematics"' in single and "tests: velocity, work" in single
    assert "Kinematics; Dynamics; Energy" in single and "already learned" not in single
    two = templates.render(
        "question", **{**question_context(node, course, "two-session"), "learned": ["force", "mass"]}
    )[-1]["content"]
    assert 'connects "Kinematics" with "Energy"' in two and "already learned: force, mass" in two

    answer = templates.render("answer", **contexts(node, course)["answer"])
    assert answer[-1]["content"] == "How fast is a ball moving 2 s after it is dropped from rest?"
    assert "Classical Mechanics" in answer[0]["content"]


def test_question_uses_the_nodes_seeds_as_examples(node, course):
    node.seeds = [
        Seed("What is inertia?", "Resistance to change in motion."),
        Seed("Define momentum.", "p = mv", context="Momentum is mass times velocity."),
    ]
    messages = Templates().render("question", **question_context(node, course))
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"] == "What is inertia?"
    assert "Base it on this text: Momentum is mass times velocity." in messages[3]["content"]
    assert "Kepler" not in "".join(m["content"] for m in messages)  # the built-in examples are replaced


def test_override_replaces_builtin_and_changes_only_its_version(tmp_path, node, course):
    builtin = Templates()
    overrides = tmp_path / "prompts"
    overrides.mkdir()
    (overrides / "answer.j2").write_text("[[system]]\nBe brief.\n[[user]]\nQ: {{ question }}\n", encoding="utf-8")
    project = Templates(overrides)

    messages = project.render("answer", **contexts(node, course)["answer"])
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q: How fast is a ball moving 2 s after it is dropped from rest?"},
    ]
    assert project.get("answer").overridden and not builtin.get("answer").overridden
    assert project.get("answer").origin == overrides / "answer.j2"
    assert project.get("answer").version != builtin.get("answer").version
    others = [n for n in builtin_names() if n != "answer"]
    assert project.versions(others) == builtin.versions(others)
    assert not any(project.get(n).overridden for n in others)


def test_version_is_a_hash_of_the_source(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, text in ((a, "[[user]]\nhello\n"), (b, "[[user]]\nhello!\n")):
        folder.mkdir()
        (folder / "answer.j2").write_text(text, encoding="utf-8")
    assert Templates(a).get("answer").version == Templates(a).get("answer").version
    assert Templates(a).get("answer").version != Templates(b).get("answer").version
    assert len(Templates(a).get("answer").version) == 12


def test_unknown_template_name():
    with pytest.raises(UserError, match="no template named 'nope'"):
        Templates().get("nope")


def override(tmp_path: Path, source: str, name: str = "answer") -> Templates:
    folder = tmp_path / "prompts"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.j2").write_text(source, encoding="utf-8")
    return Templates(folder)


def test_syntax_error_names_file_and_line(tmp_path):
    templates = override(tmp_path, "[[system]]\nok\n[[user]]\n{% if question %}\n{{ question }\n")
    with pytest.raises(UserError) as info:
        templates.get("answer")
    text = str(info.value)
    assert "template syntax error" in text
    assert f"{tmp_path / 'prompts' / 'answer.j2'}:5" in text


def test_syntax_error_unclosed_block_names_file(tmp_path):
    templates = override(tmp_path, "[[user]]\n{% for x in concepts %}\n{{ x }}\n")
    with pytest.raises(UserError, match=r"answer\.j2:\d+: template syntax error"):
        templates.render("answer", concepts=["a"])


@pytest.mark.parametrize(
    "source",
    [
        "[[user]]\n{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "[[user]]\n{{ cycler.__init__.__globals__ }}",
        "[[user]]\n{{ question.__class__ }}",
        "[[user]]\n{{ lipsum.__globals__['os'].system('touch pwned') }}",
        "[[user]]\n{{ discipline.folder.joinpath('pwned').write_text('x') }}",
        "[[user]]\n{{ discipline.folder.parent.iterdir() | list }}",
        "[[user]]\n{{ discipline.file.read_text() }}",
        "[[user]]\n{{ concepts.append('injected') }}{{ concepts }}",
    ],
)
def test_sandbox_escapes_raise_user_error_and_never_run(tmp_path, monkeypatch, node, source):
    monkeypatch.chdir(tmp_path)
    (node.folder / "node.yaml").write_text("name: Physics\n", encoding="utf-8")
    concepts = ["velocity"]
    templates = override(tmp_path, source)
    with pytest.raises(UserError, match="unsafe") as info:
        templates.render(
            "answer", question="What is velocity, and how is it measured?", discipline=node, concepts=concepts
        )
    assert "answer.j2" in str(info.value)
    assert not (node.folder / "pwned").exists() and not (tmp_path / "pwned").exists()
    assert concepts == ["velocity"]


def test_a_path_may_still_be_printed(tmp_path, node):
    templates = override(tmp_path, "[[user]]\nin {{ discipline.folder }}")
    assert templates.render("answer", discipline=node) == [{"role": "user", "content": f"in {node.folder}"}]


def test_unknown_variable_raises_user_error(tmp_path, node, course):
    templates = override(tmp_path, "[[user]]\n{{ question }} for {{ student_name }}\n")
    with pytest.raises(UserError, match=r"unknown variable.*student_name") as info:
        templates.render("answer", **contexts(node, course)["answer"])
    assert "answer.j2" in str(info.value)
    # an unknown attribute of a known variable too
    templates = override(tmp_path, "[[user]]\n{{ subject.teacher }}\n", name="question")
    with pytest.raises(UserError, match="unknown variable"):
        templates.render("question", **question_context(node, course))


def test_builtin_with_a_missing_variable_raises_user_error(node):
    with pytest.raises(UserError, match="unknown variable"):
        Templates().render("subjects", discipline=node)  # no count


def test_text_before_first_marker_raises(tmp_path):
    templates = override(tmp_path, "You are a teacher.\n[[user]]\n{{ question }}\n")
    with pytest.raises(UserError, match="before the first") as info:
        templates.render("answer", question="Why?")
    assert "answer.j2" in str(info.value)


def test_jinja_comments_and_blank_lines_before_first_marker_are_fine(tmp_path):
    templates = override(tmp_path, "{# a note #}\n\n[[user]]\n{{ question }}\n")
    assert templates.render("answer", question="Why?") == [{"role": "user", "content": "Why?"}]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("[[system]]\nhi\n[[user]]\nq\n[[assistant]]\nan example\n", "must end with a \\[\\[user\\]\\] turn"),
        ("", "must end with a \\[\\[user\\]\\] turn"),
        ("[[system]]\n\n[[user]]\nq\n", "empty system turn"),
        ("[[user]]\n   \n", "empty user turn"),
    ],
)
def test_split_messages_problems(text, problem):
    with pytest.raises(UserError, match=problem):
        split_messages(text, "x.j2")


def test_split_messages_markers_only_on_their_own_line():
    messages = split_messages("[[system]]\nsay [[user]] inline\n[[user]]  \n  question  \n")
    assert messages == [{"role": "system", "content": "say [[user]] inline"}, {"role": "user", "content": "question"}]


def test_builtin_dir_holds_the_stage_templates():
    assert all((BUILTIN_DIR / f"{name}.j2").is_file() for name in STAGES)


@pytest.mark.parametrize("level", BLOOM_LEVELS)
def test_question_template_targets_every_bloom_level(level, node, course):
    messages = Templates().render("question", **{**question_context(node, course), "bloom_level": level})
    others = [lvl for lvl in BLOOM_LEVELS if lvl != level]
    last = messages[-1]["content"]
    assert "The question asks the student to" in last
    rendered = {
        lvl: Templates().render("question", **{**question_context(node, course), "bloom_level": lvl})[-1]["content"]
        for lvl in others
    }
    assert all(text != last for text in rendered.values())  # each level asks differently


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_answer_template_carries_each_strategy_in_its_system_turn(strategy, node, course):
    context = {**question_context(node, course), "question": "Why?", "strategy": strategy}
    messages = Templates().render("answer", **context)
    assert messages[0]["role"] == "system" and messages[-1] == {"role": "user", "content": "Why?"}
    others = {Templates().render("answer", **{**context, "strategy": s})[0]["content"] for s in STRATEGIES}
    assert len(others) == len(STRATEGIES)
