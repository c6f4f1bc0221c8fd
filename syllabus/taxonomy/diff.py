"""What changed in a taxonomy since a git ref: the nodes whose data needs regenerating.

Compares node fields (not bytes), so a re-indented or re-commented file is not a
change, while an edited description, a new seed or an edited subject file is.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..yamlio import loads_plain, read_yaml_text
from .model import CURRICULUM_DIR, NODE_FILE, NODE_KEYS
from .store import Taxonomy


@dataclass
class NodeChange:
    path: str
    status: str  # added | changed | removed
    fields: list[str] = field(default_factory=list)


def _git(cwd: Path, *args: str) -> bytes:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UserError("git is not installed", hint="install git to compare taxonomies") from None
    if result.returncode != 0:
        raise UserError(result.stderr.decode(errors="replace").strip() or f"git {' '.join(args)} failed", where=cwd)
    return result.stdout


def _plain(text: str) -> Any:
    try:  # yamlio's guards: an alias bomb at the ref is refused, not expanded
        return loads_plain(text)
    except UserError:  # a broken file at the ref counts as "different from now"
        return {"<unreadable>": text}


def _fingerprint(node_data: dict, curriculum: dict[str, Any]) -> dict[str, Any]:
    data = {k: node_data.get(k) for k in NODE_KEYS if k != "schema_version"}
    data["subjects"] = curriculum
    return data


def _snapshot_from_files(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    """{node path: fields} from {relative file path: text} of one taxonomy."""
    nodes: dict[str, dict] = {}
    curricula: dict[str, dict[str, Any]] = {}
    for rel, text in files.items():
        parts = rel.split("/")
        if parts[-1] == NODE_FILE:
            nodes["/".join(parts[:-1])] = _plain(text) or {}
        elif len(parts) >= 2 and parts[-2] == CURRICULUM_DIR and rel.endswith(".yaml"):
            curricula.setdefault("/".join(parts[:-2]), {})[parts[-1]] = _plain(text)
    return {
        path: _fingerprint(data if isinstance(data, dict) else {}, curricula.get(path, {}))
        for path, data in nodes.items()
    }


def _working_files(root: Path) -> dict[str, str]:
    files = {}
    for file in root.rglob("*.yaml"):
        rel = file.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:  # a regular file of at most 1 MiB: a FIFO or a huge file is "unreadable", not a hang
            files[rel.as_posix()] = read_yaml_text(file)
        except UserError as exc:
            files[rel.as_posix()] = f"<unreadable: {exc.message}>"
    return files


def _ref_files(root: Path, ref: str) -> dict[str, str]:
    top = Path(_git(root, "rev-parse", "--show-toplevel").decode().strip())
    _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    prefix = root.resolve().relative_to(top.resolve()).as_posix()
    listing = _git(top, "ls-tree", "-r", "-z", "--name-only", ref, "--", prefix).decode().split("\0")
    files = {}
    for name in filter(None, listing):
        if name.endswith(".yaml"):
            rel = name[len(prefix) + 1 :] if prefix not in ("", ".") else name
            files[rel] = _git(top, "show", f"{ref}:{name}").decode("utf-8", errors="replace")
    return files


def diff_taxonomy(tax: Taxonomy, base: str = "HEAD") -> list[NodeChange]:
    root = tax.root
    try:
        before = _snapshot_from_files(_ref_files(root, base))
    except UserError as exc:
        raise UserError(
            f"cannot read the taxonomy at git ref '{base}': {exc.message}",
            where=root,
            hint="run inside a git repository and name an existing commit, branch or tag",
        ) from None
    after = _snapshot_from_files(_working_files(root))
    changes = []
    for path in sorted(set(before) | set(after)):
        if path not in before:
            changes.append(NodeChange(path, "added"))
        elif path not in after:
            changes.append(NodeChange(path, "removed"))
        else:
            fields = [k for k in after[path] if after[path][k] != before[path].get(k)]
            if fields:
                changes.append(NodeChange(path, "changed", fields))
    return changes
