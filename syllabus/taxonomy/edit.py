"""Edit operations on a taxonomy folder: add, remove, move/rename, set a field.

Each checks the result would be valid before touching the disk, writes through
ruamel's round trip (comments and key order survive), and renames rather than
copies, so an interrupted edit leaves either the old tree or the new one.
"""

from __future__ import annotations

import math
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from ..errors import UserError
from ..yamlio import dump
from .model import ALLOWED_CHILDREN, KINDS, NODE_FILE, SCHEMA_VERSION, Node, name_problem, slugify, split_path

if TYPE_CHECKING:  # for annotations only: store.Taxonomy's edit methods call in here
    from .store import Taxonomy

SETTABLE = ("name", "description", "kind", "level", "weight")


def _name_from_component(component: str) -> str:
    """`quantum-mechanics` -> `Quantum Mechanics`; a component that is not a slug is taken as the name."""
    if component == slugify(component):
        return " ".join(word.capitalize() for word in component.split("-"))
    return component


def _check_name(name: str, where: str) -> str:
    reason = name_problem(name)
    if reason:
        raise UserError(reason, where=where, hint="choose a plain name made of words")
    return slugify(name)


def _check_weight(value: Any, where: str) -> float | int:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise UserError(f"weight must be a number, got {value!r}", where=where) from None
    if not math.isfinite(weight) or weight < 0:
        raise UserError(
            f"weight must be a number >= 0, got {value!r}",
            where=where,
            hint="weight is this node's share of the generation budget; default 1",
        )
    return int(weight) if weight.is_integer() else weight


def _inside(root: Path, target: Path) -> Path:
    resolved = target.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UserError("path leads outside the taxonomy", where=str(target))
    return target


def _parts(path: str) -> list[str]:
    """The slugs of a new node path; '.' and '..' are refused by name (not "no node at '..'")."""
    parts = split_path(path)
    for part in parts:
        if part.strip() in (".", ".."):
            raise UserError(
                f"a node path cannot contain '{part.strip()}'",
                where=path,
                hint="give the path of slugs from the top of the taxonomy, e.g. 'natural-sciences/physics'",
            )
    return parts


def _parent_and_slot(tax: Taxonomy, path: str, name: str | None) -> tuple[Node | None, str, str]:
    parts = _parts(path)
    if not parts:
        raise UserError("empty node path", hint="give a path of slugs such as 'natural-sciences/physics'")
    parent = tax.find("/".join(parts[:-1])) if len(parts) > 1 else None
    name = name if name is not None else _name_from_component(parts[-1])  # an explicit '' is an error
    slug = _check_name(name, where=path)
    siblings = parent.children if parent else tax.top
    for sibling in siblings:
        if slugify(sibling.name) == slug or sibling.slug == slug:
            raise UserError(
                f"'{sibling.path}' already exists (names '{sibling.name}' and '{name}' give the same folder name)",
                hint="choose another name",
            )
    return parent, name, slug


def _check_nesting(kind: str, parent: Node | None, path: str) -> None:
    if kind not in KINDS:
        raise UserError(f"unknown kind {kind!r}", where=path, hint=f"kind must be one of: {', '.join(KINDS)}")
    allowed = ALLOWED_CHILDREN[parent.kind if parent else None]
    if kind not in allowed:
        where = f"below {parent.kind} '{parent.path}'" if parent else "at the top of the taxonomy"
        raise UserError(
            f"a {kind} cannot sit {where}",
            where=path,
            hint=f"allowed there: {', '.join(allowed) or 'nothing (disciplines are leaves)'}",
        )


def add_node(
    tax: Taxonomy,
    path: str,
    *,
    kind: str,
    description: str,
    name: str | None = None,
    level: str | None = None,
    weight: float | None = None,
    seeds: list[dict[str, Any]] | None = None,
) -> Node:
    parent, name, slug = _parent_and_slot(tax, path, name)
    _check_nesting(kind, parent, path)
    if not description or not description.strip():
        raise UserError("description is empty", where=path, hint="describe in a sentence what the node covers")
    if weight is not None:
        weight = _check_weight(weight, path)
    folder = _inside(tax.root, (parent.folder if parent else tax.root) / slug)
    write_new_node(folder, kind=kind, name=name, description=description, level=level, weight=weight, seeds=seeds)
    tax.reload()
    return tax.find(f"{parent.path}/{slug}" if parent else slug)


def write_new_node(
    folder: Path,
    *,
    kind: str,
    name: str,
    description: str,
    level: str | None = None,
    weight: float | None = None,
    seeds: list[dict[str, Any]] | None = None,
) -> None:
    """Create a node folder with its node.yaml in one rename (no half-made node on a crash)."""
    doc = CommentedMap()
    doc["schema_version"] = SCHEMA_VERSION
    doc["kind"] = kind
    doc["name"] = name
    doc["description"] = description.strip()
    if level:
        doc["level"] = level
    if weight is not None:
        doc["weight"] = weight
    if seeds:
        doc["seeds"] = seeds
    staging = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir(parents=True)
    dump(doc, staging / NODE_FILE)
    os.replace(staging, folder)


