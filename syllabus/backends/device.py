"""The one precision choice for every local model: where it runs and in which dtype.

Inference (teacher, examined student) loads its weights in that dtype; training keeps fp32
master weights and runs bf16 mixed precision exactly where inference would run bf16, so
`auto` means the same thing on both sides: bf16 where the CPU/GPU has it, fp32 otherwise.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_device_and_dtype(dtype: str = "auto"):
    """('cuda' | 'mps' | 'cpu', torch dtype); `dtype` may force 'float32', 'bfloat16' or 'float16'."""
    import torch

    device = pick_device()
    if dtype != "auto":
        return device, getattr(torch, dtype)
    if device == "cuda":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and cpu_has_bf16():
        return device, torch.bfloat16
    return device, torch.float32


def training_precision(dtype: str = "auto") -> dict[str, bool]:
    """TrainingArguments' precision flags from the same choice as `pick_device_and_dtype`.

    fp16 training is never chosen (a GPU without bf16 trains in fp32: fp16 needs loss scaling
    that small students do not repay), and anything but CUDA trains on the CPU (as before: the
    Trainer's mps path is not what this project tests).
    """
    import torch

    device, chosen = pick_device_and_dtype(dtype)
    return {"bf16": chosen == torch.bfloat16, "fp16": False, "use_cpu": device != "cuda"}
