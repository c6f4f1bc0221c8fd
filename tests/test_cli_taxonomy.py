"""The `syllabus` command line: `init` and `taxonomy ...`, through the real entry point."""

from __future__ import annotations

import pytest
from taxonomy_helpers import (  # noqa: F401  (fixtures are used by name)
    NODE,
    SCAFFOLD_PATHS,
    all_files,
    cli,
    load,
    project,
    run_subprocess,
    tree_listing,
    write,
)

from syllabus.project import SCAFFOLD

# --- init -------------------------------------------------------------------------


def test_init_writes_a_valid_project(cli, tmp_path):
    folder = tmp_path / "new"
    result = cli("init", folder)
    assert result.code == 0, result.output
    assert "Created project in" in result.out
    assert (folder / "syllabus.yaml").read_text() == (SCAFFOLD / "syllabus.yaml").read_text()
    assert (folder / "prompts").is_dir()
    assert {n.path for n in load(folder / "taxonomy").walk()} == SCAFFOLD_PATHS
    assert cli("taxonomy", "validate", "--project", folder).code == 0


def test_init_refuses_to_overwrite_without_force(cli, tmp_path):
    folder = tmp_path / "p"
    assert cli("init", folder).code == 0
    config = folder / "syllabus.yaml"
    config.write_text(config.read_text().replace("questions: 24", "questions: 99"))
    (folder / "taxonomy" / "mathematics" / "probability" / NODE).write_text(
        "kind: discipline\nname: Mine\ndescription: Mine.\n"
    )
    before = all_files(folder)

    result = cli("init", folder)
    assert result.code == 2
    assert "syllabus.yaml already exists" in result.err and "--force" in result.err
    assert "Traceback" not in result.output
    assert all_files(folder) == before

    (folder / "syllabus.yaml").unlink()  # the taxonomy alone is also protected
    result = cli("init", folder)
    assert result.code == 2 and "taxonomy already exists" in result.err

    result = cli("init", folder, "--force")
    assert result.code == 0, result.output
    assert "questions: 24" in config.read_text()
    assert load(folder / "taxonomy").find("mathematics/probability").name == "Probability"


@pytest.mark.parametrize("target", ["afile", "afile/sub"])
def test_init_onto_a_file_is_a_user_error(cli, tmp_path, target):
    (tmp_path / "afile").write_text("mine\n")
    result = cli("init", tmp_path / target)
    assert result.code == 2
    assert "cannot create the project folder" in result.err
    assert "Traceback" not in result.output
    assert (tmp_path / "afile").read_text() == "mine\n"


