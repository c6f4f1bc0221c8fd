"""A run folder read into one plain dict: what the report shows, and what it could not find.

Reading is kept apart from drawing and rendering so the numbers can be checked (and a user's
template can use them) without plotly. Two kinds of folder are runs:

- a generation run (`syllabus generate`: summary.json, dataset.jsonl, dropped.jsonl, README.md),
  read through `data/read.py` and `data/stats.py`, the same numbers `syllabus stats` prints;
- a loop run (`syllabus distill`: state.json, rounds/K/..., summary.json once it ended).

A loop can be read while it runs or after a kill: every round folder is read as far as its
files go, and each file a finished step should have written but is not there is named in the
round's `missing`, so the page says what finished and what did not. Only a folder that is
neither kind is an error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..layout import ROUND_OUTPUTS
from ..safefile import read_text

JSON_LIMIT = 256 * 2**20  # an examination of many thousand items stays far below this
CARD_LIMIT = 4 * 2**20
SAMPLES_PER_NODE = 3
DROPPED_PER_REASON = 3
TEXT_CUT = 600  # characters of a question or answer shown in a sample
PROVENANCE = (
    "subject",
    "level",
    "bloom_level",
    "strategy",
    "difficulty",
    "taxonomy_paths",
    "key_concepts",
    "sessions",
    "question_index",
    "round",
    "teacher",
    "seed",
    "content_hash",
    "judge_score",
    "skill_mix_score",
)
ROW_KINDS = ("self", "solutions", "corrections", "restatements", "rehearsal", "generated", "earlier", "pairs")


def read_run(path: str | Path, *, taxonomy: list[str] | None = None) -> dict[str, Any]:
    """The report model of a generation run or a loop run; a UserError for anything else.

    `taxonomy`: every node of the project's taxonomy, so a generation run's coverage also shows
    the nodes it was not asked for (with no rows)."""
    root = Path(path)
    if not root.exists():
        raise UserError("no such folder", where=root, hint="give a run folder, for example runs/default")
    if not root.is_dir():
        raise UserError(
            "not a run folder: this is a file",
            where=root,
            hint="give the folder `syllabus generate` or `syllabus distill` wrote (runs/NAME)",
        )
    summary = _json(root / "summary.json", [])
    if (root / "state.json").is_file() or (isinstance(summary, dict) and "rounds" in summary):
        return with_alignment(read_loop(root), root)
    if any((root / name).is_file() for name in ("summary.json", "dataset.jsonl", "dropped.jsonl")):
        return with_alignment(read_generation(root, taxonomy or []), root)
    if (root / "align" / "summary.json").is_file():  # a run folder `syllabus align` alone wrote
        return with_alignment(
            {"kind": "align", "path": str(root), "title": root.name, "warnings": [], "missing": []}, root
        )
    rounds = sorted(p.parent for p in root.glob("rounds/*/data") if p.is_dir())
    if rounds:  # `generate --round K` writes only under rounds/K/data
        raise UserError(
            "this run holds generated rounds, not one dataset: report a round's data folder",
            where=root,
            hint=f"for example `syllabus report {rounds[0] / 'data'}`",
        )
    raise UserError(
        "not a run folder: no summary.json, dataset.jsonl or rounds/ here",
        where=root,
        hint="give a folder written by `syllabus generate` (runs/NAME) or `syllabus distill` (runs/distill)",
    )


def with_alignment(model: dict[str, Any], root: Path) -> dict[str, Any]:
    """`model` with `alignment`: RUN/align/summary.json where `syllabus align` ran in this run, else None."""
    found = _json(root / "align" / "summary.json", model["warnings"])
    model["alignment"] = found if isinstance(found, dict) and isinstance(found.get("nodes"), dict) else None
    return model


def _json(path: Path, warnings: list[str]) -> Any:
    """The JSON in `path`, or None when it is absent; unreadable or broken, a warning and None."""
    if not path.exists():
        return None
    try:
        return json.loads(read_text(path, limit=JSON_LIMIT, what="run file"))
    except UserError as exc:
        warnings.append(f"{exc.where}: {exc.message}")
    except json.JSONDecodeError as exc:
        warnings.append(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})")
    return None


def _cut(text: Any, limit: int = TEXT_CUT) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Generation runs ---------------------------------------------------------------------------
def read_generation(root: Path, taxonomy: list[str]) -> dict[str, Any]:
    from ..data.read import read_source
    from ..data.rows import answer_of, node_of, question_of
    from ..data.stats import HISTOGRAMS, compute_stats

    source = read_source(root)
    stats = compute_stats(source)
    warnings = list(stats["warnings"])
    summary = source.summary if isinstance(source.summary, dict) else {}
    missing = [name for name in ("summary.json", "dataset.jsonl", "dropped.jsonl") if not (root / name).is_file()]
    first = source.rows[0] if source.rows else {}

    def shown(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "node": node_of(row) or "(none)",
            "question": _cut(question_of(row)),
            "answer": _cut(answer_of(row)),
            "provenance": {k: row[k] for k in PROVENANCE if row.get(k) not in (None, "", [])},
        }

    samples: dict[str, list[dict[str, Any]]] = {}
    for row in source.rows:
        bucket = samples.setdefault(node_of(row) or "(none)", [])
        if len(bucket) < SAMPLES_PER_NODE:
            bucket.append(shown(row))
    dropped_examples: dict[str, list[dict[str, Any]]] = {}
    for row in source.dropped or []:
        reason = str(row.get("filtered_by") or "(no reason)")
        bucket = dropped_examples.setdefault(reason, [])
        if len(bucket) < DROPPED_PER_REASON:
            bucket.append({**shown(row), "detail": _cut(row.get("filter_detail"), 300)})
    stages = [
        {
            "stage": name,
            **{k: s.get(k) for k in ("requested", "from_cache", "answered", "parsed", "kept")},
            "failed": s.get("failed", {}),
            "unparsed": s.get("unparsed", {}),
        }
        for name, s in (stats["stages"] or {}).items()
    ]
    filters: dict[str, Any] = summary["filters"] if isinstance(summary.get("filters"), dict) else {}
    return {
        "kind": "generate",
        "path": str(root),
        "title": root.name,
        "settings": {
            "teacher": summary.get("teacher") or first.get("teacher"),
            "backend": summary.get("backend") or first.get("teacher_backend"),
            "round": summary.get("round", first.get("round")),
            "seed": first.get("seed"),
            "command": _card_command(root / "README.md", warnings),
            # Stages of the first row (a datasets folder holding mixed rows gives others' as null).
            "sampling": {k: v for k, v in (first.get("sampling") or {}).items() if v},
            "templates": summary.get("templates") or {},
        },
        "totals": {
            "rows": stats["rows"],
            "dropped": stats["dropped"],
            "generated": stats["generated"],
            "failed_requests": stats["failed_requests"],
        },
        "stages": stages,
        "filters": stats["filters"] or {},
        "filter_seconds": filters.get("seconds") or {},
        "dropped_examples": dropped_examples,
        "nodes": [
            *stats["nodes"],
            *(
                {"node": n, "rows": 0, "note": "not asked for in this run"}
                for n in taxonomy
                if n not in {m["node"] for m in stats["nodes"]}
            ),
        ],
        "mixes": {c: stats[c] for c in HISTOGRAMS if stats.get(c) and c not in ("round",)},
        "skill_mix": stats["skill_mix"],  # mixed rows and the pairs of disciplines combined, or None
        "lengths": stats["lengths"],
        "duplicates": stats["duplicates"],
        "samples": dict(sorted(samples.items())),
        "empty_reason": summary.get("empty_reason"),
        "missing": missing,
        "warnings": warnings,
    }


_COMMAND = re.compile(r"^- command: `(.*)`\s*$", re.MULTILINE)


def _card_command(card: Path, warnings: list[str]) -> str | None:
    """The command line the card records (summary.json does not keep it)."""
    if not card.is_file():
        return None
    try:
        match = _COMMAND.search(read_text(card, limit=CARD_LIMIT, what="dataset card"))
    except UserError as exc:
        warnings.append(f"{exc.where}: {exc.message}")
        return None
    return match.group(1) if match else None


# Loop runs ---------------------------------------------------------------------------------
def _round_numbers(root: Path) -> list[int]:
    folder = root / "rounds"
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())


def _losses(metrics: Any) -> list[list[float]]:
    """[step, loss] of each logged training step (the final summary entry has no `loss`)."""
    history = metrics.get("log_history") if isinstance(metrics, dict) else None
    points = []
    for entry in history if isinstance(history, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("loss"), (int, float)) and "step" in entry:
            points.append([entry["step"], entry["loss"]])
    return points


def _examination(results: Any) -> dict[str, Any]:
    """Per node dev and exam accuracy and log-probability from examination/results.json."""
    out: dict[str, Any] = {"dev": {}, "dev_logprob": {}, "exam": {}, "exam_logprob": {}}
    for split in ("dev", "exam"):
        block = results.get(split) if isinstance(results, dict) else None
        per_node = block.get("nodes", {}) if isinstance(block, dict) else {}
        for node, scores in per_node.items():
            if isinstance(scores, dict):
                out[split][node] = scores.get("accuracy")
                out[f"{split}_logprob"][node] = scores.get("mean_logprob")
        overall = block.get("overall", {}) if isinstance(block, dict) else {}
        out[f"{split}_overall"] = overall.get("accuracy") if isinstance(overall, dict) else None
    # The loop's own dev figure is the mean over nodes (each node alike), not over items.
    dev = [float(v or 0.0) for v in out["dev"].values()]  # as loop/examination.py: ungraded counts as 0
    out["dev_mean"] = sum(dev) / len(dev) if dev else None
    return out


def read_loop(root: Path) -> dict[str, Any]:
    warnings: list[str] = []
    summary = _json(root / "summary.json", warnings)
    summary = summary if isinstance(summary, dict) else None
    state = _json(root / "state.json", warnings)
    state = state if isinstance(state, dict) else {}
    current = state.get("current")
    rounds: list[dict[str, Any]] = []
    node_order: list[str] = []
    for k in _round_numbers(root):
        folder = root / "rounds" / str(k)
        record = _json(folder / "round.json", warnings)
        record = record if isinstance(record, dict) else {}
        results = _json(folder / "examination" / "results.json", warnings)
        budgets = _json(folder / "budgets.json", warnings)
        rows = _json(folder / "rows.json", warnings)
        corrections = _json(folder / "selected.json", warnings)
        decisions = (budgets or {}).get("decisions") if isinstance(budgets, dict) else None
        decisions = decisions if isinstance(decisions, list) else record.get("decisions") or []
        rows = rows if isinstance(rows, dict) else record.get("rows") or {}
        corrections = corrections if isinstance(corrections, dict) else record.get("selected") or {}
        scores = _examination(results) if results is not None else None
        if scores is None and isinstance(record.get("nodes"), dict):  # an older record without results.json
            scores = {
                "dev": {n: s.get("dev") for n, s in record["nodes"].items()},
                "dev_logprob": {n: s.get("dev_logprob") for n, s in record["nodes"].items()},
                "exam": {n: s.get("exam") for n, s in record["nodes"].items()},
                "exam_logprob": {n: s.get("exam_logprob") for n, s in record["nodes"].items()},
                "dev_overall": None,
                "exam_overall": record.get("exam"),
            }
            dev = [float(v or 0.0) for v in scores["dev"].values()]
            scores["dev_mean"] = sum(dev) / len(dev) if dev else None
        for node in [*(d.get("node") for d in decisions if isinstance(d, dict)), *((scores or {}).get("dev") or {})]:
            if isinstance(node, str) and node not in node_order:
                node_order.append(node)
        losses = {
            m: _losses(_json(folder / "student" / m / "metrics.json", warnings)) for m in ("sft", "distill", "dpo")
        }
        complete = (folder / "round.json").is_file() and scores is not None
        # A complete round lacks nothing (its record is written last); one an older build made may
        # predate a step, whose output it never had.
        expected = [(step, name) for step, name in ROUND_OUTPUTS if (k > 0 and not complete) or step == "examine"]
        missing = [name for step, name in expected if not (folder / name).is_file()]
        steps_done = [str(s).split(":", 1)[1] for s in state.get("done") or [] if str(s).startswith(f"{k}:")]
        if complete:
            status = "complete"
        elif current and str(current).startswith(f"{k}:"):
            status = f"stopped in step {str(current).split(':', 1)[1]}"
        else:
            status = "incomplete"
        rounds.append(
            {
                "index": k,
                "complete": complete,
                "status": status,
                "steps_done": steps_done,
                "missing": missing,
                "scores": scores,
                "budgets": {d["node"]: d.get("rows", 0) for d in decisions if isinstance(d, dict) and "node" in d},
                "decisions": [d for d in decisions if isinstance(d, dict)],
                "rows": {kind: rows.get(kind) for kind in ROW_KINDS if isinstance(rows.get(kind), int)},
                "train_rows": rows.get("train"),
                "corrections": {str(k2): v for k2, v in corrections.items() if isinstance(v, int)},
                "losses": losses,
                "student": record.get("student"),
                "finished_at": record.get("finished_at"),
            }
        )
    for r in rounds:  # every node in one order, also in a round that scored only some
        if r["scores"]:
            for node in r["scores"]["dev"]:
                if node not in node_order:
                    node_order.append(node)
    node_order.sort()
    best, best_note = _best(summary, rounds)
    run_missing = []
    if not rounds:
        run_missing.append("rounds/0: the untrained student's examination (the loop has not examined yet)")
    if summary is None:
        run_missing.append("summary.json (written when the loop ends: this loop is running, or was stopped)")
    unfinished = []
    for r in rounds:
        if r["missing"] or not r["complete"]:
            done_steps = f", steps done: {', '.join(r['steps_done'])}" if r["steps_done"] else ""
            lacks = ", ".join(r["missing"]) if r["missing"] else "its record"
            unfinished.append(f"round {r['index']} ({r['status']}{done_steps}): missing {lacks}")
    return {
        "kind": "loop",
        "path": str(root),
        "title": root.name,
        "baseline": bool(
            (summary or {}).get("baseline")
            or any(str(d.get("reason", "")).startswith("baseline") for r in rounds for d in r["decisions"])
        ),
        "nodes": node_order,
        "rounds": rounds,
        "best_round": best,
        "best_note": best_note,
        "stopped": (summary or {}).get("stopped") or state.get("stopped"),
        "current": current,
        "items": (summary or {}).get("items") or {},
        "best_student": (summary or {}).get("best_student"),
        "final_student": (summary or {}).get("final_student"),
        "summary_rounds": [r.get("round") for r in (summary or {}).get("rounds", []) if isinstance(r, dict)],
        "missing": run_missing,
        "unfinished": unfinished,
        "warnings": warnings,
        "compare": [],
        "test": _test_comparison(root, warnings),
    }


def _test_comparison(root: Path, warnings: list[str]) -> dict[str, Any] | None:
    """The final comparison on test items (loop.distill), when the loop got that far."""
    found = (
        _json(root / "test" / "comparison.json", warnings) if (root / "test" / "comparison.json").is_file() else None
    )
    return found if isinstance(found, dict) and isinstance(found.get("nodes"), dict) else None


def _best(summary: dict[str, Any] | None, rounds: list[dict[str, Any]]) -> tuple[int | None, str]:
    """The loop's own best round (summary.json, decided with its forgetting rule); before the
    summary exists, the highest mean dev so far, said to be provisional."""
    finished = [r for r in rounds if r["complete"] and r["scores"] and r["scores"]["dev_mean"] is not None]
    if summary is not None and isinstance(summary.get("best_round"), int):
        covered = {r.get("round") for r in summary.get("rounds", []) if isinstance(r, dict)}
        later = [r["index"] for r in finished if r["index"] not in covered]
        note = "chosen by the loop (summary.json)"
        if later:
            note += f"; round(s) {', '.join(map(str, later))} finished after it and are not in it yet"
        return summary["best_round"], note
    if not finished:
        return None, "no round is finished yet"
    best = max(finished, key=lambda r: (round(r["scores"]["dev_mean"], 9), -r["index"]))
    return best[
        "index"
    ], "so far (highest mean dev accuracy; the loop decides when it ends, excluding rounds that forgot)"


def compare_entry(model: dict[str, Any]) -> dict[str, Any]:
    """What a compared run contributes: its per-node dev accuracy at its best and last finished round."""
    if model["kind"] != "loop":
        raise UserError(
            "--compare takes a loop run (a folder `syllabus distill` wrote), not a generation run",
            where=model["path"],
            hint="for example runs/distill-baseline, made by `syllabus distill --baseline`",
        )
    finished = [r for r in model["rounds"] if r["complete"] and r["scores"]]
    last = finished[-1] if finished else None
    best = next((r for r in finished if r["index"] == model["best_round"]), None)
    return {
        "title": model["title"],
        "path": model["path"],
        "baseline": model["baseline"],
        "last_round": last["index"] if last else None,
        "best_round": best["index"] if best else None,
        "last": dict(last["scores"]["dev"]) if last else {},
        "best": dict(best["scores"]["dev"]) if best else {},
        "overall": [[r["index"], r["scores"]["dev_mean"]] for r in finished],
    }
