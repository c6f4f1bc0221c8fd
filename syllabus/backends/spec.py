"""Turn a teacher spec (`embedded`, a model folder, `openai:MODEL`) plus settings into a backend."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError


@dataclass(frozen=True)
class TeacherSpec:
    backend: str  # embedded | local | openai
    model: str | None = None  # openai model name, or local folder


def parse_teacher_spec(spec: str | None, config=None) -> TeacherSpec:
    """`--teacher` wins over syllabus.yaml; with neither, the embedded model."""
    if spec:
        if spec == "embedded":
            return TeacherSpec("embedded")
        if spec.startswith("openai:"):
            model = spec.split(":", 1)[1].strip()
            if not model:
                raise UserError("--teacher openai: needs a model name", hint="e.g. --teacher openai:gpt-4o-mini")
            return TeacherSpec("openai", model)
        if Path(spec).expanduser().is_dir():
            return TeacherSpec("local", str(Path(spec).expanduser()))
        raise UserError(
            f"unknown teacher {spec!r}",
            hint="use 'embedded', a local model folder, or 'openai:MODEL' (with --base-url)",
        )
    if config is None or config.backend == "embedded":
        return TeacherSpec("embedded")
    if not config.model:
        raise UserError(f"teacher.backend is '{config.backend}' but teacher.model is not set", where="syllabus.yaml")
    return TeacherSpec(config.backend, config.model)


def make_backend(spec: TeacherSpec, config, *, base_urls: list[str] | None = None, concurrency: int | None = None,
                 project_root: Path | None = None):
    """A ready (not yet preflighted) backend for `spec`; `config` is the project's TeacherConfig."""
    if concurrency is not None and concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {concurrency}",
                        hint="requests in flight (openai) or batch size (local); default: teacher.concurrency")
    concurrency = concurrency or config.concurrency
    if spec.backend == "openai":
        from .openai_backend import OpenAIBackend, read_api_key

        urls = base_urls or config.base_url
        return OpenAIBackend(
            model=spec.model,
            base_urls=urls or ["https://api.openai.com/v1"],
            api_key=read_api_key(config.api_key_env, config.api_key_file),
            concurrency=concurrency,
            timeout=config.timeout,
            max_retries=config.max_retries,
            max_response_bytes=config.max_response_bytes,
        )
    from .local import LocalBackend

    if spec.backend == "embedded":
        from .embedded import EMBEDDED_NAME, embedded_model_dir

        return LocalBackend(embedded_model_dir(), model_name=EMBEDDED_NAME, batch_size=concurrency)
    folder = Path(spec.model).expanduser()
    if not folder.is_absolute() and project_root is not None and (project_root / folder).is_dir():
        folder = project_root / folder
    return LocalBackend(folder, batch_size=concurrency)
