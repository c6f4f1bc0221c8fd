"""Edit operations (add, remove, move/rename, set) round-trip through disk and keep hand-written files intact."""

from __future__ import annotations

import difflib
import re

import pytest
from taxonomy_helpers import (  # noqa: F401  (fixtures are used by name)
    NODE,
    cli,
    load,
    minimal_tree,
    project,
    tree_listing,
    write,
)

from syllabus.errors import UserError
from syllabus.taxonomy import Taxonomy, validate_tree
from syllabus.taxonomy.edit import move_node


@pytest.fixture
def root(tmp_path):
    return minimal_tree(tmp_path / "taxonomy")


def no_leftovers(root):
    """No staging or trash folders (hidden .*.tmp / .*.removed) are left behind."""
    return [p for p in tree_listing(root) if re.search(r"(^|/)\.[^/]*\.(tmp|removed)$", p)]


# --- add -------------------------------------------------------------------


def test_add_each_kind_round_trips(root):
    tax = Taxonomy.load(root)
    tax.add("history", kind="field", description="The past, from sources.")
    tax.add("history/Ancient World", kind="subfield", description="Before 500 AD.")
    tax.add(
        "history/ancient-world/roman-republic",
        kind="discipline",
        description="Rome from 509 to 27 BC.",
        level="graduate",
        weight=2.5,
    )

    fresh = load(root)
    field = fresh.find("history")
    assert (field.kind, field.name, field.description) == ("field", "History", "The past, from sources.")
    sub = fresh.find("history/ancient-world")
    assert (sub.kind, sub.name) == ("subfield", "Ancient World")  # a name given in the path is kept as written
    leaf = fresh.find("history/ancient-world/roman-republic")
    assert (leaf.kind, leaf.name, leaf.level, leaf.weight) == ("discipline", "Roman Republic", "graduate", 2.5)
    assert leaf.description == "Rome from 509 to 27 BC."
    assert leaf.file == root / "history" / "ancient-world" / "roman-republic" / NODE
    keys = [line.split(":")[0] for line in leaf.file.read_text().splitlines()]
    assert keys == ["schema_version", "kind", "name", "description", "level", "weight"]
    assert validate_tree(root) == []
    assert no_leftovers(root) == []


def test_add_with_explicit_name(root):
    Taxonomy.load(root).add("science/chem", kind="subfield", name="Organic Chemistry", description="Carbon.")
    node = load(root).find("science/organic-chemistry")
    assert node.name == "Organic Chemistry"
    assert not (root / "science" / "chem").exists()


def test_add_keeps_unicode_names_readable(root):
    Taxonomy.load(root).add("arts/Théâtre Grec", kind="discipline", description="Tragedy and comedy.")
    node = load(root).find("arts/theatre-grec")
    assert node.name == "Théâtre Grec"


@pytest.mark.parametrize(
    "path, fields, message",
    [
        ("Science", {"kind": "field"}, "already exists"),  # case-only duplicate of a sibling
        ("SCIENCE", {"kind": "field"}, "already exists"),
        ("science/physics/Optics!", {"kind": "discipline"}, "already exists"),  # punctuation only
        ("geology", {"kind": "discipline"}, "cannot sit at the top"),
        ("geology", {"kind": "subfield"}, "cannot sit at the top"),
        ("science/physics/optics/lenses", {"kind": "discipline"}, "cannot sit below discipline"),
        ("science/x", {"kind": "course"}, "unknown kind"),
        ("science/x", {"kind": "discipline", "description": "   "}, "description is empty"),
        ("nowhere/x", {"kind": "discipline"}, "no node at 'nowhere'"),
        ("science/x", {"kind": "discipline", "weight": -1}, "weight must be a number >= 0"),
        ("science/x", {"kind": "discipline", "weight": float("nan")}, "weight must be a number >= 0"),
        ("science/x", {"kind": "discipline", "name": ""}, "name is empty"),
    ],
)
def test_add_rejects_and_writes_nothing(root, path, fields, message):
    before = tree_listing(root)
    fields.setdefault("description", "Something.")
    with pytest.raises(UserError, match=message):
        Taxonomy.load(root).add(path, **fields)
    assert tree_listing(root) == before


# --- remove ----------------------------------------------------------------


