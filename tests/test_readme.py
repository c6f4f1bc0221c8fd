"""The README's Python examples run as written, against a real project and a real teacher.

Each ```python block of README.md is executed in a fresh example project named as the
README names it (`my-project`, in a temporary current folder), whose teacher is the real
llama.cpp server; only the question count is made tiny. A renamed attribute or function
in the example fails here, as it would for a reader. docs/configuration.md (which the
scaffold's syllabus.yaml points to) must name every key project.py accepts.
"""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from conftest import ROOT, tune_project

from syllabus.project import init_project
from syllabus.yamlio import dump, load

PROJECT = "my-project"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), re.MULTILINE | re.DOTALL)


def test_readme_has_python_examples():
    blocks = python_blocks()
    assert blocks, "README.md has no ```python block"
    assert all(f'"{PROJECT}"' in block for block in blocks), f"the examples name the project '{PROJECT}'"


@pytest.mark.server
@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_readme_python_example_runs(index, llama_server, tmp_path, monkeypatch):
    project = tmp_path / PROJECT
    init_project(project)
    tune_project(project, questions=2)
    doc = load(project / "syllabus.yaml")
    doc["teacher"].update(backend="openai", model="smollm2", base_url=llama_server.base_url)
    dump(doc, project / "syllabus.yaml")
    monkeypatch.chdir(tmp_path)

    code = re.sub(r"\bquestions=\d+", "questions=2", python_blocks()[index])
    printed = io.StringIO()
    namespace: dict = {"__name__": "readme"}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"README.md python block {index + 1}", "exec"), namespace)

    assert printed.getvalue().strip(), "the example printed nothing"
    outcome = namespace.get("outcome")
    if outcome is not None:  # the generation example: it made the run it describes
        assert outcome.kept > 0 and (outcome.run_dir / "summary.json").is_file()
        assert f"{outcome.kept} rows kept" in printed.getvalue()
        assert namespace["dataset"] == outcome.run_dir / "dataset"


def test_configuration_doc_names_every_setting():
    """docs/configuration.md, which scaffold/syllabus.yaml points to, names every key project.py accepts."""
    from syllabus.project import ProjectConfig

    doc = (ROOT / "docs/configuration.md").read_text()
    assert "docs/configuration.md" in (ROOT / "syllabus/scaffold/syllabus.yaml").read_text()

    def keys(model) -> list[str]:
        found = []
        for name, field in model.model_fields.items():
            found.append(name)
            sub = field.annotation
            if isinstance(sub, type) and hasattr(sub, "model_fields"):
                found += keys(sub)
        return found

    named = {word for span in re.findall(r"`([^`]+)`", doc) for word in re.findall(r"\w+", span)}
    missing = [key for key in keys(ProjectConfig) if key not in named]
    assert missing == [], f"docs/configuration.md does not name: {missing}"
