"""Backends that score: teacher-forced log-probabilities locally and through a real llama.cpp server.

The server serves the Q4_1 GGUF; the local backend runs the same weights dequantised to fp32
(backends/embedded.py), so the two agree only up to quantisation. Measured on PROBES below: per node
the mean reference log-probabilities differ by 0.03-0.12 nats (per probe by up to 0.20, per token by
up to ~0.4 on a reply's first token), and the nodes come out in the same order. NODE_TOLERANCE is
about twice the largest node gap seen. Free-form answers may differ (greedy decoding of two
precisions), so only scores and multiple-choice picks are compared.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from conftest import run_cli

from syllabus.backends.local import LocalBackend
from syllabus.backends.openai_backend import OpenAIBackend
from syllabus.students.examine import examine, summarise
from syllabus.students.probes import Probe

pytestmark = pytest.mark.slow
NODE_TOLERANCE = 0.25  # nats, per-node mean reference log-probability, fp32 local vs Q4_1 served

# Four nodes whose references the student finds plausible to very different degrees, so the
# ranking check means something: fluent answers, numbers, word salad, and multiple choice.
PROBES = [
    Probe("What is the capital of France?", "The capital of France is Paris.", "geography"),
    Probe("What colour is the sky on a clear day?", "The sky is blue on a clear day.", "geography"),
    Probe("Which ocean lies between Europe and America?", "The Atlantic Ocean lies between them.", "geography"),
    Probe("What is 7 times 6?", "42", "arithmetic"),
    Probe("What is 10 plus 5?", "15", "arithmetic"),
    Probe("What is half of 30?", "15", "arithmetic"),
    Probe("Describe a matrix.", "Purple elbow quantum spoon marmalade seventeen backwards.", "nonsense"),
    Probe("What is a vector?", "Kettle banana overshoe lunar spaghetti defenestration.", "nonsense"),
    Probe("Which is a fruit?", "apple", "choice", ["apple", "hammer", "cloud"], 0),
    Probe("Which animal barks?", "dog", "choice", ["cat", "dog", "fish"], 1),
]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def examined(backend, probes=PROBES, **options):
    try:
        await backend.preflight()
        return await examine(backend, probes, max_tokens=8, **options)
    finally:
        await backend.aclose()


def served(server, embedded_dir) -> OpenAIBackend:
    backend = OpenAIBackend(model="smollm2", base_urls=[server.base_url], api_key=None, concurrency=2)
    backend.chat_template_source = embedded_dir
    return backend


def test_batched_scores_equal_one_unpadded_forward_pass_each(embedded_dir):
    """Batched, left-padded scoring of prompts of different lengths gives each one's own values."""
    import torch

    backend = LocalBackend(embedded_dir, batch_size=4, dtype="float32")
    model, tokenizer = backend.load()
    jobs = [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("Explain, in one long sentence with many words, what a vector space is.", "A set with addition."),
        ("Hi", "Hello! How can I help you today?"),
    ]

    async def batched():
        try:
            return await asyncio.gather(*(backend.score(user(q), [c]) for q, c in jobs))
        finally:
            await backend.aclose()

    scores = [s for (s,) in asyncio.run(batched())]
    assert len({len(tokenizer(q)["input_ids"]) for q, _ in jobs}) == 3  # so the batch really was padded
    for (question, continuation), score in zip(jobs, scores):
        text = tokenizer.apply_chat_template(user(question), tokenize=False, add_generation_prompt=True)
        prefix = tokenizer(text, add_special_tokens=False)["input_ids"]
        target = tokenizer(continuation, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prefix + target])).logits.float()
        alone = torch.log_softmax(logits[0, len(prefix) - 1 : -1], -1).gather(-1, torch.tensor(target)[:, None])
        assert len(score.logprobs) == len(target) and not score.truncated
        assert score.logprobs == pytest.approx(alone.squeeze(-1).tolist(), abs=1e-4)


@pytest.mark.server
def test_examination_agrees_locally_and_through_the_llama_cpp_server(embedded_dir, llama_server):
    local = summarise(asyncio.run(examined(LocalBackend(embedded_dir, dtype="float32"))))
    remote = summarise(asyncio.run(examined(served(llama_server, embedded_dir))))
    assert local["nodes"].keys() == remote["nodes"].keys() == {"geography", "arithmetic", "nonsense", "choice"}
    gaps = {
        node: abs(local["nodes"][node]["mean_logprob"] - remote["nodes"][node]["mean_logprob"])
        for node in local["nodes"]
    }
    assert max(gaps.values()) <= NODE_TOLERANCE, gaps
    ranking = sorted(local["nodes"], key=lambda n: local["nodes"][n]["mean_logprob"])
    assert ranking == sorted(remote["nodes"], key=lambda n: remote["nodes"][n]["mean_logprob"])
    assert local["nodes"]["nonsense"]["mean_logprob"] < local["nodes"]["geography"]["mean_logprob"] - 2
    # Multiple choice is decided by the scores: the same picks on both backends.
    assert local["nodes"]["choice"]["accuracy"] == remote["nodes"]["choice"]["accuracy"]


