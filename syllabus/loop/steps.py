"""The steps of a round: one function each, in the order of `distill.ROUND_STEPS`.

Each step reads what earlier steps wrote in the round's folder (`layout.RoundLayout`
names every file) and writes its own output whole, so it can be redone after a kill and
a later step never needs an earlier one's memory. Round k:

- allocate: rows per node from the dev scores so far (budgets.py), or by weight (baseline);
- answer: the student's own unhinted retries of its wrong exam answers (tailor.py);
- correct: the teacher's hinted corrections where no retry was sound;
- restate: where still nothing is sound, the question restated with a blank, filled with
  the reference (generators/restatement.py);
- select: per node, fixes (own answers first), rehearsal of right answers, each sound
  (select.py) and the one the student finds most likely; DPO pairs;
- align (`--align`): the teacher aligned on the weakest nodes that get GLAN rows;
- generate: GLAN rows for the node's `generated` share (all of it for the baseline);
- assemble: the training rows (restart base: every round's kept rows; previous: this
  round's plus a replay share), refused if a dev or test question is among them;
- train: SFT, then DPO at its own rate; from the starting student or the previous one;
- examine: exam and dev items.
"""

from __future__ import annotations

import asyncio
import json
import random
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from ..data.read import iter_jsonl
from ..data.rows import answer_of, nodes_of, question_of
from ..data.shares import allocate as by_weight
from ..errors import UserError
from ..fsutil import atomic_write_jsonl, atomic_write_text
from . import examination as exams
from .budgets import Decision, allocate
from .context import RoundContext
from .select import choose, keeps_the_question, near_copy, unsound, whole_sentences
from .tailor import degenerate, pick, sft_row


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path)] if path.is_file() else []


def budgets_of(loop: RoundContext, k: int) -> dict[str, int]:
    return {d["node"]: d["rows"] for d in read_json(loop.layout.round(k).budgets)["decisions"]}


def split_budget(loop: RoundContext, rows: int) -> tuple[int, int, int]:
    """A node's rows as (fixes, rehearsal, generated): the baseline's are all generated."""
    if loop.options.baseline:
        return 0, 0, rows
    generated = round(loop.settings.generated * rows)
    rehearsal = min(loop.settings.rehearsal_per_node, round(loop.settings.rehearsal * rows), rows - generated)
    return rows - generated - rehearsal, rehearsal, generated


def _picked(loop: RoundContext, k: int) -> list[dict[str, Any]]:
    """The wrong exam answers this round tries to fix (none for the baseline)."""
    if loop.options.baseline:
        return []
    previous = exams.read(loop.layout.round(k - 1).examination)
    assert previous is not None  # round k starts after round k-1 was examined
    fixes = {n: split_budget(loop, rows)[0] for n, rows in budgets_of(loop, k).items()}
    return pick(previous.mistakes(), fixes, seed=loop.seed, round_index=k)


# The steps ---------------------------------------------------------------------------------
def allocate_rows(loop: RoundContext, k: int) -> None:
    nodes = list(loop.nodes)
    if loop.options.baseline:
        rows = by_weight(loop.budget, {n: loop.nodes[n].weight for n in nodes})
        decisions = [{"node": n, "rows": rows[n], "reason": "baseline: by node weight"} for n in nodes]
    else:
        scores = {n: [h.dev.get(n, 0.0) for h in loop.history] for n in nodes}
        made: list[Decision] = allocate(loop.budget, scores, loop.rule, seed=loop.seed + k)
        decisions = [d.as_dict() for d in made]
    write_json(loop.layout.round(k).budgets, {"round": k, "total": loop.budget, "decisions": decisions})


def answer_again(loop: RoundContext, k: int) -> None:
    """The student's own retries: `self_answers` samples per picked mistake, no hint."""
    mistakes = _picked(loop, k)
    samples = 0 if loop.options.baseline else loop.settings.self_answers
    records = [{**m, "samples": []} for m in mistakes]
    if samples and mistakes:
        from ..generators.session import opened, student_backend
        from .tailor import self_answers

        loop.view.add_total("self-answers", len(mistakes) * samples)

        async def main() -> list[dict[str, Any]]:
            async with opened(student_backend(loop.project, loop.current_student(k))) as backend:
                return await self_answers(
                    backend,
                    mistakes,
                    samples=samples,
                    temperature=loop.settings.self_temperature,
                    max_tokens=loop.settings.max_tokens,
                    progress=lambda n: loop.view.advance("self-answers", n),
                )

        records = asyncio.run(main())
    atomic_write_jsonl(loop.layout.round(k).self_answers, records)