def test_remove_leaf_round_trips(root):
    Taxonomy.load(root).remove("science/physics/optics")
    fresh = load(root)
    assert not fresh.exists("science/physics/optics")
    assert fresh.exists("science/physics")
    assert not (root / "science" / "physics" / "optics").exists()
    assert no_leftovers(root) == []


def test_remove_subtree_round_trips(root):
    tax = Taxonomy.load(root)
    tax.remove("science")
    assert [n.path for n in tax.walk()] == ["arts", "arts/music"]  # the object follows the disk
    assert [n.path for n in load(root).walk()] == ["arts", "arts/music"]
    assert sorted(tree_listing(root)) == ["arts", "arts/music", "arts/music/node.yaml", "arts/node.yaml"]


def test_remove_unknown_node_is_a_user_error(root):
    with pytest.raises(UserError, match=r"no node at 'science/optics'.*\n.*did you mean"):
        Taxonomy.load(root).remove("science/optics")


# --- move / rename ---------------------------------------------------------


def test_move_into_existing_node(root):
    node = Taxonomy.load(root).move("science/physics/optics", "science")
    assert node.path == "science/optics"
    fresh = load(root)
    moved = fresh.find("science/optics")
    assert (moved.name, moved.kind, moved.level) == ("Optics", "discipline", "undergraduate")
    assert not fresh.exists("science/physics/optics")


def test_move_subtree_to_new_parent_keeps_children(root):
    Taxonomy.load(root).move("science/physics", "arts")
    fresh = load(root)
    assert fresh.find("arts/physics/optics").name == "Optics"
    assert not (root / "science" / "physics").exists()


def test_rename_by_move_changes_name_and_folder(root):
    node = Taxonomy.load(root).move("science/physics/optics", "science/physics/wave-optics")
    assert node.path == "science/physics/wave-optics"
    fresh = load(root).find("science/physics/wave-optics")
    assert fresh.name == "Wave Optics"
    assert "name: Wave Optics" in fresh.file.read_text()
    assert not (root / "science" / "physics" / "optics").exists()


def test_move_and_rename_in_one_step(root):
    node = Taxonomy.load(root).move("science/physics/optics", "arts/Stage Lighting")
    assert node.path == "arts/stage-lighting"
    assert load(root).find("arts/stage-lighting").name == "Stage Lighting"


def test_move_with_explicit_name(root):
    tax = Taxonomy.load(root)
    move_node(tax, "arts/music", "arts/x", name="Music Theory")
    assert load(root).find("arts/music-theory").name == "Music Theory"


def test_move_keeps_name_when_last_part_is_the_folder(tmp_path):
    root = tmp_path / "t"
    write(root / "science" / NODE, "kind: field\nname: Science\ndescription: d\n")
    write(root / "arts" / NODE, "kind: field\nname: Arts\ndescription: d\n")
    write(root / "science" / "x-ray" / NODE, "kind: discipline\nname: X-Ray (imaging)\ndescription: d\n")
    tax = Taxonomy.load(root)
    assert tax.warnings  # folder 'x-ray' is not the slug of its name
    node = tax.move("science/x-ray", "arts/x-ray")
    # The name is kept, and the folder becomes the slug of that name (which also clears the warning).
    assert node.path == "arts/x-ray-imaging"
    fresh = load(root)
    assert fresh.find("arts/x-ray-imaging").name == "X-Ray (imaging)"
    assert fresh.warnings == []


@pytest.mark.parametrize(
    "src, dst, message",
    [
        ("science", "science/physics", "into itself"),
        ("science/physics", "science/physics/optics", "into itself"),
        ("science/physics", "arts/music", "cannot sit below discipline"),  # into a discipline
        ("science/physics/optics", "arts/music", "cannot sit below discipline"),
        ("science/physics", "arts/Music", "already exists"),
        ("science/physics/optics", "optics", "cannot sit at the top"),
        ("arts", "science/physics", "cannot sit below subfield"),
        ("arts/music", "arts/..", "path"),
        ("nowhere", "arts", "no node at 'nowhere'"),
    ],
)
def test_move_rejects_and_changes_nothing(root, src, dst, message):
    before = {p: (root / p).read_bytes() for p in tree_listing(root) if (root / p).is_file()}
    with pytest.raises(UserError, match=message):
        Taxonomy.load(root).move(src, dst)
    after = {p: (root / p).read_bytes() for p in tree_listing(root) if (root / p).is_file()}
    assert after == before


