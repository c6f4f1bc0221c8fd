"""One corpus of bad input (GitHub issue 6, item 3), each case through the real CLI.

Every case is one test id and asserts exit status 2, a message naming the file and line (or
the node, or the option), and no `Traceback`. Most run the CLI's entry point
(`syllabus.cli.main`) in this process, where an escaping exception is caught and reported as
the traceback a user would see; the cases that once crashed, hung or could eat memory run
`python -m syllabus` in a subprocess with a timeout. Every case but one (marked slow) fails
before a model is loaded, so the corpus runs in about half a minute.

The behaviour chosen where the issue left it open:

- a node file over 1 MiB (a 5 MB description, 100k seeds) is refused with the limit named,
  at once, instead of parsing for a minute and putting megabytes into every prompt;
- Arabic and Hebrew names are accepted: the name is kept as written and the folder is its
  slug (accents, and so the hamza, folded); `taxonomy show` finds the node by that slug.
  Bidirectional override characters in a name are refused;
- `.hidden` and `/abs` are names, not paths: the folder is the slug (`hidden`, `abs`), never
  a dot folder (which the tree reader skips) and never outside the taxonomy;
- an unknown field in node.yaml is a warning (exit 0, file:line), an unknown setting in
  syllabus.yaml an error (exit 2, file:line): a node file is hand-written and often carries
  notes, the settings file is read by pydantic with extra keys forbidden.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import run_cli

from syllabus.project import init_project

ROOT = Path(__file__).resolve().parents[1]
ETHICS = "humanities/ethics"


@dataclass
class Expect:
    args: list  # the command line after `syllabus`
    says: list  # fragments the output must contain (whitespace-insensitive: rich wraps lines)
    check: Callable[[], None] | None = None  # anything else to assert afterwards
    code: int = 2


@dataclass
class Case:
    make: Callable[[Path], Expect]
    marks: list = field(default_factory=list)
    isolated: bool = False  # run in a subprocess: cases that once crashed, hung or could eat memory


CASES: dict[str, Case] = {}


def case(name: str, *marks, isolated: bool = False):
    def register(make):
        assert name not in CASES, name
        CASES[name] = Case(make, list(marks), isolated)
        return make

    return register


@dataclass
class Ran:
    returncode: int
    output: str


def cli(*args, cwd: Path, timeout: float = 60) -> Ran:
    """`python -m syllabus ARGS` in a subprocess, as a user runs it."""
    # PYTHONPATH: the subprocess imports this checkout's syllabus, not an installed copy.
    result = run_cli(*map(str, args), cwd=cwd, env={"PYTHONPATH": str(ROOT)}, timeout=timeout)
    return Ran(result.returncode, result.stdout + result.stderr)


@pytest.fixture
def cli_here(capsys, monkeypatch):
    """The same entry point (`syllabus.cli.main`) in this process: milliseconds instead of a
    second per case. An exception escaping it is what a user would see as a traceback."""
    from syllabus.cli import main

    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_DATASETS_DISABLE_PROGRESS_BARS"):
        monkeypatch.setenv(variable, "1")  # what main() sets, undone after the test
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")

    def run(*args, cwd: Path) -> Ran:
        monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception:
            captured = capsys.readouterr()
            return Ran(1, f"Traceback (in process)\n{traceback.format_exc()}{captured.out}{captured.err}")
        captured = capsys.readouterr()
        return Ran(code, captured.out + captured.err)

    return run


def flat(text) -> str:
    """Text without whitespace: rich wraps lines (and folds long paths) at the console width."""
    return "".join(str(text).split())


def project(tmp: Path) -> Path:
    return init_project(tmp / "proj")


def node_file(proj: Path, path: str = ETHICS) -> Path:
    return proj / "taxonomy" / path / "node.yaml"


def write_node(tmp: Path, text: str, path: str = ETHICS) -> tuple[Path, Path]:
    proj = project(tmp)
    file = node_file(proj, path)
    file.write_text(text, encoding="utf-8")
    return proj, file


def write_config(tmp: Path, text: str) -> tuple[Path, Path]:
    proj = project(tmp)
    file = proj / "syllabus.yaml"
    file.write_text(text, encoding="utf-8")
    return proj, file


def binary(size: int = 3000) -> bytes:
    """Bytes that are not UTF-8 (a 0xff start byte, NULs), as a file saved from a binary tool."""
    return bytes([0xFF, 0xFE, 0x00, 0x81]) + bytes(range(256)) * (size // 256)


def rows_file(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


ROW = {
    "prompt": [{"role": "user", "content": "What is 2 + 2?"}],
    "completion": [{"role": "assistant", "content": "4"}],
    "taxonomy_path": "mathematics/arithmetic",
}
PROBE = {"question": "What is 2 + 2?", "answer": "4", "node": "mathematics/arithmetic"}


# --- malformed YAML: file:line ---------------------------------------------------------
BAD_INDENT = "kind: discipline\nname: Ethics\ndescription: Moral philosophy\n  level: undergraduate\n"


@case("node-yaml-malformed-validate")
def _(tmp):
    proj, file = write_node(tmp, BAD_INDENT)
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:4", "YAML syntax error"])


@case("node-yaml-malformed-generate")
def _(tmp):
    proj, file = write_node(tmp, BAD_INDENT)
    return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:4", "YAML syntax error"])


@case("node-yaml-unterminated-quote")
def _(tmp):
    proj, file = write_node(tmp, 'kind: discipline\nname: "Ethics\ndescription: d\n')
    return Expect(["taxonomy", "show", "--project", proj], [f"{file}:", "YAML syntax error"])


@case("syllabus-yaml-malformed")
def _(tmp):
    proj, file = write_config(tmp, "generation:\n  questions: 3\n   seed: 1\n")
    return Expect(["taxonomy", "show", "--project", proj], [f"{file}:3", "YAML syntax error"])


@case("syllabus-yaml-tab-indent")
def _(tmp):
    proj, file = write_config(tmp, "generation:\n\tquestions: 3\n")
    return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:2", "YAML syntax error"])


@case("mix-recipe-malformed")
def _(tmp):
    recipe = tmp / "recipe.yaml"
    recipe.write_text("sources: [a.jsonl\nnodes:\n", encoding="utf-8")
    return Expect(["mix", recipe, "--dry-run"], [f"{recipe}:2", "YAML syntax error"])


# --- wrong types and unknown keys ------------------------------------------------------
NODE_TYPES = {
    "weight-lots": ('weight: "lots"', "weight must be a number >= 0, got 'lots'"),
    "weight-infinite": ("weight: .inf", "weight must be a number >= 0"),
    "seeds-5": ("seeds: 5", "seeds must be a list"),
    "seed-not-mapping": ("seeds:\n  - just a question", "seed 1 must be a mapping"),
    "level-5": ("level: 5", "level must be text"),
    "bloom-unknown": ("bloom: {memorise: 1}", "unknown bloom entry 'memorise'"),
    "bloom-nested-list": ("bloom: [[apply]]", "bloom must be a list of names or a mapping"),
    "strategies-negative": ("strategies: {direct: -1}", "strategies weight of 'direct' must be a number >= 0"),
    "schema-version-text": ("schema_version: one", "schema_version must be a whole number"),
}
for _key, (_line, _message) in NODE_TYPES.items():

    @case(f"node-type-{_key}")
    def _(tmp, line=_line, message=_message):
        proj, file = write_node(tmp, f"kind: discipline\nname: Ethics\ndescription: Moral philosophy\n{line}\n")
        return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:4", message])


@case("node-type-name-number")
def _(tmp):
    proj, file = write_node(tmp, "kind: discipline\nname: 1984\ndescription: d\n")
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:2", "name must be text, got 1984"])


@case("node-type-kind-course")
def _(tmp):
    proj, file = write_node(tmp, "kind: course\nname: Ethics\ndescription: d\n")
    return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:1", "unknown kind 'course'"])


@case("node-type-description-list")
def _(tmp):
    proj, file = write_node(tmp, "kind: discipline\nname: Ethics\ndescription: [a, b]\n")
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:3", "non-text field 'description'"])


@case("node-yaml-a-list")
def _(tmp):
    proj, file = write_node(tmp, "- kind: discipline\n- name: Ethics\n")
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:1", "must be a mapping of fields"])


@case("node-yaml-empty")
def _(tmp):
    proj, file = write_node(tmp, "")
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:1", "must be a mapping of fields"])


@case("node-yaml-duplicate-key")
def _(tmp):
    proj, file = write_node(tmp, "kind: discipline\nname: Ethics\nname: Morals\ndescription: d\n")
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:3", 'duplicate key "name"'])


@case("node-yaml-binary", isolated=True)
def _(tmp):
    proj = project(tmp)
    file = node_file(proj)
    file.write_bytes(binary())
    return Expect(["taxonomy", "show", "--project", proj], [str(file), "not UTF-8 text"])


@case("node-yaml-alias-bomb", isolated=True)
def _(tmp):
    """A billion laughs: ten levels of ten aliases. Refused at the first alias, never expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 10)]
    lines += ["kind: *a9", "name: *a9", "description: d", "level: *a9", "weight: *a9", "strategies: *a9"]
    proj, file = write_node(tmp, "\n".join(lines) + "\n")
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:2", "aliases are not accepted"])