def correct(loop: RoundContext, k: int) -> None:
    """The teacher's hinted corrections, for each tried mistake none of whose retries is sound and
    that has no worked solution."""
    tried = read_jsonl(loop.layout.round(k).self_answers)
    unfixed = [m for m in tried if not _checked(m, _own_tries(m))[0] and _solution(loop, m) is None]
    records: list[dict[str, Any]] = []
    if loop.settings.corrections and unfixed:
        from ..generators.corrections import correction_stage
        from ..generators.session import teacher_backend, teacher_session
        from ..prompts import Templates
        from .tailor import corrections

        async def main() -> list[dict[str, Any]]:
            backend = teacher_backend(loop.project, loop.teacher)
            templates = Templates(loop.project.prompts_dir)
            async with teacher_session(backend, loop.layout.cache, templates, loop.view) as runner:
                stage = correction_stage(
                    loop.project.config.generation.stages["correction"], samples=loop.settings.correction_samples
                )
                return await corrections(runner, stage, unfixed, loop.nodes)

        records = asyncio.run(main())
    atomic_write_jsonl(loop.layout.round(k).corrections, records)


MAX_SHOTS = 3  # the node's own restatements shown to the teacher


def restate(loop: RoundContext, k: int) -> None:
    """Where neither a retry nor a correction is sound: the teacher restates the question with a
    blank, shown the node's own sound answers blanked; the blank is filled with the reference."""
    folder = loop.layout.round(k)
    tried = read_jsonl(folder.self_answers)
    teacher = _teacher_drafts(folder.corrections, "correction")
    shots: dict[str, set[tuple[str, str]]] = defaultdict(set)
    unresolved = []
    for m in tried:
        sound, _ = _checked(m, _own_tries(m) + teacher.get(m["question"], []))
        if not sound and _solution(loop, m) is None:
            unresolved.append(m)
        _add_shot(shots, m["node"], m["question"], m["reference"], [text for text, _ in sound])
    records: list[dict[str, Any]] = []
    if loop.settings.restatements and unresolved and not loop.options.baseline:
        for j in range(1, k):  # rows kept in earlier rounds
            for r in read_jsonl(loop.layout.round(j).selected):
                if r.get("used"):
                    _add_shot(shots, r["node"], r["question"], r["reference"], [r["answer"]])
        from ..generators.restatement import Cloze, filled, restatement_stage
        from ..generators.session import teacher_backend, teacher_session
        from ..prompts import Templates

        def shown(node: str) -> tuple[tuple[str, str], ...]:
            return tuple(sorted(shots[node], key=lambda shot: (len(shot[1]), shot))[:MAX_SHOTS])

        asked = [Cloze(loop.nodes[m["node"]], m["question"], shown(m["node"])) for m in unresolved]

        async def main() -> list[Any]:
            backend = teacher_backend(loop.project, loop.teacher)
            templates = Templates(loop.project.prompts_dir)
            async with teacher_session(backend, loop.layout.cache, templates, loop.view) as runner:
                stage = restatement_stage(
                    loop.project.config.generation.stages["restatement"], samples=loop.settings.restatement_samples
                )
                return await runner.run_all(stage, asked)

        outputs = asyncio.run(main())
        for m, cloze, output in zip(unresolved, asked, outputs):
            kept = [v for v in output.values if keeps_the_question(m["question"], v)]
            records.append(
                {
                    **m,
                    "shots": len(cloze.shots),
                    "restatements": list(output.values),
                    "drafts": [filled(value, m["reference"]) for value in kept],
                    "refused": len(output.values) - len(kept),  # restated another question
                }
            )
    atomic_write_jsonl(folder.restatements, records)


def _add_shot(shots: dict[str, set[tuple[str, str]]], node: str, question: str, reference: str, answers) -> None:
    """The first of an item's sound answers that, blanked and cut after the blank's clause, still
    restates its question soundly, as one of the node's shots."""
    from ..generators.restatement import cloze_of, filled

    for answer in answers:
        blanked = cloze_of(answer, reference)
        if blanked and unsound(question, reference, filled(blanked, reference)) is None:
            shots[node].add((question, blanked))
            return


def _teacher_drafts(path: Path, source: str) -> dict[str, list[tuple[str, str, str]]]:
    """question -> the teacher's drafts in a round file (corrections, restatements), as candidates."""
    return {m["question"]: [(d, "stop", source) for d in m.get("drafts", [])] for m in read_jsonl(path)}


