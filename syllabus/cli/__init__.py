"""The `syllabus` command line: parse options, call the library, print.

Heavy libraries (torch, transformers, trl, datasets) are imported inside the
commands that need them, so `syllabus --help` answers at once.
"""

from __future__ import annotations

import atexit
import builtins
import errno
import gc
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UserError
from .align import align
from .common import console, err_console
from .distill import distill
from .generate import generate, teacher_app
from .mix import mix
from .report import report
from .stats import stats
from .students import evaluate, probes_app, students_app, train_app
from .taxonomy import taxonomy_app

app = typer.Typer(
    name="syllabus",
    help=(
        "Teach small language models with data written by bigger ones.\n\n"
        "Start with `syllabus init my-project`, look at the taxonomy with "
        "`syllabus taxonomy show`, then `syllabus generate` a dataset."
    ),
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(taxonomy_app, name="taxonomy")
app.add_typer(teacher_app, name="teacher")
app.command()(generate)
app.add_typer(train_app, name="train")
app.add_typer(probes_app, name="probes")
app.add_typer(students_app, name="students")
app.command("eval")(evaluate)
app.command()(align)
app.command()(distill)
app.command()(stats)
app.command()(mix)
app.command()(report)


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Folder for the new project (created if missing).")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing syllabus.yaml and taxonomy.")] = False,
    example: Annotated[
        Optional[str],
        typer.Option(
            "--example",
            help="Start from a shipped example: 'distill' (six nodes with exam, dev and test "
            "items, for `syllabus distill`).",
        ),
    ] = None,
) -> None:
    """Create a project: a commented `syllabus.yaml` and an example taxonomy.

    Example: `syllabus init my-project && cd my-project && syllabus taxonomy show`

    The loop's example: `syllabus init --example distill my-loop && cd my-loop && syllabus distill`
    """
    from ..project import init_project

    init_project(folder, force=force, example=example)
    console.print(f"[green]Created project in[/] {folder}")
    next_step = "syllabus distill" if example == "distill" else "syllabus taxonomy show"
    console.print(f"Next: [bold]cd {folder}[/] and [bold]{next_step}[/]")


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: user errors become one clear message and exit status 2."""
    _skip_the_last_collection()
    # Nothing may reach a model hub, and library progress bars would bury ours.
    for variable, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("HF_DATASETS_OFFLINE", "1"),
        ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
        ("TRANSFORMERS_VERBOSITY", "error"),
        ("TOKENIZERS_PARALLELISM", "false"),
    ):
        os.environ.setdefault(variable, value)
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        _print_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: finished work is saved; rerun the same command to resume.")
        sys.exit(130)
    except Exception as exc:
        problem = storage_problem(exc)
        if problem is None:
            raise
        _print_error(problem)
        sys.exit(problem.exit_code)


def _skip_the_last_collection() -> None:
    """At exit, after the atexit handlers (files closed, logs flushed), CPython walks every object
    it tracks for cycles: 0.05-0.07 s of a generate run here, with pydantic, jinja2, numpy and
    pyarrow loaded. Frozen objects are skipped; the process frees their memory either way."""
    atexit.unregister(gc.freeze)  # once, however often main() runs in one process
    atexit.register(gc.freeze)


def _print_error(exc: UserError) -> None:
    """An error as its lines, never wrapped by us: the terminal wraps what it shows, and a log
    keeps each line whole, so a path or a column list can be found with grep."""
    err_console.print(f"[bold red]error:[/] {_escape(str(exc))}", highlight=False, soft_wrap=True)


# Why a file could not be written, and what to do; each is the user's to fix, not a bug.
_STORAGE_HINTS = {
    errno.EACCES: "you may not use that file or folder: fix its permissions, or give the command another folder",
    errno.EPERM: "you may not use that file or folder: fix its permissions, or give the command another folder",
    errno.EROFS: "that file system is mounted read-only: remount it writable, or give the command another folder",
    errno.ENOSPC: "the disk is full: free some space, then rerun the same command (finished work is kept)",
    errno.EDQUOT: "your disk quota is used up: free some space, then rerun the same command (finished work is kept)",
    errno.EFBIG: "the file is larger than this file system allows: write to another disk",
}
_SQLITE_HINTS = {  # sqlite3 reports the same conditions under its own codes (primary code: low byte)
    13: ("database or disk is full", errno.ENOSPC),  # SQLITE_FULL
    8: ("the database is read-only", errno.EROFS),  # SQLITE_READONLY
    14: ("the database file could not be opened", errno.EACCES),  # SQLITE_CANTOPEN
}


def storage_problem(exc: BaseException) -> UserError | None:
    """A write the disk refused (permissions, read-only, full, quota) as one clear UserError
    naming the file and the fix, or None for anything else (a bug: its traceback stays).

    Files are written atomically (fsutil), so a refused write left the old file as it was."""
    group = getattr(builtins, "BaseExceptionGroup", None)  # Python 3.11+; 3.10 has no task groups
    if group is not None and isinstance(exc, group):  # a task group: the first storage error among them
        return next((p for p in map(storage_problem, exc.exceptions) if p is not None), None)
    if isinstance(exc, OSError) and exc.errno in _STORAGE_HINTS:
        where = None if exc.filename is None else _shown(exc.filename)
        if where is not None and exc.filename2 is not None:  # a rename: both ends
            where = f"{where} -> {_shown(exc.filename2)}"
        verb = "cannot open" if exc.errno in (errno.EACCES, errno.EPERM) else "cannot write"  # EACCES: reads too
        return UserError(
            f"{verb}: {exc.strerror or os.strerror(exc.errno)}", where=where, hint=_STORAGE_HINTS[exc.errno]
        )
    sqlite3 = sys.modules.get("sqlite3")
    if sqlite3 is not None and isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        known = _SQLITE_HINTS.get(code & 0xFF) if isinstance(code, int) else None
        if known is not None:
            reason, number = known  # sqlite does not say which file: the run's cache or scratch
            return UserError(
                f"cannot write a database file: {exc}" if str(exc) else reason, hint=_STORAGE_HINTS[number]
            )
    return None


def _shown(name) -> str:
    return os.fsdecode(name) if isinstance(name, bytes) else str(name)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
