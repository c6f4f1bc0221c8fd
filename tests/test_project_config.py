"""syllabus.yaml: validation errors name the file and line; the scaffold loads with its defaults."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from syllabus.errors import UserError
from syllabus.project import CONFIG_FILE, SCAFFOLD, Project, ProjectConfig, init_project


def project_with(tmp_path: Path, text: str) -> Path:
    (tmp_path / CONFIG_FILE).write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return tmp_path


def load_error(tmp_path: Path, text: str) -> UserError:
    root = project_with(tmp_path, text)
    with pytest.raises(UserError) as info:
        Project.load(root)
    return info.value


def where(error: UserError) -> tuple[str, int]:
    file, line = re.fullmatch(r"(.*):(\d+)", error.where).groups()
    return file, int(line)


def test_scaffold_loads_with_defaults(tmp_path):
    init_project(tmp_path / "p")
    project = Project.load(tmp_path / "p")
    config = project.config
    expected = ProjectConfig()
    # The scaffold spells out the defaults, and one choice for its embedded teacher: a frequency
    # penalty on answers (bench/bench_yield.py), which the code's default leaves off for other teachers.
    answer = expected.generation.stages["answer"]
    expected.generation.stages["answer"] = answer.model_copy(update={"frequency_penalty": 0.5})
    assert config == expected
    assert config.teacher.backend == "embedded" and config.teacher.concurrency == 8
    assert config.generation.concepts == (1, 5) and config.generation.two_session_ratio == 0.3
    assert config.generation.stages["answer"].temperature == 0.3
    assert config.generation.stages["answer"].max_tokens == 256
    assert project.taxonomy_dir == tmp_path / "p" / "taxonomy"
    assert project.prompts_dir.is_dir()
    assert (tmp_path / "p" / CONFIG_FILE).read_text() == (SCAFFOLD / CONFIG_FILE).read_text()


def test_empty_file_loads_with_defaults(tmp_path):
    assert Project.load(project_with(tmp_path, "# nothing set\n")).config == ProjectConfig()


def test_stage_defaults_stay_when_a_stage_sets_only_some_fields(tmp_path):
    config = Project.load(
        project_with(
            tmp_path,
            """
        generation:
          stages:
            answer: {temperature: 0.1}
            question: {max_tokens: 50}
        """,
        )
    ).config
    stages = config.generation.stages
    assert set(stages) == {
        "subjects",
        "syllabus",
        "question",
        "answer",
        "judge",
        "correction",
        "restatement",
        "skill_mix",
        "skill_mix_judge",
    }
    assert (stages["answer"].temperature, stages["answer"].max_tokens) == (0.1, 256)
    assert (stages["question"].temperature, stages["question"].max_tokens) == (0.9, 50)
    assert stages["syllabus"] == ProjectConfig().generation.stages["syllabus"]


def test_base_url_may_be_one_or_many(tmp_path):
    config = Project.load(project_with(tmp_path, "teacher: {backend: openai, base_url: http://a/v1}\n")).config
    assert config.teacher.base_url == ["http://a/v1"]


def test_bad_value_names_file_and_line(tmp_path):
    error = load_error(
        tmp_path,
        """
        schema_version: 1
        # the teacher
        taxonomy: taxonomy
        teacher: {concurrency: 0}
        """,
    )
    assert where(error) == (str(tmp_path / CONFIG_FILE), 4)
    assert "teacher.concurrency" in error.message and "greater than or equal to 1" in error.message
    assert str(error).startswith(f"{tmp_path / CONFIG_FILE}:4: setting 'teacher.concurrency'")


def test_bad_nested_value_on_its_own_line(tmp_path):
    error = load_error(
        tmp_path,
        """
        teacher:
          backend: openai
          timeout: 30
          max_retries: 99
        """,
    )
    assert where(error)[1] == 4
    assert "teacher.max_retries" in error.message


def test_unknown_key_names_its_line(tmp_path):
    error = load_error(
        tmp_path,
        """
        schema_version: 1
        teacher:
          backend: embedded
          concurrancy: 4
        """,
    )
    assert where(error) == (str(tmp_path / CONFIG_FILE), 4)
    assert "teacher.concurrancy" in error.message and "Extra inputs are not permitted" in error.message


def test_unknown_top_level_key(tmp_path):
    error = load_error(tmp_path, "schema_version: 1\n\nquestions: 10\n")
    assert where(error)[1] == 3 and "'questions'" in error.message


def test_bad_backend_literal(tmp_path):
    error = load_error(tmp_path, "teacher:\n  backend: ollama\n")
    assert where(error)[1] == 2 and "teacher.backend" in error.message and "'openai'" in error.message


def test_unknown_stage_name(tmp_path):
    error = load_error(
        tmp_path,
        """
        generation:
          questions: 10
          stages:
            question: {temperature: 0.5}
            answers: {temperature: 0.5}
        """,
    )
    assert where(error)[1] == 3
    assert "generation.stages" in error.message and "unknown stage 'answers'" in error.message


def test_bad_stage_sampling_value_names_its_line(tmp_path):
    error = load_error(
        tmp_path,
        """
        generation:
          stages:
            subjects: {temperature: 1.0}
            answer: {temperature: 3}
        """,
    )
    assert where(error)[1] == 4 and "generation.stages.answer.temperature" in error.message


def test_a_frequency_penalty_outside_openais_range_names_its_line(tmp_path):
    error = load_error(
        tmp_path,
        """
        generation:
          stages:
            answer: {frequency_penalty: 2.5}
        """,
    )
    assert where(error)[1] == 3 and "generation.stages.answer.frequency_penalty" in error.message


@pytest.mark.parametrize("value", ["-0.5", "5", "many"])
def test_a_bad_replacement_share_names_its_line(tmp_path, value):
    error = load_error(tmp_path, f"generation:\n  seed: 1\n  replacements: {value}\n")
    assert where(error)[1] == 3 and "generation.replacements" in error.message


@pytest.mark.parametrize("concepts", ["[3, 1]", "[0, 2]", "[1, 2, 3]", "five"])
def test_bad_concept_ranges_rejected(tmp_path, concepts):
    error = load_error(tmp_path, f"generation:\n  seed: 1\n  concepts: {concepts}\n")
    assert where(error)[1] == 3 and "generation.concepts" in error.message


def test_concept_range_message(tmp_path):
    error = load_error(tmp_path, "generation:\n  concepts: [3, 1]\n")
    assert "1 <= min <= max" in error.message


def test_newer_schema_version_rejected(tmp_path):
    error = load_error(tmp_path, "schema_version: 9\n")
    assert "newer than this syllabus understands" in error.message


def test_not_a_mapping(tmp_path):
    error = load_error(tmp_path, "- just\n- a list\n")
    assert where(error)[1] == 1 and "must be a mapping" in error.message


def test_yaml_syntax_error_names_line(tmp_path):
    error = load_error(tmp_path, "teacher:\n  backend: openai\n  model: [unclosed\n")
    assert str(tmp_path / CONFIG_FILE) in str(error) and "YAML syntax error" in error.message


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"no syllabus.yaml here"):
        Project.load(tmp_path)


def test_find_walks_up_to_the_project(tmp_path, monkeypatch):
    root = project_with(tmp_path, "generation: {seed: 7}\n")
    deep = root / "taxonomy" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    project = Project.find()
    assert project.root == root.resolve() and project.config.generation.seed == 7


def test_init_refuses_to_overwrite_an_edited_project(tmp_path):
    init_project(tmp_path)
    init_project(tmp_path)  # untouched: nothing of the user's is in the way
    (tmp_path / "syllabus.yaml").write_text((tmp_path / "syllabus.yaml").read_text() + "# mine\n")
    with pytest.raises(UserError, match="already exists"):
        init_project(tmp_path)
    init_project(tmp_path, force=True)
    assert "# mine" not in (tmp_path / "syllabus.yaml").read_text()
