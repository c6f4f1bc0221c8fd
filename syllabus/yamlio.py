"""YAML that keeps what people wrote.

Hand-written `node.yaml` and `syllabus.yaml` files carry comments and a key order
that matter in review; ruamel's round-trip mode keeps both through every edit the
CLI makes. Parse errors become `UserError`s that name the file and line.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from .errors import UserError
from .fsutil import atomic_write_text


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long lines people wrote: an edit changes only what it edits
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def loads(text: str, *, source: str | Path = "<string>") -> Any:
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise UserError(
            f"YAML syntax error: {problem}",
            where=f"{source}{line}",
            hint="check indentation and quoting on that line (values with ':' or '#' need quotes)",
        ) from None
    except YAMLError as exc:
        raise UserError(f"YAML error: {exc}", where=source) from None
    except (TypeError, ValueError) as exc:  # what ruamel lets through: a list as a key, a 5000-digit number
        raise UserError(f"YAML value that cannot be read: {str(exc).split(';')[0]}", where=source,
                        hint="keys must be plain text, and numbers of a sensible size") from None


def load(path: Path) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError("file is not UTF-8 text", where=path) from None
    return loads(text, source=path)


def dumps(data: Any) -> str:
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    return buffer.getvalue()


def dump(data: Any, path: Path) -> None:
    atomic_write_text(Path(path), dumps(data))


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
