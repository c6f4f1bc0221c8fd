"""What a taxonomy node is, and the rules for names and folder slugs.

Folder names are slugs of node names so a tree reads well in git and a node is
addressed by its path of slugs (`natural-sciences/physics/quantum-mechanics`).
Slugs keep letters of every script (a Hebrew or Chinese name stays readable) and
can never contain a path separator, so no name reaches outside the taxonomy.
"""

from __future__ import annotations

import hashlib
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
MAX_SLUG_BYTES = 200  # + '.yaml' and a temp file's '.NAME.xxxxxxxx.tmp' stay under 255 bytes

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


def _unbounded_slug(name: str) -> str:
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"[\W_]+", "-", text).strip("-")


def slugify(name: str) -> str:
    """Lower-case, accents folded, every run of non-letters/digits turned into '-'; at most
    MAX_SLUG_BYTES of UTF-8, so any name (100 CJK characters are 300 bytes) makes a file name
    the file system takes (255 bytes, with room for `.yaml` and a temporary file's affixes)."""
    slug = _unbounded_slug(name)
    if len(slug.encode("utf-8")) <= MAX_SLUG_BYTES:
        return slug
    # Cut at a character boundary and add a digest of the whole slug: two long names that
    # share a beginning still get two files.
    digest = hashlib.sha256(slug.encode("utf-8")).hexdigest()[:8]
    cut = slug.encode("utf-8")[: MAX_SLUG_BYTES - len(digest) - 1].decode("utf-8", "ignore").rstrip("-")
    return f"{cut}-{digest}"


def unsafe_name(name: Any) -> str | None:
    """Why `name` is unsafe as a node or subject name, as a short reason without the name
    (one counter per reason), or None. Length is the caller's rule."""
    if not isinstance(name, str):
        return "not text"
    stripped = name.strip()
    if not stripped:
        return "empty"
    if stripped in (".", ".."):
        return "a path, not a name"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        return "contains control characters"
    if any(ch in _BIDI_CONTROLS for ch in name):
        return "contains bidirectional override characters"
    slug = slugify(name)
    if not slug:
        return "has no letters or digits"
    if slug.split(".")[0] in _RESERVED or stripped.casefold().split(".")[0] in _RESERVED:
        return "a reserved device name on Windows file systems"
    return None


def name_problem(name: Any) -> str | None:
    """Why `name` cannot be a node name, or None when it can."""
    if name is not None and not isinstance(name, str):
        return f"name must be text, got {shown(name)} (put it in quotes)"
    reason = unsafe_name(name)
    if reason == "empty" or name is None:
        return "name is empty"
    if reason == "a path, not a name":
        return f"name {name.strip()!r} is a path, not a name"
    if reason == "contains bidirectional override characters":
        return f"name {name!r} contains bidirectional override characters (they disguise how text reads)"
    if reason == "has no letters or digits":
        return f"name {name!r} has no letters or digits to make a folder name from"
    if reason == "a reserved device name on Windows file systems":
        return f"name {name!r} is a reserved device name on Windows file systems"
    if reason is not None:
        return f"name {name!r} {reason}"
    slug = _unbounded_slug(name)
    if len(slug) > MAX_SLUG_LENGTH:
        return f"name is too long ({len(slug)} characters as a folder name, at most {MAX_SLUG_LENGTH})"
    return None


def outside(path: Path, root: Path) -> Path | None:
    """Where `path` really is when a symbolic link on the way takes it out of `root`, else None.

    Generation writes subject files into the tree; a link out of it (a cloned taxonomy's
    `subjects -> ../../other-repo/.github/workflows`) would make it write there."""
    try:
        real = path.resolve()
        inside = real.is_relative_to(Path(root).resolve())
    except (OSError, RuntimeError):  # a link loop
        return path
    return None if inside else real


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
    children: list[Node] = field(default_factory=list)

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