def test_init_in_current_folder(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli("init").code == 0
    assert (tmp_path / "syllabus.yaml").is_file()


# --- show ---------------------------------------------------------------------------


def test_show_prints_the_tree(cli, project):
    result = cli("taxonomy", "show", "--project", project)
    assert result.code == 0, result.output
    for name in ("Natural Sciences", "Classical Mechanics", "Probability", "World History"):
        assert name in result.out
    assert "1 seeds" in result.out  # classical mechanics
    assert "weight 1.5" in result.out  # probability
    assert "3 fields, 1 subfield, 7 disciplines" in result.out


def test_show_one_node(cli, project):
    result = cli("taxonomy", "show", "natural-sciences/physics", "--project", project)
    assert result.code == 0, result.output
    assert "Thermodynamics" in result.out and "Probability" not in result.out
    assert "0 fields, 1 subfield, 2 disciplines" in result.out


def test_show_finds_the_project_from_a_subfolder(cli, project, monkeypatch):
    monkeypatch.chdir(project / "taxonomy" / "mathematics")
    result = cli("taxonomy", "show")
    assert result.code == 0, result.output
    assert "Linear Algebra" in result.out


def test_show_unknown_node_suggests_one(cli, project):
    result = cli("taxonomy", "show", "natural-sciences/phisics", "--project", project)
    assert result.code == 2
    assert "no node at 'natural-sciences/phisics'" in result.err
    assert "did you mean 'natural-sciences/physics'?" in result.err


# --- add / set / mv / rm round trips ---------------------------------------------------


def test_add_set_mv_through_the_cli(cli, project):
    def ok(*args):
        result = cli("taxonomy", *args, "--project", project)
        assert result.code == 0, result.output
        return result

    assert (
        "added mathematics/number-theory (discipline)"
        in ok(
            "add",
            "mathematics/Number Theory",
            "--kind",
            "discipline",
            "-d",
            "Primes.",
            "--level",
            "graduate",
            "--weight",
            "2",
        ).out
    )
    node = load(project / "taxonomy").find("mathematics/number-theory")
    assert (node.name, node.kind, node.description, node.level, node.weight) == (
        "Number Theory",
        "discipline",
        "Primes.",
        "graduate",
        2.0,
    )

    ok("set", "mathematics/number-theory", "description", "Primes and congruences.")
    ok("set", "mathematics/number-theory", "level", "none")
    ok("set", "mathematics/number-theory", "weight", "0.25")
    node = load(project / "taxonomy").find("mathematics/number-theory")
    assert (node.description, node.level, node.weight) == ("Primes and congruences.", None, 0.25)

    assert (
        "moved mathematics/number-theory -> natural-sciences/number-theory"
        in ok("mv", "mathematics/number-theory", "natural-sciences").out
    )
    ok("set", "natural-sciences/number-theory", "name", "Arithmetic")
    ok("add", "natural-sciences/Formal Sciences", "--kind", "subfield", "-d", "Logic and numbers.")
    ok("mv", "natural-sciences/arithmetic", "natural-sciences/formal-sciences")
    node = load(project / "taxonomy").find("natural-sciences/formal-sciences/arithmetic")
    assert (node.name, node.description) == ("Arithmetic", "Primes and congruences.")
    assert cli("taxonomy", "validate", "--project", project).code == 0


def test_rm_leaf_does_not_ask(cli, project):
    result = cli("taxonomy", "rm", "humanities/ethics", "--project", project)
    assert result.code == 0, result.output
    assert "removed humanities/ethics" in result.out
    assert not load(project / "taxonomy").exists("humanities/ethics")


def test_rm_subtree_asks_and_no_keeps_it(cli, project):
    before = all_files(project)
    result = cli("taxonomy", "rm", "natural-sciences/physics", "--project", project, input="n\n")
    assert result.code == 1
    assert "Remove 'natural-sciences/physics' and 2 node(s) below it?" in result.out
    assert all_files(project) == before


def test_rm_subtree_asks_and_yes_removes_it(cli, project):
    result = cli("taxonomy", "rm", "natural-sciences", "--project", project, input="y\n")
    assert result.code == 0, result.output
    assert "Remove 'natural-sciences' and 4 node(s) below it?" in result.out
    assert "removed natural-sciences" in result.out
    assert not (project / "taxonomy" / "natural-sciences").exists()
    assert {n.path for n in load(project / "taxonomy").walk()} == {
        p for p in SCAFFOLD_PATHS if not p.startswith("natural-sciences")
    }


def test_rm_subtree_with_no_answer_keeps_it(cli, project):
    """No input at all (end of file) is a no."""
    result = cli("taxonomy", "rm", "mathematics", "--project", project)
    assert result.code != 0
    assert load(project / "taxonomy").exists("mathematics/probability")


@pytest.mark.parametrize("flag", ["--yes", "-y"])
def test_rm_yes_skips_the_question(cli, project, flag):
    result = cli("taxonomy", "rm", "mathematics", flag, "--project", project)
    assert result.code == 0, result.output
    assert "Remove" not in result.output
    assert not load(project / "taxonomy").exists("mathematics")
    assert not (project / "taxonomy" / "mathematics").exists()
    assert [p.name for p in (project / "taxonomy").iterdir() if p.name.startswith(".")] == []  # no trash left


def test_rm_discipline_with_generated_subjects_asks(cli, project):
    write(
        project / "taxonomy" / "mathematics" / "probability" / "subjects" / "probability-i.yaml",
        "name: Probability I\n",
    )
    result = cli("taxonomy", "rm", "mathematics/probability", "--project", project, input="n\n")
    assert result.code == 1
    assert "its generated subjects" in result.out
    assert load(project / "taxonomy").exists("mathematics/probability")
    assert cli("taxonomy", "rm", "mathematics/probability", "-y", "--project", project).code == 0
    assert not (project / "taxonomy" / "mathematics" / "probability").exists()


# --- user errors: exit 2, one message, no traceback, nothing outside the taxonomy ------

BAD_NAMES = [
    ["add", "../x", "--kind", "field", "-d", "x"],
    ["add", "../../x", "--kind", "field", "-d", "x"],
    ["add", "mathematics/../../x", "--kind", "discipline", "-d", "x"],
    ["add", "..", "--kind", "field", "-d", "x"],
    ["add", "con", "--kind", "field", "-d", "x"],
    ["add", "mathematics/nul", "--kind", "discipline", "-d", "x"],
    ["add", "mathematics/COM1", "--kind", "discipline", "-d", "x"],
    ["add", "mathematics/lpt1.txt", "--kind", "discipline", "-d", "x"],
    ["add", "a/b", "--kind", "field", "-d", "x"],
    ["add", "mathematics/a\\b", "--kind", "discipline", "-d", "x"],
    ["add", "x", "--name", "a/b", "--kind", "field", "-d", "x"],
    ["add", "x", "--name", "../x", "--kind", "field", "-d", "x"],
    ["add", "x", "--name", "..", "--kind", "field", "-d", "x"],
    ["add", "x", "--name", "con", "--kind", "field", "-d", "x"],
    ["add", "x", "--name", "", "--kind", "field", "-d", "x"],
    ["mv", "mathematics/probability", "../x"],
    ["mv", "mathematics/probability", "mathematics/.."],
    ["mv", "mathematics/probability", "mathematics/con"],
    ["mv", "mathematics", "../../outside"],
    ["mv", "mathematics", ".."],
    ["set", "mathematics", "name", "../x"],
    ["set", "mathematics", "name", "a/b"],
    ["set", "mathematics", "name", "con"],
    ["set", "mathematics", "name", "."],
    ["rm", "..", "--yes"],
    ["rm", "../taxonomy", "--yes"],
    ["show", "../.."],
]


@pytest.mark.parametrize("args", BAD_NAMES, ids=lambda a: " ".join(a[:3]))
def test_bad_names_never_touch_anything(cli, project, args):
    outside = project.parent
    write(outside / "x" / "keep.txt", "mine\n")
    before = all_files(outside)
    listing = tree_listing(outside)
    result = cli("taxonomy", *args, "--project", project)
    assert result.code == 2, result.output
    assert result.err.startswith("error:"), result.err
    assert "Traceback" not in result.output
    assert tree_listing(outside) == listing
    assert all_files(outside) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["taxonomy", "add", "mathematics/topology", "--kind", "course", "-d", "x"], "unknown kind 'course'"),
        (["taxonomy", "add", "mathematics/topology", "--kind", "discipline", "-d", " "], "description is empty"),
        (["taxonomy", "add", "Mathematics", "--kind", "field", "-d", "x"], "already exists"),
        (
            ["taxonomy", "add", "mathematics/probability/dice", "--kind", "discipline", "-d", "x"],
            "cannot sit below discipline",
        ),
        (
            ["taxonomy", "add", "mathematics/topology", "--kind", "discipline", "-d", "x", "--weight", "-1"],
            "weight must be a number >= 0",
        ),
        (["taxonomy", "set", "mathematics", "colour", "red"], "unknown field 'colour'"),
        (["taxonomy", "set", "mathematics/probability", "weight", "lots"], "weight must be a number"),
        (["taxonomy", "mv", "mathematics", "mathematics/probability"], "into itself"),
        (["taxonomy", "rm", "mathematics/nothing", "--yes"], "no node at 'mathematics/nothing'"),
    ],
)
def test_user_errors_exit_2_with_one_message(cli, project, args, message):
    before = all_files(project)
    result = cli(*args, "--project", project)
    assert result.code == 2, result.output
    assert message in result.err
    assert "Traceback" not in result.output
    assert all_files(project) == before


