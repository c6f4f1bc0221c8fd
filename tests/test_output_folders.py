"""What the tool writes, and where: claimed run folders, one run at a time per folder, file
modes, folder names, refused writes, and what reaches the terminal.

Every test goes through the real CLI (`python -m syllabus`); runs are served by the fault
server (tests/fault_server.py), whose `hang` rule holds answers back so a run can be caught
in the middle, which a real server cannot be told to do. Read-only and full disks are real:
a read-only bind mount and a small tmpfs in a private mount namespace (`unshare --mount`),
since the tests run as root, for whom chmod stops no write.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli_env, run_cli
from fault_server import MODEL, Fault, FaultServer, fault_server  # noqa: F401  (the fixture)

from syllabus.yamlio import dump, load

NODE = "mathematics/linear-algebra"
QUESTIONS = "6"
LOCK = ".syllabus-lock"


# --- helpers -------------------------------------------------------------------------


def served(folder: Path) -> Path:
    """A project whose teacher waits long enough for answers the server holds back."""
    file = folder / "syllabus.yaml"
    doc = load(file)
    doc["teacher"]["timeout"] = 60
    doc["teacher"]["max_retries"] = 0
    dump(doc, file)
    return folder


def generate_args(project: Path, server: FaultServer, *extra: str) -> list[str]:
    return [
        "generate",
        "--project",
        str(project),
        "--teacher",
        f"openai:{MODEL}",
        "--base-url",
        server.base_url,
        "--nodes",
        NODE,
        "--questions",
        QUESTIONS,
        *extra,
    ]


def generate(project: Path, server: FaultServer, *extra: str):
    return run_cli(*generate_args(project, server, *extra), env={"OPENAI_API_KEY": "sk-test"}, timeout=180)


def start_generate(project: Path, server: FaultServer, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "syllabus", *generate_args(project, server, *extra)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env({"OPENAI_API_KEY": "sk-test"}),
    )


def wait_for(condition, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def answers_held(server: FaultServer) -> bool:
    return any(r.stage == "answer" for r in server.chat)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_one_message(result, *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    flat = " ".join(output.split())  # rich wraps long lines
    for needle in needles:
        assert needle in flat, f"{needle!r} not in:\n{output}"


# --- 3: a folder the tool did not make is refused --------------------------------------


def test_generate_refuses_a_run_folder_it_did_not_make(make_project, fault_server, tmp_path):
    project, server = make_project(), fault_server()
    theirs = tmp_path / "thesis"
    (theirs / "dataset").mkdir(parents=True)
    (theirs / "README.md").write_text("# My thesis\n")
    (theirs / "dataset.jsonl").write_text('{"mine": 1}\n')
    (theirs / "dataset" / "notes.txt").write_text("keep me\n")
    before = files_of(theirs)
    result = generate(project, server, "--run", str(theirs))
    assert_one_message(result, str(theirs), "not made by syllabus", "--run")
    assert files_of(theirs) == before  # nothing overwritten, nothing added (not even a marker)
    assert server.chat_count() == 0  # refused before any request


def test_generate_takes_its_own_and_older_run_folders(make_project, fault_server):
    project, server = make_project(), fault_server()
    assert generate(project, server).returncode == 0
    run = project / "runs/default"
    (run / ".syllabus-output.json").unlink()  # a run folder as an older version left it: no marker
    sent = server.chat_count()
    again = generate(project, server)
    assert again.returncode == 0, again.stdout + again.stderr
    assert server.chat_count() == sent  # its cache was used: the folder was taken as the run it is
    assert json.loads((run / ".syllabus-output.json").read_text())["kind"] == "run"


# --- 10: one run at a time in a run folder ---------------------------------------------


def test_a_second_run_in_the_same_folder_refuses_at_once_and_loses_nothing(make_project, fault_server):
    project, server = served(make_project()), fault_server()
    server.set_faults(Fault("hang", stage="answer", hang_s=60))  # the first run waits on its answers
    first = start_generate(project, server)
    try:
        wait_for(lambda: answers_held(server), "the first run to wait on its answers")
        started = time.monotonic()
        second = start_generate(project, server)
        try:
            second_out, second_err = second.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # it did not refuse: it is running alongside the first
            second.kill()
            second_out, second_err = second.communicate()
        assert second.returncode == 2, second_out + second_err
        assert time.monotonic() - started < 30
        assert first.poll() is None  # the refusal happened while the first was running
    finally:
        server.heal()
        first_out, first_err = first.communicate(timeout=120)
    flat = " ".join(second_err.split())
    assert "Traceback" not in second_err
    assert str(project / "runs/default") in flat and f"pid {first.pid}" in flat, second_err
    assert first.returncode == 0, first_out + first_err
    # Every request was sent once: the refused run sent nothing and broke nothing.
    bodies = [json.dumps(r.body, sort_keys=True) for r in server.chat]
    assert len(bodies) == len(set(bodies)), f"{len(bodies)} requests for {len(set(bodies))} distinct ones"
    rows = (project / "runs/default/dataset.jsonl").read_text().splitlines()
    assert len(rows) == int(QUESTIONS)
    sent = server.chat_count()
    again = generate(project, server)
    assert again.returncode == 0, again.stdout + again.stderr
    assert server.chat_count() == sent  # the cache holds every answer: the rerun sends nothing
    assert (project / "runs/default/dataset.jsonl").read_text().splitlines() == rows


def test_a_run_killed_with_sigkill_does_not_block_the_next(make_project, fault_server):
    project, server = served(make_project()), fault_server()
    server.set_faults(Fault("hang", stage="answer", hang_s=60))
    first = start_generate(project, server)
    lock = project / "runs/default" / LOCK
    wait_for(
        lambda: answers_held(server) and lock.exists() and lock.read_text().strip() == str(first.pid),
        "the first run to hold the folder",
    )
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    server.heal()
    assert lock.read_text().strip() == str(first.pid)  # the dead run's pid stays in the file: it must not matter
    second = generate(project, server)
    assert second.returncode == 0, second.stdout + second.stderr
    assert len((project / "runs/default/dataset.jsonl").read_text().splitlines()) == int(QUESTIONS)
    sent = server.chat_count()
    assert generate(project, server).returncode == 0
    assert server.chat_count() == sent


# --- 12: rewritten files keep their mode; new ones follow the umask ----------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mode", [0o640, 0o664])
def test_an_edit_keeps_the_files_mode(make_project, mode):
    project = make_project()
    node_file = project / "taxonomy/mathematics/node.yaml"
    node_file.chmod(mode)
    result = run_cli(
        "taxonomy", "set", "mathematics", "description", "Numbers, shapes and proofs.", "--project", str(project)
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Numbers, shapes and proofs." in node_file.read_text()
    assert oct(mode_of(node_file)) == oct(mode)


@pytest.mark.parametrize("umask, expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_a_new_file_gets_what_the_umask_gives(make_project, umask, expected):
    project = make_project()
    old = os.umask(umask)  # the CLI inherits it
    try:
        result = run_cli(
            "taxonomy",
            "add",
            "mathematics/Topology",
            "--kind",
            "discipline",
            "--description",
            "Open sets and continuity.",
            "--project",
            str(project),
        )
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stdout + result.stderr
    assert oct(mode_of(project / "taxonomy/mathematics/topology/node.yaml")) == oct(expected)


# --- 14: a folder name that is not UTF-8 fails validation, before any request -----------


def test_a_folder_name_that_is_not_utf8_is_refused_before_any_request(make_project, fault_server):
    project, server = make_project(), fault_server()
    parent = project / "taxonomy/mathematics"
    bad = os.path.join(os.fsencode(parent), b"caf\xe9-theory")  # Latin-1, as an old archive may name it
    os.mkdir(bad)
    with open(os.path.join(bad, b"node.yaml"), "w", encoding="utf-8") as handle:
        handle.write("schema_version: 1\nkind: discipline\nname: Cafe Theory\ndescription: Queues and waiting lines.\n")
    checked = run_cli("taxonomy", "validate", "--project", str(project))
    assert_one_message(checked, r"caf\xe9-theory", "not valid UTF-8", str(parent))
    result = generate(project, server)
    assert_one_message(result, r"caf\xe9-theory", "not valid UTF-8")
    assert server.chat_count() == 0
    assert not (project / "runs/default").exists()


# --- 15: a write the disk refuses is one message, exit 2, nothing half-written ----------


def _namespaces_work() -> bool:
    probe = (
        subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
        if shutil.which("unshare")
        else None
    )
    return probe is not None and probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not _namespaces_work(),
    reason="needs `unshare --mount` (root or CAP_SYS_ADMIN) for a real read-only or full file system",
)


def in_mount_namespace(script: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """`script` (sh) in a private mount namespace: its mounts vanish with it, the host sees none."""
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env({"SYLLABUS": f"{sys.executable} -m syllabus", **(env or {})}),
    )


def read_only(folder: Path) -> str:
    return f"mount --bind '{folder}' '{folder}' && mount -o remount,ro,bind '{folder}' '{folder}' && "


@needs_mounts
def test_a_read_only_taxonomy_is_one_clear_message(make_project):
    project = make_project()
    node_file = project / "taxonomy/mathematics/node.yaml"
    before = files_of(project / "taxonomy")
    result = in_mount_namespace(
        read_only(project / "taxonomy")
        + f"$SYLLABUS taxonomy set mathematics description 'New words.' --project '{project}'"
    )
    assert_one_message(result, str(node_file), "Read-only file system", "remount it writable")
    assert files_of(project / "taxonomy") == before


@needs_mounts
def test_a_read_only_run_folder_is_one_clear_message_before_any_request(make_project, fault_server):
    project, server = make_project(), fault_server()
    assert generate(project, server).returncode == 0
    run = project / "runs/default"
    before, sent = files_of(run), server.chat_count()
    args = " ".join(f"'{a}'" for a in generate_args(project, server, "--questions", "9"))
    result = in_mount_namespace(read_only(run) + f"$SYLLABUS {args}", env={"OPENAI_API_KEY": "sk-test"})
    assert_one_message(result, str(run), "Read-only file system")
    assert server.chat_count() == sent  # refused before a request was paid for
    assert files_of(run) == before


@needs_mounts
def test_a_full_disk_is_one_clear_message_and_the_old_file_stays(make_project, tmp_path):
    project = make_project()
    disk = tmp_path / "disk"
    disk.mkdir()
    inside = disk / "proj"
    node = "taxonomy/mathematics/node.yaml"
    script = (
        f"mount -t tmpfs -o size=4m tmpfs '{disk}' && cp -r '{project}' '{inside}' && "
        f"(dd if=/dev/zero of='{disk}/filler' bs=64k 2>/dev/null || true) && "
        f"$SYLLABUS taxonomy set mathematics description 'Numbers, shapes and proofs.' "
        f"--project '{inside}'; echo \"rc=$?\"; "
        f"cmp -s '{inside}/{node}' '{project}/{node}' && echo UNCHANGED; ls -a '{inside}/taxonomy/mathematics'"
    )
    result = in_mount_namespace(script)
    output = result.stdout + result.stderr
    assert "rc=2" in result.stdout and "Traceback" not in output, output
    assert str(inside / node) in " ".join(result.stderr.split()) and "No space left on device" in output, output
    assert "UNCHANGED" in result.stdout  # the old node.yaml is whole
    assert ".tmp" not in result.stdout  # and no half-written temporary is left beside it


@needs_mounts
def test_a_disk_that_fills_mid_run_keeps_the_paid_answers(make_project, fault_server, tmp_path):
    """The disk fills while the run waits on its answers: one message, exit 2; once there is room
    again, the same command finishes without asking again for anything it had stored."""
    project, server = served(make_project()), fault_server()
    server.set_faults(Fault("hang", stage="answer", hang_s=60))
    disk, ready, full = tmp_path / "disk", tmp_path / "ready", tmp_path / "full"
    disk.mkdir()
    args = " ".join(f"'{a}'" for a in generate_args(project, server, "--run", str(disk / "run")))
    script = (
        f"mount -t tmpfs -o size=16m tmpfs '{disk}' && "
        f"($SYLLABUS {args} > '{tmp_path}/first.log' 2>&1; echo $? > '{tmp_path}/first.rc') & "
        f"while [ ! -e '{ready}' ]; do sleep 0.05; done; "
        f"dd if=/dev/zero of='{disk}/filler' bs=4k 2>/dev/null; touch '{full}'; wait; "
        f"rm '{disk}/filler'; $SYLLABUS {args}; echo \"rc=$?\""
    )
    namespace = subprocess.Popen(
        ["unshare", "--mount", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env({"SYLLABUS": f"{sys.executable} -m syllabus", "OPENAI_API_KEY": "sk"}),
    )
    try:
        wait_for(lambda: answers_held(server), "the run to wait on its answers")
        time.sleep(1.0)  # what was answered so far is stored (each answer is stored as it comes)
        stored = {json.dumps(r.body, sort_keys=True) for r in server.chat if r.fault is None}
        ready.touch()
        wait_for(full.exists, "the disk to fill")
        held = server.chat_count()
        server.heal()  # the answers come back to a full disk
        out, err = namespace.communicate(timeout=180)
    finally:
        if namespace.poll() is None:
            namespace.kill()
    first = (tmp_path / "first.log").read_text()
    assert (tmp_path / "first.rc").read_text().strip() == "2", first
    assert "Traceback" not in first and "disk is full" in first, first
    assert "rc=0" in out, out + err
    # Nothing stored before the disk filled was asked for again; the answers that came back to a
    # full disk (never stored) were.
    later = server.chat[held:]
    assert not [r for r in later if json.dumps(r.body, sort_keys=True) in stored]
    assert any(r.stage == "answer" and r.attempt == 2 for r in later), [(r.stage, r.attempt) for r in later]
    assert "rows" in out, out  # the rerun wrote its dataset


# --- 21: control characters from data never reach the terminal --------------------------

ESC = "\x1b"


def test_taxonomy_show_escapes_control_characters_in_folder_names(make_project):
    project = make_project()
    parent = project / "taxonomy/mathematics"
    (parent / "linear-algebra").rename(parent / f"linear{ESC}[2J{ESC}]0;owned{chr(7)}-algebra")
    result = run_cli("taxonomy", "show", "--project", str(project))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ESC not in result.stdout and chr(7) not in result.stdout
    assert r"linear\x1b[2J\x1b]0;owned\x07-algebra" in result.stdout  # shown, written out


def test_stats_escapes_control_characters_in_dataset_values(tmp_path):
    row = {
        "prompt": [{"role": "user", "content": "What is a basis?"}],
        "completion": [{"role": "assistant", "content": "A spanning independent set."}],
        "taxonomy_path": f"mathematics/{ESC}[31mred{ESC}[0m\x9bnode",
        "subject": f"Linear{ESC}[8m hidden",
        "level": "undergraduate",
        "difficulty": "single-session",
        "question_index": 0,
        "filtered_by": "",
    }
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    result = run_cli("stats", str(data), "--no-charts", "--out", str(tmp_path / "report"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert ESC not in result.stdout + result.stderr and "\x9b" not in result.stdout
    assert r"mathematics/\x1b[31mred\x1b[0m\x9bnode" in result.stdout
