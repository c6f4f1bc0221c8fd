"""What a taxonomy node is, and the rules for names and folder slugs.

Folder names are slugs of node names so a tree reads well in git and a node is
addressed by its path of slugs (`natural-sciences/physics/quantum-mechanics`).
Slugs keep letters of every script (a Hebrew or Chinese name stays readable) and
can never contain a path separator, so no name reaches outside the taxonomy.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
NODE_FILE = "node.yaml"
CURRICULUM_DIR = "subjects"  # generated subjects and syllabi live here, under a discipline
KINDS = ("field", "subfield", "discipline")
# Which kinds may sit directly below which; None is the taxonomy's root folder.
ALLOWED_CHILDREN: dict[str | None, tuple[str, ...]] = {
    None: ("field",),
    "field": ("subfield", "discipline"),
    "subfield": ("subfield", "discipline"),
    "discipline": (),
}
NODE_KEYS = ("schema_version", "kind", "name", "description", "level", "weight", "seeds", "bloom", "strategies")
# Bloom's taxonomy, easiest first: a question targets one level (its wording lives in question.j2).
BLOOM_LEVELS = ("remember", "understand", "apply", "analyse", "evaluate", "create")
# How the teacher is asked to answer (the instructions live in answer.j2).
STRATEGIES = ("step_by_step", "explain_then_answer", "recall_then_answer", "direct")
MAX_SLUG_LENGTH = 80
# A node file is a name, a description and a few seeds (the prompts use 3): one far larger is a
# mistake (a pasted document, a generated list), and YAML this size takes seconds to parse.
MAX_NODE_FILE_BYTES = 1024 * 1024

_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{i}" for p in ("com", "lpt") for i in range(10)}
# Explicit embeddings, overrides and isolates reorder how text is shown ("Trojan Source"); the
# right-to-left letters of Arabic or Hebrew names need none of them.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shown(value: Any, limit: int = 60) -> str:
    """A value read from a file, short enough for a message: a list or mapping is described,
    never printed (YAML aliases can make one with billions of items)."""
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key(s)"
    if isinstance(value, (list, tuple, set)):
        return f"a list of {len(value)} item(s)"
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return "a number too long to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def slugify(name: str) -> str:
    """Lower-case, accents folded, every run of non-letters/digits turned into '-'."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\W_]+", "-", text).strip("-")


def name_problem(name: Any) -> str | None:
    """Why `name` cannot be a node name, or None when it can."""
    if name is not None and not isinstance(name, str):
        return f"name must be text, got {shown(name)} (put it in quotes)"
    if not isinstance(name, str) or not name.strip():
        return "name is empty"
    stripped = name.strip()
    if stripped in (".", ".."):
        return f"name {stripped!r} is a path, not a name"
    if "/" in name or "\\" in name:
        return f"name {name!r} contains a path separator"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return f"name {name!r} contains control characters"
    if any(ch in _BIDI_CONTROLS for ch in name):
        return f"name {name!r} contains bidirectional override characters (they disguise how text reads)"
    slug = slugify(name)
    if not slug:
        return f"name {name!r} has no letters or digits to make a folder name from"
    if slug.split(".")[0] in _RESERVED or stripped.casefold().split(".")[0] in _RESERVED:
        return f"name {name!r} is a reserved device name on Windows file systems"
    if len(slug) > MAX_SLUG_LENGTH:
        return f"name is too long ({len(slug)} characters as a folder name, at most {MAX_SLUG_LENGTH})"
    return None


def split_path(path: str) -> list[str]:
    return [part for part in str(path).replace("\\", "/").strip("/").split("/") if part]


@dataclass(frozen=True)
class Seed:
    """A few-shot exemplar written by a person: the question prompts imitate it."""

    question: str
    answer: str
    context: str | None = None


@dataclass
class Node:
    """One node as loaded: its fields, where it lives, and its raw YAML for round trips."""

    path: str
    folder: Path
    kind: str
    name: str
    description: str
    level: str | None = None
    weight: float = 1.0
    seeds: list[Seed] = field(default_factory=list)
    bloom: dict[str, float] | None = None  # this node's mix of Bloom levels (None: the project's)
    strategies: dict[str, float] | None = None  # this node's mix of answer strategies
    doc: Any = None  # ruamel CommentedMap, kept so edits preserve comments and order
    children: list["Node"] = field(default_factory=list)

    @property
    def file(self) -> Path:
        return self.folder / NODE_FILE

    @property
    def slug(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def depth(self) -> int:
        return self.path.count("/") + 1

    @property
    def curriculum_dir(self) -> Path:
        return self.folder / CURRICULUM_DIR

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()
