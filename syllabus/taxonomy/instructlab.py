"""Import an InstructLab taxonomy (qna.yaml leaves, schema versions 1 to 3).

Each folder with a qna.yaml becomes a discipline whose seeds are its seed examples;
the folders above it become fields and subfields. A broken file or an unknown
version is reported with its reason and skipped: it never stops the import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..yamlio import load_plain
from .edit import _name_from_component, write_new_node
from .model import name_problem, slugify
from .store import Taxonomy

QNA_FILE = "qna.yaml"
KNOWN_VERSIONS = (1, 2, 3)


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seeds: int = 0


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _seeds_of(qna: dict) -> tuple[list[dict[str, str]], int]:
    """Seeds from skills (question/answer/context) and knowledge (context with its Q&As) leaves."""
    seeds, dropped = [], 0
    for example in qna.get("seed_examples") or []:
        if not isinstance(example, dict):
            dropped += 1
            continue
        context = _text(example.get("context"))
        pairs = example.get("questions_and_answers")
        for pair in pairs if isinstance(pairs, list) else [example]:
            question = _text(pair.get("question")) if isinstance(pair, dict) else None
            answer = _text(pair.get("answer")) if isinstance(pair, dict) else None
            if not question or not answer:
                dropped += 1
                continue
            seed = {"question": question, "answer": answer}
            if context:
                seed["context"] = context
            seeds.append(seed)
    return seeds, dropped


def _read_qna(file: Path) -> dict:
    try:  # yamlio's guards: a regular file, 1 MiB at most, aliases that cannot expand to gigabytes
        data = load_plain(file, what="qna.yaml")
    except UserError as exc:  # a reason to list, not a crash
        raise ValueError(
            f"broken YAML: {exc.message}"
            + (f" (line {exc.where.rsplit(':', 1)[1]})" if exc.where and exc.where.startswith(f"{file}:") else "")
        ) from None
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    version = data.get("version", 1)
    if version not in KNOWN_VERSIONS:
        raise ValueError(f"unknown schema version {version!r} (known: 1, 2, 3)")
    if not isinstance(data.get("seed_examples"), list) or not data["seed_examples"]:
        raise ValueError("no seed_examples")
    return data


def import_instructlab(tax: Taxonomy, source: Path, into: str | None = None) -> ImportReport:
    source = Path(source)
    if not source.is_dir():
        raise UserError("InstructLab taxonomy folder does not exist", where=source)
    base = tax.find(into) if into else None
    if base is not None and base.kind == "discipline":
        raise UserError(
            f"cannot import into discipline '{base.path}'", where=into, hint="--into must name a field or subfield"
        )
    report = ImportReport()
    leaves = sorted(p.parent for p in source.rglob(QNA_FILE))
    leaf_set = set(leaves)
    known = {node.path: node.kind for node in tax.walk()}
    for leaf in leaves:
        file = leaf / QNA_FILE
        try:
            qna = _read_qna(file)
        except (ValueError, OSError) as exc:
            report.skipped.append((file, str(exc)))
            continue
        seeds, dropped = _seeds_of(qna)
        if dropped:
            report.skipped.append((file, f"{dropped} seed example(s) without question or answer were left out"))
        if not seeds:
            report.skipped.append((file, "no usable seed examples"))
            continue
        parts = list(leaf.relative_to(source).parts) or [source.name]
        has_children = any(other != leaf and leaf in other.parents for other in leaf_set)
        if has_children:  # a leaf with sub-leaves: its own seeds go to a child discipline
            parts.append("overview")
        try:
            slugs = [_slug_for(part, file) for part in parts]
        except ValueError as exc:
            report.skipped.append((file, str(exc)))
            continue
        prefix = f"{base.path}/" if base else ""
        paths = [prefix + "/".join(slugs[: depth + 1]) for depth in range(len(slugs))]
        # Never write a tree that does not validate: disciplines are leaves below a field.
        if base is None and len(parts) == 1:
            report.skipped.append(
                (
                    file,
                    "a discipline cannot sit at the top of the taxonomy; "
                    "import with --into FIELD, or from the folder above",
                )
            )
            continue
        blocked = next((p for p in paths[:-1] if known.get(p) == "discipline"), None)
        if blocked:
            report.skipped.append((file, f"'{blocked}' is a discipline, which cannot have nodes below it"))
            continue
        parent_folder = base.folder if base else tax.root
        for depth, (part, slug) in enumerate(zip(parts, slugs)):
            path = paths[depth]
            folder = parent_folder / slug
            is_leaf = depth == len(parts) - 1
            if path in known:
                if is_leaf:
                    report.existing.append(path)
            elif is_leaf:
                description = _text(qna.get("document_outline")) or _text(qna.get("task_description"))
                write_new_node(
                    folder,
                    kind="discipline",
                    name=_name_from_component(part.replace("_", "-")),
                    description=description or f"Imported from InstructLab {'/'.join(parts)}",
                    seeds=seeds,
                )
                known[path] = "discipline"
                report.added.append(path)
                report.seeds += len(seeds)
            else:
                kind = "field" if (depth == 0 and base is None) else "subfield"
                write_new_node(
                    folder,
                    kind=kind,
                    name=_name_from_component(part.replace("_", "-")),
                    description=f"Imported from the InstructLab taxonomy ({'/'.join(parts[: depth + 1])}).",
                )
                known[path] = kind
                report.added.append(path)
            parent_folder = folder
    tax.reload()
    return report


def _slug_for(part: str, file: Path) -> str:
    name = _name_from_component(part.replace("_", "-"))
    reason = name_problem(name)
    if reason:
        raise ValueError(f"folder '{part}': {reason}")
    return slugify(name)