@pytest.mark.server
def test_a_served_student_is_examined_from_the_command_line(llama_server, tmp_path):
    probes = tmp_path / "probes.jsonl"
    probes.write_text(
        "".join(json.dumps({"question": p.question, "answer": p.answer, "node": p.node}) + "\n" for p in PROBES[:4])
    )
    args = [
        "eval",
        "--student",
        "openai:smollm2",
        "--base-url",
        llama_server.base_url,
        "--probes",
        str(probes),
        "--max-tokens",
        "8",
    ]
    refused = run_cli(*args, "--out", str(tmp_path / "refused"), cwd=tmp_path)
    assert refused.returncode == 2 and "--chat-template" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "refused" / "results.json").exists()
    result = run_cli(*args, "--chat-template", "embedded", "--out", str(tmp_path / "exam"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "exam" / "results.json").read_text())
    assert summary["student"] == "openai:smollm2" and summary["overall"]["probes"] == 4
    assert set(summary["nodes"]) == {"geography", "arithmetic"} and summary["overall"]["mean_logprob"] < 0


@pytest.mark.server
def test_a_server_without_prompt_logprobs_says_it_cannot_score(llama_server_last_logits, embedded_dir, tmp_path):
    backend = served(llama_server_last_logits, embedded_dir)

    async def check():
        try:
            return await backend.capabilities()
        finally:
            await backend.aclose()

    capabilities = asyncio.run(check())
    assert capabilities.chat and not capabilities.prompt_scoring and not capabilities.trainable
    assert "--logits_all True" in capabilities.notes["prompt_scoring"]
    with pytest.raises(Exception, match="cannot score prompts"):
        asyncio.run(examined(served(llama_server_last_logits, embedded_dir), PROBES[:1]))
    result = run_cli(
        "teacher", "check", "--teacher", "openai:smollm2", "--base-url", llama_server_last_logits.base_url, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "prompt_scoring" in line)
    assert "no" in row and "logits_all" in result.stdout


def test_teacher_check_reports_the_local_backends_capabilities(tmp_path):
    result = run_cli("teacher", "check", "--teacher", "embedded", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") >= 3
    }
    assert rows["prompt_scoring"] == "yes" and rows["trainable"] == "yes" and rows["chat"] == "yes"
    assert rows["context_tokens"] == "8192"


def test_a_9000_word_probe_is_truncated_and_counted(embedded_dir, tmp_path):
    """One probe longer than the context no longer ends the examination: it is cut and counted.

    --max-context keeps the test to seconds; the cut is the same as at the model's own 8192 tokens.
    """
    words = [
        "the",
        "matrix",
        "of",
        "a",
        "linear",
        "map",
        "changes",
        "with",
        "the",
        "basis",
        "chosen",
        "for",
        "its",
        "domain",
        "and",
        "codomain",
        "vector",
        "space",
    ]
    question = " ".join(words[i % len(words)] for i in range(9000)) + " What is the rank of the 3 by 3 identity?"
    probes = tmp_path / "probes.jsonl"
    probes.write_text(
        json.dumps({"question": question, "answer": "3", "node": "mathematics/linear-algebra"})
        + "\n"
        + json.dumps({"question": "What is 2 + 2?", "answer": "4", "node": "mathematics/arithmetic"})
        + "\n"
    )
    result = run_cli(
        "eval",
        "--probes",
        str(probes),
        "--out",
        str(tmp_path / "exam"),
        "--max-tokens",
        "8",
        "--max-context",
        "1024",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "exam" / "results.json").read_text())
    assert summary["overall"]["probes"] == 2 and summary["overall"]["truncated"] == 1
    assert summary["nodes"]["mathematics/linear-algebra"]["truncated"] == 1
    assert summary["nodes"]["mathematics/arithmetic"]["truncated"] == 0
    answers = [json.loads(line) for line in (tmp_path / "exam" / "answers.jsonl").read_text().splitlines()]
    assert [a["truncated"] for a in answers] == [True, False]
    assert "1 probe(s) truncated" in result.stdout