def select_rows(loop: RoundContext, k: int) -> None:
    """Per node: fixes (sound own answers first, then the item's worked solution, then sound corrections
    and restatements), then rehearsal; each item's row the draft the student finds most likely (or the
    shortest). Every candidate is recorded."""
    folder = loop.layout.round(k)
    corrected = _teacher_drafts(folder.corrections, "correction")
    restated = _teacher_drafts(folder.restatements, "restatement")
    candidates: list[dict[str, Any]] = []
    for m in read_jsonl(folder.self_answers):
        hinted = corrected.get(m["question"], []) + restated.get(m["question"], [])
        candidates.append({**m, "kind": "fix", "options": _own_tries(m) + hinted})
    if not loop.options.baseline and loop.settings.rehearsal > 0:
        previous = exams.read(loop.layout.round(k - 1).examination)
        assert previous is not None
        right = [a for a in previous.answers if a["split"] == "exam" and a["correct"] is True]
        random.Random(f"rehearse:{loop.seed}:{k}").shuffle(right)
        for a in right:
            options = [_finished(a["student_answer"], a.get("finish_reason", "stop"), "rehearsal")]
            candidates.append({**a, "kind": "rehearsal", "options": options})
    for c in candidates:
        c["sound"], c["unsound"] = _checked(c, c["options"])
        solution = _solution(loop, c) if c["kind"] == "fix" else None
        if solution is not None and not any(source == "self" for _, source in c["sound"]):
            c["sound"] = [(solution, "solution")]  # the author's worked answer before the teacher's drafts
    scores = _likelihoods(loop, k, candidates) if loop.settings.choose == "likelihood" else {}
    budgets = budgets_of(loop, k)
    records: list[dict[str, Any]] = []
    counts: Counter = Counter()
    used: Counter = Counter()
    for kind in ("fix", "rehearsal"):
        for c in candidates:
            if c["kind"] != kind:
                continue
            node = c["node"]
            fixes, rehearsal, _ = split_budget(loop, budgets.get(node, 0))
            if kind == "fix":
                room = fixes
            elif loop.settings.rehearsal > 0:
                # Rows a node could not fill with fixes go to rehearsal (its cap per node still holds).
                room = min(loop.settings.rehearsal_per_node, rehearsal + max(0, fixes - used[node, "fix"]))
            else:
                room = 0
            record = {
                "node": node,
                "question": c["question"],
                "reference": c["reference"],
                "kind": kind,
                "student_answer": c["student_answer"],
                "unsound": dict(c["unsound"]),
            }
            if not c["sound"]:
                record["dropped"] = "no sound draft" if c["options"] else "no draft"
            elif used[node, kind] >= room:
                record["dropped"] = "over the node's budget"
            else:
                texts = [t for t, _ in c["sound"]]
                likely = scores.get(c["question"])
                index = choose(texts, likely, loop.settings.choose)
                used[node, kind] += 1
                record.update(answer=texts[index], source=c["sound"][index][1], used=True)
                if likely is not None:
                    record["likelihood"] = likely[index]
                if kind == "fix":
                    record.update(_pair(loop, c, texts[index]))
            counts[f"{kind}: " + ("used: " + record["source"] if record.get("used") else record["dropped"])] += 1
            records.append(record)
    atomic_write_jsonl(folder.selected, records)
    write_json(folder.selected_counts, dict(sorted(counts.items())))


def _solution(loop: RoundContext, item: dict[str, Any]) -> str | None:
    """The exam item's worked solution, where the loop uses them (`loop.solutions`; never the baseline)."""
    if loop.options.baseline or not loop.settings.solutions:
        return None
    return loop.items.solution(item["question"])