@case("node-yaml-list-as-key", isolated=True)
def _(tmp):
    proj, file = write_node(tmp, "kind: discipline\nname: Ethics\ndescription: d\n? [[a, b]]\n: 1\n")
    return Expect(["taxonomy", "validate", "--project", proj], [str(file), "YAML value that cannot be read"])


@case("node-yaml-5000-digit-weight", isolated=True)
def _(tmp):
    proj, file = write_node(tmp, "kind: discipline\nname: Ethics\ndescription: d\nweight: 1" + "0" * 5000 + "\n")
    return Expect(["taxonomy", "validate", "--project", proj], [str(file), "YAML value that cannot be read"])


@case("node-symlink-loop", isolated=True)
def _(tmp):
    proj = project(tmp)
    link = proj / "taxonomy" / "natural-sciences" / "physics" / "loop"
    link.symlink_to(".", target_is_directory=True)
    return Expect(["taxonomy", "validate", "--project", proj], [str(link), "symlink loop"])


CONFIG_TYPES = {
    "questions-many": ("generation:\n  questions: many\n", 2, "generation.questions"),
    "concepts-5": ("generation:\n  concepts: 5\n", 2, "generation.concepts"),
    "concepts-reversed": ("generation:\n  concepts: [5, 1]\n", 2, "concepts must be [min, max]"),
    "temperature-hot": (
        "generation:\n  stages:\n    answer:\n      temperature: hot\n",
        4,
        "generation.stages.answer.temperature",
    ),
    "unknown-stage": ("generation:\n  stages:\n    quiz: {max_tokens: 5}\n", 2, "unknown stage 'quiz'"),
    "concurrency-0": ("teacher:\n  concurrency: 0\n", 2, "teacher.concurrency"),
    "unknown-top-key": ("schema_version: 1\ncolour: blue\n", 2, "'colour': Extra inputs are not permitted"),
    "unknown-nested-key": (
        "generation:\n  filters:\n    minhash:\n      colour: blue\n",
        4,
        "generation.filters.minhash.colour",
    ),
    "threshold-out-of-range": (
        "generation:\n  filters:\n    minhash:\n      threshold: 1.5\n",
        4,
        "generation.filters.minhash.threshold",
    ),
    "bloom-unknown": ("generation:\n  bloom: {memorise: 1}\n", 2, "unknown bloom entry 'memorise'"),
    "schema-too-new": ("schema_version: 99\n", 1, "newer than this syllabus understands"),
}
for _key, (_text, _line, _message) in CONFIG_TYPES.items():

    @case(f"syllabus-yaml-{_key}")
    def _(tmp, text=_text, line=_line, message=_message):
        proj, file = write_config(tmp, text)
        return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:{line}", message])


