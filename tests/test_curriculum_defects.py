"""Generated subjects as a recorded, safe part of the taxonomy (GitHub issue 10, items 1, 2, 17, 19, 21).

Each test runs the real CLI against `fault_server` (tests/fault_server.py), a real HTTP
server whose teacher lists its subjects in reverse alphabetical order ("Vector Spaces",
then "Matrix Methods"), or whose subjects reply a test sets: the two things a real
server cannot be told to do. The promises:

- the subjects' order is a recorded fact: the first run, a rerun, a run with more
  questions and a run after a kill all give question k the same subject, so nothing
  is asked twice and the rows are the same; a deleted subject file stays deleted, a
  hand-added one takes its place after the recorded ones;
- a subject name of any script and length makes a file name under 255 bytes, distinct
  from its siblings'; names the node rules refuse are left out and counted; every name
  is written so that any YAML reader reads it back as text;
- generation never writes through a symbolic link out of the taxonomy;
- an InstructLab qna.yaml with aliases (or a FIFO of that name) is reported, not expanded
  into a node file that breaks the whole taxonomy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml as pyyaml  # PyYAML: a YAML 1.1 reader, as many other tools are
from conftest import run_cli
from fault_server import MODEL, Fault, fault_server  # noqa: F401  (the fixture)

from syllabus.taxonomy import Taxonomy
from syllabus.taxonomy.curriculum import load_subjects

NODE = "mathematics/linear-algebra"


def generate(project: Path, server, questions: int):
    return run_cli(
        "generate",
        "--project",
        str(project),
        "--teacher",
        f"openai:{MODEL}",
        "--base-url",
        server.base_url,
        "--nodes",
        NODE,
        "--questions",
        str(questions),
        timeout=300,
    )


def ok(result) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output


def rows_of(project: Path) -> list[dict]:
    return [json.loads(line) for line in (project / "runs/default/dataset.jsonl").read_text().splitlines()]


def subjects_of(project: Path):
    return load_subjects(Taxonomy.load(project / "taxonomy").find(NODE))


def folder_of(project: Path) -> Path:
    return project / "taxonomy" / NODE / "subjects"


def bodies(records) -> list[str]:
    return [json.dumps(r.body, sort_keys=True) for r in records]


def reply(text: str) -> dict:
    """A whole chat.completion whose message is `text` (the fault server sends it as it is)."""
    return {
        "id": "chatcmpl-subjects",
        "object": "chat.completion",
        "created": 0,
        "model": MODEL,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }


# --- 1. the order of the subjects -------------------------------------------------------------
def test_subject_order_holds_across_reruns_and_a_grown_question_count(fault_server, make_project):
    server = fault_server()
    project = make_project(max_subjects=3)
    ok(generate(project, server, 6))
    names = [s.name for s in subjects_of(project)]
    assert len(names) == 2 and names[0].startswith("Vector Spaces") and names != sorted(names)
    first = rows_of(project)
    # Question k is about subject k mod 2, in the teacher's order, on the first run as on every other.
    assert [row["subject"] for row in first] == [names[k % 2] for k in range(6)]
    sent = list(server.chat)

    ok(generate(project, server, 6))
    assert server.chat == sent  # nothing asked again
    assert rows_of(project) == first

    ok(generate(project, server, 12))
    new = server.chat[len(sent) :]
    assert sorted(r.stage for r in new) == ["answer"] * 6 + ["question"] * 6  # only the 6 new questions
    assert not set(bodies(new)) & set(bodies(sent))
    grown = rows_of(project)
    assert grown[:6] == first and [row["question_index"] for row in grown] == list(range(12))


def test_deleted_subject_stays_deleted_and_a_hand_added_one_comes_after(fault_server, make_project):
    server = fault_server()
    project = make_project(max_subjects=2)
    ok(generate(project, server, 4))
    vector, matrix = subjects_of(project)
    vector.file.unlink()
    # Named to sort first, but added by hand: it takes the place after the recorded subjects.
    (folder_of(project) / "aaa-hand-course.yaml").write_text(
        "name: Hand Course\nsessions:\n  - title: Written by a person\n    concepts: [rank, nullity]\n",
        encoding="utf-8",
    )
    assert [s.name for s in subjects_of(project)] == [matrix.name, "Hand Course"]

    ok(generate(project, server, 4))
    assert [row["subject"] for row in rows_of(project)] == [matrix.name, "Hand Course"] * 2
    assert sorted(p.name for p in folder_of(project).iterdir()) == ["aaa-hand-course.yaml", matrix.file.name]


# --- 2 and 21. names from the teacher -----------------------------------------------------------
LONG = "数" * 100  # 100 characters (the parser's cap), 300 bytes of UTF-8
SUBJECTS_REPLY = "\n".join(
    [
        f"{LONG} | undergraduate | 数论, 代数",
        f"{LONG[:-1]}学 | graduate | 几何",  # the same 99 characters first: the file names must still differ
        "yes | undergraduate | logic",  # a YAML 1.1 boolean, written unquoted it is read back as True
        "null | graduate | nothing",
        "\x1b[31mRed Course\x1b[0m | graduate | colour",  # terminal escape codes
        "CON | graduate | devices",  # a reserved device name on Windows
        "Trojan \u202eesruoC | graduate | disguise",  # a right-to-left override
    ]
)


def test_teacher_subject_names_make_bounded_unique_files_and_unsafe_ones_are_counted(fault_server, make_project):
    server = fault_server()
    server.set_faults(Fault("bad-shape", stage="subjects", payload=reply(SUBJECTS_REPLY)))
    project = make_project(max_subjects=6)
    ok(generate(project, server, 4))  # before: OSError 'File name too long', on this run and every rerun

    files = sorted(folder_of(project).iterdir())
    assert len(files) == 4 and all(len(f.name.encode("utf-8")) <= 255 for f in files)
    assert [s.name for s in subjects_of(project)] == [LONG, f"{LONG[:-1]}学", "yes", "null"]
    for file in files:  # a YAML 1.1 reader reads every name back as the text it is
        assert isinstance(pyyaml.safe_load(file.read_text(encoding="utf-8"))["name"], str), file.read_text()
    unparsed = json.loads((project / "runs/default/summary.json").read_text())["stages"]["subjects"]["unparsed"]
    assert unparsed == {
        "subject name contains control characters": 1,
        "subject name a reserved device name on Windows file systems": 1,
        "subject name contains bidirectional override characters": 1,
    }
    rows, sent = rows_of(project), server.chat_count()

    ok(generate(project, server, 4))
    assert server.chat_count() == sent and rows_of(project) == rows
    assert {row["subject"] for row in rows} == {LONG, f"{LONG[:-1]}学", "yes", "null"}
    ok(run_cli("taxonomy", "validate", "--project", str(project)))


# --- 17. links out of the taxonomy -----------------------------------------------------------------
def test_generate_never_writes_through_a_link_out_of_the_taxonomy(fault_server, make_project, tmp_path):
    server = fault_server()
    project = make_project()
    elsewhere = tmp_path / "other-repo" / ".github" / "workflows"
    elsewhere.mkdir(parents=True)
    ci = elsewhere / "deploy.yaml"  # reads as a subject without sessions: generate would fill them in
    ci.write_text("name: Deploy\non: push\n", encoding="utf-8")
    folder_of(project).symlink_to(elsewhere, target_is_directory=True)

    result = generate(project, server, 2)
    said = " ".join(result.stderr.split())
    assert result.returncode == 2 and "Traceback" not in result.stdout + result.stderr, said
    assert "a symbolic link takes this discipline's subjects folder out of the taxonomy" in said, said
    assert sorted(p.name for p in elsewhere.iterdir()) == ["deploy.yaml"]
    assert ci.read_text(encoding="utf-8") == "name: Deploy\non: push\n"
    assert server.chat_count() == 0


# --- 19. InstructLab import ----------------------------------------------------------------------------
GOOD_QNA = """version: 2
task_description: Write haiku about a given subject.
created_by: someone
seed_examples:
  - question: Write a haiku about autumn.
    answer: Red leaves drift and fall, the cold wind carries them off, the branches stand bare.