def _own_tries(mistake: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The student's unhinted samples for a mistake, as candidates (text, finish reason, "self")."""
    return [_finished(s["text"], s.get("finish_reason", "stop"), "self") for s in mistake["samples"]]


def _checked(item: dict[str, Any], options: list[tuple[str, str, str]]) -> tuple[list[tuple[str, str]], Counter]:
    """An item's sound drafts as (text, source), the student's own before the teacher's (only those,
    when it has any), and why the others were refused, counted."""
    checked = [
        (text, source, unsound(item["question"], item["reference"], text, finish)) for text, finish, source in options
    ]
    sound = [(text, source) for text, source, why in checked if why is None]
    own = [o for o in sound if o[1] in ("self", "rehearsal")]
    return own or sound, Counter(why for _, _, why in checked if why is not None)


def _finished(text: str, finish_reason: str, source: str) -> tuple[str, str, str]:
    """A draft of the student's as a candidate: one cut at max_tokens keeps its whole sentences."""
    kept = whole_sentences(text, finish_reason)
    return (kept, "stop", source) if kept else (text, finish_reason, source)


def _pair(loop: RoundContext, candidate: dict[str, Any], chosen: str) -> dict[str, Any]:
    """Whether the fix and the student's wrong answer make a DPO pair, and why not."""
    why = degenerate(candidate["student_answer"], candidate.get("finish_reason", "stop"))
    if why is None:
        shared = near_copy(chosen, candidate["student_answer"])
        if shared >= loop.settings.dpo_near_copy:
            why = f"rejected nearly copies chosen ({shared:.2f})"
    return {"pair": why is None} | ({"no_pair": why} if why else {})


def _likelihoods(loop: RoundContext, k: int, candidates: list[dict[str, Any]]) -> dict[str, list[float]]:
    """question -> the student's mean log-probability of each sound draft, given the plain question."""
    asked = [c for c in candidates if len(c["sound"]) > 1]
    if not asked:
        return {}
    from ..generators.session import opened, student_backend

    loop.view.add_total("likelihood", len(asked))

    async def main() -> dict[str, list[float]]:
        async with opened(student_backend(loop.project, loop.current_student(k))) as backend:

            async def one(c: dict[str, Any]) -> tuple[str, list[float]]:
                scores = await backend.score([{"role": "user", "content": c["question"]}], [t for t, _ in c["sound"]])
                loop.view.advance("likelihood", 1)
                return c["question"], [s.mean for s in scores]

            return dict(await asyncio.gather(*(one(c) for c in asked)))

    return asyncio.run(main())


def align_teacher(loop: RoundContext, k: int) -> None:
    """`syllabus align` on the weakest nodes given GLAN rows this round, for the student as it stands;
    its aligned teacher (if it trained one) writes the round's rows."""
    from ..align.run import Aligner, AlignOptions
    from ..generators.drafts import ALIGN_ROUND

    generate = generated_rows(loop, k)
    given = [n for n in loop.nodes if generate.get(n, 0) > 0]
    weakest = sorted(given, key=lambda n: (loop.history[-1].dev.get(n, 0.0), n))[
        : loop.project.config.align.nodes_per_round
    ]
    folder = loop.layout.round(k).align
    if not weakest:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(
            folder / "summary.json",
            {"aligned_teacher": None, "in_context": None, "nodes": {}, "reason": "no GLAN rows this round"},
        )
        return
    options = AlignOptions(
        nodes=weakest,
        run_dir=loop.layout.root,
        seed=loop.seed + k,
        teacher=loop.teacher,
        student=loop.current_student(k),
        draft_round=ALIGN_ROUND + k,
    )
    Aligner(loop.project, options, loop.align_view(), exam=loop.items).run(held=True, folder=folder)


def generated_rows(loop: RoundContext, k: int) -> dict[str, int]:
    return {n: split_budget(loop, rows)[2] for n, rows in budgets_of(loop, k).items()}


def generate(loop: RoundContext, k: int) -> None:
    """GLAN rows of round k: with `--align`, by the aligned teacher or with align's in-context choices."""
    folder = loop.layout.round(k)
    budgets = generated_rows(loop, k)
    if sum(budgets.values()) == 0:
        folder.data.mkdir(parents=True, exist_ok=True)
        return
    aligned = read_json(folder.align / "summary.json") if loop.options.align else {}
    from ..generators.job import GenerateOptions, prepare
    from ..generators.run import run_job

    options = GenerateOptions(
        run_dir=loop.layout.root,
        round=k,
        budget=budgets,
        seed=loop.seed,
        teacher=aligned.get("aligned_teacher") or loop.teacher,
        in_context=Path(aligned["in_context"]) if aligned.get("in_context") else None,
        decontaminate=[loop.layout.held_out],
        command=loop.options.command,
    )
    outcome = run_job(prepare(loop.project, options), loop.view, held=True)
    if outcome.result.failed_requests:
        raise UserError(
            f"{outcome.result.failed_requests} teacher request(s) failed for good in round {k}",
            where=folder.data / "summary.json",
            hint="check the teacher, then rerun: finished work is kept",
        )


def assemble(loop: RoundContext, k: int) -> None:
    from ..data.read import open_rows
    from ..students.probes import row_keys

    folder = loop.layout.round(k)
    selected = [r for r in read_jsonl(folder.selected) if r.get("used")]
    kept = [
        sft_row(r["question"], r["answer"], r["node"], k, "rehearsal" if r["kind"] == "rehearsal" else r["source"])
        for r in selected
    ]
    generated = 0
    if (folder.data / "dataset.jsonl").is_file():
        for _, row in open_rows(folder.data / "dataset.jsonl").iter():
            nodes = nodes_of(row) or ["unknown"]
            made = sft_row(question_of(row), answer_of(row), nodes[0], k, "generated")
            if len(nodes) > 1:  # a Skill-Mix row: every node it combines is credited
                made["taxonomy_paths"] = nodes
            kept.append(made)
            generated += 1
    kept = list({r["content_hash"]: r for r in kept}.values())
    earlier = [r for j in range(1, k) for r in read_jsonl(loop.layout.round(j).kept)]
    seen = {r["content_hash"] for r in kept}
    fresh = list({r["content_hash"]: r for r in earlier if r["content_hash"] not in seen}.values())
    if loop.settings.restart == "base":
        carried = fresh  # the starting student learns every row kept so far, each once
    else:
        random.Random(f"replay:{loop.seed}:{k}").shuffle(fresh)
        carried = [{**r, "source": "replay"} for r in fresh[: round(len(fresh) * loop.settings.replay)]]
    rows = kept + carried
    held = loop.items.held_out_keys()
    for number, row in enumerate(rows, 1):
        clash = row_keys(row) & held.keys()
        if clash:
            split = held[next(iter(clash))]
            raise UserError(
                f"a {split} question is in round {k}'s training data ({row['source']} row)",
                where=f"{folder.train}:{number}",
                hint=f"{split} items are never trained on: remove it from the items file's "
                "exam items or from the data it came from",
            )
    atomic_write_jsonl(folder.kept, kept)
    atomic_write_jsonl(folder.train, rows)
    pairs = [] if loop.options.baseline or not loop.settings.dpo else _pairs(selected)
    atomic_write_jsonl(folder.pairs, pairs)
    sources = Counter(r["source"] for r in kept)
    write_json(
        folder.rows,
        {
            "self": sources["self"],
            "solutions": sources["solution"],
            "corrections": sources["correction"],
            "restatements": sources["restatement"],
            "rehearsal": sources["rehearsal"],
            "generated": generated,
            "kept": len(kept),
            "earlier": len(carried),
            "train": len(rows),
            "pairs": len(pairs),
        },
    )


def _pairs(selected: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "prompt": [{"role": "user", "content": r["question"]}],
            "chosen": [{"role": "assistant", "content": r["answer"]}],
            "rejected": [{"role": "assistant", "content": r["student_answer"]}],
            "taxonomy_path": r["node"],
        }
        for r in selected
        if r.get("pair")
    ]


