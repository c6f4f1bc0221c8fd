"""What runs a model, for the teacher side and the student side alike.

One async interface (`Backend.complete`) over an OpenAI-compatible client and an
in-process transformers model with batched generation; `make_backend` turns a
teacher spec (`embedded`, a model folder, `openai:MODEL`) into one.
"""

from .base import Backend, ChatRequest, Completion, RequestFailed
from .spec import TeacherSpec, make_backend, parse_teacher_spec

__all__ = [
    "Backend",
    "ChatRequest",
    "Completion",
    "RequestFailed",
    "TeacherSpec",
    "make_backend",
    "parse_teacher_spec",
]
