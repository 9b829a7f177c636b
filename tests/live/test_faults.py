"""Faults of the cluster while konduktor works: nothing lost, nothing hanging, no guesses.

These tests break the real local cluster on purpose (they kill slurmctld, a slurmd and
slurmdbd, fill a disk, race launches) and bring it back with docker/cluster-up.sh, which
starts whatever is not running. They run in `make test` like every live test; the README's
"Faults" table says what each one does to a job.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    KONDUKTOR,
    ROOT,
    make_runner,
    squeue_fields,
    status_json,
    wait_for_status,
    wait_until,
    write_task,
)
from tests.live.test_launch import submitted_name, unique

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

RUN_DIR = Path("/var/lib/konduktor-cluster/run")


def daemon_pid(name: str) -> int:
    return int((RUN_DIR / f"{name}.pid").read_text().split()[0])


def kill_daemon(name: str, how: signal.Signals = signal.SIGKILL) -> None:
    os.kill(daemon_pid(name), how)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{daemon_pid(name)}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def wait_for_no_step_of(job_id: str, timeout: float = 90) -> None:
    """Until no slurmstepd of the job runs on this machine (every node of the cluster)."""
    deadline = time.monotonic() + timeout
    pattern = f"slurmstepd: \\[{job_id}\\."
    while subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, f"a step of job {job_id} still runs"
        time.sleep(0.5)


def wait_for_node_settled(node: str, timeout: float = 90) -> None:
    """Until ``node`` is up and done cleaning up (idle, mixed or allocated)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        shown = subprocess.run(
            ["sinfo", "--noheader", "--nodes", node, "--format=%T"], capture_output=True, text=True
        )
        state = shown.stdout.split("\n", 1)[0].strip()
        if state in {"idle", "mixed", "allocated"}:
            return
        time.sleep(1)
    raise AssertionError(f"{node} is still {state!r} after {timeout:.0f}s")


def cluster_up() -> None:
    subprocess.run(["bash", str(ROOT / "docker" / "cluster-up.sh")], check=True, timeout=180)


@pytest.fixture
def restore_cluster() -> Iterator[None]:
    """Whatever a test kills, the next test finds the cluster whole again."""
    yield
    cluster_up()


def launch_detached(kd, tmp_path: Path, text: str) -> str:
    write_task(tmp_path, text)
    launched = kd("launch", "-y", "-d", "task.yaml", cwd=tmp_path)
    assert launched.returncode == 0, launched.output
    return submitted_name(launched.stdout)


