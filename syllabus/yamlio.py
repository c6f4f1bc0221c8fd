"""YAML that keeps what people wrote, read safely.

Hand-written `node.yaml` and `syllabus.yaml` files carry comments and a key order
that matter in review; ruamel's round-trip mode keeps both through every edit the
CLI makes. Parse errors become `UserError`s that name the file and line.

Every YAML file the project reads comes through here, so every reader gets the same
guards: the file must be a regular file under a byte limit (`safefile`: a FIFO does
not hang it, a 2 GB file is not read), nesting is bounded, and aliases are refused:
ten lines of `*a` aliases expand to billions of items (a "billion laughs"), and
whatever walks them afterwards (validation, a dump, a prompt) hangs.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.composer import Composer, ComposerError, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent

from .errors import UserError
from .fsutil import atomic_write_text
from .safefile import read_text

# Every file read here is short and hand-written (a node, a subject, the settings, a recipe,
# an InstructLab qna.yaml): one larger is a mistake, and YAML this size takes seconds to parse.
MAX_YAML_BYTES = 1024 * 1024
MAX_DEPTH = 100  # nesting levels; hand-written files use a handful


class _NoAliasComposer(Composer):
    """ruamel's composer, refusing every alias (`*name`) where it is read, before anything is
    built from it. Ten short lines of aliases expand to billions of items, and a bound on
    their count still lets a few aliases of a long text make megabytes (an imported qna.yaml
    of 2.6 KB became a 9 MiB node.yaml); no file the project reads needs them."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.parser.check_event(AliasEvent):
            event = self.parser.peek_event()
            raise ComposerError(None, None, f"YAML alias *{event.anchor} (aliases are not accepted)", event.start_mark)
        return super().compose_node(parent, index)


def _guarded(yaml: YAML) -> YAML:
    yaml.Composer = _NoAliasComposer
    yaml.max_depth = MAX_DEPTH
    return yaml


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines people wrote: an edit changes only what it edits
    yaml.indent(mapping=2, sequence=4, offset=2)
    return _guarded(yaml)


def _parse(yaml: YAML, text: str, source: str | Path) -> Any:
    try:
        return yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        if isinstance(exc, MaxDepthExceededError):
            raise UserError(
                f"YAML nested more than {MAX_DEPTH} levels deep",
                where=f"{source}{line}",
                hint="a hand-written file needs a few levels; check the brackets",
            ) from None
        if isinstance(exc, ComposerError) and "alias" in problem:
            raise UserError(
                f"YAML refused: {problem}",
                where=f"{source}{line}",
                hint="write the value out where the alias is (anchors and aliases, &name and "
                "*name, are refused in every file syllabus reads)",
            ) from None
        raise UserError(
            f"YAML syntax error: {problem}",
            where=f"{source}{line}",
            hint="check indentation and quoting on that line (values with ':' or '#' need quotes)",
        ) from None
    except YAMLError as exc:
        raise UserError(f"YAML error: {exc}", where=source) from None
    except RecursionError:
        raise UserError("YAML nested too deeply to read", where=source) from None
    except (TypeError, ValueError) as exc:  # what ruamel lets through: a list as a key, a 5000-digit number
        raise UserError(
            f"YAML value that cannot be read: {str(exc).split(';')[0]}",
            where=source,
            hint="keys must be plain text, and numbers of a sensible size",
        ) from None


def loads(text: str, *, source: str | Path = "<string>") -> Any:
    """Round-trip YAML (comments and key order kept for a later `dump`)."""
    return _parse(_yaml(), text, source)


def loads_plain(text: str, *, source: str | Path = "<string>") -> Any:
    """Plain dicts, lists and scalars (YAML 1.2 safe types), for files we read and never write back."""
    return _parse(_guarded(YAML(typ="safe", pure=True)), text, source)


def read_yaml_text(path: Path, *, limit: int = MAX_YAML_BYTES, what: str = "YAML file") -> str:
    """The text of a YAML file: a regular file, UTF-8, at most `limit` bytes (else a UserError)."""
    return read_text(path, limit=limit, what=what)


def load(path: Path, *, limit: int = MAX_YAML_BYTES, what: str = "YAML file") -> Any:
    return loads(read_yaml_text(path, limit=limit, what=what), source=path)


def load_plain(path: Path, *, limit: int = MAX_YAML_BYTES, what: str = "YAML file") -> Any:
    return loads_plain(read_yaml_text(path, limit=limit, what=what), source=path)


def dumps(data: Any) -> str:
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    return buffer.getvalue()


def dump(data: Any, path: Path) -> None:
    atomic_write_text(Path(path), dumps(data))


def text_scalar(value: str) -> str:
    """`value` as a string every YAML reader reads back as this string.

    ruamel writes a plain `yes`, `on`, `~` or `1_000` unquoted, as YAML 1.2 reads it; a
    YAML 1.1 reader (PyYAML, many CI tools) reads those as a boolean, null or number. Text
    that either version would resolve to anything but a string is written double-quoted."""
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import VersionedResolver
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if not isinstance(value, str):
        return value
    for version in ((1, 1), (1, 2)):
        tag = VersionedResolver(version=version).resolve(ScalarNode, value, (True, False))
        if str(getattr(tag, "value", tag)) != "tag:yaml.org,2002:str":
            return DoubleQuotedScalarString(value)
    return value


def line_of(mapping: Any, key: str | None = None) -> int | None:
    """1-based line of a mapping (or of one of its keys) as loaded, if known."""
    lc = getattr(mapping, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None and key in mapping:
            return lc.key(key)[0] + 1
        return lc.line + 1
    except (KeyError, TypeError, AttributeError):
        return None
