"""Validation: each error is triggered by a tree written here, and names its file (and line)."""

from __future__ import annotations

import pytest
from taxonomy_helpers import (  # noqa: F401  (fixtures are used by name)
    NODE,
    SCAFFOLD_PATHS,
    cli,
    minimal_tree,
    node_text,
    project,
    write,
    write_node,
)

from syllabus.errors import UserError
from syllabus.taxonomy import SCHEMA_VERSION, Taxonomy, TaxonomyInvalid, validate_tree
from syllabus.taxonomy.model import name_problem, slugify


@pytest.fixture
def root(tmp_path):
    return minimal_tree(tmp_path / "taxonomy")


def errors_of(root):
    return [i for i in validate_tree(root) if i.severity == "error"]


def only_error(root):
    errors = errors_of(root)
    assert len(errors) == 1, "\n".join(map(str, errors))
    return errors[0]


def check(issue, file, line, *fragments):
    """The issue names `file` (and `line`), in its fields and in its printed form."""
    assert issue.file == file
    assert issue.line == line
    text = str(issue)
    assert text.startswith(f"{file}:{line}: error: " if line else f"{file}: error: "), text
    for fragment in fragments:
        assert fragment in issue.message, issue.message


def test_minimal_tree_is_valid(root):
    assert validate_tree(root) == []
    assert [n.path for n in Taxonomy.load(root).disciplines()] == ["arts/music", "science/physics/optics"]


def test_scaffold_is_valid(project):
    assert validate_tree(project / "taxonomy") == []
    tax = Taxonomy.load(project / "taxonomy")
    assert {n.path for n in tax.walk()} == SCAFFOLD_PATHS
    mechanics = tax.find("natural-sciences/physics/classical-mechanics")
    assert len(mechanics.seeds) == 1 and mechanics.seeds[0].answer.startswith("Momentum is conserved")
    assert tax.find("mathematics/probability").weight == 1.5


# --- YAML and schema --------------------------------------------------------


def test_yaml_syntax_error_names_file_and_line(root):
    file = write(
        root / "arts" / "poetry" / NODE,
        """
        kind: discipline
        name: Poetry
        description: [verse, metre
        level: undergraduate
        """,
    )
    issue = only_error(root)
    assert issue.file == file
    assert issue.line in (3, 4)  # the unclosed flow sequence starts on 3; the parser notices on 4
    assert str(issue).startswith(f"{file}:{issue.line}: error: YAML syntax error")
    assert issue.hint


def test_tab_indentation_is_a_syntax_error(root):
    file = write(root / "arts" / "dance" / NODE, "kind: discipline\nname: Dance\n\tdescription: x\n")
    issue = only_error(root)
    assert issue.file == file and issue.line is not None
    assert "YAML syntax error" in issue.message


def test_duplicate_key_names_file_and_line(root):
    file = write(root / "arts" / "dance" / NODE, "kind: discipline\nname: Dance\nname: Ballet\ndescription: d\n")
    check(only_error(root), file, 3, "YAML syntax error", 'duplicate key "name"')


def test_file_that_is_not_utf8(root):
    file = root / "arts" / "dance" / NODE
    file.parent.mkdir()
    file.write_bytes("kind: discipline\nname: Café\ndescription: d\n".encode("latin-1"))
    check(only_error(root), file, None, "not UTF-8")


def test_not_a_mapping(root):
    file = write(root / "arts" / "dance" / NODE, "- kind: discipline\n- name: Dance\n")
    check(only_error(root), file, 1, "must be a mapping")


def test_empty_node_file(root):
    file = write(root / "arts" / "dance" / NODE, "# nothing yet\n")
    issue = only_error(root)
    assert issue.file == file and "must be a mapping" in issue.message


def test_folder_without_node_file(root):
    (root / "arts" / "dance").mkdir()
    issue = only_error(root)
    assert issue.file == root / "arts" / "dance"
    assert f"no {NODE}" in issue.message