def wait_until_output(kd, name: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in kd("logs", "--no-follow", name).stdout:
            return
        time.sleep(1)
    raise AssertionError(f"{name} never printed {text!r}")


def test_slurmctld_restart_is_stale_within_seconds_then_right_again(
    kd, kd_home: Path, tmp_path: Path, restore_cluster: None
) -> None:
    name = launch_detached(
        kd, tmp_path, f"name: {unique('ctld')}\nrun: echo started; sleep 25; echo done\n"
    )
    # Running for real, not only R in squeue: a slurmctld killed while the launch is still in
    # flight fails the launch, and Slurm requeues and holds the job (its own test below).
    wait_until_output(kd, name, "0: started")
    wait_for_status(kd, name, {"ACTIVE"})
    follower = subprocess.Popen(
        [KONDUKTOR, "logs", "--follow", name],
        env={**os.environ, "KONDUKTOR_HOME": str(kd_home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # A restart: SIGTERM, so slurmctld saves its state. (After SIGKILL it restarts from
        # its last periodic save: a job started since then is relaunched under its old id,
        # the node drains itself for "Duplicate jobid" and Slurm requeues and holds the job.
        # That is Slurm losing state, not what this test is about.)
        kill_daemon("slurmctld", signal.SIGTERM)
        started = time.monotonic()
        stale = kd("status", timeout=60)
        elapsed = time.monotonic() - started
        assert stale.returncode == 3, stale.output
        assert "ACTIVE (stale)" in stale.stdout and "Slurm could not be reached" in stale.stderr
        assert elapsed < 10, f"status took {elapsed:.1f}s to say stale"
        cluster_up()
        again = kd("status")
        assert again.returncode == 0, again.output
        assert re.search(rf"{name}\s+ACTIVE\s", again.stdout), again.stdout
        # The job carried on through the restart; the follower ends with it.
        out, err = follower.communicate(timeout=90)
        assert follower.returncode == 0, (out, err)
        assert "0: done" in out and f"{name}: COMPLETED" in err
    finally:
        follower.kill()


def test_munged_stopped_here_is_named_a_launch_submits_nothing_and_cluster_up_heals(
    kd, tmp_path: Path, restore_cluster: None
) -> None:
    """With munged gone from the login node every Slurm command fails to authenticate, and
    `scontrol ping` calls the controller DOWN. konduktor must name munge, submit nothing,
    and be right again once cluster-up.sh has started munged. (After a longer outage the
    nodes are "not responding" too, and cluster-up.sh asks them to register again: measured
    by hand, 0.7 s instead of 56 s after two minutes without munged; not waited for here.)"""
    name = launch_detached(kd, tmp_path, f"name: {unique('munge')}\nrun: sleep 60\n")
    wait_for_status(kd, name, {"ACTIVE"})
    kill_daemon("munged", signal.SIGTERM)
    try:
        stale = kd("status", timeout=60)
        assert stale.returncode == 3, stale.output
        assert re.search(rf"{name}\s+ACTIVE \(stale\)", stale.stdout), stale.output
        assert "munge failed (Failed to access" in stale.stderr, stale.stderr
        assert "Is munged running here?" in stale.stderr and "is DOWN" not in stale.stderr

        again = unique("mungelaunch")
        write_task(tmp_path, f"name: {again}\nrun: echo never\n", "again.yaml")
        launched = kd("launch", "-y", "-d", "again.yaml", cwd=tmp_path, timeout=60)
        assert launched.returncode == 3, launched.output
        assert "Error: could not submit to Slurm: sbatch: this machine cannot authenticate" in (
            launched.stderr
        ), launched.stderr
        assert launched.stderr.rstrip().endswith("Nothing was submitted"), launched.stderr
    finally:
        started = time.monotonic()
        cluster_up()
    assert time.monotonic() - started < 30
    for node in ("node1", "node2"):
        wait_for_node_settled(node, timeout=10)
    shown = kd("status", "-a")
    assert shown.returncode == 0, shown.output
    assert re.search(rf"{name}\s+ACTIVE\s", shown.stdout), shown.stdout
    assert re.search(rf"{again}-\S+\s+FAILED\s", shown.stdout), shown.stdout
    queued = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
    )
    assert not any(line.startswith(again) for line in queued.stdout.split()), queued.stdout
    assert kd("down", "-y", name).returncode == 0


def test_slurmd_killed_under_a_two_node_job_names_the_node_then_runs_again(
    kd, tmp_path: Path, restore_cluster: None
) -> None:
    name = launch_detached(
        kd,
        tmp_path,
        f"name: {unique('nodefail')}\nnum_nodes: 2\nresources:\n  cpus: 1\n"
        'run: echo "run $KONDUKTOR_RESTART_ATTEMPT on rank $RANK"; sleep 300\n',
    )
    wait_for_status(kd, name, {"ACTIVE"})
    # ACTIVE comes with the allocation; the step starts on the nodes a moment later. Killed
    # before that, slurmd-node2 fails the launch itself ("Task launch ... failed on node
    # node2") and the job fails within seconds, before slurmctld can see the node go.
    wait_until_output(kd, name, "run 0 on rank 0")
    wait_until_output(kd, name, "run 0 on rank 1")
    kill_daemon("slurmd-node2")
    # slurmctld notices after SlurmdTimeout (20 s) and requeues the job (JobRequeue=1).
    job = wait_until(
        kd,
        name,
        lambda j: "node failure (" in j["detail"],
        "a detail naming the failed node",
        timeout=120,
    )
    assert job["status"] == "SUSPENDED (by system)", job
    assert job["detail"].startswith("node failure (node2); requeued"), job
    assert "preempt" not in job["detail"]
    cluster_up()  # node2 returns (ReturnToService=2) and the job runs again
    # Slurm requeues with a begin time a while ahead; the test brings the rerun forward, but
    # only once the first run is gone from node2. The slurmstepd of its step there outlived
    # slurmd; the restarted slurmd reports it, and slurmctld has it killed, which revokes
    # the job's credential as of that second. A rerun already started then loses its rank on
    # node2 ("Killed"), and one started within that second is refused there ("Job
    # credential revoked", exit 168). Slurm's own begin time keeps real reruns clear of it.
    job_id = status_json(kd, name)["jobs"][0]["slurm_job_id"]
    wait_for_no_step_of(job_id)
    wait_for_node_settled("node2")
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"jobname={name}", "starttime=now"], check=False)
    job = wait_for_status(kd, name, {"ACTIVE"}, timeout=150)
    # ACTIVE from the allocation on; each rank prints its line when its task starts.
    wait_until_output(kd, name, "run 1 on rank 0", timeout=30)
    wait_until_output(kd, name, "run 1 on rank 1", timeout=30)
    kd("down", "-y", name)


def test_a_rank_srun_cannot_launch_is_named_with_its_node(
    kd, tmp_path: Path, restore_cluster: None
) -> None:
    """slurmd-node2 gone as a two-node job starts, before slurmctld notices: srun cannot
    launch rank 1 there, ends the step and exits with a bare number (233, 105, ...). The
    status names the rank and its node; the log says so."""
    held = "slurm:\n  sbatch_options: ['--hold']\n"
    name = launch_detached(
        kd,
        tmp_path,
        f"name: {unique('unstarted')}\nnum_nodes: 2\nresources:\n  cpus: 1\n{held}"
        'run: echo "ran on rank $RANK"; sleep 120\n',
    )
    job_id = status_json(kd, name)["jobs"][0]["slurm_job_id"]
    # slurmctld marks a silent node down SlurmdTimeout (20 s) after its last word, and would
    # then requeue the job; srun gives up on the launch after MessageTimeout (10 s). A
    # slurmd started just now has just registered: the job ends well before that.
    kill_daemon("slurmd-node2")
    cluster_up()
    kill_daemon("slurmd-node2")
    subprocess.run(["scontrol", "release", job_id], check=True)
    wait_until_output(kd, name, "never started", timeout=60)
    cluster_up()  # node2 answers again: the job can finish completing
    job = wait_for_status(kd, name, {"FAILED"}, timeout=90)
    assert job["detail"] == "rank 1 never started on node2", job
    logs = kd("logs", name).stdout
    assert "konduktor: rank 1 never started on node2 (srun could not launch it there)" in logs
    assert "ran on rank 0" in logs and "ran on rank 1" not in logs


def test_slurmdbd_down_follower_and_status_stay_right_from_squeue(
    kd, kd_home: Path, tmp_path: Path, restore_cluster: None
) -> None:
    kill_daemon("slurmdbd")
    name = launch_detached(kd, tmp_path, f"name: {unique('nodbd')}\nrun: sleep 3; echo fine\n")
    followed = kd("logs", "--follow", name, timeout=120)
    assert followed.returncode == 0, followed.output
    assert "0: fine" in followed.stdout and f"{name}: COMPLETED" in followed.stderr
    assert "still trying" not in followed.stderr
    shown = kd("status", "--json")
    assert shown.returncode == 0, shown.output  # every job is still in squeue: nothing stale
    assert status_json(kd, name)["jobs"][0]["status"] == "COMPLETED"


def test_disk_full_while_staging_submits_nothing_and_leaves_no_partial_snapshot(
    kd, kd_home: Path, tmp_path: Path
) -> None:
    jobs = tmp_path / "small-disk"
    jobs.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(jobs)], check=True)
    try:
        (kd_home / "config.yaml").write_text(f"jobs_dir: {jobs}\n")
        project = tmp_path / "project"
        project.mkdir()
        (project / "weights.bin").write_bytes(os.urandom(8 * 1024 * 1024))
        task_name = unique("full")
        write_task(tmp_path, f"name: {task_name}\nworkdir: project\nrun: 'true'\n")
        failed = kd("launch", "-y", "task.yaml", cwd=tmp_path)
        assert failed.returncode == 1, failed.output
        assert "No space left on device" in failed.stderr
        assert "Nothing was submitted" in failed.stderr and "Traceback" not in failed.output
        assert not list(jobs.glob(f"{task_name}-*")), "the partial snapshot was left behind"
        (job,) = status_json(kd)["jobs"]
        assert job["status"] == "FAILED" and job["detail"].startswith("staging failed")
        queued = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
        ).stdout
        assert task_name not in queued
    finally:
        subprocess.run(["umount", str(jobs)], check=False)


