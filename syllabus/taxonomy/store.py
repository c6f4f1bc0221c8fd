"""A loaded taxonomy: find, walk and select nodes; the edit operations live in `edit`."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import UserError
from .model import Node, split_path
from .validate import Issue, read_tree


class TaxonomyInvalid(UserError):
    """The tree has errors; `issues` lists each with its file and line."""

    def __init__(self, root: Path, issues: list[Issue]):
        self.issues = issues
        errors = [i for i in issues if i.severity == "error"]
        listing = "\n".join(str(i) for i in errors[:20])
        more = f"\n... and {len(errors) - 20} more" if len(errors) > 20 else ""
        super().__init__(
            f"taxonomy has {len(errors)} error(s):\n{listing}{more}",
            where=root,
            hint="fix them, then check with `syllabus taxonomy validate`",
        )


class Taxonomy:
    """A taxonomy folder, read and validated in one pass."""

    def __init__(self, root: Path, top: list[Node], issues: list[Issue]):
        self.root = Path(root)
        self.top = top
        self.issues = issues

    @classmethod
    def load(cls, root: str | Path, *, strict: bool = True) -> Taxonomy:
        """Read the tree; with `strict`, raise `TaxonomyInvalid` if it has any error."""
        top, issues = read_tree(Path(root))
        if strict and any(i.severity == "error" for i in issues):
            raise TaxonomyInvalid(Path(root), issues)
        return cls(Path(root), top, issues)

    def reload(self) -> Taxonomy:
        fresh = Taxonomy.load(self.root)
        self.top, self.issues = fresh.top, fresh.issues
        return self

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    def walk(self) -> Iterator[Node]:
        for node in self.top:
            yield from node.walk()

    def disciplines(self) -> list[Node]:
        return [n for n in self.walk() if n.kind == "discipline"]

    def find(self, path: str) -> Node:
        wanted = "/".join(split_path(path))
        for node in self.walk():
            if node.path == wanted:
                return node
        close = difflib.get_close_matches(wanted, [n.path for n in self.walk()], n=1)
        raise UserError(
            f"no node at '{wanted}'",
            where=self.root,
            hint=f"did you mean '{close[0]}'?" if close else "list the nodes with `syllabus taxonomy show`",
        )

    def exists(self, path: str) -> bool:
        wanted = "/".join(split_path(path))
        return any(node.path == wanted for node in self.walk())

    def parent_of(self, node: Node) -> Node | None:
        if "/" not in node.path:
            return None
        return self.find(node.path.rsplit("/", 1)[0])

    def select(self, patterns: Iterable[str] | None) -> list[Node]:
        """Disciplines at or below every node whose path matches one of the glob patterns."""
        patterns = [p.strip("/") for p in (patterns or []) if p.strip("/")]
        if not patterns:
            return self.disciplines()
        chosen: dict[str, Node] = {}
        for pattern in patterns:
            matched = [n for n in self.walk() if fnmatch.fnmatchcase(n.path, pattern)]
            if not matched:
                raise UserError(
                    f"--nodes pattern '{pattern}' matches no node",
                    where=self.root,
                    hint="patterns are globs over slug paths, e.g. 'natural-sciences/*'; see `syllabus taxonomy show`",
                )
            for node in matched:
                for sub in node.walk():
                    if sub.kind == "discipline":
                        chosen.setdefault(sub.path, sub)
        return sorted(chosen.values(), key=lambda n: n.path)

    # Edits: each re-reads the tree afterwards so this object stays true to the disk.
    def add(self, path: str, **fields) -> Node:
        from .edit import add_node

        return add_node(self, path, **fields)

    def remove(self, path: str) -> None:
        from .edit import remove_node

        remove_node(self, path)

    def move(self, src: str, dst: str) -> Node:
        from .edit import move_node

        return move_node(self, src, dst)

    def set(self, path: str, field: str, value) -> Node:
        from .edit import set_field

        return set_field(self, path, field, value)
