"""Shared helpers for the taxonomy tests: real projects and trees in tmp_path, a CLI runner.

Import what you need (`from taxonomy_helpers import ...`); the fixtures defined here
(`project`, `cli`) become available in a test module once imported into it.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from syllabus.project import init_project
from syllabus.taxonomy import Taxonomy

NODE = "node.yaml"

# The example project's nodes, as `syllabus init` writes them.
SCAFFOLD_PATHS = {
    "humanities",
    "humanities/ethics",
    "humanities/world-history",
    "mathematics",
    "mathematics/linear-algebra",
    "mathematics/probability",
    "natural-sciences",
    "natural-sciences/chemistry",
    "natural-sciences/physics",
    "natural-sciences/physics/classical-mechanics",
    "natural-sciences/physics/thermodynamics",
}


def write(path: Path, text: str) -> Path:
    """Write `text` (dedented) to `path`, creating folders; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def node_text(kind: str, name: str, description: str | None = None, **extra) -> str:
    lines = ["schema_version: 1", f"kind: {kind}", f"name: {name}"]
    lines.append(f"description: {description or 'About ' + name + '.'}")
    for key, value in extra.items():
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"


def write_node(folder: Path, kind: str, name: str, description: str | None = None, **extra) -> Path:
    """A valid node.yaml in `folder` (created); returns the file."""
    return write(Path(folder) / NODE, node_text(kind, name, description, **extra))


def minimal_tree(root: Path) -> Path:
    """science (field) > physics (subfield) > optics (discipline), plus arts (field) > music (discipline)."""
    write_node(root / "science", "field", "Science")
    write_node(root / "science" / "physics", "subfield", "Physics")
    write_node(root / "science" / "physics" / "optics", "discipline", "Optics", level="undergraduate")
    write_node(root / "arts", "field", "Arts")
    write_node(root / "arts" / "music", "discipline", "Music")
    return root


def tree_listing(root: Path) -> set[str]:
    """Every file and folder below `root` (relative, posix), hidden ones included."""
    return {p.relative_to(root).as_posix() for p in Path(root).rglob("*")}


def all_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in Path(root).rglob("*") if p.is_file()}


def load(root: Path) -> Taxonomy:
    """A fresh read from disk (never the object that made the edit)."""
    return Taxonomy.load(root)


@pytest.fixture
def project(tmp_path) -> Path:
    """A fresh `syllabus init` project folder; its taxonomy is `project / 'taxonomy'`."""
    return init_project(tmp_path / "proj")


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `syllabus.cli.main([...])` in-process, as the installed `syllabus` command does.

    Returns a function `run(*args, input=None) -> CliResult`. Rich output is made wide
    so that long tmp paths are not wrapped across lines.
    """
    from syllabus.cli import common, main

    monkeypatch.setattr(common.console, "_width", 10_000)
    monkeypatch.setattr(common.err_console, "_width", 10_000)

    def run(*args: str, input: str | None = None) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(input or ""))
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def run_subprocess(*args: str, cwd: Path | None = None, input: str | None = None) -> subprocess.CompletedProcess:
    """The real `syllabus` entry point in a child process (stdout and stderr together)."""
    env = dict(os.environ, COLUMNS="10000", NO_COLOR="1")
    return subprocess.run(
        [sys.executable, "-c", "from syllabus.cli import main; main()", *map(str, args)],
        cwd=cwd,
        input=input or "",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, env=dict(os.environ, **GIT_ENV), check=False
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout


def git_commit_all(repo: Path, message: str = "snapshot") -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()
