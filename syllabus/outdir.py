"""Output folders the tool owns, so it never clobbers one it did not make.

Every command that writes a folder (`generate --run`, `mix --out`, `stats --out`, and
the loop's rounds later) claims it first. A claimed folder holds a small marker file
naming what made it; a folder with no marker is only taken when it is empty, or when
it already looks like the same kind of output written by an older version (its
`legacy` files are there). Anything else is somebody's folder: refused with a message
that says how to go on, never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from .errors import UserError
from .fsutil import atomic_write_text

MARKER = ".syllabus-output.json"


def owner(folder: Path) -> str | None:
    """The kind of output that claimed `folder` ("run", "mix", "stats", ...), or None."""
    marker = Path(folder) / MARKER
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    kind = data.get("kind") if isinstance(data, dict) else None
    return kind if isinstance(kind, str) else None


def claim(folder: Path, kind: str, *, legacy: Iterable[str] = (), option: str = "--out") -> Path:
    """Make `folder` ours for outputs of `kind`, or refuse it (UserError, exit 2).

    Taken: a missing or empty folder, one this tool claimed for `kind`, and one without a
    marker that holds any of the `legacy` names (what an older version wrote there).
    Refused: a folder claimed for another kind, a path that is not a folder, and a
    non-empty folder the tool did not make."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(
            f"{option} must be a folder, and this is a file", where=folder, hint=f"choose a new folder for {option}"
        )
    if folder.is_dir():
        found = owner(folder)
        if found == kind:
            return folder
        if found is not None:
            raise UserError(
                f"this folder holds a syllabus {found}, not a {kind}",
                where=folder,
                hint=f"give {option} a folder of its own",
            )
        entries = [p.name for p in folder.iterdir()]
        if entries and not any((folder / name).exists() for name in legacy):
            shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
            raise UserError(
                f"this folder was not made by syllabus and is not empty ({shown}); "
                f"writing the {kind} here could overwrite those files",
                where=folder,
                hint=f"give {option} a new or empty folder",
            )
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / MARKER, json.dumps({"kind": kind}) + "\n")
    return folder
