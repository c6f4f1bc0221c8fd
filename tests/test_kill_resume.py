"""kill -9 at seeded points of every multi-step command; the rerun ends where an uninterrupted run does.

GitHub issue 6, item 2. Each test starts a real `python -m syllabus ...` process, waits for a
point chosen from the seed among the command's observable progress points (answers in the
run's request cache, a checkpoint folder appearing or finished, an output or staging file
appearing, or a seeded delay within the measured length of an uninterrupted run), sends
SIGKILL, checks that nothing at a final path is half-written, then runs the same command
again to completion and compares its outputs with those of a run that was never killed.

A point the command passes before the poll sees it, or a kill that lands after the command
ended, is fine: the outputs are asserted all the same. Each reference run is run twice, and
both must agree, which is the "killed after its last write" case made certain.

Covered: generate (against the real llama.cpp server), train sft, probes split, mix, stats,
taxonomy accept, taxonomy import-instructlab, eval. Not here: train dpo (the same `train()`
as sft), taxonomy expand (one request, cached, and one atomic file), init, teacher check and
the single-rename taxonomy edits (add, rm, mv, set), which have no step to be killed between.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import cli_env, copy_project, run_cli, tune_project
from test_generate_server import NODE, cached_answers, rows_of, teacher_args
from test_stats import ALG, ETH, MECH, make_row, make_run

from syllabus.project import init_project
from syllabus.yamlio import dump, load

SEEDS = [0, 1, 2]
POLL = 0.005  # seconds between looks at the progress signal
PNG_SIGNATURE, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"


# The helper ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Point:
    """Where a run is killed: once `reached()` holds, and then `delay` seconds later."""

    label: str
    reached: Callable[[], bool] = lambda: True
    delay: float = 0.0


def appears(path: Path, label: str | None = None) -> Point:
    """The point at which `path` exists (written, or renamed into place)."""
    return Point(label or f"{path.name} appears", path.exists)


def staging(folder: Path, name: str) -> Callable[[], bool]:
    """True while a staging folder or temp file for `name` (`.NAME.*`) exists in `folder`."""
    return lambda: folder.is_dir() and any(folder.glob(f".{name}.*"))


def after(seconds: float) -> Point:
    return Point(f"after {seconds:.2f} s", delay=seconds)


def choose(command: str, seed: int, points: list[Point], duration: float | None = None) -> Point:
    """The seed's point: one of `points`, or (when a duration was measured) a delay within it."""
    rng = random.Random(f"{command}:{seed}")
    if duration is not None:
        points = [*points, after(rng.uniform(0.0, duration))]
    return points[rng.randrange(len(points))]


@dataclass
class Kill:
    point: Point
    killed: bool  # False: the command ended (successfully) before the point
    seconds: float


def kill_at(args: list[str], point: Point, *, cwd: Path | None = None, limit: float = 900) -> Kill:
    """Start `syllabus ARGS` and SIGKILL it at `point`; a command that ends first must have succeeded."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as err:  # not a pipe: a chatty command must never block on a full one
        process = subprocess.Popen(
            [sys.executable, "-m", "syllabus", *args], cwd=cwd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            while not point.reached() and process.poll() is None:
                assert time.monotonic() - start < limit, f"{point.label}: not reached in {limit} s"
                time.sleep(POLL)
            wake = time.monotonic() + point.delay
            while process.poll() is None and time.monotonic() < wake:
                time.sleep(POLL)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)  # one that ended just now is a zombie: harmless
            process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        killed = process.returncode == -signal.SIGKILL
        err.seek(0)
        assert killed or process.returncode == 0, (
            f"ended with {process.returncode} before {point.label}:\n{err.read().decode(errors='replace')[-3000:]}"
        )
    kill = Kill(point, killed, time.monotonic() - start)
    command = " ".join(a for a in args[:2] if not a.startswith(("/", "-")))
    print(f"{command}: {point.label}: {'killed' if killed else 'ended first'} at {kill.seconds:.2f} s")
    return kill


def rerun(args: list[str], *, cwd: Path | None = None):
    result = run_cli(*args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def timed_run(args: list[str], *, cwd: Path | None = None) -> float:
    start = time.monotonic()
    rerun(args, cwd=cwd)
    return time.monotonic() - start


# What "complete" means for the files at final paths -------------------------------------
def hidden(path: Path, root: Path) -> bool:
    """Staging folders and temp files are dot names: no reader looks at them."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def assert_nothing_half_written(root: Path, *, skip: tuple[str, ...] = ()) -> None:
    """Every file and saved dataset at a final path under `root` reads completely."""
    from datasets import load_from_disk

    if not root.exists():
        return
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if hidden(path, root) or any(rel.parts[0] == s for s in skip) or not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".json":
            json.loads(data)
        elif path.suffix == ".jsonl":
            assert not data or data.endswith(b"\n"), f"{rel}: last line cut short"
            for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
                assert isinstance(json.loads(line), dict), f"{rel}:{number}"
        elif path.suffix == ".yaml":
            load(path)
        elif path.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE) and data.endswith(PNG_END), f"{rel}: not a whole PNG"
        elif path.name == "state.json" and not hidden(path.parent, root):
            load_from_disk(str(path.parent))  # a saved dataset: every arrow file it names is whole


