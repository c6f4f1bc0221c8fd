"""Mixing recipes: `syllabus mix RECIPE.yaml` combines runs and rounds into one dataset.

A recipe (YAML, validated by pydantic, errors with file:line):

```yaml
seed: 7                      # the sample and the order are reproducible from it
order: easy_to_hard          # shuffled | easy_to_hard | interleaved
total: 1000                  # rows in the mix: what a `share` is a fraction of
sources:                     # run folders or datasets (folder, JSONL, Parquet), relative to this file
  - runs/round1
  - runs/round2/dataset.jsonl
nodes:                       # taxonomy node globs, first match wins
  - match: mathematics/linear-algebra
    count: 200               # an explicit number of rows ...
  - match: "mathematics/*"
    share: 0.5               # ... or a fraction of `total`, in (0, 1]
out: mixes/round2            # optional; --out wins; default: beside the recipe, named after it
```

How rows are chosen:

- The sources' rows are pooled in the order listed; a row already pooled (same
  `content_hash`, else same question and answer) is skipped and counted. Each row gets
  `mix_source` (the source as the recipe names it); nothing else about it changes.
- A pattern matches a row when it matches its `taxonomy_path` or one of its ancestors
  (`mathematics` takes everything under it), as `--nodes` does. A row belongs to the first
  entry whose pattern matches it, so put narrow patterns before wide ones. A mixed
  (Skill-Mix) row is a row of every node it combines (`taxonomy_paths`): any of them may
  take it, it is taken once, and the delivered counts credit each of its nodes.
- Shares are turned into rows with the largest-remainder method over `total`; counts and
  shares together may not ask for more than `total`.
- Each entry draws a seeded random sample of its rows. Nothing is capped silently: an entry
  with fewer rows than asked gives all it has, and `mix.json` and the summary table show
  requested against delivered for every entry and node, with why it is short.

Bad input fails before any row is written, with exit status 2: a recipe that does not
validate (a share outside (0, 1], count and share both or neither, an unknown order), a
missing source, an output folder that is or holds a source, a pattern that matches no
row of the sources, chosen rows that give a column different types (named with their
source and line), or an output folder that `mix` did not make (`outdir.claim`: a
folder with other files is refused, never overwritten).

`order_rows(rows, order, seed)` is the ordering, for any list of rows:

- `shuffled`: a seeded shuffle;
- `easy_to_hard`: Bloom level (remember < understand < apply < analyse < evaluate < create),
  then education level (preschool ... doctoral), then difficulty (single-session before
  two-session); a column that is missing orders nothing, ties keep the seeded shuffle;
- `interleaved`: by rising education level; inside a level, round robin across subjects
  (taxonomy node + subject), each subject's rows easy to hard.
"""

from __future__ import annotations

import fnmatch
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import UserError
from ..fsutil import atomic_write_text
from ..outdir import claim
from ..yamlio import line_of, load
from .keys import content_hash
from .levels import bloom_rank, difficulty_rank, level_rank
from .read import ColumnKinds, Source, check_source, read_source
from .rows import answer_of, node_of, nodes_of, question_of, row_format
from .shares import allocate

ORDERS = ("shuffled", "easy_to_hard", "interleaved")
MIX_FILE = "mix.json"
SOURCE_COLUMN = "mix_source"
_RECIPE_HINT = (
    "a recipe has sources:, nodes: (each with match: and count: or share:), and optional total, seed, order, out"
)


# The recipe ---------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSpec(_Strict):
    path: str = Field(min_length=1)


class NodeTake(_Strict):
    match: str = Field(min_length=1, description="glob over taxonomy node paths")
    count: int | None = Field(None, ge=1, description="rows to take")
    share: float | None = Field(None, gt=0, le=1, description="fraction of the recipe's total, in (0, 1]")

    @field_validator("match")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip().strip("/")
        if not value:
            raise ValueError("match must name a node path or glob, e.g. 'mathematics/*'")
        return value

    @model_validator(mode="after")
    def _one_quantity(self):
        if (self.count is None) == (self.share is None):
            raise ValueError(
                "give either count (rows) or share (a fraction of total), not "
                + ("both" if self.count is not None else "neither")
            )
        return self