def fill_up(directory: Path) -> Path:
    """Write a file in ``directory`` until its file system is full; the file."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler


def test_a_full_disk_under_the_store_is_named_and_loses_nothing(tmp_path: Path) -> None:
    """KONDUKTOR_HOME on a full file system (a home over its quota looks the same to
    SQLite: "disk I/O error" as even a read grows the store's -shm file). Every command says
    what is full in one line and exits 6; nothing is submitted or lost, and all is as it was
    once there is space again."""
    home = tmp_path / "small-home"
    home.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(home)], check=True)
    try:
        kd = make_runner(home, default_timeout=120)
        task_name = unique("fullhome")
        name = launch_detached(kd, tmp_path, f"name: {task_name}\nrun: echo kept\n")
        wait_for_status(kd, name, {"COMPLETED"})
        filler = fill_up(home)
        store = home / "state.db"
        for args in (
            ("status",),
            ("status", "--json"),
            ("status", name),
            ("logs", name),
            ("report", "--since", "1d"),
            ("launch", "-y", "-d", "task.yaml"),
        ):
            refused = kd(*args, cwd=tmp_path)
            assert refused.returncode == 6, (args, refused.output)
            assert refused.stdout == "" and "Traceback" not in refused.stderr, refused.output
            assert refused.stderr.startswith(
                f"Error: cannot use the job store {store}: the file system holding {home} is "
                "full (0 KiB free). Free some space"
            ), refused.stderr
            assert len(refused.stderr.splitlines()) == 1, refused.stderr
        assert not list(home.glob(".konduktor-space-*"))  # the probe leaves nothing
        queued = subprocess.run(
            ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert queued.count(name) <= 1 and not [
            job for job in queued if job.startswith(task_name) and job != name
        ], queued
        filler.unlink()
        jobs = status_json(kd)["jobs"]
        assert [(job["name"], job["status"]) for job in jobs] == [(name, "COMPLETED")]
        assert "kept" in kd("logs", name).stdout
    finally:
        subprocess.run(["umount", str(home)], check=False)


def test_lost_sbatch_answer_is_found_not_submitted_twice(kd, kd_home: Path, tmp_path: Path) -> None:
    """sbatch accepted by slurmctld, but its answer never comes back (a wrapper sleeps past
    the timeout): konduktor finds the job by name instead of submitting it again."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "sbatch"
    real = subprocess.run(["which", "sbatch"], capture_output=True, text=True).stdout.strip()
    wrapper.write_text(f'#!/bin/sh\n"{real}" "$@" > /dev/null\nsleep 30\n')
    wrapper.chmod(0o755)
    (kd_home / "config.yaml").write_text(f"slurm_bin_dir: {bin_dir}\nslurm_timeout: 5\n")
    task_name = unique("lost")
    write_task(tmp_path, f"name: {task_name}\nrun: echo once\n")
    launched = kd("launch", "-y", "-d", "task.yaml", cwd=tmp_path, timeout=120)
    assert launched.returncode == 0, launched.output
    name = submitted_name(launched.stdout)
    queued = squeue_fields(name, "%i")
    assert len(queued) == 1 and status_json(kd, name)["jobs"][0]["slurm_job_id"] == queued[0]


def slow_command(bin_dir: Path, name: str, before: str = "", after: str = "") -> None:
    """A wrapper in ``bin_dir`` that runs the real ``name`` between two shell snippets."""
    real = subprocess.run(["which", name], capture_output=True, text=True).stdout.strip()
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / name
    wrapper.write_text(f'#!/bin/sh\n{before}\n"{real}" "$@"\nrc=$?\n{after}\nexit $rc\n')
    wrapper.chmod(0o755)


def start_launch(kd_home: Path, cwd: Path, path_first: Path | None = None) -> subprocess.Popen:
    """`konduktor launch -y -d task.yaml` in a session of its own, as a terminal runs it."""
    env = {**os.environ, "KONDUKTOR_HOME": str(kd_home)}
    if path_first is not None:
        env["PATH"] = f"{path_first}:{env['PATH']}"
    return subprocess.Popen(
        [KONDUKTOR, "launch", "-y", "-d", "task.yaml"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.parametrize(
    "sent",
    [
        signal.SIGINT,  # Ctrl-C in the terminal
        signal.SIGHUP,  # the terminal or SSH session closed
        signal.SIGTERM,  # kill
    ],
    ids=["ctrl-c", "hangup", "term"],
)
def test_ctrl_c_while_staging_submits_nothing_and_says_so(
    kd, kd_home: Path, tmp_path: Path, sent: signal.Signals
) -> None:
    task_name, launch = start_slow_staging(kd, kd_home, tmp_path, "ctrlc")
    os.killpg(launch.pid, sent)
    out, err = launch.communicate(timeout=30)
    assert launch.returncode == 130, (out, err)
    assert err.endswith("Error: interrupted while staging; nothing was submitted\n"), err
    (job,) = status_json(kd)["jobs"]
    assert job["status"] == "FAILED", job
    assert job["detail"] == "launch interrupted while staging; nothing was submitted"
    assert not Path(job["job_dir"]).exists(), "the partial snapshot was left behind"
    assert not squeue_names(task_name)


def start_slow_staging(
    kd, kd_home: Path, tmp_path: Path, prefix: str
) -> tuple[str, subprocess.Popen]:
    """A launch whose rsync takes 30 s to start, once it is staging: (task name, process)."""
    slow = tmp_path / "slow-bin"
    started = tmp_path / "rsync-started"
    slow_command(slow, "rsync", before=f"touch {started}; sleep 30")
    task_name = unique(prefix)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "data.txt").write_text("data")
    write_task(tmp_path, f"name: {task_name}\nworkdir: project\nrun: 'true'\n")
    launch = start_launch(kd_home, tmp_path, path_first=slow)
    # rsync has started, not just the record: the job is CREATED "staging workdir" from
    # the moment its name is claimed, a moment before staging begins.
    deadline = time.monotonic() + 30
    while not started.exists():
        assert time.monotonic() < deadline and launch.poll() is None, "staging never started"
        time.sleep(0.05)
    assert status_json(kd)["jobs"][0]["detail"] == "staging workdir"
    return task_name, launch


def squeue_names(prefix: str) -> list[str]:
    queued = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
    ).stdout.split()
    return [name for name in queued if name.startswith(prefix)]


@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_a_launch_killed_after_sbatch_is_found_in_slurm_by_the_next_status(
    kd, kd_home: Path, tmp_path: Path, sent: signal.Signals
) -> None:
    """The launching process ends (kill -9, Ctrl-C) after slurmctld took the job but before
    it recorded the id: the next status finds the job by its unique name and follows it,
    instead of showing it CREATED for good."""
    bin_dir = tmp_path / "slurm-bin"
    slow_command(bin_dir, "sbatch", after="sleep 60")
    (kd_home / "config.yaml").write_text(f"slurm_bin_dir: {bin_dir}\nslurm_timeout: 120\n")
    task_name = unique("orphan")
    write_task(tmp_path, f"name: {task_name}\nrun: echo ran\n")
    launch = start_launch(kd_home, tmp_path)
    deadline = time.monotonic() + 60
    while not squeue_names(task_name):
        assert time.monotonic() < deadline and launch.poll() is None, launch.communicate()
        time.sleep(0.2)
    os.killpg(launch.pid, sent)
    _, err = launch.communicate(timeout=30)
    if sent == signal.SIGINT:
        assert launch.returncode == 130, err
        assert err.endswith(
            "Error: interrupted while submitting; Slurm may have taken the job: `konduktor "
            "status` says what became of it\n"
        ), err
    (name,) = squeue_names(task_name)
    job = wait_for_status(kd, name, {"COMPLETED"}, timeout=90)
    history = [(step["status"], step["detail"]) for step in job["history"]]
    assert history[:2] == [("CREATED", "staging workdir"), ("PENDING", history[1][1])], history
    assert re.fullmatch(r"its launch \(process \d+\) ended while submitting; found in Slurm",
                        history[1][1]), history  # fmt: skip
    assert "ran" in kd("logs", name).stdout


def test_a_launch_killed_while_staging_is_failed_by_the_next_status(
    kd, kd_home: Path, tmp_path: Path
) -> None:
    task_name, launch = start_slow_staging(kd, kd_home, tmp_path, "killed")
    os.killpg(launch.pid, signal.SIGKILL)
    launch.communicate(timeout=30)
    (job,) = status_json(kd)["jobs"]
    assert job["status"] == "FAILED", job
    assert re.fullmatch(
        r"its launch \(process \d+\) ended before submitting; nothing was submitted",
        job["detail"],
    ), job
    assert not squeue_names(task_name)


def test_a_job_whose_id_slurm_handed_out_again_is_lost_not_another(
    kd, kd_home: Path, tmp_path: Path
) -> None:
    """slurmctld restarted without its saved state hands job ids out again. Staged here
    without wiping the shared cluster's state: the store's job is pointed at the id of a job
    submitted after it, under another name, which is what the store then sees."""
    held = "slurm:\n  sbatch_options: ['--hold']\nrun: 'true'\n"
    name = launch_detached(kd, tmp_path, f"name: {unique('reused')}\n{held}")
    own_id = status_json(kd, name)["jobs"][0]["slurm_job_id"]
    time.sleep(1.1)  # squeue's SubmitTime has whole seconds
    other_name = unique("someone-else")
    other_id = subprocess.run(
        ["sbatch", "--parsable", "--hold", "-J", other_name, "-o", "/dev/null", "--wrap", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    try:
        with sqlite3.connect(kd_home / "state.db") as db:
            db.execute("UPDATE jobs SET slurm_job_id = ? WHERE name = ?", (other_id, name))
        job = status_json(kd, name)["jobs"][0]
        assert job["status"] == "FAILED" and job["terminal"], job
        assert job["detail"].startswith(f"lost by Slurm: job id {other_id} now names another job")
        assert repr(other_name) in job["detail"]
        # The other job is untouched: still held, still its owner's.
        shown = subprocess.run(
            ["squeue", "-h", "-j", other_id, "-o", "%T %j"], capture_output=True, text=True
        ).stdout.split()
        assert shown == ["PENDING", other_name]
    finally:
        subprocess.run(["scancel", own_id, other_id], check=False)


def test_twenty_concurrent_launches_with_reports_and_followers(
    kd, kd_home: Path, tmp_path: Path
) -> None:
    """No duplicate submission, no lost job, and a store that passes its integrity check."""
    task_name = unique("race")
    write_task(tmp_path, f"name: {task_name}\nrun: sleep 2; echo raced\n")
    first = kd("launch", "-y", "-d", "task.yaml", cwd=tmp_path)
    assert first.returncode == 0, first.output
    env = {**os.environ, "KONDUKTOR_HOME": str(kd_home)}

    def spawn(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [KONDUKTOR, *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    followed = submitted_name(first.stdout)
    procs = [spawn("launch", "-y", "-d", "task.yaml") for _ in range(20)]
    procs += [spawn("report", "--format", "json", "--lock-timeout", "120") for _ in range(5)]
    procs += [spawn("logs", "--follow", followed) for _ in range(3)]
    results = [(proc, *proc.communicate(timeout=600)) for proc in procs]
    for proc, out, err in results:
        assert proc.returncode == 0, (proc.args, out, err)
        assert "Traceback" not in err
    names = {submitted_name(out) for proc, out, _ in results[:20]} | {followed}
    assert len(names) == 21
    store = sqlite3.connect(kd_home / "state.db")
    try:
        assert store.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = store.execute(
            "SELECT name, slurm_job_id FROM jobs WHERE task_name=?", (task_name,)
        ).fetchall()
    finally:
        store.close()
    assert {name for name, _ in rows} == names
    ids = [job_id for _, job_id in rows]
    assert len(set(ids)) == 21 and None not in ids
    queued = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(j for j in queued if j.startswith(f"{task_name}-")) == sorted(names)
    for _, out, _ in results[25:]:
        assert "0: raced" in out
