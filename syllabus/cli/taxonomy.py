"""`syllabus taxonomy ...`: create, edit, validate, diff and import taxonomies."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from .common import ProjectOption, console, open_project

taxonomy_app = typer.Typer(
    help=(
        "Edit the taxonomy: fields > subfields > disciplines, one folder per node.\n\n"
        "Nodes are addressed by their path of folder slugs, e.g. `natural-sciences/physics`."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

KIND_STYLE = {"field": "bold cyan", "subfield": "cyan", "discipline": "green"}


def _load(project: Optional[Path]):
    return open_project(project).load_taxonomy()


def _label(node) -> str:
    style = KIND_STYLE.get(node.kind, "white")
    extra = []
    if node.kind == "discipline":
        subjects = list(node.curriculum_dir.glob("*.yaml")) if node.curriculum_dir.is_dir() else []
        extra.append(f"{len(node.seeds)} seeds")
        extra.append(f"{len(subjects)} subjects")
        if node.level:
            extra.append(node.level)
    else:
        extra.append(f"{sum(1 for n in node.walk() if n.kind == 'discipline')} disciplines")
    if node.weight != 1:
        extra.append(f"weight {node.weight:g}")
    return f"[{style}]{escape(node.name)}[/] [dim]{node.kind} · {escape(node.slug)} · {', '.join(extra)}[/]"


@taxonomy_app.command("show")
def show(
    path: Annotated[Optional[str], typer.Argument(help="Show only this node and what is below it.")] = None,
    project: ProjectOption = None,
) -> None:
    """Print the tree with each node's kind, slug and counts."""
    tax = _load(project)
    roots = [tax.find(path)] if path else tax.top
    tree = Tree(f"[bold]{escape(str(tax.root))}[/]")

    def add(branch, node):
        sub = branch.add(_label(node))
        for child in node.children:
            add(sub, child)

    for node in roots:
        add(tree, node)
    console.print(tree)
    counts = {k: 0 for k in KIND_STYLE}
    for root in roots:
        for node in root.walk():
            counts[node.kind] += 1
    console.print(", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in counts.items()))
    for issue in tax.warnings:
        console.print(f"[yellow]warning[/] {escape(str(issue))}")


@taxonomy_app.command("add")
def add(
    path: Annotated[
        str, typer.Argument(help="New node's path: parent slugs, then its name (e.g. 'mathematics/Number Theory').")
    ],
    kind: Annotated[str, typer.Option("--kind", "-k", help="field, subfield or discipline.")],
    description: Annotated[
        str, typer.Option("--description", "-d", help="What the node covers; the teacher reads it.")
    ],
    level: Annotated[Optional[str], typer.Option(help="Education level, e.g. 'undergraduate'.")] = None,
    name: Annotated[Optional[str], typer.Option(help="Display name (default: from the last part of PATH).")] = None,
    weight: Annotated[Optional[float], typer.Option(help="Share of the generation budget (default 1).")] = None,
    project: ProjectOption = None,
) -> None:
    """Add a node.

    Example: `syllabus taxonomy add mathematics/number-theory --kind discipline -d "Primes, divisibility and congruences"`
    """
    node = _load(project).add(path, kind=kind, description=description, level=level, name=name, weight=weight)
    console.print(f"[green]added[/] {escape(node.path)} ({node.kind}) in {escape(str(node.file))}")


@taxonomy_app.command("rm")
def rm(
    path: Annotated[str, typer.Argument(help="Node to remove, with everything below it.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before removing a subtree.")] = False,
    project: ProjectOption = None,
) -> None:
    """Remove a node (asks first when it has children or generated subjects)."""
    tax = _load(project)
    node = tax.find(path)
    below = sum(1 for _ in node.walk()) - 1
    has_subjects = node.curriculum_dir.is_dir() and any(node.curriculum_dir.iterdir())
    if (below or has_subjects) and not yes:
        what = f"{below} node(s) below it" if below else "its generated subjects"
        if not typer.confirm(f"Remove '{node.path}' and {what}?", default=False):
            raise typer.Exit(1)
    tax.remove(path)
    console.print(f"[green]removed[/] {escape(node.path)}")


@taxonomy_app.command("mv")
def mv(
    src: Annotated[str, typer.Argument(help="Node to move or rename.")],
    dst: Annotated[str, typer.Argument(help="An existing node to move into, or the new path.")],
    project: ProjectOption = None,
) -> None:
    """Move or rename a node (like `mv`: into DST if it exists, else to DST)."""
    node = _load(project).move(src, dst)
    console.print(f"[green]moved[/] {escape(src)} -> {escape(node.path)}")


@taxonomy_app.command("set")
def set_(
    path: Annotated[str, typer.Argument(help="Node to change.")],
    field: Annotated[str, typer.Argument(help="name, description, kind, level or weight.")],
    value: Annotated[str, typer.Argument(help="New value ('none' clears the level).")],
    project: ProjectOption = None,
) -> None:
    """Change one field of a node; comments and formatting of its file are kept."""
    node = _load(project).set(path, field, value)
    console.print(f"[green]set[/] {escape(node.path)}.{field}")


@taxonomy_app.command("validate")
def validate(project: ProjectOption = None) -> None:
    """Check the whole tree; exit 0 when valid, 2 when not. Each problem names file and line."""
    from ..taxonomy import validate_tree

    proj = open_project(project)
    issues = validate_tree(proj.taxonomy_dir)
    errors = [i for i in issues if i.severity == "error"]
    for issue in issues:
        colour = "red" if issue.severity == "error" else "yellow"
        console.print(f"[{colour}]{issue.severity}[/] {escape(issue.location)}: {escape(issue.message)}")
        if issue.hint:
            console.print(f"  [dim]hint: {escape(issue.hint)}[/]")
    if errors:
        console.print(f"[red]{len(errors)} error(s)[/], {len(issues) - len(errors)} warning(s)")
        raise typer.Exit(2)
    nodes = sum(1 for _ in proj.load_taxonomy().walk())
    console.print(f"[green]valid[/]: {nodes} nodes, {len(issues)} warning(s)")


@taxonomy_app.command("diff")
def diff(
    base: Annotated[str, typer.Option("--base", help="Git ref to compare with.")] = "HEAD",
    project: ProjectOption = None,
) -> None:
    """Nodes added, changed and removed since a git ref: what would need regenerating."""
    from ..taxonomy.diff import diff_taxonomy

    changes = diff_taxonomy(_load(project), base)
    if not changes:
        console.print(f"no changes since {escape(base)}")
        return
    table = Table("status", "node", "fields")
    colours = {"added": "green", "changed": "yellow", "removed": "red"}
    for change in changes:
        table.add_row(f"[{colours[change.status]}]{change.status}[/]", escape(change.path), ", ".join(change.fields))
    console.print(table)


@taxonomy_app.command("import-instructlab")
def import_instructlab(
    source: Annotated[Path, typer.Argument(help="An InstructLab taxonomy folder (with qna.yaml leaves).")],
    into: Annotated[
        Optional[str], typer.Option(help="Existing field/subfield to import below (default: the top).")
    ] = None,
    project: ProjectOption = None,
) -> None:
    """Import an InstructLab taxonomy: each qna.yaml leaf becomes a discipline with its seeds."""
    from ..taxonomy.instructlab import import_instructlab as run_import

    report = run_import(_load(project), source, into)
    console.print(f"[green]imported[/] {len(report.added)} node(s) with {report.seeds} seed(s)")
    for path in report.existing:
        console.print(f"[yellow]exists[/] {escape(path)} (left as it is)")
    for file, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {escape(str(file))}: {escape(reason)}")


@taxonomy_app.command("expand")
def expand(
    path: Annotated[str, typer.Argument(help="Field or subfield whose children the teacher proposes.")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=50, help="How many children to propose.")] = 5,
    kind: Annotated[
        str, typer.Option("--kind", help="Kind of the proposed children: discipline or subfield.")
    ] = "discipline",
    teacher: Annotated[
        Optional[str], typer.Option("--teacher", "-t", help="'embedded', a model folder, or 'openai:MODEL'.")
    ] = None,
    base_url: Annotated[Optional[list[str]], typer.Option("--base-url", help="OpenAI-compatible server URL.")] = None,
    project: ProjectOption = None,
) -> None:
    """Ask the teacher to propose children of a node, into a review file (GLAN's semi-automatic taxonomy).

    Review the file, then merge it with `syllabus taxonomy accept FILE`.
    """
    from ..generators.expand import expand_node

    proj = open_project(project)
    file = expand_node(proj, path, count=count, child_kind=kind, teacher=teacher, base_urls=base_url)
    console.print(f"[green]proposals written[/] to {escape(str(file))}")
    console.print(f"Review them, then: [bold]syllabus taxonomy accept {escape(str(file.relative_to(proj.root)))}[/]")


@taxonomy_app.command("accept")
def accept(
    file: Annotated[Path, typer.Argument(help="A review file written by `syllabus taxonomy expand`.")],
    project: ProjectOption = None,
) -> None:
    """Merge a reviewed proposal file into the taxonomy (each entry checked like `taxonomy add`)."""
    from ..generators.expand import accept_review

    proj = open_project(project)
    target = file if file.is_absolute() or file.exists() else proj.root / file
    added, skipped = accept_review(proj, target)
    for path in added:
        console.print(f"[green]added[/] {escape(path)}")
    for reason in skipped:
        console.print(f"[yellow]skipped[/] {escape(reason)}")