def remove_node(tax: Taxonomy, path: str) -> None:
    node = tax.find(path)
    trash = _inside(tax.root, node.folder.with_name(f".{node.slug}.{uuid.uuid4().hex[:8]}.removed"))
    os.replace(node.folder, trash)  # one rename: the node is gone at once, even if rmtree is cut short
    if trash.is_symlink():  # a linked node: drop the link, never what it points to
        trash.unlink()
    else:
        shutil.rmtree(trash, ignore_errors=True)
    tax.reload()


def move_node(tax: Taxonomy, src: str, dst: str, *, name: str | None = None) -> Node:
    """Like `mv`: into `dst` when it is an existing node, else to the new path `dst`.

    The node keeps its name unless the last part of `dst` renames it (or `name` is given).
    """
    node = tax.find(src)
    dst_parts = _parts(dst)
    if tax.exists(dst) and name is None:
        target_parent: Node | None = tax.find(dst)
        name = node.name
    else:
        target_parent = tax.find("/".join(dst_parts[:-1])) if len(dst_parts) > 1 else None
        last = dst_parts[-1] if dst_parts else ""
        if name is None:
            name = node.name if last == node.slug else _name_from_component(last)
    if target_parent is not None and (target_parent.path + "/").startswith(node.path + "/"):
        raise UserError(f"cannot move '{node.path}' into itself", where=dst)
    _check_nesting(node.kind, target_parent, dst)
    slug = _check_name(name, where=dst)
    siblings = target_parent.children if target_parent else tax.top
    for sibling in siblings:
        if sibling.path != node.path and (sibling.slug == slug or slugify(sibling.name) == slug):
            raise UserError(f"'{sibling.path}' already exists", where=dst, hint="choose another name or place")
    if name != node.name:
        node.doc["name"] = name
        dump(node.doc, node.file)
    target = _inside(tax.root, (target_parent.folder if target_parent else tax.root) / slug)
    if target != node.folder:
        os.replace(node.folder, target)
    tax.reload()
    return tax.find(f"{target_parent.path}/{slug}" if target_parent else slug)


def _remove_key(doc: CommentedMap, key: str) -> None:
    """Drop `key`, keeping the full-line comments that followed it (ruamel files them under it)."""
    if key not in doc:
        return
    keys = list(doc)
    index = keys.index(key)
    entry = doc.ca.items.pop(key, None)
    del doc[key]
    token = entry[2] if entry and len(entry) > 2 else None
    rest = token.value.split("\n", 1)[1] if token is not None and "\n" in token.value else ""
    if not rest.strip():
        return
    if index + 1 < len(keys):  # the comments now sit before the next key
        slot = doc.ca.items.setdefault(keys[index + 1], [None, None, None, None])
        slot[1] = [CommentToken(line + "\n", CommentMark(0)) for line in rest.rstrip("\n").split("\n")] + (
            slot[1] or []
        )
    elif index > 0 and not isinstance(doc[keys[index - 1]], (dict, list)):  # or after the key before it
        slot = doc.ca.items.setdefault(keys[index - 1], [None, None, None, None])
        if slot[2] is None:
            slot[2] = CommentToken("\n" + rest, CommentMark(0))
        else:
            slot[2].value += rest


def set_field(tax: Taxonomy, path: str, field: str, value: Any) -> Node:
    node = tax.find(path)
    if field == "seeds":
        raise UserError("seeds are a list: edit them in the file", where=node.file)
    if field not in SETTABLE:
        raise UserError(f"unknown field '{field}'", where=path, hint=f"settable fields: {', '.join(SETTABLE)}")
    if field == "name":
        parent_path = node.path.rsplit("/", 1)[0] + "/" if "/" in node.path else ""
        _check_name(str(value), where=path)
        return move_node(tax, node.path, parent_path + slugify(str(value)), name=str(value))
    if field == "kind":
        _check_nesting(str(value), tax.parent_of(node), path)
        for child in node.children:
            _check_nesting(child.kind, Node(node.path, node.folder, str(value), node.name, ""), child.path)
        if str(value) == "discipline" and node.children:
            raise UserError(
                "a discipline cannot have child nodes", where=path, hint="move or remove its children first"
            )
        node.doc["kind"] = str(value)
    elif field == "weight":
        node.doc["weight"] = _check_weight(value, path)
    elif field == "level":
        if value in (None, "", "none", "null"):
            _remove_key(node.doc, "level")
        else:
            node.doc["level"] = str(value)
    elif field == "description":
        if not str(value).strip():
            raise UserError("description is empty", where=path)
        node.doc["description"] = str(value)
    dump(node.doc, node.file)
    tax.reload()
    return tax.find(node.path)
