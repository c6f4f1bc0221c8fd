"""One model spec for teacher, student and training: `embedded`, a model folder, or `openai:MODEL`.

The teacher and the student used to parse and resolve it apart (with different errors for the
same folder); now both sides turn a spec into a `ModelSpec`, a folder (`model_folder`) or a
backend (`make_backend`) here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

SPEC_HINT = "use 'embedded', a local model folder, or 'openai:MODEL' (with --base-url)"


@dataclass(frozen=True)
class ModelSpec:
    backend: str  # embedded | local | openai
    model: str | None = None  # openai model name, or local folder


TeacherSpec = ModelSpec  # the name the teacher side has always used


def parse_model_spec(spec: str, *, option: str = "--teacher", folder_must_exist: bool = True) -> ModelSpec:
    """`embedded`, `openai:MODEL` or a folder. With `folder_must_exist` off, anything else is taken
    as a folder, so the loader can say what is wrong with it (missing, no config.json)."""
    if spec == "embedded":
        return ModelSpec("embedded")
    if spec.startswith("openai:"):
        model = spec.split(":", 1)[1].strip()
        if not model:
            raise UserError(f"{option} openai: needs a model name", hint=f"e.g. {option} openai:gpt-4o-mini")
        return ModelSpec("openai", model)
    if folder_must_exist and not Path(spec).expanduser().is_dir():
        role = option.lstrip("-")
        raise UserError(f"unknown {role} {spec!r}", hint=SPEC_HINT)
    return ModelSpec("local", str(Path(spec).expanduser()))


def parse_teacher_spec(spec: str | None, config=None) -> ModelSpec:
    """`--teacher` wins over syllabus.yaml; with neither, the embedded model."""
    if spec:
        return parse_model_spec(spec, option="--teacher")
    if config is None or config.backend == "embedded":
        return ModelSpec("embedded")
    if not config.model:
        raise UserError(f"teacher.backend is '{config.backend}' but teacher.model is not set", where="syllabus.yaml")
    return ModelSpec(config.backend, config.model)


def parse_student_spec(spec: str) -> ModelSpec:
    """`--student` / student.model: the same forms; a folder's problems are named by the loader."""
    return parse_model_spec(spec, option="--student", folder_must_exist=False)


def model_folder(spec: ModelSpec, project_root: Path | None = None) -> Path:
    """The local folder behind an `embedded` or folder spec (the embedded one is converted on first use)."""
    if spec.backend == "embedded":
        from .embedded import embedded_model_dir

        return embedded_model_dir()
    if spec.backend != "local":
        raise UserError(
            f"'openai:{spec.model}' is served, not a folder on this machine",
            hint="training needs the weights: use 'embedded' or a model folder",
        )
    assert spec.model is not None, "a folder spec names its folder"  # only `embedded` has no model
    folder = Path(spec.model).expanduser()
    if not folder.is_absolute() and project_root is not None and (project_root / folder).is_dir():
        folder = project_root / folder
    if not (folder / "config.json").is_file():
        raise UserError(
            "model folder does not exist or has no config.json",
            where=folder,
            hint="use 'embedded', or a folder written by save_pretrained (e.g. OUT/final of a training run)",
        )
    return folder


def make_backend(
    spec: ModelSpec,
    config,
    *,
    base_urls: list[str] | None = None,
    concurrency: int | None = None,
    project_root: Path | None = None,
    chat_template: str | None = None,
    max_context: int | None = None,
):
    """A ready (not yet preflighted) backend for `spec`; `config` is the project's TeacherConfig
    (for a student too: the connection settings, key and timeouts of an OpenAI-compatible server).

    `chat_template` (openai only) names a local tokenizer ('embedded' or a folder) whose chat template
    renders prompts for scoring; `max_context` (local only) caps the model's context window.
    """
    if concurrency is not None and concurrency < 1:
        raise UserError(
            f"--concurrency must be at least 1, got {concurrency}",
            hint="requests in flight (openai) or batch size (local); default: teacher.concurrency",
        )
    concurrency = concurrency or config.concurrency
    if spec.backend == "openai":
        from .openai_backend import OpenAIBackend, read_api_key

        assert spec.model is not None, "an openai spec names its model"  # parse_*_spec refuses one without

        urls = base_urls or config.base_url
        backend = OpenAIBackend(
            model=spec.model,
            base_urls=urls or ["https://api.openai.com/v1"],
            api_key=read_api_key(config.api_key_env, config.api_key_file),
            concurrency=concurrency,
            timeout=config.timeout,
            max_retries=config.max_retries,
            max_response_bytes=config.max_response_bytes,
        )
        if chat_template:
            backend.chat_template_source = model_folder(parse_student_spec(chat_template), project_root)
        return backend
    from .local import LocalBackend

    folder = model_folder(spec, project_root)
    name = None
    if spec.backend == "embedded":
        from .embedded import EMBEDDED_NAME

        name = EMBEDDED_NAME
    return LocalBackend(folder, model_name=name, batch_size=concurrency, max_context=max_context)
