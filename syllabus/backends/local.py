"""An in-process transformers model that answers and scores many requests in one batch.

Requests queue up; a single worker takes whatever is waiting (up to `batch_size` of one
kind: generation with the same sampling settings, or scoring), pads it into one batch and
runs it on a thread so the event loop stays free. On two CPU cores, batch 8 gives ~6x the
tokens/s of batch 1, which is why the teacher and the examined student share this.

Every prompt is cut to the model's context window first (the middle of the last user turn
goes, so the start of a question and its final ask stay), and the result says so: one
9000-word probe used to run the process out of memory and lose the whole examination.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from .base import Capabilities, ChatRequest, Completion, RequestFailed, Score

SCORE = "score"  # the group key of scoring jobs in the queue
ELLIPSIS = " [...] "  # what stands where the middle of an over-long prompt was cut


class LocalBackend:
    kind = "local"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        model_name: str | None = None,
        batch_size: int = 8,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        max_context: int | None = None,
    ):
        self.model_dir = Path(model_dir)
        self.model = model_name or self.model_dir.name
        # What the request cache keys answers by: two folders both called `final` (a trained
        # student, an aligned teacher) are different models, and so is a folder trained again.
        self.cache_identity = model_name or f"{self.model}@{weights_digest(self.model_dir)}"
        self.batch_size = max(1, batch_size)
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self.max_context = max_context  # None: the model's own window
        self._loaded: tuple[Any, Any] | None = None
        self._load_lock = threading.Lock()
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    # Loading -----------------------------------------------------------------
    def load(self):
        """(model, tokenizer), loaded once; usable from plain synchronous code too."""
        with self._load_lock:
            if self._loaded is None:
                self._loaded = load_causal_lm(self.model_dir, self.dtype, self.trust_remote_code)
        return self._loaded

    @property
    def context_tokens(self) -> int:
        """Tokens the model attends over: its trained window, or `max_context` where smaller."""
        model, tokenizer = self.load()
        window = model_context(model, tokenizer)
        return min(window, self.max_context) if self.max_context else window

    async def preflight(self) -> dict[str, Any]:
        await asyncio.to_thread(self.load)
        return {"model": self.model, "backend": "local", "folder": str(self.model_dir)}

    async def capabilities(self) -> Capabilities:
        # Generation returns text only (no per-token logprobs); n > 1 is sample_index in separate
        # requests, not choices of one request.
        context = await asyncio.to_thread(lambda: self.context_tokens)
        return Capabilities(
            chat=True,
            logprobs=False,
            prompt_scoring=True,
            json_mode=False,
            n_gt_1=False,
            trainable=True,
            context_tokens=context,
            notes={
                "json_mode": "no constrained decoding: the reply is parsed as text",
                "logprobs": "replies come back as text; score() gives teacher-forced log-probabilities",
                "n_gt_1": "one reply a request: repeated samples are separate requests",
            },
        )

    # Serving -----------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> Completion:
        return await self._submit(tuple(request.sampling().items()), request)  # a batch shares its sampling

    async def score(self, prompt: list[dict[str, str]], continuations: list[str]) -> list[Score]:
        """Each continuation is its own job, so scores of many calls share batches."""
        messages = tuple((m["role"], m["content"]) for m in prompt)
        return list(await asyncio.gather(*(self._submit(SCORE, (messages, text)) for text in continuations)))

    async def _submit(self, key, job):
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._serve(self._queue))
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((key, job, future))
        return await future

    async def _serve(self, queue: asyncio.Queue) -> None:
        while True:
            first = await queue.get()
            await asyncio.sleep(0)  # let requests issued in the same tick join this batch
            pending = [first]
            while not queue.empty():
                pending.append(queue.get_nowait())
            groups: dict[Any, list] = {}
            for item in pending:
                groups.setdefault(item[0], []).append(item)
            leftovers = []
            for key, items in groups.items():
                batch, rest = items[: self.batch_size], items[self.batch_size :]
                leftovers.extend(rest)
                run: Callable[[list[Any]], Sequence[Completion | Score | RequestFailed]]
                run = self.score_batch if key == SCORE else self.generate_batch
                results: Sequence[Completion | Score | RequestFailed]
                try:
                    results = await asyncio.to_thread(run, [job for _, job, _ in batch])
                except RequestFailed as exc:
                    results = [exc] * len(batch)
                except Exception as exc:  # a broken batch fails its requests, not the worker
                    what = "local scoring error" if key == SCORE else "local generation error"
                    results = [RequestFailed(what, str(exc)[:200])] * len(batch)
                for (_, _, future), result in zip(batch, results):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
            for item in leftovers:  # back of the queue: they form the next batches
                queue.put_nowait(item)

    def generate_batch(self, requests: list[ChatRequest]) -> list[Completion | RequestFailed]:
        """Generate for requests that share sampling settings, in one left-padded batch."""
        import torch

        model, tokenizer = self.load()
        context = self.context_tokens
        first = requests[0]
        new_tokens_max = max(1, min(first.max_tokens, context // 2))
        fitted = [_try(fit_chat, tokenizer, r.message_dicts(), context - new_tokens_max) for r in requests]
        failed = {i: f for i, f in enumerate(fitted) if isinstance(f, RequestFailed)}
        if failed:  # a chat that cannot fit fails alone; the rest of the batch is generated
            rest = [r for i, r in enumerate(requests) if i not in failed]
            done = iter(self.generate_batch(rest) if rest else [])
            return [failed[i] if i in failed else next(done) for i in range(len(requests))]
        input_ids, mask = left_padded([ids for ids, _ in fitted], tokenizer, model.device)
        width = input_ids.shape[1]
        do_sample = first.temperature > 0
        seed_material = "|".join(f"{r.messages}{r.sample_index}" for r in requests)
        torch.manual_seed(int(hashlib.sha256(seed_material.encode()).hexdigest()[:8], 16))
        kwargs: dict[str, Any] = {
            "max_new_tokens": new_tokens_max,
            "do_sample": do_sample,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if do_sample:
            kwargs.update(temperature=first.temperature, top_p=first.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if first.frequency_penalty:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList([FrequencyPenalty(first.frequency_penalty, width)])
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
        new_tokens = output[:, width:]
        completions: list[Completion | RequestFailed] = []
        eos_ids = _eos_ids(model, tokenizer)
        for row, (ids, truncated) in zip(new_tokens, fitted):
            generated = row.tolist()
            stop_at = next((i for i, t in enumerate(generated) if t in eos_ids), None)
            used = generated if stop_at is None else generated[:stop_at]
            completions.append(
                Completion(
                    text=tokenizer.decode(used, skip_special_tokens=True).strip(),
                    finish_reason="length" if stop_at is None else "stop",
                    prompt_tokens=len(ids),
                    completion_tokens=len(used),
                    extra={"truncated": True} if truncated else {},
                )
            )
        return completions

    def score_batch(self, jobs: list[tuple[tuple[tuple[str, str], ...], str]]) -> list[Score | RequestFailed]:
        """Mean-ready log-probabilities of each (chat, continuation), teacher-forced, in fp32.

        Left-padded with explicit positions, so every continuation ends the row and only the
        last tokens' logits are computed (`logits_to_keep`): the full-vocabulary logits of long
        prompts (tokens x 49k x 4 bytes, times the batch) were what ran out of memory.
        """
        import torch

        model, tokenizer = self.load()
        context = self.context_tokens
        sequences, targets, cut, failed = [], [], [], {}
        for index, (messages, continuation) in enumerate(jobs):
            target = tokenizer(continuation, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
            target_cut = len(target) > context // 2  # an over-long reference keeps its start
            target = target[: context // 2]
            fitted = _try(fit_chat, tokenizer, [{"role": r, "content": c} for r, c in messages], context - len(target))
            if isinstance(fitted, RequestFailed):
                failed[index] = fitted
                continue
            sequences.append(fitted[0] + target)
            targets.append(target)
            cut.append(fitted[1] or target_cut)
        if failed:  # a chat that cannot fit fails alone; the rest of the batch is scored
            done = iter(self.score_batch([job for i, job in enumerate(jobs) if i not in failed]) if sequences else [])
            return [failed[i] if i in failed else next(done) for i in range(len(jobs))]
        keep = max(len(t) for t in targets) + 1
        ids, mask = left_padded(sequences, tokenizer, model.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
            logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # position i predicts token i+1
        scores: list[Score | RequestFailed] = []
        for row, target in enumerate(targets):
            wanted = torch.tensor(target, device=model.device)
            picked = logprobs[row, keep - 1 - len(target) :].gather(-1, wanted.unsqueeze(-1)).squeeze(-1)
            scores.append(Score(tuple(float(v) for v in picked), truncated=cut[row]))
        return scores

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, Exception):
                pass
            self._worker, self._queue = None, None
        self._loaded = None  # the weights go with the backend: a loop trains the student next, in this memory


def left_padded(sequences: list[list[int]], tokenizer, device):
    """(input_ids, attention_mask) of token sequences padded on the left to one width, so each
    row ends where its prompt (or continuation) ends."""
    import torch

    width = max(len(s) for s in sequences)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences], device=device)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
    return ids, mask


def model_context(model, tokenizer) -> int:
    """The context window the model was trained for (config), else the tokenizer's, else 2048."""
    for value in (getattr(model.config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)):
        if isinstance(value, int) and 0 < value < 10_000_000:  # tokenizers say 1e30 when they do not know
            return value
    return 2048