def test_unknown_kind(root):
    file = write(root / "arts" / "dance" / NODE, "schema_version: 1\nname: Dance\ndescription: d\nkind: course\n")
    check(only_error(root), file, 4, "unknown kind 'course'")


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("name: Dance\ndescription: Movement.\n", 1, "missing required field 'kind'"),
        ("kind: ''\nname: Dance\ndescription: Movement.\n", 1, "missing required field 'kind'"),
        ("kind: discipline\ndescription: Movement.\n", 1, "missing required field 'name'"),
        ("kind: discipline\nname: ''\ndescription: Movement.\n", 2, "name is empty"),
        ("kind: discipline\nname: '   '\ndescription: Movement.\n", 2, "name is empty"),
        ("kind: discipline\nname:\ndescription: Movement.\n", 1, "missing required field 'name'"),
        ("kind: discipline\nname: Dance\n", 1, "missing required field 'description'"),
        ("kind: discipline\nname: Dance\ndescription: ''\n", 3, "empty or non-text field 'description'"),
        ("kind: discipline\nname: Dance\ndescription: '  '\n", 3, "empty or non-text field 'description'"),
        ("kind: discipline\nname: Dance\ndescription: [a, b]\n", 3, "empty or non-text field 'description'"),
    ],
    ids=[
        "no-kind",
        "empty-kind",
        "no-name",
        "empty-name",
        "blank-name",
        "null-name",
        "no-description",
        "empty-description",
        "blank-description",
        "list-description",
    ],
)
def test_missing_or_empty_required_fields(root, text, line, fragment):
    file = write(root / "arts" / "dance" / NODE, text)
    check(only_error(root), file, line, fragment)


def test_every_missing_field_is_reported_at_once(root):
    file = write(root / "arts" / "dance" / NODE, "level: undergraduate\n")
    messages = [i.message for i in errors_of(root)]
    assert all(i.file == file for i in errors_of(root))
    assert messages == [
        "missing required field 'kind'",
        "missing required field 'name'",
        "missing required field 'description'",
    ]


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        ("kind: discipline\nname: Dance\ndescription: d\nlevel: 3\n", 4, "level must be text"),
        ("kind: discipline\nname: Dance\ndescription: d\nweight: -1\n", 4, "weight must be a number >= 0"),
        ("kind: discipline\nname: Dance\ndescription: d\nweight: lots\n", 4, "weight must be a number >= 0"),
        ("kind: discipline\nname: Dance\ndescription: d\nweight: true\n", 4, "weight must be a number >= 0"),
        ("kind: discipline\nname: Dance\ndescription: d\nweight: .nan\n", 4, "weight must be a number >= 0"),
        ("kind: discipline\nname: Dance\ndescription: d\nweight: .inf\n", 4, "weight must be a number >= 0"),
        ("kind: discipline\nname: 1984\ndescription: d\n", 2, "name must be text, got 1984"),
        (
            "kind: discipline\nname: Dance\ndescription: d\nschema_version: one\n",
            4,
            "schema_version must be a whole number",
        ),
    ],
)
def test_bad_optional_fields(root, text, line, fragment):
    file = write(root / "arts" / "dance" / NODE, text)
    check(only_error(root), file, line, fragment)


def test_schema_version_newer_than_known(root):
    file = write(
        root / "arts" / "dance" / NODE,
        f"kind: discipline\nname: Dance\ndescription: d\nschema_version: {SCHEMA_VERSION + 1}\n",
    )
    check(only_error(root), file, 4, f"schema_version {SCHEMA_VERSION + 1} is newer")
    assert "upgrade" in only_error(root).hint


def test_unknown_field_is_only_a_warning(root):
    file = write(root / "arts" / "dance" / NODE, "kind: discipline\nname: Dance\ndescription: d\ncolour: red\n")
    issues = validate_tree(root)
    assert [(i.severity, i.file, i.line) for i in issues] == [("warning", file, 4)]
    assert "unknown field 'colour'" in issues[0].message
    Taxonomy.load(root)  # warnings do not stop a load


# --- nesting ----------------------------------------------------------------


def test_discipline_at_top(root):
    file = write_node(root / "geology", "discipline", "Geology")
    check(only_error(root), file, 2, "wrong nesting", "at the top of the taxonomy")


def test_subfield_at_top(root):
    file = write_node(root / "geology", "subfield", "Geology")
    check(only_error(root), file, 2, "wrong nesting: a subfield cannot sit at the top")