def saved_rows(folder: Path) -> list[dict]:
    from datasets import load_from_disk

    return load_from_disk(str(folder)).to_list()


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file of a tree but the hidden ones, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not hidden(p, root)
    }


def text_of(path: Path, root: Path) -> str:
    """A file's text with the case folder written as `ROOT`, so two cases compare."""
    return path.read_text(encoding="utf-8").replace(str(root.resolve()), "ROOT").replace(str(root), "ROOT")


def assert_taxonomy_valid(project: Path) -> None:
    from syllabus.taxonomy import validate_tree

    assert validate_tree(project / "taxonomy") == []


# Generation against the real llama.cpp server -------------------------------------------
GEN_QUESTIONS = 2


def gen_args(project: Path, server) -> list[str]:
    return [
        "generate",
        "--project",
        str(project),
        "--nodes",
        NODE,
        "--questions",
        str(GEN_QUESTIONS),
        "--concurrency",
        "1",
        *teacher_args(server),
    ]


def stable_summary(project: Path) -> dict:
    """summary.json without what differs between a fresh run and a resumed one: cache hits, timings,
    and the subjects and syllabus stages, which a rerun reads from the files an earlier run wrote."""
    summary = json.loads((project / "runs/default/summary.json").read_text())
    summary["stages"] = {
        name: {k: stage[k] for k in ("requested", "parsed", "kept", "failed", "unparsed")}
        for name, stage in summary["stages"].items()
        if name in ("question", "answer")
    }
    summary["filters"].pop("seconds", None)
    return summary


@dataclass
class GenReference:
    base: Path
    project: Path
    answers: int  # requests in the uninterrupted run's cache


def make_gen_reference(llama_server, folder: Path, **settings) -> GenReference:
    """One uninterrupted generation (run twice: the second, all from cache, must write the same)."""
    base = folder / "base"
    init_project(base)
    tune_project(base, **settings)
    reference = copy_project(base, base.parent / "reference")
    rerun(gen_args(reference, llama_server))
    first = (rows_of(reference), stable_summary(reference), tree_files(reference / "taxonomy"))
    sent = llama_server.wait_idle(quiet=1.0)
    rerun(gen_args(reference, llama_server))
    assert llama_server.wait_idle(quiet=1.0) == sent  # a finished run sends nothing again
    assert (rows_of(reference), stable_summary(reference), tree_files(reference / "taxonomy")) == first
    return GenReference(base, reference, cached_answers(reference))


@pytest.fixture(scope="module")
def gen_reference(llama_server, tmp_path_factory) -> GenReference:
    return make_gen_reference(llama_server, tmp_path_factory.mktemp("kill-generate"))


@pytest.fixture(scope="module")
def gen_reference_subjects(llama_server, tmp_path_factory) -> GenReference:
    """The same with several subjects: question k takes subject k mod n, in the order first recorded
    (issue 10: a rerun once read them in file-name order, and asked every question again)."""
    ref = make_gen_reference(
        llama_server,
        tmp_path_factory.mktemp("kill-generate-subjects"),
        max_subjects=3,
        max_tokens={"subjects": 120, "syllabus": 120, "question": 48, "answer": 64},
    )
    subjects = {row["subject"] for row in rows_of(ref.project)}
    assert len(subjects) >= 2, subjects  # the questions really are spread over several subjects
    return ref


