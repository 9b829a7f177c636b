"""What a task or env file may be: regular, bounded, UTF-8, shallow. Each refusal is one
issue naming the file (and the line where there is one), never a hang or a traceback."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from konduktor_slurm.task import TaskError, TaskOverrides, load_task, parse_task
from konduktor_slurm.task.source import MAX_DEPTH, MAX_FILE_BYTES


def only(exc: pytest.ExceptionInfo[TaskError]):
    assert len(exc.value.issues) == 1, exc.value.issues
    return exc.value.issues[0]


def test_fifo_task_file_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "task.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(TaskError) as info:
        load_task(fifo)
    assert time.monotonic() - started < 2
    assert "is a FIFO, not a regular file" in only(info).message


def test_device_task_file_is_refused() -> None:
    with pytest.raises(TaskError) as info:
        load_task(Path("/dev/zero"))
    issue = only(info)
    assert issue.file == "/dev/zero" and "a device or socket" in issue.message


def test_fifo_env_file_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "vars.env"
    os.mkfifo(fifo)
    done = threading.Event()
    result: list[object] = []

    def parse() -> None:
        try:
            parse_task("run: x\n", overrides=TaskOverrides(env_file=fifo))
        except TaskError as exc:
            result.append(exc)
        done.set()

    threading.Thread(target=parse, daemon=True).start()
    assert done.wait(5), "reading a FIFO env file blocked"
    (issue,) = result[0].issues  # type: ignore[attr-defined]
    assert issue.field == "--env-file" and "FIFO" in issue.message


def test_oversized_task_file(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("run: x\n# " + "y" * MAX_FILE_BYTES + "\n")
    started = time.monotonic()
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert time.monotonic() - started < 1
    assert "may be at most 1048576 (1 MiB)" in only(info).message


def test_latin1_task_file_names_the_byte_and_line(tmp_path: Path) -> None:
    path = tmp_path / "task.yaml"
    path.write_bytes("name: x\nrun: echo caf\xe9\n".encode("latin-1"))
    with pytest.raises(TaskError) as info:
        load_task(path)
    issue = only(info)
    assert issue.line == 2 and "is not UTF-8 text (byte 0xe9" in issue.message


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 3000])
def test_deep_nesting_is_refused(depth: int) -> None:
    text = "run: x\nenvs: " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(TaskError) as info:
        parse_task(text)
    assert f"nested more than {MAX_DEPTH} levels deep" in only(info).message


def test_alias_bomb_is_refused_without_expanding_it() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 9):
        prior = f"*a{level - 1}"
        lines.append(f"a{level}: &a{level} [{', '.join([prior] * 10)}]")
    text = "run: x\nexperimental:\n" + "".join(f"  {line}\n" for line in lines)
    started = time.monotonic()
    with pytest.raises(TaskError) as info:
        parse_task(text)
    assert time.monotonic() - started < 2
    assert "expands to more than 100000 values" in only(info).message


def test_a_few_aliases_are_fine() -> None:
    task = parse_task("run: x\nenvs: &e {A: '1'}\nsecrets: {B: '2'}\nexperimental: [*e, *e]\n")
    assert task.envs == {"A": "1"}
