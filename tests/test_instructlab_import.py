"""Import of an InstructLab taxonomy (qna.yaml leaves) written here, in its real formats."""

from __future__ import annotations

import pytest
from taxonomy_helpers import cli, load, project, tree_listing, write  # noqa: F401

from syllabus.errors import UserError
from syllabus.taxonomy import Taxonomy, validate_tree
from syllabus.taxonomy.instructlab import import_instructlab

SKILL_V2 = """
version: 2
task_description: Write haiku about a given subject.
created_by: someone
seed_examples:
  - question: Write a haiku about autumn.
    answer: |
      Red leaves drift and fall
      the cold wind carries them off
      the branches stand bare
  - question: Write a haiku about the sea.
    answer: Waves fold into foam, / salt wind over grey water, / gulls cry and are gone.
"""

GROUNDED_V2 = """
version: 2
task_description: Summarise a passage in one sentence.
created_by: someone
seed_examples:
  - context: |
      The mitochondrion is an organelle found in most eukaryotic cells.
      It produces most of the cell's supply of ATP.
    question: Summarise the passage in one sentence.
    answer: Mitochondria are organelles that make most of a cell's ATP.
  - context: Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.
    question: Summarise the passage.
    answer: Plants make sugar and oxygen from light, water and CO2.
"""

KNOWLEDGE_V3 = """
version: 3
domain: astronomy
created_by: someone
document_outline: The planets of the solar system and their orbits.
seed_examples:
  - context: |
      Mercury is the smallest planet and the closest to the Sun.
    questions_and_answers:
      - question: Which planet is closest to the Sun?
        answer: Mercury.
      - question: Which is the smallest planet?
        answer: Mercury.
  - context: Jupiter is the largest planet; it has at least 95 moons.
    questions_and_answers:
      - question: Which planet is the largest?
        answer: Jupiter.
      - question: How many moons does Jupiter have?
        answer: At least 95.
document:
  repo: https://github.com/example/knowledge
  commit: 0123456789abcdef
  patterns:
    - planets.md
"""

SKILL_V1 = """
task_description: Turn a sentence into passive voice.
created_by: someone
seed_examples:
  - question: The cat chased the mouse.
    answer: The mouse was chased by the cat.
"""

BROKEN = """
version: 2
task_description: broken
seed_examples:
  - question: [unclosed
    answer: x
"""

VERSION_9 = """
version: 9
task_description: from the future
seed_examples:
  - question: Q?
    answer: A.
"""

LEAVES = {
    "compositional_skills/writing/freeform/haiku": SKILL_V2,
    "compositional_skills/grounded/summarization": GROUNDED_V2,
    "knowledge/science/astronomy/planets": KNOWLEDGE_V3,
    "compositional_skills/linguistics/passive_voice": SKILL_V1,
    "compositional_skills/writing/broken_leaf": BROKEN,
    "compositional_skills/writing/future_leaf": VERSION_9,
}


@pytest.fixture
def source(tmp_path):
    root = tmp_path / "instructlab-taxonomy"
    for folder, text in LEAVES.items():
        write(root / folder / "qna.yaml", text)
    write(root / "README.md", "# not a leaf\n")
    return root