# --- set -------------------------------------------------------------------


def test_set_description_round_trips(root):
    Taxonomy.load(root).set("arts/music", "description", "Harmony, counterpoint and form.")
    assert load(root).find("arts/music").description == "Harmony, counterpoint and form."


def test_set_level_and_clear_it(root):
    tax = Taxonomy.load(root)
    tax.set("arts/music", "level", "high school")
    assert load(root).find("arts/music").level == "high school"
    tax.set("arts/music", "level", "none")
    node = load(root).find("arts/music")
    assert node.level is None
    assert "level" not in node.file.read_text()


def test_set_weight_round_trips(root):
    tax = Taxonomy.load(root)
    tax.set("arts/music", "weight", "2.5")
    assert load(root).find("arts/music").weight == 2.5
    tax.set("arts/music", "weight", "3")
    node = load(root).find("arts/music")
    assert node.weight == 3.0
    assert "weight: 3\n" in node.file.read_text()  # a whole number stays a whole number
    tax.set("arts/music", "weight", 0)
    assert load(root).find("arts/music").weight == 0.0


def test_set_kind_round_trips(root):
    tax = Taxonomy.load(root)
    tax.set("arts/music", "kind", "subfield")
    assert load(root).find("arts/music").kind == "subfield"
    tax.add("arts/music/Counterpoint", kind="discipline", description="Voices against voices.")
    assert load(root).find("arts/music/counterpoint").kind == "discipline"


def test_set_name_renames_folder(root):
    node = Taxonomy.load(root).set("science/physics", "name", "Applied Physics")
    assert node.path == "science/applied-physics"
    fresh = load(root)
    assert fresh.find("science/applied-physics").name == "Applied Physics"
    assert fresh.find("science/applied-physics/optics").kind == "discipline"
    assert not (root / "science" / "physics").exists()


def test_set_name_case_only_keeps_folder(root):
    node = Taxonomy.load(root).set("science/physics", "name", "PHYSICS")
    assert node.path == "science/physics"
    assert load(root).find("science/physics").name == "PHYSICS"


@pytest.mark.parametrize(
    "path, field, value, message",
    [
        ("arts/music", "weight", "heavy", "weight must be a number"),
        ("arts/music", "weight", "-1", "weight must be a number >= 0"),
        ("arts/music", "weight", "nan", "weight must be a number >= 0"),
        ("arts/music", "weight", "inf", "weight must be a number >= 0"),
        ("arts/music", "description", "  ", "description is empty"),
        ("arts/music", "colour", "blue", "unknown field 'colour'"),
        ("arts/music", "seeds", "x", "seeds are a list"),
        ("arts/music", "kind", "field", "cannot sit below field"),
        ("arts", "kind", "subfield", "cannot sit at the top"),
        ("science/physics", "kind", "discipline", "cannot sit below discipline|cannot have child nodes"),
        ("science", "kind", "topic", "unknown kind"),
        ("science", "name", "Arts", "already exists"),
        ("science", "name", "a/b", "path separator"),
        ("science", "name", "..", "is a path"),
        ("science", "name", "nul", "reserved device name"),
    ],
)
def test_set_rejects_and_changes_nothing(root, path, field, value, message):
    before = {p: (root / p).read_bytes() for p in tree_listing(root) if (root / p).is_file()}
    with pytest.raises(UserError, match=message):
        Taxonomy.load(root).set(path, field, value)
    after = {p: (root / p).read_bytes() for p in tree_listing(root) if (root / p).is_file()}
    assert after == before


# --- hand-written files survive CLI edits ----------------------------------

HAND_WRITTEN = """\
# Hand-written: reviewed by the physics group.
schema_version: 1
name: Quantum Mechanics   # display name, before kind on purpose
kind: discipline
# What the teacher reads:
description: >-
  Wave functions, operators and measurement,
  the hydrogen atom and spin.
level: graduate  # after a first course
# the budget share
weight: 2        # twice the share
seeds:
  # the canonical exemplar
  - question: 'A particle in a box of width L: what is its ground-state energy, in terms of h, m and L? Show each step.'
    answer: "E1 = h^2 / (8 m L^2)."  # keep the quotes
"""
COMMENTS = [
    "# Hand-written: reviewed by the physics group.",
    "# display name, before kind on purpose",
    "# What the teacher reads:",
    "# the budget share",
    "# twice the share",
    "# the canonical exemplar",
    "# keep the quotes",
]
QM = "natural-sciences/physics/quantum-mechanics"


