"""A shrunk student: a model made from another by keeping K of its layers, same tokenizer.

Minitron (NVIDIA, 2024) and DistilBERT start a small student from a big model's own
layers and let distillation from that model recover what was lost. Here that gives a real
capacity gap on a laptop: the embedded 30-layer model as teacher, a 10-15 layer copy as
student, sharing every token id, so the student can learn the teacher's logits.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..fsutil import replace_dir


def layers_to_keep(total: int, keep: int, chosen: list[int] | None = None) -> list[int]:
    """Which of `total` layers survive: `chosen` as given (checked), else `keep` evenly spaced with the
    first and the last among them."""
    if chosen:
        bad = [i for i in chosen if not 0 <= i < total]
        if bad or len(set(chosen)) != len(chosen):
            raise UserError(
                f"--keep lists layers {chosen}: each must appear once and lie in 0..{total - 1}",
                where="--keep",
                hint=f"the model has {total} layers",
            )
        return sorted(chosen)
    if not 1 <= keep <= total:
        raise UserError(f"--layers {keep}: the model has {total} layers", where="--layers", hint=f"give 1 to {total}")
    if keep == 1:
        return [0]
    return sorted({round(i * (total - 1) / (keep - 1)) for i in range(keep)})


def shrink(student: str, out: Path, layers: int, chosen: list[int] | None = None) -> tuple[Path, list[int]]:
    """Write a copy of `student` ('embedded' or a folder) keeping some of its decoder layers to `out`,
    a plain model folder that train, eval and distill accept. Returns (out, the kept layer indices)."""
    from ..backends.local import load_causal_lm
    from .train import student_dir

    model, tokenizer = load_causal_lm(student_dir(student), for_training=True)
    stack = _decoder_layers(model)
    kept = layers_to_keep(len(stack), layers, chosen)
    import torch

    model.model.layers = torch.nn.ModuleList([stack[i] for i in kept])
    for index, layer in enumerate(model.model.layers):  # the KV cache finds a layer by its index
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = index
    model.config.num_hidden_layers = len(kept)
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = [model.config.layer_types[i] for i in kept]
    out = Path(out)
    staging = out.parent / f".{out.name}.tmp"
    model.save_pretrained(str(staging))
    tokenizer.save_pretrained(str(staging))
    (staging / "shrunk.json").write_text(
        json.dumps({"from": student, "layers": kept, "of": len(stack)}) + "\n", encoding="utf-8"
    )
    replace_dir(staging, out)
    return out, kept


def _decoder_layers(model):
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise UserError(
            f"cannot find the decoder layers of this {type(model).__name__}",
            hint="shrink supports Llama-style models (model.model.layers): SmolLM2, Llama, Qwen, Mistral",
        )
    return list(layers)