@case("syllabus-yaml-a-list")
def _(tmp):
    proj, file = write_config(tmp, "- generation\n")
    return Expect(["taxonomy", "show", "--project", proj], [f"{file}:1", "must be a mapping of settings"])


@case("syllabus-yaml-binary", isolated=True)
def _(tmp):
    proj = project(tmp)
    (proj / "syllabus.yaml").write_bytes(binary())
    return Expect(["taxonomy", "show", "--project", proj], [proj / "syllabus.yaml", "not UTF-8 text"])


@case("mix-recipe-count-lots")
def _(tmp):
    rows_file(tmp / "a.jsonl", [ROW])
    recipe = tmp / "recipe.yaml"
    recipe.write_text("sources: [a.jsonl]\nnodes:\n  - match: '*'\n    count: lots\n", encoding="utf-8")
    return Expect(["mix", recipe, "--dry-run"], [f"{recipe}:4", "nodes[0].count"])


@case("mix-recipe-unknown-key")
def _(tmp):
    rows_file(tmp / "a.jsonl", [ROW])
    recipe = tmp / "recipe.yaml"
    recipe.write_text("sources: [a.jsonl]\nnodes:\n  - match: '*'\n    count: 1\n    colour: red\n", encoding="utf-8")
    return Expect(["mix", recipe, "--dry-run"], [f"{recipe}:5", "nodes[0].colour"])


# --- wrong option values: the option is named --------------------------------------------
@case("option-set-weight-lots")
def _(tmp):
    proj = project(tmp)
    return Expect(
        ["taxonomy", "set", "mathematics/probability", "weight", "lots", "--project", proj],
        ["mathematics/probability", "weight must be a number, got 'lots'"],
    )


@case("option-generate-concurrency-negative", isolated=True)
def _(tmp):
    proj = project(tmp)
    return Expect(
        [
            "generate",
            "--concurrency",
            "-1",
            "--teacher",
            "openai:m",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--project",
            proj,
        ],
        ["--concurrency must be at least 1, got -1"],
    )


@case("option-generate-order")
def _(tmp):
    proj = project(tmp)
    return Expect(["generate", "--dry-run", "--order", "hardest_first", "--project", proj], ["--order 'hardest_first'"])


@case("option-generate-questions-negative")
def _(tmp):
    proj = project(tmp)
    return Expect(["generate", "--dry-run", "--questions", "-5", "--project", proj], ["--questions must be >= 0"])


@case("option-generate-nodes-no-match")
def _(tmp):
    proj = project(tmp)
    return Expect(
        ["generate", "--dry-run", "--nodes", "astrology/*", "--project", proj],
        ["--nodes pattern 'astrology/*' matches no node"],
    )


@case("option-teacher-unknown")
def _(tmp):
    proj = project(tmp)
    return Expect(["generate", "--dry-run", "--teacher", "gpt4", "--project", proj], ["unknown teacher 'gpt4'"])


@case("option-eval-batch-size-0")
def _(tmp):
    probes = rows_file(tmp / "probes.jsonl", [PROBE])
    return Expect(["eval", "--probes", probes, "--batch-size", "0"], ["--batch-size"])


@case("option-train-max-length-3")
def _(tmp):
    data = rows_file(tmp / "train.jsonl", [ROW])
    return Expect(["train", "sft", data, "--max-length", "3", "--out", tmp / "out"], ["--max-length"])


@case("option-probes-fraction-2")
def _(tmp):
    data = rows_file(tmp / "train.jsonl", [ROW])
    return Expect(["probes", "split", data, "--fraction", "2"], ["--fraction must be between 0 and 1"])


# --- very large nodes: refused at once, with the limit named --------------------------------
def big_description(tmp):
    return write_node(tmp, 'kind: discipline\nname: Ethics\ndescription: "' + "moral philosophy " * 300_000 + '"\n')


def many_seeds(tmp):
    seeds = "".join(f"  - question: What is {i}?\n    answer: It is {i}.\n" for i in range(100_000))
    return write_node(tmp, "kind: discipline\nname: Ethics\ndescription: d\nseeds:\n" + seeds)


