"""A project folder: `syllabus.yaml` (validated by pydantic) beside a `taxonomy/` folder.

Settings that change generated data live here and in the run fingerprint; settings
that only change how fast it is made (concurrency, paths) do not enter any hash.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import UserError
from .fsutil import atomic_write_bytes, replace_dir
from .taxonomy.model import BLOOM_LEVELS, STRATEGIES
from .yamlio import line_of, load

CONFIG_FILE = "syllabus.yaml"
SCHEMA_VERSION = 1
SCAFFOLD = Path(__file__).parent / "scaffold"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TeacherConfig(_Strict):
    backend: Literal["embedded", "local", "openai"] = "embedded"
    model: str | None = None
    base_url: list[str] | None = None
    api_key_env: str = "OPENAI_API_KEY"
    api_key_file: str | None = None
    concurrency: int = Field(8, ge=1, le=4096)
    # Seconds one try of a request may take, connect to last byte (a deadline, not a per-read
    # timeout: a server that trickles bytes cannot hold a request longer); then it is retried.
    timeout: float = Field(120.0, gt=0, le=86400)
    max_retries: int = Field(4, ge=0, le=20)
    # The largest body accepted from the server, as sent and once decompressed; past it the
    # request fails ("response too large") and the run goes on. A chat reply is a few KB.
    max_response_bytes: int = Field(8 * 2**20, ge=64 * 2**10, le=2**30)

    @field_validator("base_url", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value


class StudentConfig(_Strict):
    """How the student is trained. Defaults run on any CPU; bf16 is used where the hardware has it."""

    model: str = "embedded"
    learning_rate: float = Field(2e-5, gt=0, le=1)
    lora_learning_rate: float = Field(2e-4, gt=0, le=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1)
    batch_size: int = Field(4, ge=1)
    gradient_accumulation: int = Field(1, ge=1)
    max_length: int = Field(256, ge=16)
    lora: bool = False
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    dpo_beta: float = Field(0.1, gt=0)
    # DPO has its own rate: published DPO runs use 5e-7 to 1e-6; at the SFT rate it undoes what SFT taught.
    dpo_learning_rate: float = Field(1e-6, gt=0, le=1)
    # Weight of an NLL (SFT) term on the chosen answer beside the DPO loss (RPO, Pang et al. 2024); 0: plain DPO.
    dpo_nll: float = Field(1.0, ge=0, le=100)
    save_steps: int = Field(50, ge=1)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    seed: int = 0
    # Processes a training run uses (data parallel: gloo on CPU, nccl on GPU); under torchrun or
    # `accelerate launch`, the launcher's count instead.
    processes: int = Field(1, ge=1, le=1024)


class StageSampling(_Strict):
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1, le=1 << 20)
    # Each token's logit lowered by this much for every time it already stands in the reply
    # (OpenAI's frequency_penalty): against the repetition loops a small teacher falls into. 0: off,
    # and then not in the request (nor in its cache key).
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    # Further draws of a sample whose reply does not parse or fails the stage's cheap check
    # (each its own cached request); 0: none.
    redraws: int = Field(0, ge=0, le=16)


# Each stage's sampling defaults (generation.stages in syllabus.yaml): a new stage adds its line here.
STAGE_SAMPLING: dict[str, dict[str, float | int]] = {
    "subjects": {"temperature": 1.0, "max_tokens": 160, "redraws": 2},
    "syllabus": {"temperature": 0.7, "max_tokens": 300, "redraws": 2},
    "question": {"temperature": 0.9, "max_tokens": 96, "redraws": 2},
    "answer": {"temperature": 0.3, "max_tokens": 256, "redraws": 2},
    "judge": {"temperature": 0.0, "max_tokens": 64},
    "correction": {"temperature": 0.7, "max_tokens": 48},
    "restatement": {"temperature": 0.5, "max_tokens": 48},
    "skill_mix": {"temperature": 0.9, "max_tokens": 128, "redraws": 2},
    "skill_mix_judge": {"temperature": 0.7, "max_tokens": 64, "redraws": 2},  # a reply that does not parse is no vote
}


def _stages() -> dict[str, StageSampling]:
    return {name: StageSampling.model_validate(defaults) for name, defaults in STAGE_SAMPLING.items()}


class MinHashFilterConfig(_Strict):
    """Near duplicates by MinHash LSH over word shingles of the normalised question."""

    enabled: bool = True
    threshold: float = Field(0.8, gt=0, lt=1)  # estimated Jaccard similarity of shingle sets
    shingle: int = Field(3, ge=1, le=16)  # words per shingle
    num_perm: int = Field(128, ge=16, le=1024)


class EmbeddingFilterConfig(_Strict):
    """Near duplicates by cosine similarity of all-MiniLM-L6-v2 question embeddings."""

    enabled: bool = False  # about 100-270 questions/s on two CPU cores: on when wanted
    threshold: float = Field(0.95, gt=0, le=1)
    batch_size: int = Field(64, ge=1, le=4096)


class JudgeFilterConfig(_Strict):
    """The teacher scores each pair on the rubric in judge.j2 (1-5); a row under the threshold is dropped."""

    enabled: bool = False  # one more teacher request per row: on when wanted
    threshold: int = Field(3, ge=1, le=5)  # the lowest score kept


class SkillMixJudgeConfig(_Strict):
    """The Skill-Mix rubric on mixed questions: k + 3 points (one per concept, topic, sense, length)."""

    enabled: bool = False  # `graders` more teacher requests per mixed row: on when wanted
    # The share of a question's k + 3 points it must earn to be kept (1.0: full marks, the paper's measure).
    threshold: float = Field(1.0, gt=0, le=1)
    graders: int = Field(3, ge=1, le=9)  # grader replies per question; each point by majority vote


class ChecksConfig(_Strict):
    """Length and format checks on each row by itself."""

    empty_answer: bool = True
    restated_question: bool = True
    restate_similarity: float = Field(0.8, gt=0, le=1)  # word-sequence similarity of answer to question
    truncated: bool = True  # finish_reason == 'length': the answer was cut off at max_tokens


class FiltersConfig(_Strict):
    """Data-quality filters run after generation; dropped rows are kept aside with their reason."""

    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    exact: Literal["question", "question_answer", "off"] = "question"
    minhash: MinHashFilterConfig = Field(default_factory=MinHashFilterConfig)
    embedding: EmbeddingFilterConfig = Field(default_factory=EmbeddingFilterConfig)
    judge: JudgeFilterConfig = Field(default_factory=JudgeFilterConfig)
    skill_mix_judge: SkillMixJudgeConfig = Field(default_factory=SkillMixJudgeConfig)
    decontaminate: list[str] = Field(default_factory=list)  # evaluation sets, relative to the project
    decontaminate_ngram: int = Field(13, ge=2, le=64)
    decontaminate_short_ngram: int = Field(8, ge=2, le=64)

    @field_validator("decontaminate", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _ngrams(self):
        if self.decontaminate_short_ngram > self.decontaminate_ngram:
            raise ValueError("decontaminate_short_ngram must be <= decontaminate_ngram")
        return self


class SkillMixConfig(_Strict):
    """Skill-Mix questions: each combines one key concept from each of k different disciplines."""

    share: float = Field(0.0, ge=0, le=1)  # of the question budget (rounded half up); 0: none
    k: int = Field(2, ge=2, le=4)  # disciplines (and concepts) per mixed question
    sentences: int = Field(4, ge=1, le=20)  # a mixed question's longest length, asked and counted by program
    exclude: list[str] = Field(default_factory=list)  # disciplines (globs over paths) never mixed

    @field_validator("exclude", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if value is None:
            return []
        return [value] if isinstance(value, str) else value


class GenerationConfig(_Strict):
    questions: int = Field(24, ge=0)
    # A quota: a question whose row the cheap checks refuse (after its stages' redraws), or that
    # gives none, is replaced by a new one of its discipline, up to this share of the questions
    # asked of it (0: no replacement; the dataset then keeps fewer rows than asked for).
    replacements: float = Field(0.5, ge=0, le=4)
    # Upper bounds on what sizes lists and prompts: a typo (10**12) is exit 2 at its line, not a
    # MemoryError in --dry-run or a prompt asking for a trillion courses.
    subject_samples: int = Field(2, ge=1, le=64)
    max_subjects: int = Field(2, ge=1, le=1000)
    max_sessions: int = Field(30, ge=1, le=1000)
    concepts: tuple[int, int] = (1, 5)
    two_session_ratio: float = Field(0.3, ge=0, le=1)
    seed: int = 0
    # Mixes (name: weight) drawn per question; a node's own `bloom:`/`strategies:` win.
    bloom: dict[str, float] = Field(default_factory=lambda: {level: 1.0 for level in BLOOM_LEVELS})
    strategies: dict[str, float] = Field(default_factory=lambda: {name: 1.0 for name in STRATEGIES})
    # Prompt erasure: the training prompt carries this system message, not the strategy instruction.
    system_prompt: str | None = "You are a helpful, knowledgeable assistant."
    # Row order of the written dataset: taxonomy (node, then question number), easy_to_hard
    # (Bloom level, education level, one session before two), interleaved (subjects take
    # turns within rising levels) or shuffled (seeded).
    order: Literal["taxonomy", "easy_to_hard", "interleaved", "shuffled"] = "taxonomy"
    stages: dict[str, StageSampling] = Field(default_factory=_stages)

    @field_validator("bloom", "strategies")
    @classmethod
    def _mix(cls, value, info):
        known = BLOOM_LEVELS if info.field_name == "bloom" else STRATEGIES
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(f"unknown {info.field_name} entry {unknown[0]!r} (known: {', '.join(known)})")
        if any(weight < 0 for weight in value.values()) or not any(value.values()):
            raise ValueError(f"{info.field_name} weights must be >= 0 and not all 0")
        return value

    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    skill_mix: SkillMixConfig = Field(default_factory=SkillMixConfig)

    @field_validator("concepts")
    @classmethod
    def _concept_range(cls, value):
        low, high = value
        if not 1 <= low <= high <= 100:
            raise ValueError("concepts must be [min, max] with 1 <= min <= max <= 100")
        return value

    @field_validator("stages", mode="before")
    @classmethod
    def _known_stages(cls, value):
        # Field by field over each stage's own defaults: `answer: {temperature: 0.1}` keeps answer's max_tokens.
        if not isinstance(value, dict):
            return value
        merged = {name: sampling.model_dump() for name, sampling in _stages().items()}
        for name, sampling in value.items():
            if name not in merged:
                raise ValueError(f"unknown stage '{name}' (stages: {', '.join(merged)})")
            merged[name] = {**merged[name], **sampling} if isinstance(sampling, dict) else sampling
        return merged


class LoopStopConfig(_Strict):
    """When `syllabus distill` stops before `rounds`: a plateau or a regression of the dev score."""

    plateau_rounds: int = Field(2, ge=1, le=100)  # stop after this many rounds in a row gaining less than min_gain
    min_gain: float = Field(0.01, ge=0, le=1)  # dev accuracy gain (0-1) that counts as progress
    regression: float = Field(0.15, ge=0, le=1)  # stop when the dev score falls this far below the best round's


class LoopConfig(_Strict):
    """The closed loop (`syllabus distill`): tailored rounds of examine, allocate, generate, correct, train."""

    items: str = "items.jsonl"  # exam/dev/test items (question, answer, node, split), relative to the project
    rounds: int = Field(2, ge=1, le=100)
    budget: int = Field(24, ge=1, le=10_000_000)  # training rows per round, spread over the nodes
    exploration: float = Field(0.2, ge=0, le=1)  # share of the budget spread evenly, so no node starves
    window: int = Field(3, ge=2, le=100)  # rounds the learning-progress slope is fitted over
    # What each round trains from. previous: the previous round's student on this round's rows and a
    # replay share (measured as good or better on test items, with fewer rows: docs/benchmarks.md);
    # base: the starting student, on every row kept so far, each once (STaR, ReST-EM, LLM2LLM).
    restart: Literal["base", "previous"] = "previous"
    replay: float = Field(0.5, ge=0, le=1)  # restart: previous only: share of earlier rounds' rows trained on again
    # Unhinted samples of the student per wrong exam item; a sound one is the row (STaR, RFT). 0: none.
    self_answers: int = Field(4, ge=0, le=64)
    self_temperature: float = Field(0.8, gt=0, le=2)
    # Rehearsal (S3FT): exam items the student already answers right, in its own words, trained on again.
    rehearsal: float = Field(0.3, ge=0, le=1)  # share of a node's rows
    rehearsal_per_node: int = Field(10, ge=0, le=100_000)  # at most this many a node and round
    # An exam item's worked `solution` (items file) is its row where no self-answer is sound: a
    # procedure the student can carry to unseen questions. The teacher is not asked about those items.
    solutions: bool = True
    corrections: bool = True  # hinted corrections by the teacher where no self-answer or solution is sound
    correction_samples: int = Field(2, ge=1, le=16)  # correction drafts per mistake
    # Where nothing is sound yet: the question restated with a blank by the teacher, the blank
    # filled with the reference (shown the node's own restatements; grounded in the reference).
    restatements: bool = True
    restatement_samples: int = Field(2, ge=1, le=16)  # restatement drafts per mistake
    # Among sound drafts of an item: the one the student finds most likely given the plain question, or the shortest.
    choose: Literal["likelihood", "shortest"] = "likelihood"
    generated: float = Field(0.0, ge=0, le=1)  # share of a round's rows that are GLAN rows of the teacher
    # How a round trains on its rows: sft, on their text; distill, on the teacher's logits over them
    # (`distillation:`, TAID; the teacher a local model sharing the student's tokenizer).
    train: Literal["sft", "distill"] = "sft"
    dpo: bool = False  # after SFT, DPO: a kept fix (chosen) over the student's wrong answer (rejected)
    dpo_epochs: float = Field(1.0, gt=0, le=100)
    dpo_near_copy: float = Field(0.8, gt=0, le=1)  # pairs whose answers share this much (0-1) are dropped
    forgetting: float = Field(0.1, ge=0, le=1)  # a round dropping any node's dev score more than this is not "best"
    max_tokens: int = Field(40, ge=1, le=4096)  # longest student answer in an examination
    dev_share: float = Field(0.25, gt=0, lt=1)  # share of a node's items held for dev when the file has no `split`
    stop: LoopStopConfig = Field(default_factory=LoopStopConfig)


class AlignConfig(_Strict):
    """`syllabus align` and `distill --align`: the teacher aligned with what helps this student (flags override)."""

    drafts: int = Field(4, ge=1, le=1000)  # draft questions per node (K)
    rationales: int = Field(2, ge=1, le=100)  # rationales per question (R), each in another strategy
    items: int = Field(8, ge=1, le=100_000)  # preference items per node the drafts are scored on (M)
    scorer: Literal["icl", "influence", "both"] = "icl"  # ARTE in-context, Montessori-Instruct influence, or both
    influence: Literal["exact", "fast"] = "exact"  # a real step undone, or its first-order estimate
    mode: Literal["auto", "dpo", "in_context"] = "auto"  # train the teacher, or exemplars and mixes for a served one
    learning_rate: float = Field(5e-6, gt=0, le=1)  # the teacher's DPO
    epochs: float = Field(1.0, gt=0, le=100)
    nodes_per_round: int = Field(2, ge=1, le=100_000)  # distill --align: the weakest nodes aligned each round


class DistillationConfig(_Strict):
    """`syllabus train distill`: the student learns the logits of a teacher that shares its tokenizer."""

    method: Literal["taid", "kl", "jsd"] = "taid"  # TAID's moving target, KL to the teacher, or generalized JSD
    learning_rate: float = Field(1e-4, gt=0, le=1)  # TAID's published rate
    t_start: float = Field(0.4, ge=0, le=1)  # TAID: the target's share of the teacher at the first step
    t_end: float = Field(1.0, ge=0, le=1)  # ... and at the last (the linear ramp's end)
    alpha: float = Field(5e-4, ge=0, le=1)  # TAID: how fast t moves ahead of the ramp while the loss falls
    beta: float = Field(0.99, ge=0, lt=1)  # TAID: momentum of the loss's relative change
    chunk: int = Field(256, ge=1, le=1_000_000)  # completion positions whose vocabulary-wide tensors exist at once
    jsd_beta: float = Field(0.5, ge=0, le=1)  # jsd: 0 forward KL, 1 reverse KL, between the mixture's JSD (GKD)
    top_k: int = Field(20, ge=1, le=100)  # a served teacher: log-probabilities per token asked of it (plus a tail)


class ProjectConfig(_Strict):
    schema_version: int = SCHEMA_VERSION
    taxonomy: str = "taxonomy"
    runs: str = "runs"
    prompts: str = "prompts"
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    distillation: DistillationConfig = Field(default_factory=DistillationConfig)

    @model_validator(mode="after")
    def _version(self):
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(f"schema_version {self.schema_version} is newer than this syllabus understands")
        return self


class Project:
    """A project folder with its settings; paths in the settings are relative to it."""

    def __init__(self, root: Path, config: ProjectConfig):
        self.root = Path(root)
        self.config = config

    @property
    def taxonomy_dir(self) -> Path:
        return self.root / self.config.taxonomy

    @property
    def runs_dir(self) -> Path:
        return self.root / self.config.runs

    @property
    def prompts_dir(self) -> Path:
        return self.root / self.config.prompts

    def load_taxonomy(self):
        from .taxonomy import Taxonomy

        return Taxonomy.load(self.taxonomy_dir)

    @classmethod
    def load(cls, root: str | Path) -> Project:
        root = Path(root)
        file = root / CONFIG_FILE
        if not file.is_file():
            raise UserError(
                f"no {CONFIG_FILE} here",
                where=root.resolve(),
                hint="run inside a project folder, pass --project DIR, or create one with `syllabus init DIR`",
            )
        raw = load(file) or {}
        if not isinstance(raw, dict):
            raise UserError(f"{CONFIG_FILE} must be a mapping of settings", where=f"{file}:1")
        try:
            config = ProjectConfig.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [str(p) for p in first["loc"]]
            raise UserError(
                f"setting '{'.'.join(loc) or '(top)'}': {first['msg']}",
                where=f"{file}:{_line_for(raw, first['loc'])}",
                hint="see the comments in syllabus.yaml (or `syllabus init` a fresh one) for each setting",
            ) from None
        return cls(root, config)

    @classmethod
    def find(cls, start: str | Path | None = None) -> Project:
        """The project at `start`, or in the nearest folder above it holding syllabus.yaml."""
        here = Path(start or os.getcwd()).resolve()
        if start is not None:
            return cls.load(here)
        for folder in (here, *here.parents):
            if (folder / CONFIG_FILE).is_file():
                return cls.load(folder)
        return cls.load(here)  # raises the helpful "no syllabus.yaml" error


def _line_for(raw, loc) -> int:
    node, line = raw, 1
    for part in loc:
        if isinstance(node, dict) and part in node:
            line = line_of(node, part) or line
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
    return line


EXAMPLES = ("distill",)


def init_project(folder: str | Path, *, force: bool = False, example: str | None = None) -> Path:
    """Write a commented syllabus.yaml and the example taxonomy into `folder`.

    `example`: a shipped example project instead (`distill`: six nodes with exam, dev and
    test items for the loop). Each part appears whole (the taxonomy staged and renamed,
    syllabus.yaml written atomically, last). A part that is already there as init writes
    it, untouched, is not in the way: an init killed half-way is finished by running it again."""
    folder = Path(folder)
    if example is not None and example not in EXAMPLES:
        raise UserError(f"unknown example '{example}'", where="--example", hint=f"one of: {', '.join(EXAMPLES)}")
    source = SCAFFOLD / "examples" / example if example else SCAFFOLD
    target = folder / "taxonomy"
    parts = [(folder / CONFIG_FILE, source / CONFIG_FILE), (target, source / "taxonomy")]
    if example:
        parts.append((folder / "items.jsonl", source / "items.jsonl"))
    for existing, pristine in parts:
        if existing.exists() and not force and not _same_tree(existing, pristine):
            raise UserError(
                f"{existing.name} already exists",
                where=folder,
                hint="choose another folder, or pass --force to overwrite",
            )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, or a file on the way to it
        raise UserError(
            f"cannot create the project folder: {exc.strerror or exc}",
            where=folder,
            hint="choose a path that is not taken by a file",
        ) from None
    if force or not target.exists():  # --force replaces a taxonomy there, it does not merge into it
        staging = folder / ".taxonomy.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source / "taxonomy", staging)
        replace_dir(staging, target)
    (folder / "prompts").mkdir(exist_ok=True)
    if example:
        atomic_write_bytes(folder / "items.jsonl", (source / "items.jsonl").read_bytes())
    atomic_write_bytes(folder / CONFIG_FILE, (source / CONFIG_FILE).read_bytes())
    return folder


def _same_tree(path: Path, pristine: Path) -> bool:
    """`path` holds exactly what `pristine` holds (a file, or a folder of files), byte for byte."""
    if path.is_file() or pristine.is_file():
        return path.is_file() and pristine.is_file() and path.read_bytes() == pristine.read_bytes()
    ours = sorted(p.relative_to(path) for p in path.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(pristine) for p in pristine.rglob("*") if p.is_file())
    return ours == theirs and all((path / r).read_bytes() == (pristine / r).read_bytes() for r in ours)