class Recipe(_Strict):
    sources: list[SourceSpec] = Field(min_length=1)
    nodes: list[NodeTake] = Field(min_length=1)
    total: int | None = Field(None, ge=1)
    seed: int = 0
    order: Literal["shuffled", "easy_to_hard", "interleaved"] = "shuffled"
    out: str | None = None

    @field_validator("sources", mode="before")
    @classmethod
    def _plain_paths(cls, value):
        if isinstance(value, list):
            return [{"path": v} if isinstance(v, str) else v for v in value]
        return value


def _line_for(raw: Any, loc: tuple) -> int:
    """The line of the recipe a pydantic error location points at (mappings and lists)."""
    node, line = raw, line_of(raw) or 1
    for part in loc:
        if isinstance(node, dict) and part in node:
            line = line_of(node, part) or line
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            lc = getattr(node, "lc", None)  # ruamel's CommentedSeq knows its items' lines; a plain list does not
            if lc is not None:
                try:
                    line = lc.item(part)[0] + 1
                except (AttributeError, KeyError, TypeError):
                    pass
            node = node[part]
        else:
            break
    return line


def _loc_text(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top)"


def load_recipe(path: str | Path) -> tuple[Recipe, Any]:
    """The validated recipe and its raw YAML (for line numbers); UserError with file:line."""
    path = Path(path)
    if not path.is_file():
        raise UserError("recipe not found", where=path, hint=_RECIPE_HINT)
    raw = load(path)
    if not isinstance(raw, dict):
        raise UserError("a recipe must be a mapping", where=f"{path}:1", hint=_RECIPE_HINT)
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        hint = _RECIPE_HINT
        if first["loc"] and first["loc"][-1] == "share":
            hint = "share is a fraction of total, in (0, 1]; for a number of rows write count: N"
        elif first["loc"] and first["loc"][-1] == "order":
            hint = f"order is one of: {', '.join(ORDERS)}"
        raise UserError(
            f"recipe '{_loc_text(first['loc'])}': {message}", where=f"{path}:{_line_for(raw, first['loc'])}", hint=hint
        ) from None
    shares = [(i, t.share) for i, t in enumerate(recipe.nodes) if t.share is not None]
    if shares and recipe.total is None:
        i = shares[0][0]
        raise UserError(
            f"recipe 'nodes[{i}].share' needs a total to be a share of",
            where=f"{path}:{_line_for(raw, ('nodes', i, 'share'))}",
            hint="add `total: N` (rows in the mix), or write count: N instead of share",
        )
    if sum(share for _, share in shares) > 1 + 1e-9:
        raise UserError(
            f"recipe shares add up to {sum(share for _, share in shares):g}, more than 1",
            where=f"{path}:{_line_for(raw, ('nodes',))}",
            hint="shares are fractions of total",
        )
    if recipe.total is not None:
        asked = sum(requested(recipe).values())
        if asked > recipe.total:
            raise UserError(
                f"recipe asks for {asked} rows (counts + shares), more than total: {recipe.total}",
                where=f"{path}:{_line_for(raw, ('total',))}",
                hint="raise total, or lower the counts and shares",
            )
    return recipe, raw


def requested(recipe: Recipe) -> dict[int, int]:
    """Rows asked of each entry (by position): its count, or its share of total (largest remainder)."""
    asked = {i: t.count for i, t in enumerate(recipe.nodes) if t.count is not None}
    shares = {i: t.share for i, t in enumerate(recipe.nodes) if t.share is not None}
    if shares:
        parts = allocate(round((recipe.total or 0) * sum(shares.values())), {str(i): s for i, s in shares.items()})
        asked.update({i: parts[str(i)] for i in shares})
    return dict(sorted(asked.items()))


# Ordering -----------------------------------------------------------------------------
def _easy_key(row: dict[str, Any]) -> tuple[int, int, int]:
    return (bloom_rank(row.get("bloom_level")), level_rank(row.get("level")), difficulty_rank(row.get("difficulty")))


