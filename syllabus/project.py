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
    timeout: float = Field(120.0, gt=0)
    max_retries: int = Field(4, ge=0, le=20)

    @field_validator("base_url", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        return [value] if isinstance(value, str) else value


class StudentConfig(_Strict):
    model: str = "embedded"


class StageSampling(_Strict):
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1)


def _stages() -> dict[str, StageSampling]:
    return {
        "subjects": StageSampling(temperature=1.0, max_tokens=160),
        "syllabus": StageSampling(temperature=0.7, max_tokens=360),
        "question": StageSampling(temperature=0.9, max_tokens=96),
        "answer": StageSampling(temperature=0.3, max_tokens=320),
    }


class GenerationConfig(_Strict):
    questions: int = Field(24, ge=0)
    subject_samples: int = Field(2, ge=1, le=64)
    max_subjects: int = Field(3, ge=1)
    max_sessions: int = Field(30, ge=1)
    concepts: tuple[int, int] = (1, 5)
    two_session_ratio: float = Field(0.3, ge=0, le=1)
    seed: int = 0
    stages: dict[str, StageSampling] = Field(default_factory=_stages)

    @field_validator("concepts")
    @classmethod
    def _concept_range(cls, value):
        low, high = value
        if not 1 <= low <= high:
            raise ValueError("concepts must be [min, max] with 1 <= min <= max")
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


class ProjectConfig(_Strict):
    schema_version: int = SCHEMA_VERSION
    taxonomy: str = "taxonomy"
    runs: str = "runs"
    prompts: str = "prompts"
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)

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
    def load(cls, root: str | Path) -> "Project":
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
    def find(cls, start: str | Path | None = None) -> "Project":
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


def init_project(folder: str | Path, *, force: bool = False) -> Path:
    """Write a commented syllabus.yaml and the example taxonomy into `folder`."""
    folder = Path(folder)
    target = folder / "taxonomy"
    for existing in (folder / CONFIG_FILE, target):
        if existing.exists() and not force:
            raise UserError(f"{existing.name} already exists", where=folder,
                            hint="choose another folder, or pass --force to overwrite")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, or a file on the way to it
        raise UserError(f"cannot create the project folder: {exc.strerror or exc}", where=folder,
                        hint="choose a path that is not taken by a file") from None
    shutil.copy(SCAFFOLD / CONFIG_FILE, folder / CONFIG_FILE)
    shutil.copytree(SCAFFOLD / "taxonomy", target, dirs_exist_ok=True)
    (folder / "prompts").mkdir(exist_ok=True)
    return folder
