"""The `syllabus` command line: parse options, call the library, print.

Heavy libraries (torch, transformers, trl, datasets) are imported inside the
commands that need them, so `syllabus --help` answers at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UserError
from .common import console, err_console
from .generate import generate, teacher_app
from .mix import mix
from .stats import stats
from .students import evaluate, probes_app, train_app
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
app.command("eval")(evaluate)
app.command()(stats)
app.command()(mix)


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(help="Folder for the new project (created if missing).")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing syllabus.yaml and taxonomy.")] = False,
) -> None:
    """Create a project: a commented `syllabus.yaml` and an example taxonomy.

    Example: `syllabus init my-project && cd my-project && syllabus taxonomy show`
    """
    from ..project import init_project

    init_project(folder, force=force)
    console.print(f"[green]Created project in[/] {folder}")
    console.print(f"Next: [bold]cd {folder}[/] and [bold]syllabus taxonomy show[/]")


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: user errors become one clear message and exit status 2."""
    # Nothing may reach a model hub, and library progress bars would bury ours.
    for variable, value in (("HF_HUB_OFFLINE", "1"), ("HF_DATASETS_OFFLINE", "1"),
                            ("HF_DATASETS_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error"),
                            ("TOKENIZERS_PARALLELISM", "false")):
        os.environ.setdefault(variable, value)
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        err_console.print(f"[bold red]error:[/] {_escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: finished work is saved; rerun the same command to resume.")
        sys.exit(130)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