def order_rows(rows: list[dict[str, Any]], order: str, seed: int = 0) -> list[dict[str, Any]]:
    """`rows` in a new list, ordered `shuffled`, `easy_to_hard` or `interleaved` (see the module)."""
    if order not in ORDERS:
        raise UserError(f"unknown order '{order}'", hint=f"order is one of: {', '.join(ORDERS)}")
    result = list(rows)
    random.Random(f"order:{seed}").shuffle(result)
    if order == "shuffled":
        return result
    if order == "easy_to_hard":
        return sorted(result, key=_easy_key)  # stable: ties keep the seeded shuffle
    tiers: dict[int, dict[tuple[str, str], list[dict[str, Any]]]] = {}
    for row in result:
        subject = (node_of(row), str(row.get("subject") or ""))
        tiers.setdefault(level_rank(row.get("level")), {}).setdefault(subject, []).append(row)
    interleaved: list[dict[str, Any]] = []
    for rank in sorted(tiers):
        queues = [
            sorted(
                tiers[rank][s], key=lambda r: (bloom_rank(r.get("bloom_level")), difficulty_rank(r.get("difficulty")))
            )
            for s in sorted(tiers[rank])
        ]
        for turn in range(max(len(q) for q in queues)):
            interleaved += [q[turn] for q in queues if turn < len(q)]
    return interleaved


# Choosing rows ------------------------------------------------------------------------
def matches(path: str, pattern: str) -> bool:
    """The pattern matches the node or one of its ancestors (as `--nodes` selects)."""
    if not path:
        return False
    parts = path.split("/")
    return any(fnmatch.fnmatchcase("/".join(parts[:n]), pattern) for n in range(len(parts), 0, -1))


def _row_key(row: dict[str, Any]) -> str:
    if isinstance(row.get("content_hash"), str) and row["content_hash"]:
        return row["content_hash"]
    return content_hash(question_of(row), answer_of(row))


@dataclass
class EntryResult:
    match: str
    count: int | None
    share: float | None
    requested: int
    matching: int  # rows of the sources the pattern matches
    taken_earlier: int  # of those, rows that belong to an earlier entry
    available: int
    delivered: int = 0
    nodes: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> available, delivered

    @property
    def short(self) -> int:
        return self.requested - self.delivered

    def why(self) -> str | None:
        if self.short <= 0:
            return None
        text = f"not enough rows in the sources: {self.available} available"
        if self.taken_earlier:
            text += f" ({self.matching} match, {self.taken_earlier} belong to earlier entries)"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {
            "match": self.match,
            "count": self.count,
            "share": self.share,
            "requested": self.requested,
            "matching": self.matching,
            "taken_earlier": self.taken_earlier,
            "available": self.available,
            "delivered": self.delivered,
            "short": max(0, self.short),
            "why": self.why(),
            "nodes": self.nodes,
        }


@dataclass
class MixPlan:
    recipe: Recipe
    recipe_path: Path
    out_dir: Path
    sources: list[Source]
    names: list[str]  # each source as the recipe wrote it
    pool: list[dict[str, Any]]
    origins: list[tuple[int, int]]  # each pooled row's (source, its place in that source's rows)
    duplicates_skipped: int
    per_source: list[dict[str, Any]]
    node_rows: dict[str, list[int]]  # node -> positions of its rows in `pool`
    owner: dict[str, int]  # node -> the entry (position in recipe.nodes) its rows belong to


@dataclass
class MixOutcome:
    plan: MixPlan
    rows: list[dict[str, Any]]
    entries: list[EntryResult]
    outputs: dict[str, Path] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> list[EntryResult]:
        return [e for e in self.entries if e.short > 0]


