"""A bare `konduktor status` (or `status --json`) is answered by konduktor_slurm.entry without
click; every other command line goes through the click CLI. Both must look the same to a
user and a script: the same output, the same stderr, the same exit code, on the same store,
whether Slurm answers, cannot be reached, the store is damaged, the pipe is closed or the
user presses Ctrl-C.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from konduktor_slurm.store import JobRecord, Store
from tests.conftest import KONDUKTOR

# The click CLI for the same argv, as the console script ran it before the bare path existed.
CLICK_PATH = "import sys; from konduktor_slurm.cli import run; sys.argv[0] = 'konduktor'; run()"


def job(name: str, state: str, age: float, slurm_id: str, terminal: bool) -> JobRecord:
    now = time.time()
    return JobRecord(
        name=name,
        task_name=name.rsplit("-", 1)[0],
        user="alice",
        resources="1x(4CPU, H100:1)",
        num_nodes=1,
        job_dir=f"/nonexistent/jobs/{name}",
        log_path=f"/nonexistent/jobs/{name}/job.log",
        state=state,
        detail="exited 3" if state == "FAILED" else "",
        created_at=now - age,
        slurm_job_id=slurm_id,
        submitted_at=now - age,
        start_time=now - age + 5 if state != "PENDING" else None,
        end_time=now - age + 65 if terminal else None,
        terminal=terminal,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A store with finished jobs and two that Slurm is asked about, and a config whose Slurm
    commands are this test's scripts (``slurm`` below)."""
    home = tmp_path / "home"
    store = Store(home / "state.db")
    store.add(job("train-aa11", "COMPLETED", 7200, "101", terminal=True))
    store.add(job("train-bb22", "FAILED", 3600, "102", terminal=True))
    store.add(job("sweep-cc33", "PENDING", 600, "103", terminal=False))
    store.add(job("sweep-dd44", "ACTIVE", 300, "104", terminal=False))
    store.close()
    (tmp_path / "bin").mkdir()
    (home / "config.yaml").write_text(f"slurm_bin_dir: {tmp_path / 'bin'}\nslurm_timeout: 20\n")
    return home


def slurm(home: Path, squeue: str, sacct: str = "exit 0") -> None:
    """Put shell scripts in place of squeue and sacct."""
    for name, body in (("squeue", squeue), ("sacct", sacct)):
        script = home.parent / "bin" / name
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)


def both(home: Path, *args: str, **popen: object) -> list[subprocess.CompletedProcess[str]]:
    """``konduktor <args>`` through the console script (the bare path) and through click."""
    env = {**os.environ, "KONDUKTOR_HOME": str(home), "KONDUKTOR_CONFIG": str(home / "config.yaml")}
    env.pop("KONDUKTOR_DEBUG", None)
    return [
        subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL
        )
        for argv in ([KONDUKTOR, *args], [sys.executable, "-c", CLICK_PATH, *args])
    ]


def same(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    bare, through_click = both(home, *args)
    assert (bare.returncode, bare.stderr) == (through_click.returncode, through_click.stderr)
    # Durations and ages tick between the two runs: every number aside, byte for byte.
    assert without_numbers(bare.stdout) == without_numbers(through_click.stdout)
    return bare


def without_numbers(text: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "#", text)


@pytest.mark.parametrize("args", [("status",), ("status", "--json")])
def test_slurm_answering_looks_the_same(home: Path, args: tuple[str, ...]) -> None:
    # squeue no longer lists the two jobs and sacct has no row yet: both stay as they were.
    slurm(home, squeue="exit 0")
    shown = same(home, *args)
    assert shown.returncode == 0
    for name in ("train-aa11", "train-bb22", "sweep-cc33", "sweep-dd44"):
        assert name in shown.stdout


@pytest.mark.parametrize("args", [("status",), ("status", "--json")])
def test_slurm_unreachable_is_stale_and_exit_3_on_both(home: Path, args: tuple[str, ...]) -> None:
    slurm(
        home, squeue="echo 'slurm_load_jobs error: Unable to contact slurm controller' >&2\nexit 1"
    )
    shown = same(home, *args)
    assert shown.returncode == 3
    assert shown.stderr.startswith("Warning: Slurm could not be reached (")
    assert ("(stale)" in shown.stdout) == (args == ("status",))


def test_an_empty_store_says_how_to_launch_on_both(tmp_path: Path) -> None:
    shown = same(tmp_path / "empty", "status")
    assert shown.returncode == 0 and "No jobs. Launch one with" in shown.stdout


@pytest.mark.parametrize("args", [("status",), ("status", "--json")])
def test_a_damaged_store_is_the_same_error_line_and_exit_6(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "state.db").write_bytes(b"not a database, " * 100)
    shown = same(home, *args)
    assert shown.returncode == 6 and shown.stdout == ""
    assert shown.stderr.startswith("Error: the job store ") and shown.stderr.count("\n") == 1


def test_a_closed_pipe_exits_1_quietly_on_both(home: Path) -> None:
    slurm(home, squeue="exit 0")
    results = []
    for argv in ([KONDUKTOR, "status"], [sys.executable, "-c", CLICK_PATH, "status"]):
        read, write = os.pipe()
        os.close(read)  # `konduktor status | head` after head has gone
        env = {**os.environ, "KONDUKTOR_HOME": str(home)}
        env["KONDUKTOR_CONFIG"] = str(home / "config.yaml")
        proc = subprocess.run(argv, stdout=write, stderr=subprocess.PIPE, text=True, env=env)
        os.close(write)
        results.append((proc.returncode, proc.stderr))
    assert results[0] == results[1] == (1, "")


def test_ctrl_c_while_slurm_is_slow_prints_aborted_on_both(home: Path) -> None:
    started = home.parent / "squeue-started"
    slurm(home, squeue=f"touch {started}\nexec sleep 30")
    env = {**os.environ, "KONDUKTOR_HOME": str(home), "KONDUKTOR_CONFIG": str(home / "config.yaml")}
    results = []
    for argv in ([KONDUKTOR, "status"], [sys.executable, "-c", CLICK_PATH, "status"]):
        started.unlink(missing_ok=True)
        # SIGINT at its default in the child (background CI processes inherit it ignored).
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 30
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), "the fake squeue never started"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        results.append((proc.returncode, stdout, stderr))
    assert results[0] == results[1] == (1, "", "\nAborted!\n")
