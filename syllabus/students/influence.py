"""Local influence of one training example on the student (Montessori-Instruct).

A draft helps this student if one optimizer step on it lowers the student's loss on a
reference set. Montessori-Instruct measures exactly that, and its largest cost is putting
the student back afterwards: their code reloads weights and optimizer state from disk per
draft. Here the student stays in memory: the weights are copied once into a snapshot
(fp32) and copied back after every draft, and the optimizer's state is restored from its
own snapshot, so scoring N drafts leaves the student bitwise equal to before, and each
draft is scored from the same point whatever came before it.

`exact` takes the real step and re-measures the reference loss (two forwards and one
backward over the draft and the reference set). `fast` is its first-order estimate from a
single backward per draft: the change of the reference loss along the optimizer's first
update direction, `-lr * <g_ref, u(g_draft)>`, with `u` the update a fresh AdamW takes
(`g / (|g| + eps)`, its bias-corrected first step). Both use the same optimizer settings,
so their agreement is measurable (`bench/bench_align.py`).

Influence is reported as the change of the mean reference loss (negative helps), plus
each reference item's change, so a caller can judge it against the items' own spread.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IGNORE = -100  # label of a token the loss does not count (the prompt, padding)


@dataclass(frozen=True)
class Example:
    """A chat prompt and the assistant reply the loss is taken on."""

    prompt: tuple[tuple[str, str], ...]  # (role, content) pairs
    completion: str

    @classmethod
    def of(cls, messages: list[dict[str, str]], completion: str) -> Example:
        return cls(tuple((m["role"], m["content"]) for m in messages), completion)

    def messages(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.prompt]


@dataclass(frozen=True)
class Influence:
    change: float  # mean reference loss after the step minus before: negative helps
    per_item: tuple[float, ...]  # each reference item's change (exact mode; empty for fast)
    mode: str  # "exact" | "fast"


class InfluenceScorer:
    """One student in memory, scored against one reference set, restored after every draft."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        learning_rate: float = 2e-5,
        max_length: int = 256,
        batch_size: int = 8,
        seed: int = 0,
    ):
        import torch

        from ..backends.local import load_causal_lm

        torch.manual_seed(seed)
        self.torch = torch
        self.model, self.tokenizer = load_causal_lm(Path(model_dir), for_training=True)  # fp32 master weights
        self.model.eval()  # no dropout: a draft's score must not depend on a random mask
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.learning_rate = learning_rate
        self.eps = 1e-8
        self.max_length = max_length
        self.optimizer = torch.optim.AdamW(self.params, lr=learning_rate, weight_decay=0.0, eps=self.eps)
        self._weights = [p.detach().clone() for p in self.params]  # the snapshot every draft is undone to
        self._optimizer_state = copy.deepcopy(self.optimizer.state_dict())
        self.batch_size = batch_size
        self._reference: list[dict[str, Any]] = []
        self.before: list[float] = []
        self._reference_gradient: list[Any] | None = None

    def use_reference(self, reference: list[Example]) -> None:
        """Score against `reference` from now on (a node's items); its loss is measured once here."""
        if not reference:
            raise ValueError("the reference set is empty")
        size = self.batch_size
        self._reference = [
            self._batch([self._encode(e) for e in reference[i : i + size]]) for i in range(0, len(reference), size)
        ]
        self._reference_gradient = None
        self.before = self._reference_losses()

    # Encoding ------------------------------------------------------------------------------
    def _encode(self, example: Example) -> tuple[list[int], list[int]]:
        """(input ids, labels): the loss counts the completion's tokens only, cut to `max_length`."""
        messages = example.messages()
        prompt_ids = self._ids(messages, add_generation_prompt=True)
        full = self._ids([*messages, {"role": "assistant", "content": example.completion}], add_generation_prompt=False)
        if full[: len(prompt_ids)] != prompt_ids:  # a template that rewrites the prompt: count from the end
            prompt_ids = full[: max(0, len(full) - len(self.tokenizer(example.completion)["input_ids"]) - 1)]
        ids = full[: self.max_length]
        labels = [IGNORE] * min(len(prompt_ids), len(ids)) + ids[len(prompt_ids) :]
        if all(label == IGNORE for label in labels):  # the prompt filled max_length: keep its last token to learn
            labels[-1] = ids[-1]
        return ids, labels

    def _ids(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=add_generation_prompt
        )
        if isinstance(encoded, dict) or hasattr(encoded, "input_ids"):
            encoded = encoded["input_ids"]
        return list(encoded)

    def _batch(self, encoded: list[tuple[list[int], list[int]]]) -> dict[str, Any]:
        torch = self.torch
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, (item_ids, item_labels) in enumerate(encoded):  # right padding: positions stay those of training
            ids[row, : len(item_ids)] = torch.tensor(item_ids)
            labels[row, : len(item_labels)] = torch.tensor(item_labels)
            mask[row, : len(item_ids)] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    # Losses --------------------------------------------------------------------------------
    def _per_item_loss(self, batch: dict[str, Any]):
        """Mean token NLL of each row's completion (a tensor of one value per row)."""
        torch = self.torch
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets = batch["labels"][:, 1:]
        logits = logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE, reduction="none"
        ).view(targets.shape)
        counted = (targets != IGNORE).sum(dim=1).clamp(min=1)
        return nll.sum(dim=1) / counted

    def _reference_losses(self) -> list[float]:
        with self.torch.no_grad():
            return [float(x) for batch in self._reference for x in self._per_item_loss(batch)]

    def _draft_loss(self, draft: Example):
        return self._per_item_loss(self._batch([self._encode(draft)]))[0]

    # Scoring -------------------------------------------------------------------------------
    def exact(self, draft: Example) -> Influence:
        """One real optimizer step on `draft`, the reference loss again, then the student restored."""
        try:
            self.optimizer.zero_grad(set_to_none=True)
            self._draft_loss(draft).backward()
            self.optimizer.step()
            after = self._reference_losses()
        finally:
            self.restore()
        per_item = tuple(a - b for a, b in zip(after, self.before))
        return Influence(sum(per_item) / len(per_item), per_item, "exact")

    def fast(self, draft: Example) -> Influence:
        """The first-order estimate of `exact`: one backward over the draft, none over the reference."""
        torch = self.torch
        reference = self._reference_grad()
        try:
            self.optimizer.zero_grad(set_to_none=True)
            self._draft_loss(draft).backward()
            with torch.no_grad():
                change = 0.0
                for p, g_ref in zip(self.params, reference):
                    if p.grad is None:
                        continue
                    step = p.grad / (p.grad.abs() + self.eps)  # AdamW's bias-corrected first update
                    change -= self.learning_rate * float(torch.sum(g_ref * step))
        finally:
            self.optimizer.zero_grad(set_to_none=True)
        return Influence(change, (), "fast")

    def _reference_grad(self) -> list[Any]:
        """The gradient of the mean reference loss, once (the weights never move between drafts)."""
        if self._reference_gradient is None:
            torch = self.torch
            self.optimizer.zero_grad(set_to_none=True)
            items = sum(int(batch["input_ids"].shape[0]) for batch in self._reference)
            for batch in self._reference:
                (self._per_item_loss(batch).sum() / items).backward()
            self._reference_gradient = [
                p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in self.params
            ]
            self.optimizer.zero_grad(set_to_none=True)
        return self._reference_gradient

    def restore(self) -> None:
        """Weights and optimizer state exactly as at the start (copied, not reloaded)."""
        with self.torch.no_grad():
            for p, saved in zip(self.params, self._weights):
                p.copy_(saved)
        self.optimizer.load_state_dict(copy.deepcopy(self._optimizer_state))
        self.optimizer.zero_grad(set_to_none=True)

    def state_fingerprint(self) -> list[Any]:
        """Every weight and buffer of the student, cloned: for checking it is unchanged."""
        return [t.detach().clone() for t in self.model.state_dict().values()]

    def close(self) -> None:
        for name in ("model", "optimizer", "_weights", "_reference", "_reference_gradient"):
            setattr(self, name, None)
        import gc

        gc.collect()