def test_field_below_field(root):
    file = write_node(root / "science" / "geology", "field", "Geology")
    check(only_error(root), file, 2, "wrong nesting: a field cannot sit below a field")


def test_field_below_subfield(root):
    file = write_node(root / "science" / "physics" / "geology", "field", "Geology")
    check(only_error(root), file, 2, "wrong nesting: a field cannot sit below a subfield")


@pytest.mark.parametrize("kind", ["field", "subfield", "discipline"])
def test_node_below_discipline(root, kind):
    write_node(root / "arts" / "music" / "harmony", kind, "Harmony")
    folder = root / "arts" / "music" / "harmony"
    check(only_error(root), folder, None, "wrong nesting", "folder 'harmony' is below discipline 'Music'")


def test_plain_folder_below_discipline(root):
    (root / "arts" / "music" / "notes").mkdir()
    check(only_error(root), root / "arts" / "music" / "notes", None, "folder 'notes' is below discipline")


def test_link_below_discipline_back_to_it_is_a_loop(root):
    # The discipline's own real path is among the folders its entries are checked against
    # (it once was replaced by where its subjects folder escapes to, None when it does not).
    link = root / "arts" / "music" / "again"
    link.symlink_to(".", target_is_directory=True)
    check(only_error(root), link, None, "links back to", "symlink loop")


def test_subjects_folder_below_discipline_is_allowed(root):
    write(root / "arts" / "music" / "subjects" / "harmony-i.yaml", "name: Harmony I\n")
    assert validate_tree(root) == []


# --- names and slugs ----------------------------------------------------------


def test_siblings_with_the_same_slug(root):
    first = write_node(root / "arts" / "film-studies", "discipline", "Film Studies")
    second = write(
        root / "arts" / "film-studies-2" / NODE, "kind: discipline\nname: 'Film: studies!'\ndescription: d\n"
    )
    issues = errors_of(root)
    assert len(issues) == 1
    check(issues[0], second, 2, "gives the same folder name 'film-studies'", "'Film Studies'")
    assert str(first) in issues[0].message


def test_siblings_differing_only_in_case(root):
    write_node(root / "arts" / "painting", "discipline", "Painting")
    upper = write_node(root / "arts" / "Painting", "discipline", "PAINTING")
    issue = only_error(root)
    # 'Painting' sorts before 'painting': whichever is read second is reported, naming the other.
    assert issue.file in (upper, root / "arts" / "painting" / NODE)
    assert issue.line == 3
    assert "same folder name 'painting'" in issue.message


def test_folder_that_is_not_the_slug_is_a_warning(root):
    file = write_node(root / "arts" / "cinema", "discipline", "Film")
    issues = validate_tree(root)
    assert [(i.severity, i.file, i.line) for i in issues] == [("warning", file, 3)]
    assert "does not match the slug of its name ('film')" in issues[0].message
    assert "syllabus taxonomy mv arts/cinema arts/film" in issues[0].hint


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("'.'", "is a path, not a name"),
        ("'..'", "is a path, not a name"),
        ("' .. '", "is a path, not a name"),
        ("a/b", "contains a path separator"),
        ("'..\\x'", "contains a path separator"),
        ("../etc", "contains a path separator"),
        ("con", "reserved device name"),
        ("CON", "reserved device name"),
        ("nul", "reserved device name"),
        ("Nul.txt", "reserved device name"),
        ("com1", "reserved device name"),
        ("LPT1", "reserved device name"),
        ("'!!!'", "no letters or digits"),
        ('"tab\\there"', "control characters"),
        ("x" * 81, "too long"),
    ],
)
def test_bad_names(root, value, fragment):
    file = write(root / "arts" / "dance" / NODE, f"kind: discipline\nname: {value}\ndescription: d\n")
    check(only_error(root), file, 2, fragment)


def test_names_that_are_fine():
    for name in ("Quantum Mechanics", "C++ Programming", "Console Design", "Econ 101", "量子力学", "Théâtre"):
        assert name_problem(name) is None, name
    assert slugify("Théâtre Grec") == "theatre-grec"
    assert slugify("量子力学") == "量子力学"
    assert slugify("C++ / Rust") == "c-rust"


# --- seeds --------------------------------------------------------------------


