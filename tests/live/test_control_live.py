"""`konduktor stop`, `start` and `down` on the real cluster, as an operator and as a user."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import (
    KONDUKTOR,
    TEST_USER,
    status_json,
    wait_for_status,
    write_user_file,
)
from tests.live.test_launch import submitted_name, unique
from tests.live.test_lifecycle_live import cleanup, launch_detached

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

TICKER = (
    "run: |\n"
    '  echo "attempt=$KONDUKTOR_RESTART_ATTEMPT"\n'
    '  for i in $(seq 1 {ticks}); do echo "tick $i"; sleep 1; done\n'
)


def ticker_task(name: str, ticks: int = 60, extra: str = "") -> str:
    return f"name: {name}\n{extra}" + TICKER.format(ticks=ticks)


def launch_as_user(kd_user, user_dir: Path, text: str) -> str:
    task = write_user_file(user_dir, f"{unique('t')}.yaml", text)
    result = kd_user("launch", "-y", "-d", str(task))
    assert result.returncode == 0, result.output
    return submitted_name(result.stdout)


def squeue_field(job_name: str, fmt: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "--name", job_name, "-o", fmt], capture_output=True, text=True
    )
    return out.stdout.strip()


def last_tick(kd, name: str) -> int:
    ticks = [line for line in kd("logs", name).stdout.splitlines() if "tick " in line]
    return int(ticks[-1].rsplit(" ", 1)[1]) if ticks else 0


def frozen_tick(kd, name: str) -> int:
    """The last tick once output already in flight has arrived (srun forwards it ~2 s late)."""
    time.sleep(2.5)
    return last_tick(kd, name)


def wait_for_tick(kd, name: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick = last_tick(kd, name)
        if tick >= at_least:
            return tick
        time.sleep(0.5)
    raise AssertionError(f"{name} never printed tick {at_least}: {kd('logs', name).output}")


def test_operator_stop_suspends_in_place_and_start_resumes(
    kd, kd_home: Path, tmp_path: Path
) -> None:
    name = launch_detached(kd, tmp_path, ticker_task(unique("susp"), ticks=10))
    follower = subprocess.Popen(
        [KONDUKTOR, "logs", "--follow", name],
        env={**os.environ, "KONDUKTOR_HOME": str(kd_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_tick(kd, name, 2)
        stopped = kd("stop", "-y", name)
        assert stopped.returncode == 0, stopped.output
        assert f"Stopped {name}: suspended in place" in stopped.stdout
        assert "GPUs stay allocated" in stopped.stdout
        job = status_json(kd, name)["jobs"][0]
        assert job["status"] == "SUSPENDED (by user)", job
        assert job["detail"].startswith("stopped by root"), job
        assert squeue_field(name, "%T") == "SUSPENDED"

        frozen_at = frozen_tick(kd, name)
        time.sleep(3)
        assert last_tick(kd, name) == frozen_at

        started = kd("start", "-y", name)
        assert started.returncode == 0, started.output
        assert f"Started {name}: resumed" in started.stdout
        assert wait_for_status(kd, name, {"ACTIVE"}, timeout=30)["status"] == "ACTIVE"
        wait_for_tick(kd, name, frozen_at + 2)
        log = kd("logs", name).stdout
        assert "attempt=1" not in log  # resumed in place, never restarted
        history = [entry["status"] for entry in status_json(kd, name)["jobs"][0]["history"]]
        assert history[-2:] == ["SUSPENDED (by user)", "ACTIVE"], history

        # `logs --follow`, started before the stop, streamed across it and ends with the job.
        out, err = follower.communicate(timeout=60)
        assert follower.returncode == 0, (out, err)
        assert [f"0: tick {i}" in out for i in range(1, 11)] == [True] * 10, out
        assert f"{name}: COMPLETED" in err
    finally:
        follower.kill()
        cleanup(kd, name)


def follow_as_user(user_dir: Path, name: str) -> subprocess.Popen:
    env = {**os.environ, "KONDUKTOR_HOME": str(user_dir / "kdhome")}
    return subprocess.Popen(
        [
            "runuser",
            "-u",
            TEST_USER,
            "--",
            "env",
            f"KONDUKTOR_HOME={env['KONDUKTOR_HOME']}",
            KONDUKTOR,
            "logs",
            "--follow",
            name,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=user_dir,
    )


def test_user_stop_requeues_start_restarts_at_once_and_logs_keep_following(
    kd_user, user_dir: Path
) -> None:
    name = launch_as_user(kd_user, user_dir, ticker_task(unique("rq"), ticks=8))
    follower = follow_as_user(user_dir, name)
    try:
        wait_for_tick(kd_user, name, 2)
        stopped = kd_user("stop", "-y", name)
        assert stopped.returncode == 0, stopped.output
        # An ordinary user may not suspend: auto falls back to requeue and says what it costs.
        assert "only operators suspend jobs, so stopping by requeue instead" in stopped.stdout
        assert "GPUs released" in stopped.stdout
        assert "restarts from the beginning" in stopped.stdout
        job = status_json(kd_user, name)["jobs"][0]
        assert job["status"] == "SUSPENDED (by user)", job
        assert job["detail"].startswith(f"stopped by {TEST_USER}"), job
        assert squeue_field(name, "%T|%r") == "PENDING|job requeued in held state"
        assert squeue_field(name, "%N") == ""  # no node, so no GPU, is held any more

        time.sleep(2)
        before = time.monotonic()
        started = kd_user("start", "-y", name)
        assert started.returncode == 0, started.output
        assert "requeue delay lifted" in started.stdout
        wait_for_status(kd_user, name, {"ACTIVE", "COMPLETED"}, timeout=60)
        # Slurm's own requeue delay is 15 s on this cluster (cred_expire); start lifts it.
        assert time.monotonic() - before < 20

        out, err = follower.communicate(timeout=90)
        assert follower.returncode == 0, (out, err)
        assert "attempt=0" in out and "attempt=1" in out  # one stream across the requeue
        assert "tick 8" in out
        assert f"{name}: COMPLETED" in err
    finally:
        follower.kill()
        cleanup(kd_user, name)


def test_user_signal_stop_freezes_processes_and_suspend_is_refused(kd_user, user_dir: Path) -> None:
    name = launch_as_user(kd_user, user_dir, ticker_task(unique("sig")))
    try:
        wait_for_tick(kd_user, name, 1)
        refused = kd_user("stop", "-y", "--mode", "suspend", name)
        assert refused.returncode == 1, refused.output
        assert "Only Slurm operators may suspend" in refused.stderr
        assert status_json(kd_user, name)["jobs"][0]["status"] == "ACTIVE"

        stopped = kd_user("stop", "-y", "--mode", "signal", name)
        assert stopped.returncode == 0, stopped.output
        assert "SIGSTOP" in stopped.stdout and "GPUs stay allocated" in stopped.stdout
        job = status_json(kd_user, name)["jobs"][0]
        assert job["status"] == "SUSPENDED (by user)", job
        frozen_at = frozen_tick(kd_user, name)
        time.sleep(3)
        assert last_tick(kd_user, name) == frozen_at

        started = kd_user("start", "-y", name)
        assert started.returncode == 0, started.output
        assert "SIGCONT" in started.stdout
        wait_for_tick(kd_user, name, frozen_at + 2, timeout=20)
        assert "attempt=1" not in kd_user("logs", name).stdout
    finally:
        cleanup(kd_user, name)


def test_pending_job_is_held_past_its_begin_time_until_start(kd_user, user_dir: Path) -> None:
    name = launch_as_user(
        kd_user,
        user_dir,
        ticker_task(unique("hold"), ticks=2, extra="slurm:\n  sbatch_options: {begin: now+6}\n"),
    )
    try:
        assert status_json(kd_user, name)["jobs"][0]["status"] == "PENDING"
        stopped = kd_user("stop", "-y", name)
        assert stopped.returncode == 0, stopped.output
        assert "held in the queue" in stopped.stdout
        time.sleep(9)  # past its begin time: only the hold keeps it from running
        job = status_json(kd_user, name)["jobs"][0]
        assert job["status"] == "SUSPENDED (by user)", job
        assert squeue_field(name, "%r") == "JobHeldUser"

        started = kd_user("start", "-y", name)
        assert started.returncode == 0, started.output
        done = wait_for_status(kd_user, name, {"COMPLETED", "FAILED"}, timeout=60)
        assert done["status"] == "COMPLETED", done
    finally:
        cleanup(kd_user, name)


def test_patterns_errors_and_down(kd, kd_user, user_dir: Path, tmp_path: Path) -> None:
    task_name = unique("exp")
    first = launch_as_user(kd_user, user_dir, ticker_task(task_name))
    second = launch_as_user(kd_user, user_dir, ticker_task(task_name))
    finished = launch_as_user(kd_user, user_dir, ticker_task(unique("done"), ticks=0))
    root_job = launch_detached(kd, tmp_path, ticker_task(unique("root")))
    root_id = status_json(kd, root_job)["jobs"][0]["slurm_job_id"]
    try:
        wait_for_status(kd_user, finished, {"COMPLETED"}, timeout=60)
        wait_for_status(kd_user, first, {"ACTIVE"}, timeout=60)

        # Any bad job in the list: clear errors, non-zero exit, and nothing at all changes.
        bad = kd_user("stop", "-y", first, finished, first[:-2], root_id, "nosuchjob-*")
        assert bad.returncode == 1, bad.output
        assert f"{finished} has already finished (COMPLETED)" in bad.stderr
        assert f"Did you mean '{first}'" in bad.stderr
        assert f"Slurm job {root_id} belongs to root, not to you" in bad.stderr
        assert "no job matches 'nosuchjob-*'" in bad.stderr
        assert "Nothing was changed." in bad.stderr
        assert status_json(kd_user, first)["jobs"][0]["status"] == "ACTIVE"
        assert status_json(kd, root_job)["jobs"][0]["status"] in {"ACTIVE", "PENDING"}

        # Without a terminal and without -y, nothing is done rather than hanging on a prompt.
        unasked = kd_user("stop", first)
        assert unasked.returncode == 2 and "add -y" in unasked.stderr

        stopped = kd_user("stop", "-y", f"{task_name}-*")
        assert stopped.returncode == 0, stopped.output
        for name in (first, second):
            assert f"Stopped {name}" in stopped.stdout
            assert status_json(kd_user, name)["jobs"][0]["status"] == "SUSPENDED (by user)"

        started = kd_user("start", "-y", "--all")
        assert started.returncode == 0, started.output
        assert f"Started {first}" in started.stdout and f"Started {second}" in started.stdout
        for name in (first, second):
            assert wait_for_status(kd_user, name, {"ACTIVE", "PENDING"}, timeout=30)

        gone = kd_user("down", "-y", f"{task_name}-*", finished)
        assert gone.returncode == 0, gone.output
        assert f"Took down {first} (cancelled)" in gone.stdout
        assert f"Took down {finished} (it had ended COMPLETED)" in gone.stdout
        listed = {job["name"] for job in status_json(kd_user)["jobs"]}
        assert not listed & {first, second, finished}
        assert squeue_field(first, "%T") == ""  # really cancelled in Slurm
        history = kd_user("status", "--json", "-a")
        everything = {job["name"]: job for job in json.loads(history.stdout)["jobs"]}
        assert everything[first]["status"] == "FAILED"
        assert everything[first]["detail"] == f"cancelled by {TEST_USER}"
        assert everything[finished]["status"] == "COMPLETED"
        assert "tick" in kd_user("logs", first).stdout  # logs outlive `down`
    finally:
        for name in (first, second, finished):
            cleanup(kd_user, name)
        cleanup(kd, root_job)
