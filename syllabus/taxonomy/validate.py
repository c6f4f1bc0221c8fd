"""Read a taxonomy folder into nodes, collecting every problem with file, line and hint.

Loading and validating are one pass on purpose: every command that reads a tree
goes through `read_tree`, so `syllabus taxonomy validate` can never pass a tree
that another command then rejects.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..yamlio import line_of, load
from .model import (
    ALLOWED_CHILDREN,
    BLOOM_LEVELS,
    CURRICULUM_DIR,
    KINDS,
    NODE_FILE,
    NODE_KEYS,
    SCHEMA_VERSION,
    STRATEGIES,
    Node,
    Seed,
    name_problem,
    outside,
    shown,
    slugify,
)


@dataclass(frozen=True)
class Issue:
    """One problem found in a taxonomy; `severity` is 'error' or 'warning'."""

    file: Path
    line: int | None
    message: str
    hint: str | None = None
    severity: str = "error"

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)

    def __str__(self) -> str:
        text = f"{self.location}: {self.severity}: {self.message}"
        return text + (f"\n  hint: {self.hint}" if self.hint else "")


def validate_tree(root: Path) -> list[Issue]:
    """All problems of the tree under `root` (an empty list when it is valid)."""
    return read_tree(root)[1]


def read_tree(root: Path) -> tuple[list[Node], list[Issue]]:
    root = Path(root)
    issues: list[Issue] = []
    if not root.is_dir():
        raise UserError(
            "taxonomy folder does not exist",
            where=root,
            hint="run `syllabus init DIR` to create a project, or fix `taxonomy:` in syllabus.yaml",
        )
    top = _read_children(root, "", None, None, issues, (root.resolve(),))
    return top, issues


def _read_children(
    folder: Path,
    parent_path: str,
    parent: Node | None,
    parent_kind: str | None,
    issues: list[Issue],
    above: tuple[Path, ...],
) -> list[Node]:
    """The nodes in `folder`; `above` holds the real paths of the folders it is in (itself included)."""
    children: list[Node] = []
    seen_slugs: dict[str, Node] = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not _is_utf8(sub.name):  # it would end up in rows, YAML and JSON that are UTF-8: stop it here
            shown_name = os.fsencode(sub.name).decode("utf-8", "backslashreplace")
            issues.append(
                Issue(
                    folder,
                    None,
                    f"folder name '{shown_name}' is not valid UTF-8",
                    "rename the folder to a UTF-8 name (e.g. with `mv`), then check again",
                )
            )
            continue
        real = sub.resolve()
        if real in above:  # a link to a folder it is in: reading on would never end
            issues.append(
                Issue(
                    sub,
                    None,
                    f"folder links back to {real}, a folder it is in (a symlink loop)",
                    "remove the link; a linked node must point outside the folders above it",
                )
            )
            continue
        if parent_kind == "discipline":
            assert parent is not None  # parent_kind is the kind of the parent node
            if sub.name == CURRICULUM_DIR:
                if outside(sub, above[0]) is None:  # one that leaves is reported with its discipline
                    _check_subject_files(sub, issues, above[0])
                continue
            issues.append(
                Issue(
                    sub,
                    None,
                    f"wrong nesting: folder '{sub.name}' is below discipline '{parent.name}'",
                    "disciplines are leaves; move it up with `syllabus taxonomy mv`, or make the "
                    "parent a subfield (`syllabus taxonomy set PATH kind subfield`)",
                )
            )
            continue
        node_file = sub / NODE_FILE
        if not node_file.exists() and not node_file.is_symlink():  # a folder or FIFO of that name: read_node says so
            issues.append(
                Issue(
                    sub,
                    None,
                    f"folder has no {NODE_FILE}",
                    "add one with `syllabus taxonomy add`, or remove the folder",
                )
            )
            continue
        path = f"{parent_path}/{sub.name}" if parent_path else sub.name
        node = _read_node(node_file, path, parent_kind, issues)
        if node is None:
            continue
        if node.kind == "discipline":
            escapes_to = outside(node.curriculum_dir, above[0])
            if escapes_to is not None:
                issues.append(
                    Issue(
                        node.curriculum_dir,
                        None,
                        f"a symbolic link takes this discipline's subjects "
                        f"folder out of the taxonomy (to {escapes_to}): generation would write there",
                        "copy the folder into the taxonomy instead of linking it",
                    )
                )
        slug = slugify(node.name) if name_problem(node.name) is None else None
        if slug is not None:
            if slug in seen_slugs:
                other = seen_slugs[slug]
                issues.append(
                    Issue(
                        node.file,
                        line_of(node.doc, "name"),
                        f"name '{node.name}' gives the same folder name '{slug}' as sibling "
                        f"'{other.name}' ({other.file})",
                        "sibling names must differ by more than case and punctuation: rename one",
                    )
                )
            seen_slugs[slug] = node
            if slug != sub.name:
                issues.append(
                    Issue(
                        node.file,
                        line_of(node.doc, "name"),
                        f"folder '{sub.name}' does not match the slug of its name ('{slug}')",
                        f"rename with `syllabus taxonomy mv {path} {path.rsplit('/', 1)[0] + '/' if '/' in path else ''}{slug}`",
                        severity="warning",
                    )
                )
        node.children = _read_children(sub, path, node, node.kind, issues, (*above, real))
        children.append(node)
    return children


def _is_utf8(name: str) -> bool:
    """False for a name the OS gave with undecodable bytes (Python keeps them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_node(file: Path, path: str, parent_kind: str | None, issues: list[Issue]) -> Node | None:
    try:
        doc = load(file, what="node file")  # yamlio's one limit for hand-written YAML (1 MiB)
    except UserError as exc:
        issues.append(_issue_of(exc, file))
        return None
    if not isinstance(doc, dict):
        issues.append(
            Issue(file, 1, "node.yaml must be a mapping of fields", "see `syllabus taxonomy add --help` for the fields")
        )
        return None

    def problem(key: str | None, message: str, hint: str | None = None, severity: str = "error") -> None:
        issues.append(Issue(file, line_of(doc, key), message, hint, severity))

    version = doc.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        problem("schema_version", f"schema_version must be a whole number, got {shown(version)}")
    elif version > SCHEMA_VERSION:
        problem(
            "schema_version",
            f"schema_version {version} is newer than this syllabus understands ({SCHEMA_VERSION})",
            "upgrade syllabus (pip install -U syllabus) to read this taxonomy",
        )
        return None

    for key in doc:
        if key not in NODE_KEYS:
            problem(key, f"unknown field {shown(key)}", f"known fields: {', '.join(NODE_KEYS)}", severity="warning")

    kind = doc.get("kind")
    if kind is None or (isinstance(kind, str) and not kind.strip()):
        problem(None, "missing required field 'kind'", f"add `kind: ` one of {', '.join(KINDS)}")
    elif kind not in KINDS:
        problem("kind", f"unknown kind {shown(kind)}", f"kind must be one of: {', '.join(KINDS)}")
    else:
        allowed = ALLOWED_CHILDREN[parent_kind]
        if kind not in allowed:
            where = f"below a {parent_kind}" if parent_kind else "at the top of the taxonomy"
            expected = ", ".join(allowed) if allowed else "nothing (disciplines are leaves)"
            problem(
                "kind",
                f"wrong nesting: a {kind} cannot sit {where}",
                f"allowed there: {expected}; move the node or change its kind",
            )

    name = doc.get("name")
    if name is None:
        problem(None, "missing required field 'name'", "add `name: Human Readable Name`")
    else:
        reason = name_problem(name)
        if reason:
            problem("name", reason, "choose a plain name made of words")

    description = doc.get("description")
    if not isinstance(description, str) or not description.strip():
        what = "missing required field" if description is None else "empty or non-text field"
        problem(
            "description" if description is not None else None,
            f"{what} 'description'",
            "describe in a sentence or two what the node covers: the teacher reads it",
        )

    level = doc.get("level")
    if level is not None and not isinstance(level, str):
        problem("level", f"level must be text (e.g. 'undergraduate'), got {shown(level)}")

    weight = doc.get("weight", 1)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not _finite(weight) or weight < 0:
        problem(
            "weight",
            f"weight must be a number >= 0, got {shown(weight)}",
            "weight is this node's share of the generation budget; default 1",
        )
        weight = 1

    seeds = _read_seeds(doc, file, issues)
    bloom = _read_mix(doc, "bloom", BLOOM_LEVELS, file, issues)
    strategies = _read_mix(doc, "strategies", STRATEGIES, file, issues)
    return Node(
        path=path,
        folder=file.parent,
        kind=kind if kind in KINDS else "field",
        name=name if isinstance(name, str) else "" if name is None or isinstance(name, (dict, list)) else str(name),
        description=description if isinstance(description, str) else "",
        level=level if isinstance(level, str) else None,
        weight=float(weight),
        seeds=seeds,
        bloom=bloom,
        strategies=strategies,
        doc=doc,
    )


def _read_seeds(doc: Any, file: Path, issues: list[Issue]) -> list[Seed]:
    raw = doc.get("seeds")
    if raw is None:
        return []
    if not isinstance(raw, list):
        issues.append(Issue(file, line_of(doc, "seeds"), "seeds must be a list of {question, answer}"))
        return []
    seeds = []
    for index, item in enumerate(raw, start=1):
        line = line_of(item) if hasattr(item, "lc") else line_of(doc, "seeds")
        if not isinstance(item, dict):
            issues.append(Issue(file, line, f"seed {index} must be a mapping with question and answer"))
            continue
        missing = [k for k in ("question", "answer") if not isinstance(item.get(k), str) or not item[k].strip()]
        if missing:
            issues.append(
                Issue(
                    file,
                    line,
                    f"seed {index} has no {' and no '.join(missing)}",
                    "every seed needs both a question and an answer",
                )
            )
            continue
        context = item.get("context")
        seeds.append(
            Seed(
                item["question"].strip(), item["answer"].strip(), context.strip() if isinstance(context, str) else None
            )
        )
    return seeds


def _issue_of(exc: UserError, file: Path) -> Issue:
    """A file's UserError as an Issue, with its line when the error names one."""
    where = str(exc.where or file)
    line = where.rsplit(":", 1)[1] if where.startswith(f"{file}:") else None
    return Issue(file, int(line) if line and line.isdigit() else None, exc.message, exc.hint)


def _check_subject_files(folder: Path, issues: list[Issue], root: Path) -> None:
    """Generated subject files are hand-editable, so they are validated like node files."""
    from .curriculum import read_subject

    for file in sorted(folder.glob("*.yaml")):
        real = outside(file, root)
        if real is not None:
            issues.append(
                Issue(
                    file,
                    None,
                    f"subject file is a symbolic link out of the taxonomy (to {real}): generation would write there",
                    "copy the file into the taxonomy instead of linking it",
                )
            )
            continue
        try:
            read_subject(file)
        except UserError as exc:
            issue = _issue_of(exc, file)
            issues.append(
                Issue(
                    issue.file,
                    issue.line,
                    issue.message,
                    exc.hint or "fix the subject file, or delete it to drop the subject",
                )
            )


def _read_mix(doc, key: str, known: tuple[str, ...], file: Path, issues: list[Issue]) -> dict[str, float] | None:
    """A weighted mix such as `bloom: {apply: 2, analyse: 1}` (a list means equal weights)."""
    raw = doc.get(key)
    if raw is None:
        return None
    hint = f"write {key} as a mapping of {', '.join(known)} to weights, e.g. {{{known[2]}: 2, {known[3]}: 1}}"
    if isinstance(raw, list):
        if not all(isinstance(name, str) for name in raw):
            issues.append(
                Issue(file, line_of(doc, key), f"{key} must be a list of names or a mapping of names to weights", hint)
            )
            return None
        raw = {name: 1 for name in raw}
    if not isinstance(raw, dict) or not raw:
        issues.append(Issue(file, line_of(doc, key), f"{key} must be a non-empty mapping of names to weights", hint))
        return None
    mix = {}
    for name, weight in raw.items():
        if name not in known:
            issues.append(Issue(file, line_of(doc, key), f"unknown {key} entry {shown(name)}", hint))
            return None
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not _finite(weight) or not weight >= 0:
            issues.append(Issue(file, line_of(doc, key), f"{key} weight of {shown(name)} must be a number >= 0", hint))
            return None
        mix[name] = float(weight)
    if not any(mix.values()):
        issues.append(Issue(file, line_of(doc, key), f"{key} weights are all 0", hint))
        return None
    return mix


def _finite(number: int | float) -> bool:
    """A weight that is a real number (an integer too large for a float is not)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False
