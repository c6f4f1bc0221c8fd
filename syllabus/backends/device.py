"""Pick the device and dtype a local model runs in: bf16 where the hardware has it."""

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


def pick_device_and_dtype(dtype: str = "auto"):
    """('cuda' | 'mps' | 'cpu', torch dtype); `dtype` may force 'float32', 'bfloat16' or 'float16'."""
    import torch

    if torch.cuda.is_available():
        device = "cuda"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = "cpu"
    if dtype != "auto":
        return device, getattr(torch, dtype)
    if device == "cuda":
        return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and cpu_has_bf16():
        return device, torch.bfloat16
    return device, torch.float32