def kill_and_resume(llama_server, ref: GenReference, seed: int, *, label: str = "") -> None:
    project = copy_project(ref.base, ref.base.parent / f"killed{label}-{seed}")
    run = project / "runs/default"
    answered = [Point(f"{k} answers cached", lambda k=k: cached_answers(project) >= k) for k in range(1, ref.answers)]
    # With several subjects, also right after subjects/ appears: the rerun reads them back from there.
    writing = [appears(project / "taxonomy" / NODE / "subjects", "subjects/ written")] if label else []
    writing += [
        appears(run / "dropped.jsonl", "writing: dropped.jsonl"),
        Point("writing: the dataset's staging folder", staging(run, "dataset")),
        appears(run / "dataset.jsonl", "writing: dataset.jsonl"),
        appears(run / "summary.json", "writing: summary.json"),
    ]
    point = choose(f"generate{label}", seed, answered + writing)
    llama_server.wait_idle(quiet=1.0)
    kill = kill_at(gen_args(project, llama_server), point)
    answered_before = cached_answers(project)
    sent_before = llama_server.wait_idle(quiet=6.0)  # the killed client's last request may still be served
    if run.exists():
        assert_nothing_half_written(run)
    assert_taxonomy_valid(project)  # subjects/ appears whole or not at all

    rerun(gen_args(project, llama_server))
    sent_by_rerun = llama_server.wait_idle(quiet=1.0) - sent_before
    missing = ref.answers - answered_before
    # Only what had no answer is asked again: no finished request is sent twice, none is lost.
    assert sent_by_rerun == missing == cached_answers(project) - answered_before, kill
    assert rows_of(project) == rows_of(ref.project), kill
    assert saved_rows(run / "dataset") == saved_rows(ref.project / "runs/default/dataset")
    assert (run / "dropped.jsonl").read_bytes() == (ref.project / "runs/default/dropped.jsonl").read_bytes()
    assert stable_summary(project) == stable_summary(ref.project)
    assert tree_files(project / "taxonomy") == tree_files(ref.project / "taxonomy")


@pytest.mark.server
@pytest.mark.parametrize("seed", SEEDS)
def test_generation_killed_at_a_seeded_point_resumes_to_the_same_rows(llama_server, gen_reference, seed):
    kill_and_resume(llama_server, gen_reference, seed)


@pytest.mark.server
@pytest.mark.parametrize("seed", SEEDS)
def test_generation_with_several_subjects_killed_at_a_seeded_point_resumes_to_the_same_rows(
    llama_server, gen_reference_subjects, seed
):
    kill_and_resume(llama_server, gen_reference_subjects, seed, label="-subjects")