"""


def bomb_qna() -> str:
    """A knowledge file of under 2 KB that, with its aliases expanded, is 1,000 seeds: a 1.4 MiB node.yaml."""
    context = "Jupiter is the largest planet of the solar system. " * 20
    pair = f"{{question: '{'Which planet is the largest of all the planets? ' * 3}', answer: '{'Jupiter. ' * 30}'}}"
    return (
        "version: 3\ndomain: astronomy\ncreated_by: someone\ndocument_outline: Planets.\n"
        f"context: &c '{context}'\npair: &p {pair}\n"
        f"example: &e {{context: *c, questions_and_answers: [{', '.join(['*p'] * 25)}]}}\n"
        f"seed_examples: [{', '.join(['*e'] * 40)}]\n"
    )


def test_instructlab_import_reports_aliases_and_special_files_and_the_tree_stays_valid(make_project, tmp_path):
    project = make_project()
    source = tmp_path / "instructlab"
    for leaf, text in (("compositional_skills/writing/haiku", GOOD_QNA), ("knowledge/astronomy/planets", bomb_qna())):
        (source / leaf).mkdir(parents=True)
        (source / leaf / "qna.yaml").write_text(text, encoding="utf-8")
    assert len(bomb_qna()) < 2000
    (source / "knowledge/astronomy/pipe").mkdir()
    os.mkfifo(source / "knowledge/astronomy/pipe/qna.yaml")  # reading it would block for ever

    result = run_cli("taxonomy", "import-instructlab", str(source), "--project", str(project), timeout=60)
    ok(result)
    output = " ".join(result.stdout.split())
    assert "imported 3 node(s) with 1 seed(s)" in output, output  # compositional-skills, writing, haiku
    assert "planets/qna.yaml: broken YAML: YAML refused: YAML alias *c (aliases are not accepted)" in output
    assert "pipe/qna.yaml: broken YAML: expected a qna.yaml, found a special file" in output
    assert not (project / "taxonomy" / "knowledge").exists()
    ok(run_cli("taxonomy", "validate", "--project", str(project)))


@pytest.mark.parametrize("text", ["a: &a [1, 2]\nb: *a\n", "- &x {k: v}\n- *x\n"])
def test_every_reader_refuses_aliases(tmp_path, text):
    """The library readers (round trip and plain) share one refusal: file:line, never an expansion."""
    from syllabus.errors import UserError
    from syllabus.yamlio import load, load_plain

    file = tmp_path / "x.yaml"
    file.write_text(text, encoding="utf-8")
    for reader in (load, load_plain):
        with pytest.raises(UserError, match="aliases are not accepted") as caught:
            reader(file)
        assert caught.value.where == f"{file}:2"


def test_subjects_written_meanwhile_by_another_run_are_taken_not_a_crash(make_project):
    """Two runs on one project with different run folders both propose subjects for a node;
    the second to finish finds `subjects/` already there and takes it (the folder is the
    decision) instead of crashing with 'Directory not empty' (issue 10, item 10)."""
    from syllabus.taxonomy.curriculum import Subject, write_subjects

    project = make_project()
    node = Taxonomy.load(project / "taxonomy").find(NODE)
    first = write_subjects(
        node,
        [Subject("Vector Spaces", "undergraduate", [], []), Subject("Matrix Methods", "undergraduate", [], [])],
        generated_by="run-a",
    )
    second = write_subjects(node, [Subject("Eigenvalues", "graduate", [], [])], generated_by="run-b")
    assert [s.name for s in second] == [s.name for s in first] == ["Vector Spaces", "Matrix Methods"]
    assert sorted(p.name for p in folder_of(project).iterdir()) == ["matrix-methods.yaml", "vector-spaces.yaml"]
    assert not [p for p in (project / "taxonomy" / NODE).iterdir() if p.name.endswith(".tmp")]