def test_valid_seeds_are_read(root):
    write(
        root / "arts" / "dance" / NODE,
        """
        kind: discipline
        name: Dance
        description: d
        seeds:
          - question: What is a plié?
            answer: A bend of the knees.
          - question: Name the five positions.
            answer: First to fifth.
            context: Classical ballet.
        """,
    )
    node = Taxonomy.load(root).find("arts/dance")
    assert [(s.question, s.answer, s.context) for s in node.seeds] == [
        ("What is a plié?", "A bend of the knees.", None),
        ("Name the five positions.", "First to fifth.", "Classical ballet."),
    ]


@pytest.mark.parametrize(
    "seeds, line, fragment",
    [
        ("  - question: What is a plié?\n", 5, "seed 1 has no answer"),
        ("  - answer: A bend.\n", 5, "seed 1 has no question"),
        (
            "  - question: Q?\n    answer: A.\n  - question: ''\n    answer: ''\n",
            7,
            "seed 2 has no question and no answer",
        ),
        ("  - just text\n", 4, "seed 1 must be a mapping"),
    ],
)
def test_seeds_without_question_or_answer(root, seeds, line, fragment):
    file = write(root / "arts" / "dance" / NODE, "kind: discipline\nname: Dance\ndescription: d\nseeds:\n" + seeds)
    check(only_error(root), file, line, fragment)


def test_seeds_not_a_list(root):
    file = write(root / "arts" / "dance" / NODE, "kind: discipline\nname: Dance\ndescription: d\nseeds: many\n")
    check(only_error(root), file, 4, "seeds must be a list")


# --- loading is validating ----------------------------------------------------


def test_load_rejects_what_validate_rejects(root):
    file = write(root / "arts" / "dance" / NODE, "kind: course\nname: Dance\ndescription: d\n")
    with pytest.raises(TaxonomyInvalid) as caught:
        Taxonomy.load(root)
    assert isinstance(caught.value, UserError)
    assert f"{file}:1: error: unknown kind 'course'" in str(caught.value)
    assert caught.value.issues == validate_tree(root)
    loose = Taxonomy.load(root, strict=False)  # still readable for tools that want to show the problems
    assert loose.exists("arts/dance")


def test_errors_are_collected_across_the_tree(root):
    write(root / "arts" / "dance" / NODE, "kind: course\nname: Dance\ndescription: d\n")
    write_node(root / "science" / "geology", "field", "Geology")
    write(root / "science" / "physics" / "optics" / "lenses" / NODE, node_text("discipline", "Lenses"))
    assert len(errors_of(root)) == 3


def test_missing_taxonomy_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="taxonomy folder does not exist"):
        validate_tree(tmp_path / "nope")


# --- the CLI: validate, and every other command on a broken tree -------------------


def test_cli_validate_scaffold_exits_0(cli, project):
    result = cli("taxonomy", "validate", "--project", project)
    assert result.code == 0, result.output
    assert "valid: 11 nodes, 0 warning(s)" in result.out


def test_cli_validate_broken_tree_exits_2_naming_file_and_line(cli, project):
    file = write(
        project / "taxonomy" / "mathematics" / "topology" / NODE, "kind: course\nname: Topology\ndescription: d\n"
    )
    bad_yaml = write(project / "taxonomy" / "humanities" / "poetry" / NODE, "kind: discipline\nname: [Poetry\n")
    result = cli("taxonomy", "validate", "--project", project)
    assert result.code == 2
    assert f"error {file}:1: unknown kind 'course'" in result.out
    assert f"error {bad_yaml}:" in result.out and "YAML syntax error" in result.out
    assert "2 error(s), 0 warning(s)" in result.out
    assert "Traceback" not in result.output


def test_cli_validate_prints_warnings_but_exits_0(cli, project):
    file = write_node(project / "taxonomy" / "mathematics" / "topo", "discipline", "Topology")
    result = cli("taxonomy", "validate", "--project", project)
    assert result.code == 0, result.output
    assert f"warning {file}:3: folder 'topo' does not match" in result.out
    assert "1 warning(s)" in result.out