def test_import_kinds_names_descriptions_and_seeds(project, source):
    root = project / "taxonomy"
    report = import_instructlab(Taxonomy.load(root), source)

    # Broken and unknown-version files are listed with a reason; they do not stop the import.
    skipped = {file.parent.name: reason for file, reason in report.skipped}
    assert set(skipped) == {"broken_leaf", "future_leaf"}
    assert skipped["broken_leaf"].startswith("broken YAML")
    assert "unknown schema version 9" in skipped["future_leaf"]
    assert all(file.name == "qna.yaml" and file.is_file() for file, _ in report.skipped)

    fresh = load(root)  # the whole tree, reloaded from disk, is valid
    assert validate_tree(root) == []
    assert {
        "compositional-skills/writing/freeform/haiku",
        "compositional-skills/grounded/summarization",
        "knowledge/science/astronomy/planets",
        "compositional-skills/linguistics/passive-voice",
    } == {n.path for n in fresh.disciplines() if n.path.startswith(("compositional", "knowledge"))}
    assert not fresh.exists("compositional-skills/writing/broken-leaf")
    assert not fresh.exists("compositional-skills/writing/future-leaf")
    assert report.seeds == 2 + 2 + 4 + 1
    assert set(report.added) == {n.path for n in fresh.walk() if n.path.startswith(("compositional", "knowledge"))}
    assert report.existing == []

    kinds = {n.path: n.kind for n in fresh.walk()}
    assert kinds["compositional-skills"] == "field"
    assert kinds["knowledge"] == "field"
    assert kinds["compositional-skills/writing"] == "subfield"
    assert kinds["compositional-skills/writing/freeform"] == "subfield"
    assert kinds["knowledge/science/astronomy"] == "subfield"

    assert fresh.find("compositional-skills").name == "Compositional Skills"
    assert fresh.find("compositional-skills").description.startswith("Imported from the InstructLab taxonomy")

    # Skills v2 without context.
    haiku = fresh.find("compositional-skills/writing/freeform/haiku")
    assert (haiku.name, haiku.description) == ("Haiku", "Write haiku about a given subject.")
    assert [(s.question, s.context) for s in haiku.seeds] == [
        ("Write a haiku about autumn.", None),
        ("Write a haiku about the sea.", None),
    ]
    assert haiku.seeds[0].answer == "Red leaves drift and fall\nthe cold wind carries them off\nthe branches stand bare"

    # A grounded skill keeps its context.
    summary = fresh.find("compositional-skills/grounded/summarization")
    assert summary.description == "Summarise a passage in one sentence."
    assert summary.seeds[0].context.startswith("The mitochondrion is an organelle")
    assert summary.seeds[0].answer == "Mitochondria are organelles that make most of a cell's ATP."
    assert summary.seeds[1].context == "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen."

    # Knowledge v3: every question-answer pair becomes a seed carrying its example's context.
    planets = fresh.find("knowledge/science/astronomy/planets")
    assert planets.description == "The planets of the solar system and their orbits."
    assert [(s.question, s.answer) for s in planets.seeds] == [
        ("Which planet is closest to the Sun?", "Mercury."),
        ("Which is the smallest planet?", "Mercury."),
        ("Which planet is the largest?", "Jupiter."),
        ("How many moons does Jupiter have?", "At least 95."),
    ]
    assert planets.seeds[0].context == "Mercury is the smallest planet and the closest to the Sun."
    assert planets.seeds[3].context == "Jupiter is the largest planet; it has at least 95 moons."

    # A v1 skill (no version key).
    passive = fresh.find("compositional-skills/linguistics/passive-voice")
    assert (passive.name, passive.description) == ("Passive Voice", "Turn a sentence into passive voice.")
    assert [(s.question, s.answer) for s in passive.seeds] == [
        ("The cat chased the mouse.", "The mouse was chased by the cat.")
    ]

    # The scaffold is untouched.
    assert fresh.exists("natural-sciences/physics/classical-mechanics")


def test_import_into_an_existing_field(project, source):
    root = project / "taxonomy"
    report = import_instructlab(Taxonomy.load(root), source, into="humanities")
    fresh = load(root)
    assert validate_tree(root) == []
    assert fresh.find("humanities/compositional-skills").kind == "subfield"
    assert fresh.find("humanities/knowledge/science/astronomy/planets").kind == "discipline"
    assert (
        fresh.find("humanities/compositional-skills/writing/freeform/haiku").seeds[0].question
        == "Write a haiku about autumn."
    )
    assert all(path.startswith("humanities/") for path in report.added)
    assert not fresh.exists("compositional-skills")
    assert len(report.skipped) == 2


def test_import_twice_reports_existing_and_adds_nothing(project, source):
    root = project / "taxonomy"
    import_instructlab(Taxonomy.load(root), source)
    before = {p: (root / p).read_bytes() for p in tree_listing(root) if (root / p).is_file()}
    report = import_instructlab(Taxonomy.load(root), source)
    assert report.added == []
    assert report.seeds == 0
    assert sorted(report.existing) == sorted(
        [
            "compositional-skills/grounded/summarization",
            "compositional-skills/linguistics/passive-voice",
            "compositional-skills/writing/freeform/haiku",
            "knowledge/science/astronomy/planets",
        ]
    )
    assert {p: (root / p).read_bytes() for p in tree_listing(root) if (root / p).is_file()} == before


def test_leaf_with_sub_leaves_gets_an_overview_discipline(project, tmp_path):
    source = tmp_path / "il"
    write(source / "skills" / "writing" / "qna.yaml", SKILL_V1)
    write(source / "skills" / "writing" / "poetry" / "qna.yaml", SKILL_V2)
    report = import_instructlab(Taxonomy.load(project / "taxonomy"), source)
    fresh = load(project / "taxonomy")
    assert fresh.find("skills/writing").kind == "subfield"
    assert fresh.find("skills/writing/overview").seeds[0].question == "The cat chased the mouse."
    assert fresh.find("skills/writing/poetry").kind == "discipline"
    assert report.seeds == 3


