"""GLAN's semi-automatic taxonomy: the teacher proposes children, a person reviews, accept merges.

Proposals go to a review file (YAML, editable: delete or fix entries), never straight
into the taxonomy; `accept_review` adds what is left through the taxonomy's own edit
operations, so every proposal passes the same checks as a hand-made `taxonomy add`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from ..backends.base import ChatRequest
from ..errors import UserError
from ..project import Project
from ..prompts import Templates
from ..taxonomy.model import slugify
from ..yamlio import dump, load
from .parsers import ParseError, parse_proposals
from .session import teacher_backend, teacher_session

REVIEW_DIR = "review"


def review_file(project: Project, node_path: str) -> Path:
    return project.root / REVIEW_DIR / f"{node_path.replace('/', '--')}.yaml"


def expand_node(
    project: Project,
    path: str,
    *,
    count: int = 5,
    child_kind: str | None = None,
    teacher: str | None = None,
    base_urls: list[str] | None = None,
) -> Path:
    taxonomy = project.load_taxonomy()
    node = taxonomy.find(path)
    if node.kind == "discipline":
        raise UserError(f"'{node.path}' is a discipline, which has no child nodes", hint="expand a field or subfield")
    child_kind = child_kind or "discipline"
    if child_kind not in ("subfield", "discipline"):
        raise UserError(f"--kind must be subfield or discipline, not {child_kind!r}")
    templates = Templates(project.prompts_dir)
    messages = templates.render(
        "expand", node=node, children=[c.name for c in node.children], count=count, child_kind=child_kind
    )
    backend = teacher_backend(project, teacher, base_urls=base_urls)
    request = ChatRequest.from_messages(messages, temperature=0.7, max_tokens=40 * count + 40)

    async def ask():
        async with teacher_session(backend, project.runs_dir / "expand-cache.sqlite", templates) as runner:
            reply = await runner.teacher.ask("expand", request, templates.get("expand").version)
            return reply, runner.teacher.stage("expand").failed

    reply, failed = asyncio.run(ask())
    if reply is None:
        reasons = ", ".join(failed) or "unknown"
        raise UserError(f"the teacher did not answer ({reasons})", hint="check it with `syllabus teacher check`")
    existing = {slugify(c.name) for c in node.children}
    try:
        proposals = [(n, d) for n, d in parse_proposals(reply.text, count * 2) if slugify(n) not in existing][:count]
    except ParseError as exc:
        raise UserError(
            f"could not read the teacher's proposals: {exc}", hint="try a stronger teacher (--teacher)"
        ) from None
    doc = CommentedMap()
    doc["parent"] = node.path
    doc["proposals"] = [{"name": n, "kind": child_kind, "description": d} for n, d in proposals]
    doc.yaml_set_start_comment(
        f"Children proposed for '{node.path}' by {backend.model}.\n"
        "Delete what you do not want, fix names and descriptions, then run:\n"
        f"  syllabus taxonomy accept {REVIEW_DIR}/{review_file(project, node.path).name}"
    )
    target = review_file(project, node.path)
    dump(doc, target)
    return target


def accept_review(project: Project, file: Path) -> tuple[list[str], list[str]]:
    """Merge a review file into the taxonomy; returns (added paths, skipped with reason)."""
    file = Path(file)
    if not file.is_file():
        raise UserError(
            "review file does not exist", where=file, hint="create one with `syllabus taxonomy expand PATH`"
        )
    doc = load(file)
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("parent"), str)
        or not isinstance(doc.get("proposals"), list)
    ):
        raise UserError("not a review file (needs `parent` and `proposals`)", where=file)
    taxonomy = project.load_taxonomy()
    parent = taxonomy.find(doc["parent"])
    added, skipped = [], []
    for index, item in enumerate(doc["proposals"], start=1):
        if not isinstance(item, dict) or not item.get("name") or not item.get("description"):
            skipped.append(f"proposal {index}: needs name and description")
            continue
        try:
            node = taxonomy.add(
                f"{parent.path}/{slugify(str(item['name']))}",
                name=str(item["name"]),
                kind=str(item.get("kind") or "discipline"),
                description=str(item["description"]),
                level=item.get("level"),
            )
        except UserError as exc:
            skipped.append(f"{item['name']}: {exc.message}")
            continue
        added.append(node.path)
    file.unlink()
    return added, skipped