for _key, _make in (("5mb-description", big_description), ("100k-seeds", many_seeds)):
    for _command in (["taxonomy", "validate"], ["generate", "--dry-run"]):

        @case(f"node-{_key}-{_command[0]}", isolated=_command[0] == "generate")
        def _(tmp, make=_make, command=_command):
            proj, file = make(tmp)
            assert file.stat().st_size > 5_000_000
            return Expect([*command, "--project", proj], [str(file), "more than the limit of 1 MiB"])


# --- names given to `taxonomy add` (and mv/set) ------------------------------------------
NAMES = {
    "dotdot-x": (["add", "../x", "--kind", "field"], "a node path cannot contain '..'"),
    "dotdot": (["add", "..", "--kind", "field"], "a node path cannot contain '..'"),
    "dot": (["add", ".", "--kind", "field"], "a node path cannot contain '.'"),
    "name-option-dot": (["add", "x", "--name", ".", "--kind", "field"], "is a path, not a name"),
    "con": (["add", "con", "--kind", "field"], "reserved device name"),
    "nul": (["add", "mathematics/nul", "--kind", "discipline"], "reserved device name"),
    "com1-txt": (["add", "mathematics/COM1.txt", "--kind", "discipline"], "reserved device name"),
    "a-slash-b": (["add", "a/b", "--kind", "field"], "no node at 'a'"),
    "empty": (["add", "", "--kind", "field"], "empty node path"),
    "blank": (["add", "   ", "--kind", "field"], "name is empty"),
    "only-punctuation": (["add", "mathematics/???", "--kind", "discipline"], "no letters or digits"),
    "tab": (["add", "mathematics/tab\there", "--kind", "discipline"], "contains control characters"),
    "bidi-override": (["add", "mathematics/abc\u202etxt.exe", "--kind", "discipline"], "bidirectional override"),
    "too-long": (["add", "mathematics/" + "x" * 300, "--kind", "discipline"], "name is too long"),
    "name-option-dotdot": (
        ["add", "mathematics/x", "--name", "../evil", "--kind", "discipline"],
        "contains a path separator",
    ),
    "name-option-empty": (["add", "mathematics/x", "--name", "", "--kind", "discipline"], "name is empty"),
}
for _key, (_args, _message) in NAMES.items():

    @case(f"name-{_key}")
    def _(tmp, args=_args, message=_message):
        proj = project(tmp)
        before = sorted(p.relative_to(tmp) for p in tmp.rglob("*"))

        def nothing_written():
            assert sorted(p.relative_to(tmp) for p in tmp.rglob("*")) == before

        return Expect(["taxonomy", *args, "-d", "d", "--project", proj], [message], nothing_written)


@case("name-mv-outside")
def _(tmp):
    proj = project(tmp)
    return Expect(
        ["taxonomy", "mv", "mathematics/probability", "../../x", "--project", proj],
        ["../../x", "a node path cannot contain '..'"],
    )


@case("name-set-separator")
def _(tmp):
    proj = project(tmp)
    return Expect(
        ["taxonomy", "set", "mathematics/probability", "name", "a/b", "--project", proj],
        ["mathematics/probability", "contains a path separator"],
    )


@case("name-show-missing-node")
def _(tmp):
    proj = project(tmp)
    return Expect(
        ["taxonomy", "show", "mathematics/probabilty", "--project", proj],
        ["no node at 'mathematics/probabilty'", "did you mean 'mathematics/probability'"],
    )


# --- prompt templates: syntax errors and the sandbox ---------------------------------------
def override(tmp: Path, source: str | bytes, name: str = "question") -> tuple[Path, Path]:
    proj = project(tmp)
    file = proj / "prompts" / f"{name}.j2"
    if isinstance(source, bytes):
        file.write_bytes(source)
    else:
        file.write_text(source, encoding="utf-8")
    return proj, file


SYNTAX_ERROR = "[[system]]\nYou write questions.\n[[user]]\n{% if seeds %}\nQuestion on {{ discipline.name }\n"


@case("template-syntax-error-dry-run")
def _(tmp):
    proj, file = override(tmp, SYNTAX_ERROR)
    return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:5", "template syntax error"])


@case("template-syntax-error-before-any-request", isolated=True)
def _(tmp):
    """A real `generate` against a listening socket: the template fails before a connection is made."""
    proj, file = override(tmp, SYNTAX_ERROR)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    port = server.getsockname()[1]

    def no_connection():
        try:
            try:
                connection, _ = server.accept()
            except BlockingIOError:
                return
            connection.close()
            raise AssertionError("generate connected to the teacher before checking the templates")
        finally:
            server.close()

    return Expect(
        ["generate", "--teacher", "openai:m", "--base-url", f"http://127.0.0.1:{port}/v1", "--project", proj],
        [f"{file}:5", "template syntax error"],
        no_connection,
    )


@case("template-not-utf8", isolated=True)
def _(tmp):
    proj, file = override(tmp, binary(), name="answer")
    return Expect(["generate", "--dry-run", "--project", proj], [str(file), "template is not UTF-8 text"])


@case("template-no-user-turn")
def _(tmp):
    proj, file = override(tmp, "Write a question about {{ discipline.name }}.\n")
    return Expect(["generate", "--dry-run", "--project", proj], [str(file), "before the first [[system]]/[[user]]"])


@case("template-unknown-variable")
def _(tmp):
    proj, file = override(tmp, "[[system]]\nhi\n[[user]]\n{{ student_name }}\n")
    return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:4", "unknown variable", "student_name"])


