"""Prompt templates: one jinja2 file per stage, overridable per project.

A template renders to chat turns separated by marker lines (`[[system]]`,
`[[user]]`, `[[assistant]]`), so few-shot examples are plain earlier turns; the
weak embedded teacher follows a line format only when shown it twice. Templates
render in jinja2's sandbox (a user override cannot reach Python internals), and
each one's version is the hash of its source: editing one template invalidates
exactly the cached requests that used it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import UserError

BUILTIN_DIR = Path(__file__).parent
ROLE_MARKER = re.compile(r"^\[\[(system|user|assistant)\]\][ \t]*$", re.MULTILINE)
MAX_REPEAT = 1_000_000  # characters or items one `*` may make (a prompt is far shorter)
MAX_EXPONENT = 1024


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    source: str
    origin: Path
    version: str

    @property
    def overridden(self) -> bool:
        return self.origin.parent != BUILTIN_DIR


class _Sandbox(ImmutableSandboxedEnvironment):
    """The jinja2 sandbox, read-only, and without the methods of paths (a node's folder is one):
    a template may print a path but never read, write or list files through it."""

    # jinja2 bounds range() but not `'a' * 10**10` or `9 ** 10**9`: both are checked before they run.
    intercepted_binops = frozenset({"*", "**"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return not isinstance(obj, PurePath) and super().is_safe_attribute(obj, attr, value)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if (
                    isinstance(sequence, (str, list, tuple))
                    and isinstance(times, int)
                    and len(sequence) * times > MAX_REPEAT
                ):
                    raise SecurityError(f"'*' would make {len(sequence) * times:,} items (at most {MAX_REPEAT:,})")
        elif operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right:,} is too large (at most {MAX_EXPONENT})")
        return super().call_binop(context, operator, left, right)


class Templates:
    """The stage templates of one project: its own overrides first, then the built-in ones."""

    def __init__(self, override_dir: str | Path | None = None):
        self.override_dir = Path(override_dir) if override_dir else None
        self._env = _Sandbox(
            undefined=StrictUndefined,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        self._cache: dict[str, tuple[PromptTemplate, Any]] = {}

    def get(self, name: str) -> PromptTemplate:
        return self._compiled(name)[0]

    def _compiled(self, name: str):
        if name not in self._cache:
            origin = BUILTIN_DIR / f"{name}.j2"
            if self.override_dir and (self.override_dir / f"{name}.j2").is_file():
                origin = self.override_dir / f"{name}.j2"
            if not origin.is_file():
                raise UserError(f"no template named '{name}'", hint=f"built-in templates: {', '.join(builtin_names())}")
            try:
                source = origin.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise UserError(
                    "template is not UTF-8 text",
                    where=origin,
                    hint="save it as UTF-8, or delete the override to use the built-in template",
                ) from None
            except OSError as exc:
                raise UserError(f"cannot read the template: {exc.strerror or exc}", where=origin) from None
            try:
                compiled = self._env.from_string(source)
            except TemplateSyntaxError as exc:
                raise UserError(
                    f"template syntax error: {exc.message}",
                    where=f"{origin}:{exc.lineno}",
                    hint="fix the jinja2 syntax, or delete the override to use the built-in template",
                ) from None
            version = hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]
            self._cache[name] = (PromptTemplate(name, source, origin, version), compiled)
        return self._cache[name]

    def render(self, name: str, **context: Any) -> list[dict[str, str]]:
        """The chat messages of template `name` filled with `context`."""
        template, compiled = self._compiled(name)
        try:
            text = compiled.render(**context)
        except SecurityError as exc:
            raise UserError(
                f"template tried an unsafe operation: {exc}",
                where=_where(template, exc),
                hint="templates may only use the variables they are given",
            ) from None
        except UndefinedError as exc:
            raise UserError(
                f"template uses an unknown variable: {exc.message}",
                where=_where(template, exc),
                hint=f"see the built-in {name}.j2 for the variables each stage provides",
            ) from None
        except TemplateError as exc:
            raise UserError(f"template failed to render: {exc}", where=_where(template, exc)) from None
        except (ArithmeticError, LookupError, TypeError, ValueError, MemoryError, RecursionError) as exc:
            # The template's own expression failed (1/0, 'a' + 1, a range the sandbox refuses).
            raise UserError(
                f"template failed to render: {type(exc).__name__}: {exc}",
                where=_where(template, exc),
                hint=f"fix the expression on that line, or delete the override to use the built-in {name}.j2",
            ) from None
        return split_messages(text, template.origin)

    def versions(self, names) -> dict[str, str]:
        return {name: self.get(name).version for name in names}


def _where(template: PromptTemplate, exc: BaseException) -> str:
    """The template file, with the line that failed when jinja2's traceback has it."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{template.origin}:{line}" if line else str(template.origin)


def split_messages(text: str, origin: Path | str = "<template>") -> list[dict[str, str]]:
    parts = ROLE_MARKER.split(text)
    if parts[0].strip():
        raise UserError(
            "template text before the first [[system]]/[[user]] marker",
            where=origin,
            hint="start every turn with a line [[system]], [[user]] or [[assistant]]",
        )
    messages = [{"role": role, "content": content.strip()} for role, content in zip(parts[1::2], parts[2::2])]
    if not messages or messages[-1]["role"] != "user":
        raise UserError("a template must end with a [[user]] turn", where=origin)
    empty = [m["role"] for m in messages if not m["content"]]
    if empty:
        raise UserError(f"template renders an empty {empty[0]} turn", where=origin)
    return messages


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.j2"))