def render_prefix(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def fit_chat(tokenizer, messages: list[dict[str, str]], budget: int) -> tuple[list[int], bool]:
    """(token ids of the chat ready for the assistant's reply, truncated?) in at most `budget` tokens.

    The middle of the last user turn is cut, a few times if the re-rendered text lands a token
    or two over; a chat that cannot fit even with that turn emptied fails its request.
    """
    ids = render_prefix(tokenizer, messages)
    if len(ids) <= budget:
        return ids, False
    last = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=len(messages) - 1)
    content = tokenizer(messages[last]["content"], add_special_tokens=False)["input_ids"]
    excess = len(ids) - budget
    for _ in range(8):
        keep = len(content) - excess - len(tokenizer(ELLIPSIS, add_special_tokens=False)["input_ids"]) - 2
        if keep <= 0:
            break
        head, tail = content[: keep - keep // 2], content[len(content) - keep // 2 :]
        text = tokenizer.decode(head) + ELLIPSIS + tokenizer.decode(tail)
        shortened = [*messages[:last], {**messages[last], "content": text}, *messages[last + 1 :]]
        ids = render_prefix(tokenizer, shortened)
        if len(ids) <= budget:
            return ids, True
        excess += len(ids) - budget
    raise RequestFailed("prompt too long", f"the chat does not fit the model's {budget}-token budget even cut")


def _try(function, *args):
    try:
        return function(*args)
    except RequestFailed as exc:
        return exc


def _eos_ids(model, tokenizer) -> set[int]:
    ids = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def weights_digest(folder: Path) -> str:
    """A short digest of a model folder's place and weight files (name, size, mtime): cheap, no reading."""
    folder = Path(folder)
    parts = [str(folder.resolve())]
    for path in sorted(folder.glob("*")):
        if path.suffix in (".safetensors", ".bin", ".gguf", ".pt") and path.is_file():
            stat = path.stat()
            parts.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def load_causal_lm(
    model_dir: Path, dtype: str = "auto", trust_remote_code: bool = False, *, for_training: bool = False
):
    """(model, tokenizer) from a local folder: the one loader of teacher, examined student and training.

    For inference the weights load in the chosen precision on the chosen device, in eval mode,
    with a left-padding tokenizer. For training they load as fp32 master weights (the Trainer
    runs bf16 mixed precision from `training_precision`, and places the model itself).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    from .device import pick_device_and_dtype

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(
            "model folder does not exist or has no config.json",
            where=model_dir,
            hint="give a folder written by save_pretrained (e.g. OUT/final of a training run), or 'embedded'",
        )
    try:
        config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code, local_files_only=True)
        if not any(a.endswith("ForCausalLM") for a in (config.architectures or [])) and config.model_type not in (
            "llama",
            "mistral",
            "qwen2",
            "gpt2",
            "phi3",
            "gemma",
            "gemma2",
        ):
            raise UserError(
                f"not a causal language model ({', '.join(config.architectures or ['unknown'])})", where=model_dir
            )
        device, torch_dtype = pick_device_and_dtype(dtype)
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=trust_remote_code)
        if for_training:
            import torch

            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch.float32, local_files_only=True, trust_remote_code=trust_remote_code
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch_dtype, local_files_only=True, trust_remote_code=trust_remote_code
            ).to(device)
    except UserError:
        raise
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model: {str(exc).splitlines()[0]}", where=model_dir) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if for_training:
        return model, tokenizer
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.chat_template is None:
        raise UserError("the tokenizer has no chat template", where=model_dir, hint="use an instruct/chat model")
    return model, tokenizer


class FrequencyPenalty:
    """OpenAI's frequency_penalty for `generate`: each token's logit lowered by `penalty` for every
    time it already stands in the reply (the prompt does not count), as llama.cpp and vLLM do it."""

    def __init__(self, penalty: float, prompt_width: int):
        self.penalty, self.prompt_width = penalty, prompt_width

    def __call__(self, input_ids, scores):
        import torch

        reply = input_ids[:, self.prompt_width :]
        if reply.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(1, reply, torch.ones_like(reply, dtype=scores.dtype))
        return scores - self.penalty * counts