ESCAPES = {
    "mro-subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "cycler-globals": "{{ cycler.__init__.__globals__ }}",
    "lipsum-os-popen": "{{ lipsum.__globals__['os'].popen('touch PWNED').read() }}",
    "path-write": "{{ discipline.folder.joinpath('PWNED').write_text('x') }}",
    "list-append": "{{ discipline.seeds.append(1) }}",
    "self-context": "{{ self._TemplateReference__context }}",
}
for _key, _expression in ESCAPES.items():

    @case(f"template-sandbox-{_key}", isolated=_key == "lipsum-os-popen")
    def _(tmp, expression=_expression):
        proj, file = override(tmp, f"[[system]]\nYou write questions.\n[[user]]\n{expression}\n")

        def never_ran():
            assert not list(tmp.rglob("PWNED")), "the template ran code outside the sandbox"

        return Expect(
            ["generate", "--dry-run", "--nodes", "mathematics/probability", "--project", proj],
            [f"{file}:4", "template tried an unsafe operation"],
            never_ran,
        )


RESOURCE_BOMBS = {
    "range-1e9": ("{{ range(10**9) | list }}", "Range too big"),
    "string-times-1e10": ("{{ 'a' * 10**10 }}", "'*' would make 10,000,000,000 items"),
    "huge-power": ("{{ 2 ** 100000 }}", "exponent 100,000 is too large"),
    "divide-by-zero": ("{{ 1 / 0 }}", "ZeroDivisionError"),
    "recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
}
for _key, (_expression, _message) in RESOURCE_BOMBS.items():

    @case(f"template-{_key}", isolated=True)
    def _(tmp, expression=_expression, message=_message):
        proj, file = override(tmp, f"[[system]]\nYou write questions.\n[[user]]\n{expression}\n")
        return Expect(
            ["generate", "--dry-run", "--nodes", "mathematics/probability", "--project", proj], [f"{file}:4", message]
        )


# --- settings that name missing files ------------------------------------------------------
@case("missing-decontaminate-file")
def _(tmp):
    proj, _ = write_config(tmp, "generation:\n  filters:\n    decontaminate: [missing.jsonl]\n")
    return Expect(["generate", "--dry-run", "--project", proj], [proj / "missing.jsonl", "evaluation set not found"])


@case("missing-decontaminate-option")
def _(tmp):
    proj = project(tmp)
    return Expect(
        ["generate", "--dry-run", "--decontaminate", tmp / "nowhere.jsonl", "--project", proj],
        [tmp / "nowhere.jsonl", "evaluation set not found"],
    )


@case("missing-taxonomy-dir")
def _(tmp):
    proj, _ = write_config(tmp, "taxonomy: nowhere\n")
    return Expect(["generate", "--dry-run", "--project", proj], [proj / "nowhere", "taxonomy folder does not exist"])


@case("missing-prompts-dir")
def _(tmp):
    proj, _ = write_config(tmp, "prompts: my-prompts\n")
    return Expect(["generate", "--dry-run", "--project", proj], [proj / "syllabus.yaml", "'my-prompts' does not exist"])


@case("missing-project")
def _(tmp):
    return Expect(["taxonomy", "show", "--project", tmp / "nowhere"], [tmp / "nowhere", "no syllabus.yaml here"])


@case("missing-api-key-file", isolated=True)
def _(tmp):
    proj, _ = write_config(
        tmp,
        "teacher:\n  backend: openai\n  model: m\n  base_url: http://127.0.0.1:9/v1\n  api_key_file: missing-key.txt\n",
    )
    return Expect(["generate", "--project", proj], ["missing-key.txt", "API key file does not exist"])


@case("missing-mix-source")
def _(tmp):
    recipe = tmp / "recipe.yaml"
    recipe.write_text("sources: [runs/nowhere]\nnodes:\n  - {match: '*', count: 1}\n", encoding="utf-8")
    return Expect(["mix", recipe, "--dry-run"], [f"{recipe}:1", "source not found"])


@case("missing-train-dataset")
def _(tmp):
    return Expect(
        ["train", "sft", tmp / "nowhere.jsonl", "--out", tmp / "out"], [tmp / "nowhere.jsonl", "dataset does not exist"]
    )


@case("missing-train-probes")
def _(tmp):
    data = rows_file(tmp / "train.jsonl", [ROW])
    return Expect(
        ["train", "sft", data, "--probes", tmp / "nowhere.jsonl", "--out", tmp / "out"],
        [tmp / "nowhere.jsonl", "probe file does not exist"],
    )


@case("missing-eval-probes")
def _(tmp):
    return Expect(["eval", "--probes", tmp / "nowhere.jsonl"], [tmp / "nowhere.jsonl", "probe file does not exist"])


@case("missing-eval-student")
def _(tmp):
    probes = rows_file(tmp / "probes.jsonl", [PROBE])
    return Expect(["eval", "--probes", probes, "--student", tmp / "no-model"], [tmp / "no-model", "has no config.json"])


# --- decontamination sets: broken, binary ------------------------------------------------
def eval_set(tmp: Path, content: bytes) -> tuple[Path, Path]:
    proj, _ = write_config(tmp, "generation:\n  filters:\n    decontaminate: [evals/test.jsonl]\n")
    (proj / "evals").mkdir()
    (proj / "evals" / "test.jsonl").write_bytes(content)
    return proj, proj / "evals" / "test.jsonl"


@case("decontaminate-broken-line")
def _(tmp):
    proj, file = eval_set(tmp, b'{"question": "What is 2 + 2?"}\n{"question": \n')
    return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:2", "not a JSON line"])


