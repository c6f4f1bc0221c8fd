"""`taxonomy diff`: nodes added, changed and removed since a git ref, in a real temporary repository."""

from __future__ import annotations

import json
import shutil

import pytest
from taxonomy_helpers import NODE, cli, git, git_commit_all, project, write, write_node  # noqa: F401

from syllabus.errors import UserError
from syllabus.taxonomy import Taxonomy
from syllabus.taxonomy.diff import diff_taxonomy


@pytest.fixture
def repo(project):
    """The scaffold project, committed as the first commit of a fresh git repository."""
    git(project, "init", "-q", "-b", "main")
    git_commit_all(project, "scaffold")
    return project


def changes_of(root, base="HEAD"):
    return [(c.path, c.status, c.fields) for c in diff_taxonomy(Taxonomy.load(root), base)]


def test_no_changes(repo):
    assert changes_of(repo / "taxonomy") == []


def test_added_changed_removed(repo):
    tax = Taxonomy.load(repo / "taxonomy")
    tax.add("mathematics/number-theory", kind="discipline", description="Primes and congruences.")
    tax.set("mathematics/probability", "description", "Chance, counted carefully.")
    tax.set("mathematics/probability", "weight", "3")
    tax.set("humanities/ethics", "level", "graduate")
    tax.remove("natural-sciences/chemistry")
    shutil.rmtree(repo / "taxonomy" / "natural-sciences" / "physics" / "thermodynamics")

    assert changes_of(repo / "taxonomy") == [
        ("humanities/ethics", "changed", ["level"]),
        ("mathematics/number-theory", "added", []),
        ("mathematics/probability", "changed", ["description", "weight"]),
        ("natural-sciences/chemistry", "removed", []),
        ("natural-sciences/physics/thermodynamics", "removed", []),
    ]


def test_rename_is_removed_plus_added_and_kind_change_is_named(repo):
    tax = Taxonomy.load(repo / "taxonomy")
    tax.set("mathematics/linear-algebra", "name", "Matrix Theory")
    tax.set("natural-sciences/chemistry", "kind", "subfield")
    assert changes_of(repo / "taxonomy") == [
        ("mathematics/linear-algebra", "removed", []),
        ("mathematics/matrix-theory", "added", []),
        ("natural-sciences/chemistry", "changed", ["kind"]),
    ]


def test_new_seed_and_subject_file_are_changes(repo):
    physics = repo / "taxonomy" / "natural-sciences" / "physics"
    thermo = physics / "thermodynamics" / NODE
    thermo.write_text(thermo.read_text() + "seeds:\n  - question: Why?\n    answer: Entropy.\n")
    write(
        physics / "classical-mechanics" / "subjects" / "mechanics-i.yaml", "name: Mechanics I\nlevel: undergraduate\n"
    )
    assert changes_of(repo / "taxonomy") == [
        ("natural-sciences/physics/classical-mechanics", "changed", ["subjects"]),
        ("natural-sciences/physics/thermodynamics", "changed", ["seeds"]),
    ]


def test_comments_and_formatting_are_not_changes(repo):
    file = repo / "taxonomy" / "mathematics" / "linear-algebra" / NODE
    text = file.read_text()
    # Same fields: a comment, a re-folded description as a plain scalar, and different quoting.
    node = Taxonomy.load(repo / "taxonomy").find("mathematics/linear-algebra")
    file.write_text(
        "# reviewed\n"
        "schema_version: 1\n"
        'kind: "discipline"\n'
        "name: 'Linear Algebra'\n"
        f"description: {json.dumps(node.description)}\n"
        "level: undergraduate   # first year\n"
    )
    assert file.read_text() != text
    assert Taxonomy.load(repo / "taxonomy").find("mathematics/linear-algebra").description == node.description
    assert changes_of(repo / "taxonomy") == []


def test_compare_with_older_commit_and_branch(repo):
    first = git(repo, "rev-parse", "HEAD").strip()
    Taxonomy.load(repo / "taxonomy").add("mathematics/logic", kind="discipline", description="Proofs.")
    git_commit_all(repo, "logic")
    git(repo, "branch", "with-logic")
    Taxonomy.load(repo / "taxonomy").remove("mathematics/logic")
    assert changes_of(repo / "taxonomy", first) == []
    assert changes_of(repo / "taxonomy", "HEAD~1") == []
    assert changes_of(repo / "taxonomy", "with-logic") == [("mathematics/logic", "removed", [])]
    assert changes_of(repo / "taxonomy", "HEAD") == [("mathematics/logic", "removed", [])]


def test_taxonomy_in_a_subfolder_of_the_repository(tmp_path, project):
    """The repository root sits above the project: paths in the diff stay relative to the taxonomy."""
    outer = tmp_path
    git(outer, "init", "-q")
    git_commit_all(outer, "all")
    write_node(project / "taxonomy" / "humanities" / "linguistics", "discipline", "Linguistics")
    assert changes_of(project / "taxonomy") == [("humanities/linguistics", "added", [])]


def test_node_broken_at_the_ref_counts_as_changed(repo):
    file = repo / "taxonomy" / "humanities" / "ethics" / NODE
    good = file.read_text()
    file.write_text("kind: [broken\n")
    git_commit_all(repo, "broken")
    file.write_text(good)
    assert changes_of(repo / "taxonomy") == [("humanities/ethics", "changed", ["kind", "name", "description", "level"])]


@pytest.mark.parametrize("ref", ["no-such-branch", "HEAD~5", "deadbeef" * 5])
def test_unknown_ref_is_a_user_error(repo, ref):
    with pytest.raises(UserError, match=f"cannot read the taxonomy at git ref '{ref}'") as caught:
        diff_taxonomy(Taxonomy.load(repo / "taxonomy"), ref)
    assert caught.value.hint and "existing commit" in caught.value.hint


def test_outside_a_git_repository_is_a_user_error(project):
    with pytest.raises(UserError, match="cannot read the taxonomy at git ref 'HEAD'"):
        diff_taxonomy(Taxonomy.load(project / "taxonomy"))


def test_cli_diff(cli, repo):
    result = cli("taxonomy", "diff", "--project", repo)
    assert result.code == 0, result.output
    assert "no changes since HEAD" in result.out

    Taxonomy.load(repo / "taxonomy").set("mathematics/probability", "level", "graduate")
    Taxonomy.load(repo / "taxonomy").add("humanities/logic", kind="discipline", description="Arguments.")
    result = cli("taxonomy", "diff", "--project", repo, "--base", "main")
    assert result.code == 0, result.output
    lines = [" ".join(line.replace("│", " ").split()) for line in result.out.splitlines()]
    assert "added humanities/logic" in lines
    assert "changed mathematics/probability level" in lines


def test_cli_diff_unknown_ref_exits_2(cli, repo):
    result = cli("taxonomy", "diff", "--base", "nope", "--project", repo)
    assert result.code == 2
    assert "cannot read the taxonomy at git ref 'nope'" in result.err
    assert "Traceback" not in result.output