def starting_point(loop: RoundContext, k: int) -> str:
    """What round k trains from: the starting student (restart: base) or the previous round's."""
    return loop.student if loop.settings.restart == "base" else loop.current_student(k)


def train(loop: RoundContext, k: int) -> None:
    """SFT on the round's rows (or, `loop.train: distill`, the teacher's logits over them), then DPO."""
    from ..students.train import FINAL

    folder = loop.layout.round(k)
    rows = read_json(folder.rows)
    student = starting_point(loop, k)
    first = "distill" if loop.settings.train == "distill" else "sft"
    for method, dataset, count in ((first, folder.train, rows["train"]), ("dpo", folder.pairs, rows["pairs"])):
        if not count:
            continue
        out = folder.student / method
        if not (out / FINAL).is_dir():  # a finished model is never trained again
            loop.view.add_total(method, 1)
            with warnings.catch_warnings():  # transformers' deprecation notes would bury the live view
                warnings.simplefilter("ignore", FutureWarning)
                _train_one(loop, k, method, dataset, out, student)
            loop.view.advance(method)
        student = str(out / FINAL)
    write_json(folder.trained, {"student": student})


def _train_one(loop: RoundContext, k: int, method: str, dataset: Path, out: Path, student: str) -> None:
    config = loop.project.config
    common = {"dataset": dataset, "out_dir": out, "student": student, "seed": loop.seed + k, "quiet": True}
    if method == "distill":
        from ..backends.spec import parse_teacher_spec
        from ..students.logit_distill import DistillTrainOptions, train_distill

        teacher = parse_teacher_spec(loop.teacher, config.teacher)
        spec = "embedded" if teacher.backend == "embedded" else str(teacher.model)
        options = DistillTrainOptions.from_config(
            config.student, config.distillation, teacher=spec, keep_checkpoints=False, **common
        )
        train_distill(options)
        return
    from ..students.train import TrainOptions
    from ..students.train import train as train_model

    extra = {"epochs": loop.settings.dpo_epochs} if method == "dpo" else {}
    train_model(TrainOptions.from_config(config.student, method=method, keep_checkpoints=False, **common, **extra))


def examine(loop: RoundContext, k: int) -> None:
    folder = loop.layout.round(k)
    student = read_json(folder.trained)["student"] if k > 0 else loop.student
    exams.write(loop.examine(student), folder.examination, student)
