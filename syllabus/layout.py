"""Where a project's outputs live: one object names every folder, so commands agree.

`generate`, `train`, `eval` and the loop each write somewhere; when each picks its own
default (the current folder, a name made up on the spot) their outputs cannot find
each other. The layout is the one convention:

    <project>/runs/<run>/            RunLayout: one run
        cache.sqlite                 the request cache, shared by every round of the run
        state.json                   where the loop stands (written by the loop)
        dataset/ dataset.jsonl ...   the data of a run made by `generate` alone
        rounds/<k>/                  RoundLayout: round k of the loop
            data/                    its generated data (dataset/, dataset.jsonl, summary.json, ...)
            student/                 the student trained on it
            examination/             that student's examination (exam and dev items)
            budgets.json             rows per node and why (the allocator's decisions)
            self-answers.jsonl       the student's own unhinted answers to its mistakes
            corrections.jsonl        the teacher's hinted corrections where none of those was sound
            restatements.jsonl       the question restated with a blank, filled with the reference, where still none was
            selected.jsonl           every candidate row and what became of it; selected.json its counts
            align/                   that round's alignment of the teacher (`--align`)
            kept.jsonl               the round's new rows; train.jsonl what it trains on; pairs.jsonl
            rows.json student.json   row counts; the student the round trained
            round.json               the round's record, written last
        test/                        the final comparison on test items (comparison.json), after every decision
    <project>/students/<name>/       `train` outputs by default
    <project>/exams/<name>/          `eval` outputs by default

Pure names: nothing here creates or claims a folder (`outdir.claim` does that).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CACHE_FILE = "cache.sqlite"
STATE_FILE = "state.json"
ROUNDS_DIR = "rounds"
DEFAULT_RUN = "default"
# The file each step of a loop round leaves, in step order: the report names a killed round's absent ones.
ROUND_OUTPUTS = (
    ("allocate", "budgets.json"),
    ("answer", "self-answers.jsonl"),
    ("correct", "corrections.jsonl"),
    ("restate", "restatements.jsonl"),
    ("select", "selected.json"),
    ("assemble", "rows.json"),
    ("train", "student.json"),
    ("examine", "examination/results.json"),
    ("examine", "round.json"),
)


@dataclass(frozen=True)
class RoundLayout:
    root: Path  # <run>/rounds/<k>
    index: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def student(self) -> Path:
        return self.root / "student"

    @property
    def examination(self) -> Path:
        return self.root / "examination"

    @property
    def pairs(self) -> Path:
        """DPO pairs: a correction chosen over the student's own wrong answer."""
        return self.root / "pairs.jsonl"

    @property
    def budgets(self) -> Path:
        """The allocator's decisions: rows per node, with their inputs and a reason."""
        return self.root / "budgets.json"

    @property
    def corrections(self) -> Path:
        """Every correction draft asked this round, kept or dropped with its reason."""
        return self.root / "corrections.jsonl"

    @property
    def restatements(self) -> Path:
        """The teacher's restatements with a blank, filled with the reference, where nothing else was sound."""
        return self.root / "restatements.jsonl"

    @property
    def self_answers(self) -> Path:
        """The student's own unhinted samples for each wrong exam item tried."""
        return self.root / "self-answers.jsonl"

    @property
    def selected(self) -> Path:
        """Every candidate row (self-answer, correction, rehearsal) and what became of it."""
        return self.root / "selected.jsonl"

    @property
    def selected_counts(self) -> Path:
        return self.root / "selected.json"

    @property
    def align(self) -> Path:
        """That round's alignment of the teacher (`distill --align`)."""
        return self.root / "align"

    @property
    def kept(self) -> Path:
        """The round's new SFT rows (fixes, rehearsal, generated), each once."""
        return self.root / "kept.jsonl"

    @property
    def train(self) -> Path:
        """What the round trains on: every round's kept rows (restart: base), or its own plus a replay share."""
        return self.root / "train.jsonl"

    @property
    def rows(self) -> Path:
        """The round's row counts by kind."""
        return self.root / "rows.json"

    @property
    def trained(self) -> Path:
        """{"student": the model the round trained}."""
        return self.root / "student.json"

    @property
    def record(self) -> Path:
        """The round's record, written last: its scores, budgets, counts and students."""
        return self.root / "round.json"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def cache(self) -> Path:
        return self.root / CACHE_FILE

    @property
    def state(self) -> Path:
        return self.root / STATE_FILE

    @property
    def summary(self) -> Path:
        """A loop's summary: per round, per node dev and exam scores and budgets; the students."""
        return self.root / "summary.json"

    @property
    def held_out(self) -> Path:
        """The dev and test questions a loop's generation is decontaminated against."""
        return self.root / "held-out.jsonl"

    @property
    def test(self) -> Path:
        """The final comparison of the best and the starting student on test items."""
        return self.root / "test"

    @property
    def rounds(self) -> Path:
        return self.root / ROUNDS_DIR

    def round(self, index: int) -> RoundLayout:
        if index < 0:
            raise ValueError(f"round must be >= 0, got {index}")
        return RoundLayout(self.rounds / str(index), index)

    def data(self, round_index: int | None = None) -> Path:
        """Where generated data goes: the run folder itself for a run made by `generate` alone
        (no round named), `rounds/<k>/data` for round k."""
        return self.root if round_index is None else self.round(round_index).data


@dataclass(frozen=True)
class ProjectLayout:
    root: Path
    runs: Path

    @classmethod
    def of(cls, project) -> ProjectLayout:
        return cls(Path(project.root), Path(project.runs_dir))

    def run(self, path: str | Path | None = None, *, relative_to: Path | None = None) -> RunLayout:
        """The run at `path` (relative paths start at `relative_to`, else the project), or runs/default."""
        if path is None:
            return RunLayout(self.runs / DEFAULT_RUN)
        path = Path(path).expanduser()
        return RunLayout(path if path.is_absolute() else (relative_to or self.root) / path)

    @property
    def students(self) -> Path:
        return self.root / "students"

    @property
    def exams(self) -> Path:
        return self.root / "exams"

    def student(self, method: str, dataset_name: str) -> Path:
        """Default `train` output: students/METHOD-NAME."""
        return self.students / f"{method}-{dataset_name or 'dataset'}"

    def exam(self, student_spec: str) -> Path:
        """Default `eval` output: exams/NAME, NAME the model folder above final/, the served model, or embedded."""
        if student_spec == "embedded":
            return self.exams / "embedded"
        if student_spec.startswith("openai:"):
            model = student_spec.split(":", 1)[1]
            return self.exams / ("openai-" + "".join(c if c.isalnum() or c in "-_." else "-" for c in model).strip("."))
        return self.exams / (Path(student_spec).parent.name or Path(student_spec).name)
