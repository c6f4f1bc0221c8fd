"""The page: the model and its charts through one jinja2 template, written as one file.

The built-in template is `report.html.j2` beside this module; a project overrides it like
a stage template, with `report.html.j2` in its prompts folder. It renders in jinja2's
sandbox with autoescape on: the teacher's questions and answers are other people's text,
and in a page that runs scripts they must arrive as text, never as markup. A template with
an error is a UserError naming its file and line, before anything is written.

The page needs no network: plotly.js is inlined once (`plotly_js`), the styles live in the
template, and nothing is fetched at view time, so it opens from disk, offline, forever.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from markupsafe import Markup

from ..errors import UserError
from ..fsutil import atomic_write_text

TEMPLATE = "report.html.j2"
BUILTIN = Path(__file__).parent / TEMPLATE
MARKER = '<meta name="generator" content="syllabus report">'  # how a later run knows the file is ours
TEMPLATE_LIMIT = 2**20


def template_file(override_dir: str | Path | None) -> Path:
    """The project's override when there is one, else the built-in template."""
    if override_dir is not None and (Path(override_dir) / TEMPLATE).is_file():
        return Path(override_dir) / TEMPLATE
    return BUILTIN


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["pct"] = lambda v, digits=0: "-" if v is None else f"{v:.{digits}%}"
    env.filters["num"] = lambda v, digits=2: "-" if v is None else f"{v:.{digits}f}"
    return env


def _line(exc: BaseException) -> int | None:
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_page(model: dict[str, Any], charts: dict[str, str], plotly_js: str, *, template: Path) -> str:
    """The whole page as text; a broken template is a UserError at its file:line."""
    from ..safefile import read_text

    source = read_text(template, limit=TEMPLATE_LIMIT, what="report template")
    env = _environment()
    hint = f"fix the template, or delete {template} to use the built-in one"
    try:
        compiled = env.from_string(source)
    except TemplateSyntaxError as exc:
        raise UserError(f"template syntax error: {exc.message}", where=f"{template}:{exc.lineno}", hint=hint) from None
    try:
        page = compiled.render(
            run=model,
            charts={name: Markup(html) for name, html in charts.items()},
            plotly_js=Markup(plotly_js),
            marker=Markup(MARKER),
            generated_at=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        )
    except (SecurityError, UndefinedError, TemplateError) as exc:
        line = _line(exc)
        message = exc.message if isinstance(exc, TemplateError) and exc.message else str(exc)
        raise UserError(
            f"report template failed to render: {message}",
            where=f"{template}:{line}" if line else template,
            hint=hint,
        ) from None
    except (ArithmeticError, LookupError, TypeError, ValueError, RecursionError) as exc:
        line = _line(exc)
        raise UserError(
            f"report template failed to render: {type(exc).__name__}: {exc}",
            where=f"{template}:{line}" if line else template,
            hint=hint,
        ) from None
    return page


def check_target(out: Path) -> None:
    """Refuse to replace a file that is not a report this command wrote (a marker in its head)."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir():
        raise UserError("--out names a folder", where=out, hint="give a file name, for example report.html")
    try:
        with open(out, "rb") as handle:
            head = handle.read(4096) if out.is_file() else b""
    except OSError as exc:
        raise UserError(f"cannot read the file to replace: {exc.strerror or exc}", where=out) from None
    if MARKER.encode() not in head:
        raise UserError(
            "this file exists and is not a report syllabus wrote: not replaced",
            where=out,
            hint="give another --out, or remove the file",
        )


def write_page(out: Path, page: str) -> None:
    check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