BROKEN_COMMANDS = [
    ["show"],
    ["show", "mathematics"],
    ["add", "mathematics/topology", "--kind", "discipline", "-d", "Open sets."],
    ["rm", "mathematics/probability", "--yes"],
    ["mv", "mathematics/probability", "natural-sciences"],
    ["set", "mathematics/probability", "weight", "2"],
    ["diff"],
    ["import-instructlab", "."],
]


BREAKAGES = ["unknown-kind", "yaml", "nesting", "name", "seed", "version"]
# Every command on one kind of breakage, and every kind of breakage on two commands.
CASES = [(args, "yaml") for args in BROKEN_COMMANDS] + [
    (args, breakage)
    for breakage in BREAKAGES
    if breakage != "yaml"
    for args in (BROKEN_COMMANDS[0], BROKEN_COMMANDS[5])
]


@pytest.mark.parametrize("args, breakage", CASES, ids=[f"{b}-{a[0]}{i}" for i, (a, b) in enumerate(CASES)])
def test_every_command_rejects_what_validate_rejects(cli, project, args, breakage):
    tax = project / "taxonomy"
    if breakage == "unknown-kind":
        file = write(tax / "humanities" / "ethics" / NODE, "kind: course\nname: Ethics\ndescription: d\n")
    elif breakage == "yaml":
        file = write(tax / "humanities" / "ethics" / NODE, "kind: discipline\nname: 'Ethics\n")
    elif breakage == "nesting":
        file = write_node(tax / "humanities" / "ethics" / "stoics", "discipline", "Stoics").parent
    elif breakage == "name":
        file = write(tax / "humanities" / "ethics" / NODE, "kind: discipline\nname: con\ndescription: d\n")
    elif breakage == "seed":
        file = write(
            tax / "humanities" / "ethics" / NODE,
            "kind: discipline\nname: Ethics\ndescription: d\nseeds:\n  - question: Q?\n",
        )
    else:
        file = write(
            tax / "humanities" / "ethics" / NODE, "schema_version: 99\nkind: discipline\nname: Ethics\ndescription: d\n"
        )
    snapshot = {p: p.read_bytes() for p in tax.rglob("*") if p.is_file()}

    assert cli("taxonomy", "validate", "--project", project).code == 2
    result = cli("taxonomy", *args, "--project", project)
    assert result.code == 2, result.output
    assert "taxonomy has 1 error(s)" in result.err
    assert str(file) in result.err
    assert "Traceback" not in result.output
    assert {p: p.read_bytes() for p in tax.rglob("*") if p.is_file()} == snapshot  # nothing was changed


@pytest.mark.parametrize(
    "value, message",
    [
        ("{apply: 2, juggle: 1}", "unknown bloom entry 'juggle'"),
        ("{apply: -1}", "must be a number >= 0"),
        ("{apply: 0}", "weights are all 0"),
        ("7", "must be a non-empty mapping"),
    ],
)
def test_bad_bloom_mix_is_named_with_its_line(tmp_path, value, message):
    from syllabus.taxonomy import validate_tree

    root = tmp_path / "taxonomy"
    (root / "f" / "d").mkdir(parents=True)
    (root / "f" / "node.yaml").write_text("kind: field\nname: F\ndescription: a field\n")
    (root / "f" / "d" / "node.yaml").write_text(
        f"kind: discipline\nname: D\ndescription: a discipline\nbloom: {value}\n"
    )
    issues = [i for i in validate_tree(root) if i.severity == "error"]
    assert len(issues) == 1 and message in issues[0].message
    assert issues[0].file == root / "f" / "d" / "node.yaml" and issues[0].line == 4


def test_node_mixes_load(tmp_path):
    from syllabus.taxonomy import Taxonomy

    root = tmp_path / "taxonomy"
    (root / "f" / "d").mkdir(parents=True)
    (root / "f" / "node.yaml").write_text("kind: field\nname: F\ndescription: a field\n")
    (root / "f" / "d" / "node.yaml").write_text(
        "kind: discipline\nname: D\ndescription: a discipline\nbloom: {apply: 2}\nstrategies: [direct, step_by_step]\n"
    )
    node = Taxonomy.load(root).find("f/d")
    assert node.bloom == {"apply": 2.0} and node.strategies == {"direct": 1.0, "step_by_step": 1.0}