@case("decontaminate-no-question-column")
def _(tmp):
    proj, file = eval_set(tmp, b'{"text": "What is 2 + 2?"}\n')
    return Expect(["generate", "--dry-run", "--project", proj], [str(file), "no question column", "text"])


@case("decontaminate-binary")
def _(tmp):
    proj, file = eval_set(tmp, binary())
    return Expect(["generate", "--dry-run", "--project", proj], [str(file), "not UTF-8"])


# --- datasets given to train, stats, mix and eval -------------------------------------------
# name: (file content, None for binary; per command: (the file[:line] named, what is said))
DATASETS = {
    "missing-columns": (
        '{"foo": "bar"}\n',
        {
            "train": ("data.jsonl", "dataset has none of the SFT formats (columns: foo)"),
            "stats": ("data.jsonl", "no row has a question, an answer or a taxonomy_path (columns: foo)"),
            "mix": ("recipe.yaml:3", "matches no row in the sources"),
            "eval": ("data.jsonl:1", "probe has no question"),
        },
    ),
    "broken-line": (
        '{"question": "q", "answer": "a", "prompt": "q", "completion": "a"}\n{"question": \n',
        dict.fromkeys(("train", "stats", "mix", "eval"), ("data.jsonl:2", "line 2 is not valid JSON")),
    ),
    "empty": (
        "",
        {
            "train": ("data.jsonl", "dataset is empty"),
            "stats": ("data.jsonl", "dataset is empty"),
            "mix": ("recipe.yaml:1", "the sources hold no rows (data.jsonl)"),
            "eval": ("data.jsonl", "probe file is empty"),
        },
    ),
    "binary": (None, dict.fromkeys(("train", "stats", "mix", "eval"), ("data.jsonl", "file is not UTF-8 text"))),
    "not-an-object": (
        "[1, 2]\n",
        dict.fromkeys(("train", "stats", "mix", "eval"), ("data.jsonl:1", "line 1 is not a JSON object")),
    ),
}


def dataset_command(command: str, tmp: Path, data: Path) -> list:
    if command == "train":
        return ["train", "sft", data, "--out", tmp / "out"]
    if command == "stats":
        return ["stats", data, "--no-charts", "--out", tmp / "stats"]
    if command == "eval":
        return ["eval", "--probes", data]
    recipe = tmp / "recipe.yaml"
    recipe.write_text(f"sources: [{data.name}]\nnodes:\n  - match: '*'\n    count: 1\n", encoding="utf-8")
    return ["mix", recipe, "--dry-run"]


for _key, (_content, _says) in DATASETS.items():
    for _command, (_named, _message) in _says.items():

        @case(f"dataset-{_key}-{_command}", isolated=_key == "binary")
        def _(tmp, content=_content, command=_command, named=_named, message=_message):
            data = tmp / "data.jsonl"
            if content is None:
                data.write_bytes(binary())
            else:
                data.write_text(content, encoding="utf-8")
            return Expect(dataset_command(command, tmp, data), [named, message])


@case("dataset-dpo-without-pairs")
def _(tmp):
    data = rows_file(tmp / "data.jsonl", [ROW])
    return Expect(
        ["train", "dpo", data, "--out", tmp / "out"], ["data.jsonl", "lacks the DPO column(s) chosen, rejected"]
    )


@case("dataset-probes-split-missing-columns")
def _(tmp):
    data = rows_file(tmp / "data.jsonl", [PROBE])
    return Expect(["probes", "split", data], ["data.jsonl", "probes are split from generated prompt/completion data"])


@case("dataset-stats-unsupported-format")
def _(tmp):
    data = tmp / "data.csv"
    data.write_text("question,answer\nq,a\n", encoding="utf-8")
    return Expect(["stats", data], ["data.csv", "unsupported format '.csv'"])


@case("dataset-prompt-fills-max-length-train", pytest.mark.slow, isolated=True)
def _(tmp):
    """Loads the embedded student (seconds): the check is on what TRL keeps after truncation."""
    data = rows_file(tmp / "data.jsonl", [ROW])
    return Expect(
        ["train", "sft", data, "--max-length", "16", "--max-steps", "1", "--out", tmp / "out"],
        ["data.jsonl", "no example is left to train on", "--max-length 16"],
    )


@case("dataset-train-utf8-bom")
def _(tmp):
    data = tmp / "data.jsonl"
    data.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROW).encode() + b"\n")
    return Expect(["train", "sft", data, "--out", tmp / "out"], ["data.jsonl:1", "BOM"])


# --- YAML that is never expanded or read whole; subject files; links out (issue 10) -------------
# 590 bytes, 8 levels of 9 aliases: expanded, 43 million items (validate took 13.6 s).
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)
)
ALGEBRA = "mathematics/linear-algebra"
SUBJECT = "name: Vector Spaces\nsessions:\n  - title: Bases\n    concepts: [span, basis]\n"


def subject_file(tmp: Path, content: str | None = SUBJECT, name: str = "vector-spaces.yaml") -> tuple[Path, Path]:
    """A project whose linear-algebra discipline has a subjects/ folder holding `name` (written when content)."""
    proj = project(tmp)
    file = proj / "taxonomy" / ALGEBRA / "subjects" / name
    file.parent.mkdir()
    if content is not None:
        file.write_text(content, encoding="utf-8")
    return proj, file