@pytest.fixture
def hand_written(project):
    file = write(project / "taxonomy" / QM / NODE, HAND_WRITTEN)
    assert load(project / "taxonomy").find(QM).name == "Quantum Mechanics"
    return file


def changed_lines(before: str, after: str) -> list[str]:
    """Lines of `before` that are not in `after` (in order)."""
    return [line[2:] for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line.startswith("- ")]


def keys_of(text: str) -> list[str]:
    return [m.group(1) for m in re.finditer(r"^(\w+):", text, re.M)]


@pytest.mark.parametrize(
    "args, where, changed, expect",
    [
        (
            ["set", QM, "description", "Short."],
            QM,
            {"  Wave functions, operators and measurement,", "  the hydrogen atom and spin."},
            "description: >-\n  Short.\n",
        ),
        (
            ["set", QM, "level", "undergraduate"],
            QM,
            {"level: graduate  # after a first course"},
            "level: undergraduate",
        ),
        (["set", QM, "weight", "0.5"], QM, {"weight: 2        # twice the share"}, "weight: 0.5"),
        (["set", QM, "kind", "subfield"], QM, {"kind: discipline"}, "kind: subfield"),
        (
            ["set", QM, "name", "Quantum Physics"],
            "natural-sciences/physics/quantum-physics",
            {"name: Quantum Mechanics   # display name, before kind on purpose"},
            "name: Quantum Physics",
        ),
        (
            ["mv", QM, "natural-sciences/physics/Wave Mechanics"],
            "natural-sciences/physics/wave-mechanics",
            {"name: Quantum Mechanics   # display name, before kind on purpose"},
            "name: Wave Mechanics",
        ),
        (["mv", QM, "natural-sciences"], "natural-sciences/quantum-mechanics", set(), "name: Quantum Mechanics"),
        (["add", "natural-sciences/physics/optics", "--kind", "discipline", "-d", "Light."], QM, set(), None),
        (["rm", "natural-sciences/physics/thermodynamics"], QM, set(), None),
        (["set", "natural-sciences/physics", "description", "Other."], QM, set(), None),
    ],
    ids=[
        "set-description",
        "set-level",
        "set-weight",
        "set-kind",
        "set-name",
        "mv-rename",
        "mv-into",
        "add-sibling",
        "rm-sibling",
        "set-parent",
    ],
)
def test_cli_edits_keep_comments_order_and_formatting(cli, project, hand_written, args, where, changed, expect):
    result = cli("taxonomy", *args, "--project", project)
    assert result.code == 0, result.output
    file = project / "taxonomy" / where / NODE
    text = file.read_text()
    for comment in COMMENTS:
        assert comment in text, f"comment {comment!r} lost:\n{text}"
    assert keys_of(text) == keys_of(HAND_WRITTEN)
    assert set(changed_lines(HAND_WRITTEN, text)) == changed, text
    if expect:
        assert expect in text
    # The long quoted seed line is neither re-wrapped nor re-quoted.
    assert (
        "  - question: 'A particle in a box of width L: what is its ground-state energy, in terms of h, m and L? Show each step.'\n"
        in text
    )
    assert load(project / "taxonomy").exists(where)


def test_cli_clearing_level_keeps_the_comment_that_followed_it(cli, project, hand_written):
    result = cli("taxonomy", "set", QM, "level", "none", "--project", project)
    assert result.code == 0, result.output
    text = hand_written.read_text()
    assert changed_lines(HAND_WRITTEN, text) == ["level: graduate  # after a first course"]
    assert "# the budget share\nweight: 2        # twice the share\n" in text
    assert load(project / "taxonomy").find(QM).level is None


def test_cli_edits_keep_scaffold_files_byte_identical_elsewhere(cli, project):
    file = project / "taxonomy" / "natural-sciences/physics/classical-mechanics" / NODE
    before = file.read_text()
    assert (
        cli(
            "taxonomy", "set", "natural-sciences/physics/classical-mechanics", "level", "graduate", "--project", project
        ).code
        == 0
    )
    after = file.read_text()
    assert after == before.replace("level: undergraduate", "level: graduate")
