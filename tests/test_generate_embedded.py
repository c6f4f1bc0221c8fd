"""End to end on the embedded model: generate, resume from cache, use edits, train on the output."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import run_cli

from syllabus.taxonomy.curriculum import load_subjects
from syllabus.taxonomy.model import BLOOM_LEVELS, STRATEGIES
from syllabus.taxonomy.store import Taxonomy
from syllabus.yamlio import dump, load

pytestmark = pytest.mark.slow

NODE = "mathematics/linear-algebra"
PROVENANCE = (
    "taxonomy_path",
    "subject",
    "sessions",
    "key_concepts",
    "difficulty",
    "teacher",
    "templates",
    "sampling",
    "seed",
    "round",
    "content_hash",
    "question_index",
)


def rows_of(project):
    lines = (project / "runs/default/dataset.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def summary_of(project):
    return json.loads((project / "runs/default/summary.json").read_text())


def test_generation_writes_a_dataset_with_provenance(embedded_run):
    from datasets import load_from_disk

    dataset = load_from_disk(str(embedded_run / "runs/default/dataset"))
    rows = rows_of(embedded_run)
    assert len(dataset) == len(rows) > 0
    for row in rows:
        assert row["prompt"][0] == {"role": "system", "content": "You are a helpful, knowledgeable assistant."}
        assert row["prompt"][-1]["role"] == "user" and row["prompt"][-1]["content"].strip()
        assert row["bloom_level"] in BLOOM_LEVELS and row["strategy"] in STRATEGIES
        assert row["completion"][0]["role"] == "assistant" and row["completion"][0]["content"].strip()
        assert all(key in row for key in PROVENANCE)
        assert row["taxonomy_path"] == NODE
        assert 1 <= len(row["key_concepts"]) <= 5
        assert row["teacher"] == "SmolLM2-135M-Instruct"
    card = (embedded_run / "runs/default/README.md").read_text()
    assert NODE in card and "SmolLM2-135M-Instruct" in card and "| question |" in card
    # Subjects and syllabi were written into the taxonomy as editable YAML.
    node = Taxonomy.load(embedded_run / "taxonomy").find(NODE)
    subjects = load_subjects(node)
    assert subjects and all(s.sessions for s in subjects)
    assert {row["subject"] for row in rows} <= {s.name for s in subjects}


def test_rerun_sends_nothing_and_writes_the_same_rows(embedded_run, tmp_path):
    project = shutil.copytree(embedded_run, tmp_path / "again")
    before = rows_of(project)
    result = run_cli("generate", "--project", str(project), "--nodes", NODE, "--questions", "4")
    assert result.returncode == 0, result.stderr
    stages = summary_of(project)["stages"]
    assert sum(stage["answered"] for stage in stages.values()) == 0
    assert rows_of(project) == before


def test_edited_syllabus_is_used_as_written(embedded_run, tmp_path):
    project = shutil.copytree(embedded_run, tmp_path / "edited")
    node = Taxonomy.load(project / "taxonomy").find(NODE)
    for subject in load_subjects(node):
        doc = load(subject.file)
        doc["sessions"] = [{"title": "Zebra matrices", "concepts": ["the zebra theorem"]}]
        dump(doc, subject.file)
    result = run_cli("generate", "--project", str(project), "--nodes", NODE, "--questions", "2")
    assert result.returncode == 0, result.stderr
    summary = summary_of(project)
    assert summary["stages"]["syllabus"]["requested"] == 0  # nothing regenerated over the edit
    assert summary["stages"]["subjects"]["requested"] == 0
    for row in rows_of(project):
        assert row["key_concepts"] == ["the zebra theorem"]
        assert row["sessions"] == ["Zebra matrices"]


def test_editing_one_template_reasks_only_its_requests(embedded_run, tmp_path):
    project = shutil.copytree(embedded_run, tmp_path / "template")
    from syllabus.prompts import BUILTIN_DIR

    override = (BUILTIN_DIR / "answer.j2").read_text().replace("patient, accurate", "brief, accurate")
    (project / "prompts").mkdir(exist_ok=True)
    (project / "prompts/answer.j2").write_text(override)
    result = run_cli("generate", "--project", str(project), "--nodes", NODE, "--questions", "4")
    assert result.returncode == 0, result.stderr
    stages = summary_of(project)["stages"]
    assert stages["question"]["answered"] == 0 and stages["question"]["from_cache"] == stages["question"]["requested"]
    assert stages["answer"]["from_cache"] == 0 and stages["answer"]["answered"] == stages["answer"]["requested"] > 0
    versions = {row["templates"]["answer"] for row in rows_of(project)}
    assert len(versions) == 1 and versions != {row["templates"]["answer"] for row in rows_of(embedded_run)}


def test_sft_trains_on_the_generated_dataset_unchanged(embedded_run, embedded_dir, tmp_path):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    dataset = load_from_disk(str(embedded_run / "runs/default/dataset"))
    model = AutoModelForCausalLM.from_pretrained(embedded_dir)
    tokenizer = AutoTokenizer.from_pretrained(embedded_dir)
    config = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=2,
        per_device_train_batch_size=2,
        max_length=96,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
    )
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer)
    output = trainer.train()
    assert output.global_step == 2
    assert output.training_loss == output.training_loss and output.training_loss > 0  # finite, not NaN


def test_broken_subject_file_is_named_by_validate_and_generate(embedded_run, tmp_path):
    project = shutil.copytree(embedded_run, tmp_path / "broken")
    node = Taxonomy.load(project / "taxonomy").find(NODE)
    subject = load_subjects(node)[0]
    subject.file.write_text("name: Broken\nsessions:\n  - concepts: [a, b]\n")
    for args in (["taxonomy", "validate"], ["generate", "--nodes", NODE, "--questions", "1"]):
        result = run_cli(*args, "--project", str(project))
        assert result.returncode == 2, result.stdout + result.stderr
        output = result.stdout + result.stderr
        assert subject.file.name in output and "session 1 needs a title" in output
        assert "Traceback" not in output


def test_easy_to_hard_order_sorts_rows_by_bloom_level(embedded_run, tmp_path):
    project = shutil.copytree(embedded_run, tmp_path / "ordered")
    result = run_cli(
        "generate", "--project", str(project), "--nodes", NODE, "--questions", "4", "--order", "easy_to_hard"
    )
    assert result.returncode == 0, result.stderr
    ranks = [BLOOM_LEVELS.index(row["bloom_level"]) for row in rows_of(project)]
    assert ranks == sorted(ranks) and len(ranks) >= 2
    assert summary_of(project)["stages"]["answer"]["answered"] == 0  # ordering re-asks nothing
