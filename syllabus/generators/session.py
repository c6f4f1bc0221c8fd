"""One teacher session: the backend, the request cache and the stage runner, opened and closed together.

Every command that asks the teacher (generate, taxonomy expand, align, the loop's
corrections) needs the same stack: a backend, its request cache (the resume mechanism),
the cached teacher in front of it, the one stage runner over that, a preflight before any
work, and everything closed again on every path, a failure included. Assembled here once,
so a fix to that order reaches every command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from .cache import RequestCache
from .stages import StageRunner
from .teacher import CachedTeacher


@asynccontextmanager
async def opened(backend: Any) -> AsyncIterator[Any]:
    """`async with opened(backend):` a backend preflighted, and closed however the block ends."""
    try:
        await backend.preflight()
        yield backend
    finally:
        await backend.aclose()


@asynccontextmanager
async def teacher_session(
    backend: Any, cache_file: Path, templates: Any, progress: Any = None
) -> AsyncIterator[StageRunner]:
    """`async with teacher_session(backend, cache, templates) as runner:` a preflighted runner whose
    backend and cache are closed however the block ends (the cache after the backend, so no answer
    in flight is lost)."""
    cache = RequestCache(cache_file)
    try:
        async with opened(backend):
            yield StageRunner(CachedTeacher(backend, cache), templates, progress)
    finally:
        cache.close()


def teacher_backend(project: Any, spec: Any = None, *, base_urls: list[str] | None = None) -> Any:
    """The project's teacher backend: `spec` a parsed ModelSpec, a spec string, or None (syllabus.yaml's)."""
    from ..backends.spec import ModelSpec, make_backend, parse_teacher_spec

    config = project.config.teacher
    parsed = spec if isinstance(spec, ModelSpec) else parse_teacher_spec(spec, config)
    return make_backend(parsed, config, base_urls=base_urls, project_root=project.root)


def student_backend(project: Any, spec: str) -> Any:
    """A student as a backend (to answer, sample and score): `embedded`, a folder, or `openai:MODEL`
    (served with the connection settings, key and batch size of `teacher:`)."""
    from ..backends.spec import make_backend, parse_student_spec

    return make_backend(parse_student_spec(spec), project.config.teacher, project_root=project.root)