def test_outside_a_project(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("taxonomy", "show")
    assert result.code == 2
    assert "no syllabus.yaml here" in result.err and "syllabus init" in result.err


def test_broken_settings_name_file_and_line(cli, project):
    config = project / "syllabus.yaml"
    config.write_text(config.read_text().replace("  concurrency: 8 ", "  concurency: 8 "))
    line = next(i for i, text in enumerate(config.read_text().splitlines(), 1) if text.startswith("  concurency"))
    result = cli("taxonomy", "show", "--project", project)
    assert result.code == 2
    assert f"{config}:{line}: setting 'teacher.concurency'" in result.err


def test_missing_taxonomy_folder(cli, project):
    (project / "taxonomy").rename(project / "elsewhere")
    for args in (["validate"], ["show"]):
        result = cli("taxonomy", *args, "--project", project)
        assert result.code == 2
        assert "taxonomy folder does not exist" in result.err


def test_the_installed_entry_point_exits_2_without_traceback(project, tmp_path):
    """The same through a child process: the console script's exit status and streams."""
    asked = run_subprocess("taxonomy", "rm", "natural-sciences", "--project", project, input="n\n")
    assert asked.returncode == 1 and "Remove 'natural-sciences'" in asked.stdout
    assert (project / "taxonomy" / "natural-sciences").is_dir()

    broken = write(project / "taxonomy" / "humanities" / "ethics" / NODE, "kind: discipline\nname: [Ethics\n")
    shown = run_subprocess("taxonomy", "show", "--project", project)
    assert shown.returncode == 2
    assert f"{broken}:" in shown.stderr and "YAML syntax error" in shown.stderr
    assert "Traceback" not in shown.stdout + shown.stderr

    validated = run_subprocess("taxonomy", "validate", "--project", project)
    assert validated.returncode == 2
    assert str(broken) in validated.stdout
    assert "Traceback" not in validated.stdout + validated.stderr

    added = run_subprocess("taxonomy", "add", "../x", "--kind", "field", "-d", "x", cwd=tmp_path / "proj")
    assert added.returncode == 2 and "Traceback" not in added.stdout + added.stderr
    assert not (tmp_path / "x").exists()


def test_help_is_quick_and_lists_commands(cli):
    result = cli("taxonomy", "--help")
    assert result.code == 0
    for command in ("show", "add", "rm", "mv", "set", "validate", "diff", "import-instructlab"):
        assert command in result.out


def test_a_linked_node_is_never_a_way_outside(cli, project, tmp_path):
    """A node folder that is a symlink to elsewhere: nothing is created there, and rm drops only the link."""
    elsewhere = tmp_path / "shared-node"
    write(elsewhere / NODE, "kind: field\nname: Linked\ndescription: Shared with another project.\n")
    (project / "taxonomy" / "linked").symlink_to(elsewhere, target_is_directory=True)
    assert cli("taxonomy", "validate", "--project", project).code == 0

    result = cli("taxonomy", "add", "linked/inside", "--kind", "discipline", "-d", "x", "--project", project)
    assert result.code == 2 and "path leads outside the taxonomy" in result.err
    assert sorted(p.name for p in elsewhere.iterdir()) == [NODE]

    result = cli("taxonomy", "rm", "linked", "--project", project)
    assert result.code == 0, result.output
    assert sorted(p.name for p in elsewhere.iterdir()) == [NODE]  # what the link pointed to is kept
    assert [p.name for p in (project / "taxonomy").iterdir() if p.name.startswith(".")] == []  # the link is gone
    assert not load(project / "taxonomy").exists("linked")


def test_init_killed_half_way_is_finished_by_running_it_again(cli, tmp_path):
    """An untouched part that init wrote is not 'in the way': a rerun completes the project."""
    folder = tmp_path / "p"
    assert cli("init", folder).code == 0
    (folder / "syllabus.yaml").unlink()  # as if killed after the taxonomy, before syllabus.yaml
    result = cli("init", folder)
    assert result.code == 0, result.output
    assert (folder / "syllabus.yaml").is_file() and cli("taxonomy", "validate", "--project", folder).code == 0
    assert cli("init", folder).code == 0  # a fresh, untouched project: init again changes nothing


def test_init_force_replaces_the_taxonomy_rather_than_merging(cli, tmp_path):
    folder = tmp_path / "p"
    assert cli("init", folder).code == 0
    extra = folder / "taxonomy" / "mathematics" / "my-topic"
    extra.mkdir()
    (extra / NODE).write_text("kind: discipline\nname: My topic\ndescription: Mine.\n")
    assert cli("init", folder, "--force").code == 0
    assert not extra.exists()
    assert {n.path for n in load(folder / "taxonomy").walk()} == SCAFFOLD_PATHS