# A generated run made here (no model), and training on it -------------------------------
def make_rows(count: int) -> list[dict]:
    """Generated rows over three nodes, each question different, short numeric answers."""
    nodes = [ALG, ETH, MECH]
    return [
        make_row(
            nodes[i % 3],
            i,
            f"Question {i} of {nodes[i % 3]}: what is {i} plus {i + 1}?",
            f"Adding {i} and {i + 1} gives {2 * i + 1}.",
            bloom_level=("remember", "apply", "create")[i % 3],
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory) -> Path:
    """A run folder as `generate` leaves it (dataset/, dataset.jsonl, dropped.jsonl, summary.json)."""
    rows = make_rows(240)
    summary = {
        "rows": len(rows),
        "generated": len(rows),
        "dropped": 0,
        "failed_requests": 0,
        "stages": {},
        "filters": {"rows_in": len(rows), "kept": len(rows), "dropped": 0, "counts": {}},
        "nodes": [],
    }
    return make_run(tmp_path_factory.mktemp("kill-source") / "run", rows, summary=summary)


TRAIN_FLAGS = ["--max-steps", "3", "--batch-size", "1", "--max-length", "96", "--save-steps", "1", "--full"]


def checkpoint_saved(out: Path, k: int) -> bool:
    return (out / "checkpoints" / f"checkpoint-{k}" / "trainer_state.json").is_file()


def training_point(out: Path, seed: int) -> Point:
    """Seed s kills around checkpoint s + 1, so that every kill moves the sequence on: while
    that checkpoint is being saved (its folder there, trainer_state.json, written last, not yet),
    or a seeded 0-2 s after it was saved (in the next step; after the last one, in the final
    save); for the last checkpoint also while final/ is staged."""
    rng = random.Random(f"train:{seed}")
    k = seed + 1
    folder = out / "checkpoints" / f"checkpoint-{k}"
    points = [
        Point(f"while checkpoint-{k} is saved", lambda: folder.is_dir() and not checkpoint_saved(out, k)),
        Point(f"after checkpoint-{k}", lambda: checkpoint_saved(out, k), delay=rng.uniform(0.0, 2.0)),
    ]
    if k == 3:
        points.append(Point("while final/ is staged", staging(out, "final")))
    return points[rng.randrange(len(points))]


@pytest.mark.slow
def test_training_killed_at_three_seeded_points_resumes_to_the_planned_steps(source_run, tmp_path):
    """Three full trainings (3 steps each, ~1 min on 2 cores) per seed would take too long, so the
    three seeded kills land in ONE training sequence: kill (seed 0), rerun and kill again (seed 1),
    rerun and kill again (seed 2), rerun to the end. Each seed's point is around its own checkpoint
    (see `training_point`), so each rerun resumes from a different place, including from a
    checkpoint whose save was cut short."""
    from transformers import AutoModelForCausalLM

    from syllabus.students.train import last_complete_checkpoint

    data = tmp_path / "run"
    shutil.copytree(source_run, data)
    rerun(["probes", "split", str(data), "--fraction", "0.1"])
    out = tmp_path / "student"
    args = ["train", "sft", str(data / "train"), "--out", str(out), *TRAIN_FLAGS]
    kills = []
    for seed in SEEDS:
        kills.append(kill_at(args, training_point(out, seed)))
        assert_nothing_half_written(out, skip=("checkpoints",))
        if (out / "final").exists():
            assert checkpoint_saved(out, 3)  # final/ appears (whole, in one rename) only after the last step
    assert any(k.killed for k in kills)
    resume_from = last_complete_checkpoint(out / "checkpoints")

    result = rerun(args)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["method"] == "sft", kills
    assert metrics["resumed_from"] == resume_from
    if resume_from:
        assert "resumed from" in result.stdout
    assert_nothing_half_written(out, skip=("checkpoints",))
    assert (out / "loss.png").is_file()
    model = AutoModelForCausalLM.from_pretrained(out / "final")
    assert model.config.architectures == ["LlamaForCausalLM"]


# The other multi-step commands ------------------------------------------------------
@dataclass
class Case:
    """One command on its own copy of the inputs; `outputs()` what it wrote, comparable across cases."""

    root: Path
    args: list[str]
    outputs: Callable[[], object]
    cwd: Path | None = None


def reference_of(make_case: Callable[[str], Case]) -> tuple[object, float]:
    """The outputs of one uninterrupted run, its duration, and the check that running the same
    command again on them (a kill after the last write) leaves them as they are."""
    case = make_case("reference")
    duration = timed_run(case.args, cwd=case.cwd)
    first = case.outputs()
    rerun(case.args, cwd=case.cwd)
    assert case.outputs() == first, "a rerun of a finished command changed its outputs"
    return first, duration


def kill_then_rerun(case: Case, point: Point) -> Kill:
    kill = kill_at(case.args, point, cwd=case.cwd)
    assert_nothing_half_written(case.root)
    rerun(case.args, cwd=case.cwd)
    assert_nothing_half_written(case.root)
    return kill


# probes split
def probes_case(source_run: Path, base: Path, name: str) -> Case:
    run = base / name / "run"
    shutil.copytree(source_run, run)

    def outputs():
        return (run / "probes.jsonl").read_text(), saved_rows(run / "train"), saved_rows(run / "dataset")

    return Case(run, ["probes", "split", str(run), "--fraction", "0.2", "--seed", "3"], outputs)


@pytest.fixture(scope="module")
def probes_reference(source_run, tmp_path_factory):
    return reference_of(lambda name: probes_case(source_run, tmp_path_factory.mktemp("kill-probes"), name))


@pytest.mark.parametrize("seed", SEEDS)
def test_probes_split_killed_at_a_seeded_point(source_run, probes_reference, tmp_path, seed):
    expected, duration = probes_reference
    case = probes_case(source_run, tmp_path, "killed")
    run = case.root
    point = choose(
        "probes",
        seed,
        [
            appears(run / "probes.jsonl"),
            Point("train/ staged", staging(run, "train")),
            appears(run / "train"),
        ],
        duration,
    )
    kill = kill_then_rerun(case, point)
    assert case.outputs() == expected, kill


# mix
RECIPE = """
seed: 7
order: easy_to_hard
total: 150
sources: [runs/round0, runs/round1]
nodes:
  - match: mathematics/*
    share: 0.4
  - match: humanities/ethics
    count: 50
  - match: "*"
    share: 0.2
"""


def mix_case(source_run: Path, base: Path, name: str) -> Case:
    root = base / name
    shutil.copytree(source_run, root / "runs" / "round0")
    round1 = [dict(row, round=1, content_hash=f"{row['content_hash']}+1") for row in make_rows(120)[::2]]
    make_run(root / "runs" / "round1", round1 + make_rows(4))  # four rows shared with round 0
    (root / "recipe.yaml").write_text(RECIPE.lstrip(), encoding="utf-8")
    out = root / "mixes" / "round2"

    def outputs():
        return (saved_rows(out / "dataset"), (out / "dataset.jsonl").read_text(), text_of(out / "mix.json", root))

    return Case(out, ["mix", str(root / "recipe.yaml"), "--out", str(out)], outputs)


@pytest.fixture(scope="module")
def mix_reference(source_run, tmp_path_factory):
    return reference_of(lambda name: mix_case(source_run, tmp_path_factory.mktemp("kill-mix"), name))


@pytest.mark.parametrize("seed", SEEDS)
def test_mix_killed_at_a_seeded_point(source_run, mix_reference, tmp_path, seed):
    expected, duration = mix_reference
    case = mix_case(source_run, tmp_path, "killed")
    out = case.root
    point = choose(
        "mix",
        seed,
        [
            Point("dataset/ staged", staging(out, "dataset")),
            appears(out / "dataset"),
            appears(out / "dataset.jsonl"),
            appears(out / "mix.json"),
        ],
        duration,
    )
    kill = kill_then_rerun(case, point)
    assert case.outputs() == expected, kill


# stats
def stats_case(source_run: Path, base: Path, name: str) -> Case:
    run = base / name / "run"
    shutil.copytree(source_run, run)
    out = run / "stats"

    def outputs():
        pngs = {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}
        return text_of(out / "stats.json", run), pngs

    return Case(run, ["stats", str(run)], outputs)


@pytest.fixture(scope="module")
def stats_reference(source_run, tmp_path_factory):
    return reference_of(lambda name: stats_case(source_run, tmp_path_factory.mktemp("kill-stats"), name))


@pytest.mark.parametrize("seed", SEEDS)
def test_stats_killed_at_a_seeded_point(source_run, stats_reference, tmp_path, seed):
    expected, duration = stats_reference
    case = stats_case(source_run, tmp_path, "killed")
    out = case.root / "stats"
    charts = sorted(expected[1])
    point = choose(
        "stats", seed, [appears(out), *(appears(out / name) for name in charts), appears(out / "stats.json")], duration
    )
    kill = kill_then_rerun(case, point)
    assert case.outputs() == expected, kill


# taxonomy accept: a review file of many proposals, each added as its own node
PROPOSALS = 16


def accept_case(base: Path, name: str) -> Case:
    project = init_project(base / name)
    review = project / "review" / "mathematics.yaml"
    review.parent.mkdir()
    dump(
        {
            "parent": "mathematics",
            "proposals": [
                {
                    "name": f"Topic {chr(65 + i)} of mathematics",
                    "kind": "discipline",
                    "description": f"The {i}th proposed discipline, with its own description.",
                }
                for i in range(PROPOSALS)
            ],
        },
        review,
    )
    return Case(
        project,
        ["taxonomy", "accept", str(review), "--project", str(project)],
        lambda: tree_files(project / "taxonomy"),
    )


def test_accept_consumes_its_review_file(tmp_path):
    case = accept_case(tmp_path, "once")
    rerun(case.args)
    result = run_cli(*case.args)
    assert result.returncode == 2 and "review file does not exist" in result.stderr


@pytest.fixture(scope="module")
def accept_reference(tmp_path_factory):
    """One uninterrupted merge (not run twice: accept consumes its review file, see above)."""
    case = accept_case(tmp_path_factory.mktemp("kill-accept"), "reference")
    duration = timed_run(case.args)
    return case.outputs(), duration


@pytest.mark.parametrize("seed", SEEDS)
def test_taxonomy_accept_killed_at_a_seeded_point(accept_reference, tmp_path, seed):
    """The rerun adds what the killed run did not (and names the rest as existing). A kill after the
    review file was consumed (its last step) leaves a finished merge: the rerun then says so."""
    expected, duration = accept_reference
    case = accept_case(tmp_path, "killed")
    review = Path(case.args[2])
    folders = [case.root / "taxonomy" / "mathematics" / f"topic-{chr(97 + i)}-of-mathematics" for i in range(PROPOSALS)]
    assert not any(f.exists() for f in folders)
    point = choose(
        "accept", seed, [appears(folder, f"node {i + 1} added") for i, folder in enumerate(folders)], duration
    )
    kill = kill_at(case.args, point)
    assert_nothing_half_written(case.root)
    assert_taxonomy_valid(case.root)  # each node appears whole or not at all
    consumed = not review.exists()
    result = run_cli(*case.args)
    if not consumed:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode == 2 and "review file does not exist" in result.stderr, result.stderr
    assert not review.exists()
    assert case.outputs() == expected, kill


# taxonomy import-instructlab: many qna.yaml leaves, each becoming nodes
QNA = """\
version: 2
task_description: {task}
created_by: someone
seed_examples:
  - question: What is {i} times two?
    answer: It is {double}.
  - question: What is {i} plus one?
    answer: It is {plus}.
"""


def import_case(base: Path, name: str) -> Case:
    root = base / name
    project = init_project(root / "proj")
    source = root / "instructlab"
    for i in range(12):
        leaf = source / "compositional_skills" / f"area_{i % 3}" / f"skill_{i}"
        leaf.mkdir(parents=True)
        (leaf / "qna.yaml").write_text(QNA.format(task=f"Skill number {i}.", i=i, double=2 * i, plus=i + 1))
    return Case(
        project,
        ["taxonomy", "import-instructlab", str(source), "--project", str(project)],
        lambda: tree_files(project / "taxonomy"),
    )


@pytest.fixture(scope="module")
def import_reference(tmp_path_factory):
    return reference_of(lambda name: import_case(tmp_path_factory.mktemp("kill-import"), name))


@pytest.mark.parametrize("seed", SEEDS)
def test_instructlab_import_killed_at_a_seeded_point(import_reference, tmp_path, seed):
    expected, duration = import_reference
    case = import_case(tmp_path, "killed")
    skills = case.root / "taxonomy" / "compositional-skills"
    leaves = [skills / f"area-{i % 3}" / f"skill-{i}" for i in range(12)]
    point = choose("import", seed, [appears(skills), *(appears(leaf) for leaf in leaves)], duration)
    kill = kill_then_rerun(case, point)
    assert_taxonomy_valid(case.root)
    assert case.outputs() == expected, kill


# eval: answers, mistakes and pairs written after the student answered every probe
def eval_case(base: Path, name: str) -> Case:
    root = base / name
    root.mkdir(parents=True)
    probes = root / "probes.jsonl"
    rows = [{"question": f"What is {i} plus {i + 1}?", "answer": str(2 * i + 1), "node": ALG} for i in (2, 7)]
    rows += [
        {
            "question": "Which planet is the largest?",
            "options": ["Mercury", "Jupiter", "Mars"],
            "correct": 1,
            "node": MECH,
        },
        {"question": "Name the capital of France.", "answer": "Paris", "node": ETH},
    ]
    probes.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = root / "exam"

    def outputs():
        files = {name: text_of(out / name, root) for name in ("results.json", "answers.jsonl", "mistakes.jsonl")}
        return files, saved_rows(out / "pairs") if (out / "pairs").exists() else None

    return Case(
        out,
        ["eval", "--probes", str(probes), "--out", str(out), "--max-tokens", "8", "--batch-size", "4"],
        outputs,
        cwd=root,
    )


@pytest.fixture(scope="module")
def eval_reference(tmp_path_factory, embedded_dir):
    expected, duration = reference_of(lambda name: eval_case(tmp_path_factory.mktemp("kill-eval"), name))
    assert expected[1], "the student got every probe right: no pairs to write"
    return expected, duration


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_eval_killed_at_a_seeded_point(eval_reference, tmp_path, seed):
    expected, duration = eval_reference
    case = eval_case(tmp_path, "killed")
    out = case.root
    point = choose(
        "eval",
        seed,
        [
            appears(out / "results.json"),
            appears(out / "answers.jsonl"),
            appears(out / "mistakes.jsonl"),
            Point("pairs/ staged", staging(out, "pairs")),
            appears(out / "pairs"),
        ],
        duration,
    )
    kill = kill_then_rerun(case, point)
    assert case.outputs() == expected, kill