def outside_project(tmp: Path) -> Path:
    """A folder next to the project, standing for another repository a hostile taxonomy points into."""
    folder = tmp / "other-repo"
    folder.mkdir()
    (folder / "ci.yaml").write_text(
        SUBJECT.replace("sessions:\n  - title: Bases\n    concepts: [span, basis]\n", ""), encoding="utf-8"
    )
    return folder


@case("subject-yaml-alias-bomb-validate", isolated=True)
def _(tmp):
    proj, file = subject_file(tmp, SUBJECT + BOMB)
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:6", "aliases are not accepted"])


@case("subject-yaml-alias-bomb-generate", isolated=True)
def _(tmp):
    proj, file = subject_file(tmp, BOMB + SUBJECT)
    return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:2", "aliases are not accepted"])


@case("syllabus-yaml-alias-bomb", isolated=True)
def _(tmp):
    proj, file = write_config(tmp, BOMB)
    return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:2", "aliases are not accepted"])


@case("mix-recipe-alias-bomb", isolated=True)
def _(tmp):
    rows_file(tmp / "a.jsonl", [ROW])
    recipe = tmp / "recipe.yaml"
    recipe.write_text(BOMB + "sources: [a.jsonl]\nnodes:\n  - match: '*'\n    count: *a8\n", encoding="utf-8")
    return Expect(["mix", recipe, "--dry-run"], [f"{recipe}:2", "aliases are not accepted"])


@case("subject-yaml-is-a-folder")
def _(tmp):
    proj, file = subject_file(tmp, None, "x.yaml")
    file.mkdir()
    return Expect(["taxonomy", "validate", "--project", proj], [str(file), "found a folder"])


@case("subject-yaml-is-a-fifo", isolated=True)
def _(tmp):
    proj, file = subject_file(tmp, None, "x.yaml")
    os.mkfifo(file)
    return Expect(["generate", "--dry-run", "--project", proj], [str(file), "special file"])


@case("node-yaml-is-a-fifo", isolated=True)
def _(tmp):
    proj = project(tmp)
    file = node_file(proj)
    file.unlink()
    os.mkfifo(file)
    return Expect(["taxonomy", "validate", "--project", proj], [str(file), "special file"])


@case("node-yaml-is-a-folder")
def _(tmp):
    proj = project(tmp)
    file = node_file(proj)
    file.unlink()
    file.mkdir()
    return Expect(["taxonomy", "validate", "--project", proj], [str(file), "found a folder"])


@case("syllabus-yaml-2-gb", isolated=True)
def _(tmp):
    proj = project(tmp)
    file = proj / "syllabus.yaml"
    with open(file, "r+b") as handle:  # sparse: 2 GB on paper, no disk used
        handle.truncate(2 << 30)
    return Expect(["generate", "--dry-run", "--project", proj], [str(file), "more than the limit of 1 MiB"])


@case("subject-yaml-2-mb")
def _(tmp):
    proj, file = subject_file(tmp, SUBJECT + "# " + "x" * (2 << 20) + "\n")
    return Expect(["taxonomy", "validate", "--project", proj], [str(file), "more than the limit of 1 MiB"])


SUBJECT_NAMES = {
    "escape-codes": ('name: "\\e[31mRed Course\\e[0m"', "subject name contains control characters"),
    "bidi-override": ('name: "abc\\u202etxt.exe"', "subject name contains bidirectional override characters"),
    "reserved": ("name: CON", "subject name a reserved device name"),
    "separator": ("name: ../../evil", "subject name contains a path separator"),
}
for _key, (_line, _message) in SUBJECT_NAMES.items():

    @case(f"subject-name-{_key}")
    def _(tmp, line=_line, message=_message):
        proj, file = subject_file(tmp, SUBJECT.replace("name: Vector Spaces", line))
        return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:1", message])


@case("subject-position-text")
def _(tmp):
    proj, file = subject_file(tmp, SUBJECT + "position: first\n")
    return Expect(["taxonomy", "validate", "--project", proj], [f"{file}:5", "position must be a whole number"])


@case("subjects-folder-links-out")
def _(tmp):
    proj = project(tmp)
    folder = proj / "taxonomy" / ALGEBRA / "subjects"
    folder.symlink_to(outside_project(tmp), target_is_directory=True)
    return Expect(["generate", "--dry-run", "--project", proj], [str(folder), "symbolic link", "out of the taxonomy"])


@case("subject-file-links-out")
def _(tmp):
    proj, file = subject_file(tmp, None, "ci.yaml")
    file.symlink_to(outside_project(tmp) / "ci.yaml")
    return Expect(["taxonomy", "validate", "--project", proj], [str(file), "symbolic link out of the taxonomy"])


@case("discipline-folder-links-out")
def _(tmp):
    proj = project(tmp)
    elsewhere = outside_project(tmp) / "algebra"
    shutil.copytree(proj / "taxonomy" / ALGEBRA, elsewhere)
    shutil.rmtree(proj / "taxonomy" / ALGEBRA)
    (proj / "taxonomy" / ALGEBRA).symlink_to(elsewhere, target_is_directory=True)
    return Expect(
        ["taxonomy", "validate", "--project", proj],
        [str(proj / "taxonomy" / ALGEBRA / "subjects"), "out of the taxonomy"],
    )


