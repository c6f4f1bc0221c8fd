"""JSONL as people hand it to us: every broken line is named by its number.

Shared by the teacher side (stats, mix) and the student side (training data, probes),
which may not import each other.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import UserError


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", where=path) from None
    with handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"line {number} is not valid JSON ({exc.msg})", where=f"{path}:{number}",
                                    hint="each line must be one JSON object") from None
                if not isinstance(row, dict):
                    raise UserError(f"line {number} is not a JSON object", where=f"{path}:{number}")
                rows.append(row)
        except UnicodeDecodeError:
            raise UserError("file is not UTF-8 text", where=path, hint="save the file as UTF-8 JSONL") from None
    return rows