def test_seed_examples_without_question_or_answer_are_left_out(project, tmp_path):
    source = tmp_path / "il"
    write(
        source / "skills" / "mixed" / "qna.yaml",
        """
        version: 2
        task_description: Mixed.
        seed_examples:
          - question: Good?
            answer: Yes.
          - question: No answer here.
          - answer: No question here.
          - just a string
        """,
    )
    report = import_instructlab(Taxonomy.load(project / "taxonomy"), source)
    assert [reason for _, reason in report.skipped] == ["3 seed example(s) without question or answer were left out"]
    assert [s.question for s in load(project / "taxonomy").find("skills/mixed").seeds] == ["Good?"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("- a list\n", "not a mapping"),
        ("version: 2\ntask_description: x\n", "no seed_examples"),
        ("version: 2\nseed_examples: []\n", "no seed_examples"),
        ("version: 2\nseed_examples:\n  - question: only a question\n", "no usable seed examples"),
    ],
)
def test_unusable_files_are_skipped_with_a_reason(project, tmp_path, text, reason):
    source = tmp_path / "il"
    write(source / "skills" / "bad" / "qna.yaml", text)
    write(source / "skills" / "good" / "qna.yaml", SKILL_V1)
    report = import_instructlab(Taxonomy.load(project / "taxonomy"), source)
    assert any(file == source / "skills" / "bad" / "qna.yaml" and r == reason for file, r in report.skipped), (
        report.skipped
    )
    fresh = load(project / "taxonomy")
    assert fresh.exists("skills/good") and not fresh.exists("skills/bad")


@pytest.mark.parametrize("folder", ["con", "nul", "lpt1", "___"])
def test_folders_that_cannot_be_names_are_skipped(project, tmp_path, folder):
    source = tmp_path / "il"
    write(source / "skills" / folder / "qna.yaml", SKILL_V1)
    root = project / "taxonomy"
    before = tree_listing(root)
    report = import_instructlab(Taxonomy.load(root), source)
    assert [file.parent.name for file, _ in report.skipped] == [folder]
    assert tree_listing(root) == before


def test_leaf_at_the_top_is_skipped_instead_of_breaking_the_tree(project, tmp_path):
    """A qna.yaml one level down would become a discipline at the top, which is not a valid tree."""
    source = tmp_path / "il"
    write(source / "poetry" / "qna.yaml", SKILL_V2)
    write(source / "skills" / "prose" / "qna.yaml", SKILL_V1)
    root = project / "taxonomy"
    report = import_instructlab(Taxonomy.load(root), source)
    assert [(file.parent.name, "--into" in reason) for file, reason in report.skipped] == [("poetry", True)]
    assert validate_tree(root) == []
    assert load(root).exists("skills/prose") and not (root / "poetry").exists()
    # With --into the same leaf has a place.
    import_instructlab(Taxonomy.load(root), source, into="humanities")
    assert load(root).find("humanities/poetry").kind == "discipline"


def test_leaf_below_an_existing_discipline_is_skipped(project, tmp_path):
    source = tmp_path / "il"
    write(source / "mathematics" / "probability" / "dice" / "qna.yaml", SKILL_V1)
    write(source / "mathematics" / "geometry" / "qna.yaml", SKILL_V2)
    root = project / "taxonomy"
    report = import_instructlab(Taxonomy.load(root), source)
    assert [(file.parent.name, reason) for file, reason in report.skipped] == [
        ("dice", "'mathematics/probability' is a discipline, which cannot have nodes below it")
    ]
    assert validate_tree(root) == []
    assert load(root).find("mathematics/geometry").kind == "discipline"
    assert report.existing == [] and report.added == ["mathematics/geometry"]


def test_into_errors(project, source):
    root = project / "taxonomy"
    with pytest.raises(UserError, match="cannot import into discipline"):
        import_instructlab(Taxonomy.load(root), source, into="mathematics/probability")
    with pytest.raises(UserError, match="no node at 'nowhere'"):
        import_instructlab(Taxonomy.load(root), source, into="nowhere")
    with pytest.raises(UserError, match="InstructLab taxonomy folder does not exist"):
        import_instructlab(Taxonomy.load(root), source / "missing")


def test_cli_import_with_into(cli, project, source):
    result = cli("taxonomy", "import-instructlab", source, "--into", "natural-sciences", "--project", project)
    assert result.code == 0, result.output
    assert "imported 12 node(s) with 9 seed(s)" in result.out
    assert f"skipped {source / 'compositional_skills/writing/broken_leaf/qna.yaml'}: broken YAML" in result.out
    assert (
        f"skipped {source / 'compositional_skills/writing/future_leaf/qna.yaml'}: unknown schema version 9"
        in result.out
    )
    assert load(project / "taxonomy").find("natural-sciences/knowledge/science/astronomy/planets").kind == "discipline"
    assert cli("taxonomy", "validate", "--project", project).code == 0

    again = cli("taxonomy", "import-instructlab", source, "--into", "natural-sciences", "--project", project)
    assert again.code == 0
    assert "imported 0 node(s) with 0 seed(s)" in again.out
    assert "exists natural-sciences/compositional-skills/writing/freeform/haiku (left as it is)" in again.out


def test_cli_import_errors_exit_2(cli, project, source, tmp_path):
    result = cli("taxonomy", "import-instructlab", source, "--into", "mathematics/probability", "--project", project)
    assert result.code == 2 and "cannot import into discipline" in result.err
    result = cli("taxonomy", "import-instructlab", tmp_path / "missing", "--project", project)
    assert result.code == 2 and "InstructLab taxonomy folder does not exist" in result.err
    assert "Traceback" not in result.output