BOUNDS = {  # each once made a MemoryError or an absurd prompt; the setting and its line are named
    "max-subjects": ("generation:\n  max_subjects: 1000000000000\n", 2, "generation.max_subjects"),
    "max-sessions": ("generation:\n  max_sessions: 1000000000000\n", 2, "generation.max_sessions"),
    "concepts": ("generation:\n  concepts: [1, 1000000000000]\n", 2, "concepts must be [min, max]"),
    "max-tokens": (
        "generation:\n  stages:\n    answer: {max_tokens: 1000000000000}\n",
        3,
        "generation.stages.answer.max_tokens",
    ),
}
for _key, (_text, _line, _message) in BOUNDS.items():

    @case(f"syllabus-yaml-bound-{_key}", isolated=True)
    def _(tmp, text=_text, line=_line, message=_message):
        proj, file = write_config(tmp, text)
        return Expect(["generate", "--dry-run", "--project", proj], [f"{file}:{line}", message])


# --- the corpus -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", [pytest.param(name, marks=c.marks, id=name) for name, c in CASES.items()])
def test_bad_input_exits_2_with_a_clear_message(tmp_path, name, cli_here):
    expect = CASES[name].make(tmp_path)
    start = time.monotonic()
    result = (cli if CASES[name].isolated else cli_here)(*expect.args, cwd=tmp_path)
    elapsed = time.monotonic() - start
    output = result.output
    assert "Traceback" not in output, output
    assert result.returncode == expect.code, output
    for fragment in expect.says:
        assert flat(fragment) in flat(output), f"{fragment!r} not in:\n{output}"
    if expect.check:
        expect.check()
    loads_a_model = any(getattr(mark, "name", None) == "slow" for mark in CASES[name].marks)
    if not loads_a_model:  # the slow cases load the student by design: a busy machine takes longer
        assert elapsed < 30, f"took {elapsed:.1f} s: bad input must fail before any model or long parse"


# --- what is accepted, as the naming rules say ------------------------------------------------
def test_arabic_and_hebrew_names_round_trip(tmp_path, cli_here):
    proj = project(tmp_path)
    names = {
        "الرياضيات": "field",
        "الرياضيات/نظرية الأعداد": "discipline",
        "עברית": "field",
        "עברית/דקדוק עברי": "discipline",
    }
    for path, kind in names.items():
        result = cli_here(
            "taxonomy",
            "add",
            path,
            "--kind",
            kind,
            "-d",
            "A node named in a right-to-left script",
            "--project",
            proj,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.output
    # The names are kept as written; the folders are their slugs (the hamza of أ is folded).
    taxonomy = proj / "taxonomy"
    assert (taxonomy / "الرياضيات" / "نظرية-الاعداد" / "node.yaml").is_file()
    assert (taxonomy / "עברית" / "דקדוק-עברי" / "node.yaml").is_file()
    assert "name: نظرية الأعداد\n" in (taxonomy / "الرياضيات" / "نظرية-الاعداد" / "node.yaml").read_text("utf-8")
    shown = cli_here("taxonomy", "show", "الرياضيات/نظرية-الاعداد", "--project", proj, cwd=tmp_path)
    assert shown.returncode == 0 and "نظرية الأعداد" in shown.output, shown.output
    shown = cli_here("taxonomy", "show", "עברית", "--project", proj, cwd=tmp_path)
    assert shown.returncode == 0 and "דקדוק עברי" in shown.output, shown.output
    # A path typed with the hamza is not the slug: a clear miss that points at the node.
    missed = cli_here("taxonomy", "show", "الرياضيات/نظرية-الأعداد", "--project", proj, cwd=tmp_path)
    assert missed.returncode == 2 and flat("did you mean 'الرياضيات/نظرية-الاعداد'") in flat(missed.output)
    valid = cli_here("taxonomy", "validate", "--project", proj, cwd=tmp_path)
    assert valid.returncode == 0 and "0 warning(s)" in valid.output, valid.output


@pytest.mark.parametrize("name, folder", [(".hidden", "hidden"), ("/abs", "abs")])
def test_dot_and_slash_names_become_plain_folders(tmp_path, cli_here, name, folder):
    proj = project(tmp_path)
    result = cli_here("taxonomy", "add", name, "--kind", "field", "-d", "d", "--project", proj, cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert (proj / "taxonomy" / folder / "node.yaml").is_file()
    assert not any(p.name.startswith(".") for p in (proj / "taxonomy").iterdir())
    assert sorted(p.name for p in proj.parent.iterdir()) == ["proj"]  # nothing outside the project
    shown = cli_here("taxonomy", "show", folder, "--project", proj, cwd=tmp_path)
    assert shown.returncode == 0, shown.output


def test_unknown_node_field_is_a_warning_with_its_line(tmp_path, cli_here):
    proj, file = write_node(tmp_path, "kind: discipline\nname: Ethics\ndescription: d\ncolour: red\n")
    result = cli_here("taxonomy", "validate", "--project", proj, cwd=tmp_path)
    assert result.returncode == 0 and "Traceback" not in result.output, result.output
    assert flat(f"warning {file}:4: unknown field 'colour'") in flat(result.output)


def test_an_error_is_never_wrapped_in_a_log(tmp_path):
    """A path longer than any terminal stays whole on its line in a log (stderr not a terminal),
    so it can be found with grep: the terminal wraps what it shows, the log keeps it."""
    deep = tmp_path / ("a" * 120) / ("b" * 120) / "data.jsonl"
    result = run_cli("stats", str(deep))
    assert result.returncode == 2, result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first == f"error: {deep}: source not found", result.stderr