def _resolve(base: Path, raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base / path


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def prepare(recipe_path: str | Path, out: str | Path | None = None) -> MixPlan:
    """Every check that can fail on bad input, then the sources read and pooled; writes nothing."""
    recipe_path = Path(recipe_path)
    recipe, raw = load_recipe(recipe_path)
    base = recipe_path.resolve().parent
    if out is not None:
        out_dir = Path(out).expanduser().resolve()
    elif recipe.out:
        out_dir = _resolve(base, recipe.out).resolve()
    else:
        out_dir = base / recipe_path.stem
    paths = []
    for i, spec in enumerate(recipe.sources):
        where = f"{recipe_path}:{_line_for(raw, ('sources', i))}"
        path = check_source(_resolve(base, spec.path), where=where)
        real = path.resolve()
        if real == out_dir or _inside(real, out_dir) or _inside(out_dir, real):
            raise UserError(
                f"the output folder {out_dir} would overwrite the source {spec.path}",
                where=where,
                hint="write the mix to a folder of its own (--out DIR or out: in the recipe)",
            )
        paths.append(path)
    sources = [read_source(p) for p in paths]
    if not any(s.rows for s in sources):
        raise UserError(
            f"the sources hold no rows ({', '.join(spec.path for spec in recipe.sources)})",
            where=f"{recipe_path}:{_line_for(raw, ('sources', 0))}",
            hint="check the sources: an empty file, or a run whose filters dropped every row",
        )
    formats = {spec.path: row_format(s.rows[0]) for spec, s in zip(recipe.sources, sources) if s.rows}
    if len(set(formats.values())) > 1:
        listed = "; ".join(f"{name}: {fmt}" for name, fmt in formats.items())
        raise UserError(
            f"the sources hold rows of different formats ({listed})",
            where=recipe_path,
            hint="mix sources of one format: TRL trains on prompt-completion or messages, not both",
        )
    pool, origins, seen, skipped, per_source = [], [], set(), 0, []
    for s, (spec, source) in enumerate(zip(recipe.sources, sources)):
        added = dup = 0
        for i, row in enumerate(source.rows):
            key = _row_key(row)
            if key in seen:
                dup += 1
                continue
            seen.add(key)
            pool.append({**row, SOURCE_COLUMN: spec.path})
            origins.append((s, i))
            added += 1
        skipped += dup
        per_source.append(
            {
                "source": spec.path,
                "path": str(source.path),
                "kind": source.kind,
                "rows": len(source.rows),
                "pooled": added,
                "duplicates_skipped": dup,
                "without_node": sum(1 for r in source.rows if not node_of(r)),
            }
        )
    # Rows are owned node by node: a node belongs to the first entry whose pattern matches it.
    # Every pattern must match a node of the sources, and not only nodes earlier entries own.
    node_rows: dict[str, list[int]] = {}
    for j, row in enumerate(pool):
        for node in nodes_of(row):  # a mixed row is a row of each node it combines
            node_rows.setdefault(node, []).append(j)
    owner: dict[str, int] = {}
    for i, take in enumerate(recipe.nodes):
        matched = [node for node in node_rows if matches(node, take.match)]
        where = f"{recipe_path}:{_line_for(raw, ('nodes', i, 'match'))}"
        if not matched:
            known = sorted(node_rows)
            shown = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
            raise UserError(
                f"node pattern '{take.match}' matches no row in the sources",
                where=where,
                hint=f"nodes in the sources: {shown or '(none: the rows have no taxonomy_path)'}",
            )
        free = [node for node in matched if node not in owner]
        if not free:
            raise UserError(
                f"every row node pattern '{take.match}' matches belongs to an earlier entry",
                where=where,
                hint="a row goes to the first entry that matches it: put narrower patterns first",
            )
        owner.update(dict.fromkeys(free, i))
    return MixPlan(
        recipe,
        recipe_path,
        out_dir,
        sources,
        [s.path for s in recipe.sources],
        pool,
        origins,
        skipped,
        per_source,
        node_rows,
        owner,
    )


def select(plan: MixPlan) -> tuple[list[dict[str, Any]], list[EntryResult]]:
    """Each entry's seeded sample, in entry order (not yet ordered)."""
    recipe = plan.recipe
    asked = requested(recipe)
    chosen: list[dict[str, Any]] = []
    taken: list[int] = []
    picked_before: set[int] = set()  # a mixed row another entry took (as a row of another of its nodes)
    results = []
    for i, take in enumerate(recipe.nodes):
        matched = [node for node in plan.node_rows if matches(node, take.match)]
        own = sorted(node for node in matched if plan.owner[node] == i)
        matching = len({j for node in matched for j in plan.node_rows[node]})  # a mixed row once
        free = sorted({j for node in own for j in plan.node_rows[node]} - picked_before)  # pool order: reproducible
        entry = EntryResult(take.match, take.count, take.share, asked[i], matching, matching - len(free), len(free))
        rng = random.Random(f"mix:{recipe.seed}:{i}:{take.match}")
        picked = sorted(rng.sample(free, min(entry.requested, len(free))))
        picked_before.update(picked)
        entry.delivered = len(picked)
        delivered = Counter(node for j in picked for node in nodes_of(plan.pool[j]))
        entry.nodes = {
            node: {"available": len(plan.node_rows[node]), "delivered": delivered.get(node, 0)} for node in own
        }
        chosen += [plan.pool[j] for j in picked]
        taken += picked
        results.append(entry)
    _check_types(plan, sorted(taken))
    return chosen, results


def _check_types(plan: MixPlan, taken: list[int]) -> None:
    """The chosen rows must agree on each column's type to be one dataset: the first row
    that does not is named, with its source, before anything is written."""
    kinds = ColumnKinds()
    for j in taken:
        s, i = plan.origins[j]
        source = plan.sources[s]
        kinds.check(plan.pool[j], i, source.where, source=f"{plan.names[s]} ")


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row with every column (None where a source lacks it): datasets takes the columns
    of the first row only, and a column one source adds (bloom_level) must not vanish."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return [{c: row.get(c) for c in columns} for row in rows]


def mix(recipe_path: str | Path, out: str | Path | None = None, *, write: bool = True) -> MixOutcome:
    """Run a recipe: check it, choose and order the rows, write DIR/dataset, dataset.jsonl, mix.json."""
    plan = prepare(recipe_path, out)
    chosen, entries = select(plan)
    rows = order_rows(chosen, plan.recipe.order, plan.recipe.seed)
    outcome = MixOutcome(plan, rows, entries)
    recipe = plan.recipe
    delivered_nodes = Counter(node for r in rows for node in nodes_of(r))
    outcome.summary = {
        "recipe": str(plan.recipe_path),
        "seed": recipe.seed,
        "order": recipe.order,
        "total": recipe.total,
        "requested": sum(e.requested for e in entries),
        "delivered": len(rows),
        "short": sum(max(0, e.short) for e in entries),
        "sources": plan.per_source,
        "duplicates_skipped": plan.duplicates_skipped,
        "entries": [e.as_dict() for e in entries],
        "nodes": dict(sorted(delivered_nodes.items())),
        "out": str(plan.out_dir),
    }
    if not write:
        return outcome
    from .write import write_dataset

    # A folder mix did not make (no marker, no mix.json) is refused: writing would replace its dataset/.
    claim(
        plan.out_dir,
        "mix",
        legacy=(MIX_FILE,),
        option="--out" if out is not None or not recipe.out else "out: in the recipe",
    )
    try:
        outcome.outputs.update(write_dataset(_uniform(rows), plan.out_dir))
    except (TypeError, ValueError) as exc:  # pyarrow: a column whose type differs between sources
        raise UserError(
            f"cannot write the mixed rows as one dataset: {exc}",
            where=plan.recipe_path,
            hint="the sources disagree on a column's type; mix sources written by the same version",
        ) from None
    outcome.outputs["mix"] = plan.out_dir / MIX_FILE
    outcome.summary["outputs"] = {k: str(v) for k, v in outcome.outputs.items()}
    atomic_write_text(plan.out_dir / MIX_FILE, json.dumps(outcome.summary, indent=2, ensure_ascii=False) + "\n")
    return outcome


__all__ = [
    "ORDERS",
    "MixOutcome",
    "MixPlan",
    "Recipe",
    "load_recipe",
    "matches",
    "mix",
    "order_rows",
    "prepare",
    "requested",
    "select",
]
