"""The lifecycle on the real cluster: retries, logs that follow, status detail/filters/cost,
an unreachable controller, preemption and node failure."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from konduktor_slurm.store import Store
from tests.conftest import (
    KONDUKTOR,
    squeue_fields,
    status_json,
    submit_held_jobs,
    wait_for_status,
    write_task,
    write_user_file,
)
from tests.live.test_launch import submitted_name, unique

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]


def cleanup(kd, name: str) -> None:
    """`down` the job; scancel by name too, so a failing test never leaves GPUs taken."""
    kd("down", "-y", name)
    subprocess.run(["scancel", "--name", name], check=False)


def launch_detached(kd, tmp_path: Path, text: str, filename: str = "task.yaml") -> str:
    result = kd("launch", "-y", "-d", str(write_task(tmp_path, text, filename)))
    assert result.returncode == 0, result.output
    return submitted_name(result.stdout)


def test_failed_run_restarts_from_the_top_and_completes(kd, tmp_path: Path) -> None:
    name = launch_detached(
        kd,
        tmp_path,
        "name: retry\nnum_nodes: 2\nresources:\n  job_config:\n    max_restarts: 2\n"
        "run: |\n"
        '  echo "attempt=$KONDUKTOR_RESTART_ATTEMPT"\n'
        '  if [ "$KONDUKTOR_RESTART_ATTEMPT" = 0 ]; then exit 4; fi\n'
        "  sleep 6\n",
    )
    # While the second attempt runs, status says so.
    deadline = time.monotonic() + 60
    job: dict = {}
    while time.monotonic() < deadline:
        job = status_json(kd, name)["jobs"][0]
        if job["attempt"] == [2, 3] and job["status"] == "ACTIVE":
            break
        time.sleep(0.5)
    assert job["attempt"] == [2, 3] and job["status"] == "ACTIVE", job
    assert "attempt 2 of 3" in job["detail"]
    done = wait_for_status(kd, name, {"COMPLETED", "FAILED"}, timeout=60)
    assert done["status"] == "COMPLETED", done
    log = kd("logs", name).stdout
    assert "0: attempt=0" in log and "1: attempt=1" in log
    assert "restarting from the beginning (attempt 2 of 3)" in log
    # A bare `status --json` writes its list in one piece per job (views.job_json_text), not
    # from the dicts `status --json NAME` writes: the same fields, ranks, attempt and all.
    listed = json.loads(kd("status", "--json").stdout)["jobs"]
    one = status_json(kd, name)["jobs"][0]
    assert one.pop("history") and one["rank_exit_codes"] == {"0": 0, "1": 0}
    assert listed == [one]


def test_logs_follow_ends_with_the_job_and_filters_ranks(kd, tmp_path: Path) -> None:
    name = launch_detached(
        kd,
        tmp_path,
        "name: follow\nnum_nodes: 2\nrun: |\n"
        '  for i in 1 2 3; do echo "line $i from $RANK"; sleep 1; done\n'
        '  [ "$RANK" = 1 ] && exit 3\n  exit 0\n',
    )
    started = time.monotonic()
    followed = kd("logs", "--follow", "--node-rank", "1", name, timeout=90)
    assert followed.returncode == 1, followed.output  # FAILED -> non-zero
    assert time.monotonic() - started < 60
    assert "1: line 3 from 1" in followed.stdout
    assert "0: line" not in followed.stdout  # only rank 1
    assert f"{name}: FAILED (rank 1 exited 3)" in followed.stderr

    last = kd("logs", "-n", "1", "--node-rank", "0", name)
    assert last.returncode == 0
    assert last.stdout == "0: line 3 from 0\n"

    detail = kd("status", name)
    assert detail.returncode == 0
    assert re.search(r"Exit codes:\s+rank 0: 0, rank 1: 3", detail.stdout), detail.stdout
    assert re.search(r"Nodes:\s+node\[1-2\]", detail.stdout)
    history = re.findall(r"^  \S+ \S+  (\S+)", detail.stdout, re.M)
    assert history[0] == "CREATED" and history[-1] == "FAILED"
    assert "PENDING" in history
    payload = status_json(kd, name)["jobs"][0]
    assert payload["rank_exit_codes"] == {"0": 0, "1": 3}
    assert [h["status"] for h in payload["history"]][-1] == "FAILED"


def test_status_filters(kd, tmp_path: Path) -> None:
    ok = launch_detached(kd, tmp_path, "name: okjob\nrun: 'true'\n", "ok.yaml")
    bad = launch_detached(kd, tmp_path, "name: badjob\nrun: exit 2\n", "bad.yaml")
    wait_for_status(kd, ok, {"COMPLETED"})
    wait_for_status(kd, bad, {"FAILED"})

    def names(*args: str) -> list[str]:
        result = kd("status", "--json", *args)
        assert result.returncode == 0, result.output
        return [job["name"] for job in json.loads(result.stdout)["jobs"]]

    assert names("-s", "failed") == [bad]
    assert names("-s", "completed") == [ok]
    assert names("-l", "1") == [bad]  # newest first
    assert names("--after", "1h") == [bad, ok]
    assert names("--before", "2000-01-01") == []
    bad_time = kd("status", "--after", "yesterday-ish")
    assert bad_time.returncode == 2 and "--after" in bad_time.stderr


def test_all_users_shows_other_users_konduktor_jobs(kd, kd_user, user_dir: Path) -> None:
    task = write_user_file(
        user_dir,
        "t.yaml",
        "name: theirs\nresources:\n  cpus: 2\n  accelerators: H100:1\nrun: sleep 30\n",
    )
    launched = kd_user("launch", "-y", "-d", str(task))
    assert launched.returncode == 0, launched.output
    theirs = submitted_name(launched.stdout)
    try:
        mine = kd("status")
        assert theirs not in mine.stdout
        everyone = kd("status", "-u")
        assert everyone.returncode == 0, everyone.output
        assert re.search(r"NAME\s+USER\s+STATUS", everyone.stdout)
        row = next(line for line in everyone.stdout.splitlines() if line.startswith(theirs))
        assert "kdtest" in row and "1x(2CPU, H100:1)" in row
    finally:
        kd_user("down", "-y", theirs)


def _count_status_calls(kd, calls: Path) -> dict[str, int]:
    calls.write_text("")
    result = kd("status")
    assert result.returncode == 0, result.output
    logged = calls.read_text().split()
    return {command: logged.count(command) for command in ("squeue", "sacct")}


def test_status_costs_the_same_for_1_and_200_jobs(
    kd, kd_home: Path, tmp_path: Path, counted_slurm: tuple[Path, Path]
) -> None:
    bin_dir, calls = counted_slurm
    (kd_home / "config.yaml").write_text(f"slurm_bin_dir: {bin_dir}\n")
    costs = {}
    for count in (1, 200):
        home = kd_home / f"n{count}"
        home.mkdir()
        (home / "config.yaml").write_text(f"slurm_bin_dir: {bin_dir}\n")
        ids = submit_held_jobs(home, count, f"cost{count}")
        env_kd = lambda *args, h=home: kd(*args, env={"KONDUKTOR_HOME": str(h)})  # noqa: E731
        pending = _count_status_calls(env_kd, calls)
        subprocess.run(["scancel", *ids], check=True)
        # Poll until every job has been seen finished (sacct lags squeue by about a second).
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            finished = _count_status_calls(env_kd, calls)
            if all(job.terminal for job in Store(home / "state.db").jobs()):
                break
            time.sleep(1)
        assert all(job.terminal for job in Store(home / "state.db").jobs())
        after = _count_status_calls(env_kd, calls)
        states = {job.state for job in Store(home / "state.db").jobs()}
        assert states == {"FAILED"}  # cancelled
        costs[count] = (pending, finished, after)
    assert costs[1] == costs[200], costs
    assert costs[200][0] == {"squeue": 1, "sacct": 0}  # all pending: one squeue
    assert costs[200][1] == {"squeue": 1, "sacct": 1}  # they left: one sacct for all
    assert costs[200][2] == {"squeue": 0, "sacct": 0}  # known terminal: never asked again


def test_five_concurrent_followers_share_their_looks_at_slurm(
    kd, kd_home: Path, tmp_path: Path, counted_slurm: tuple[Path, Path]
) -> None:
    """Five `logs --follow` of one user, over jobs of 30 s: one squeue per interval between
    them (the backoff of 2 s growing by half each time, shared through the store), not
    five; and each sees its job's end within seconds of its last line."""
    bin_dir, calls = counted_slurm
    seconds = 30  # each job runs
    names = [
        launch_detached(kd, tmp_path, f"name: follow{n}\nrun: sleep {seconds}; echo finished-{n}\n")
        for n in range(5)
    ]
    for name in names:
        wait_for_status(kd, name, {"ACTIVE"})
    (kd_home / "config.yaml").write_text(f"slurm_bin_dir: {bin_dir}\n")
    calls.write_text("")
    env = {**os.environ, "KONDUKTOR_HOME": str(kd_home)}
    started = time.monotonic()
    followers = [
        subprocess.Popen(
            [KONDUKTOR, "logs", "--follow", name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    outputs = [follower.communicate(timeout=180) for follower in followers]
    took = time.monotonic() - started
    for n, (follower, (out, err)) in enumerate(zip(followers, outputs, strict=True)):
        assert follower.returncode == 0, (out, err)
        assert f"finished-{n}" in out
    squeues = calls.read_text().split().count("squeue")
    # Unshared and without backoff (a look every 2 s each) this was 5 * 30 / 2 = 75 calls.
    # Shared: about 6 backoff looks, plus each follower's own first look and its look after
    # the end line (the job may still be completing: one more a few seconds later).
    assert squeues <= 22, (squeues, took)
    assert took < seconds + 20, took  # the end is seen within seconds, not at the next look


def test_unreachable_controller_shows_stale_states_and_exits_3(kd, tmp_path: Path) -> None:
    name = launch_detached(kd, tmp_path, "name: stale\nrun: sleep 20\n")
    wait_for_status(kd, name, {"ACTIVE"})
    # A client configuration pointing at a port where no slurmctld listens: the real
    # failure a laptop or cron sees when the controller is down.
    conf = Path(tmp_path / "slurm.conf")
    text = Path("/etc/slurm/slurm.conf").read_text()
    conf.write_text(re.sub(r"(?m)^SlurmctldPort=\d+", "SlurmctldPort=6999", text))
    started = time.monotonic()
    result = kd("status", env={"SLURM_CONF": str(conf)}, timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 3, result.output
    assert "Slurm could not be reached" in result.stderr
    assert "ACTIVE (stale)" in result.stdout
    assert elapsed < 60, f"status took {elapsed:.0f}s"
    cleanup(kd, name)


def test_preempted_job_is_suspended_by_system_and_comes_back(kd, tmp_path: Path) -> None:
    low = launch_detached(
        kd,
        tmp_path,
        "name: lowprio\nnum_nodes: 2\nresources:\n  accelerators: H100:8\n"
        "slurm:\n  partition: low\n"
        'run: echo "attempt $KONDUKTOR_RESTART_ATTEMPT"; sleep 300\n',
        "low.yaml",
    )
    try:
        wait_for_status(kd, low, {"ACTIVE"}, timeout=60)
        high = launch_detached(
            kd,
            tmp_path,
            "name: urgent\nnum_nodes: 2\nresources:\n  accelerators: H100:8\n"
            "slurm:\n  partition: high\nrun: sleep 5\n",
            "high.yaml",
        )
        preempted = wait_for_status(kd, low, {"SUSPENDED (by system)"}, timeout=60)
        assert "preempted" in preempted["detail"], preempted
        wait_for_status(kd, high, {"COMPLETED"}, timeout=60)
        # Slurm holds a requeued job back for cred_expire + 1 s (the test cluster: 16 s).
        back = wait_for_status(kd, low, {"ACTIVE"}, timeout=90)
        assert back["restarts"] == 1
        # ACTIVE comes before the run's first line: give the rerun a moment to print it.
        deadline = time.monotonic() + 30
        followed = kd("logs", low).stdout
        while "0: attempt 1" not in followed and time.monotonic() < deadline:
            time.sleep(1)
            followed = kd("logs", low).stdout
        assert "0: attempt 0" in followed and "0: attempt 1" in followed, followed
        history = [h["status"] for h in status_json(kd, low)["jobs"][0]["history"]]
        assert history[-3:] == ["ACTIVE", "SUSPENDED (by system)", "ACTIVE"], history
    finally:
        cleanup(kd, low)


def test_node_failure_fails_a_non_requeueable_job_naming_the_node(kd, tmp_path: Path) -> None:
    name = launch_detached(
        kd,
        tmp_path,
        "name: fragile\nnum_nodes: 2\nslurm:\n  sbatch_options:\n    no-requeue: null\n"
        "run: sleep 120\n",
    )
    try:
        wait_for_status(kd, name, {"ACTIVE"}, timeout=60)
        subprocess.run(
            ["scontrol", "update", "nodename=node2", "state=down", "reason=konduktor-test"],
            check=True,
        )
        failed = wait_for_status(kd, name, {"FAILED"}, timeout=60)
        assert failed["detail"] == "node failure (node2)", failed
    finally:
        subprocess.run(["scontrol", "update", "nodename=node2", "state=resume"], check=False)
        cleanup(kd, name)


def test_unknown_job_name_suggests_close_names(kd, tmp_path: Path) -> None:
    name = launch_detached(kd, tmp_path, f"name: {unique('typo')}\nrun: 'true'\n")
    result = kd("logs", name[:-1] + "x")
    assert result.returncode == 2  # a job name that names no job: bad input
    assert f"Did you mean '{name}'" in result.stderr


@pytest.fixture
def gpu_quota_qos() -> str:
    """A QOS that lets a user hold at most 8 GPUs: a real "held back by quota" case."""
    qos = "kdlimited"
    subprocess.run(
        ["sacctmgr", "-i", "add", "qos", qos, "MaxTRESPerUser=gres/gpu=8"], capture_output=True
    )
    subprocess.run(
        ["sacctmgr", "-i", "modify", "user", "root", "set", f"qos+={qos}"], capture_output=True
    )
    return qos


def test_job_over_its_quota_is_suspended_by_system(kd, tmp_path: Path, gpu_quota_qos) -> None:
    name = launch_detached(
        kd,
        tmp_path,
        "name: greedy\nnum_nodes: 2\nresources:\n  accelerators: H100:8\n"
        f"slurm:\n  qos: {gpu_quota_qos}\nrun: 'true'\n",
    )
    try:
        job = wait_for_status(kd, name, {"SUSPENDED (by system)"}, timeout=30)
        assert job["detail"] == "awaiting quota: QOSMaxGRESPerUser", job
        assert job["reason"] == "QOSMaxGRESPerUser"
    finally:
        cleanup(kd, name)


def test_out_of_memory_fails_naming_the_cause(kd, tmp_path: Path) -> None:
    # 200 MiB limit (cgroups enforce it on the test cluster); the run allocates ~1 GiB.
    name = launch_detached(
        kd,
        tmp_path,
        "name: hungry\nresources:\n  memory: 0.2\n"
        "run: python3 -c 'x = bytearray(1024 ** 3); print(len(x))'\n",
    )
    job = wait_for_status(kd, name, {"FAILED", "COMPLETED"}, timeout=60)
    assert job["status"] == "FAILED"
    assert "out of memory" in job["detail"], job


def test_a_following_launch_says_why_its_job_waits_and_when_it_runs(
    kd, kd_home: Path, tmp_path: Path
) -> None:
    """A launch following a job that cannot start printed nothing for as long as it waited
    (3 nodes asked of a 2-node partition: PENDING, PartitionNodeLimit, for ever). Each
    state and reason it passes through is now one line on stderr, the output untouched."""
    import queue
    import signal
    import threading

    name = unique("toobig")
    write_task(tmp_path, f"name: {name}\nnum_nodes: 3\nrun: echo never\n")
    proc = subprocess.Popen(
        [KONDUKTOR, "launch", "-y", "task.yaml"],
        cwd=tmp_path,
        env={**os.environ, "KONDUKTOR_HOME": str(kd_home)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()
    said = []
    try:
        deadline = time.monotonic() + 60
        while not any("PartitionNodeLimit" in line for line in said):
            said.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
        proc.send_signal(signal.SIGINT)  # detach: the job stays
        assert proc.wait(timeout=30) == 130
        out = proc.stdout.read() if proc.stdout else ""
    finally:
        proc.kill()
        kd("down", "-y", f"{name}-*")  # the job's name is <name>-<4 hex>
    job = submitted_name(out)
    blocked = f"{job}: SUSPENDED (by system) (blocked: PartitionNodeLimit: beyond what its "
    assert any(line.startswith(blocked) for line in said), said
    assert squeue_fields(job, "%T") in ([], ["CANCELLED"]), "down left the job in Slurm"
    # A job that runs says so once, then its output, then how it ended.
    write_task(tmp_path, f"name: {unique('says')}\nrun: echo hello\n")
    ran = kd("launch", "-y", "task.yaml", cwd=tmp_path)
    assert ran.returncode == 0, ran.output
    job = submitted_name(ran.stdout)
    assert ran.stderr.count(f"{job}: ACTIVE (running on node") <= 1, ran.stderr
    assert ran.stderr.rstrip().endswith(f"{job}: COMPLETED (exited 0)"), ran.stderr
    assert "0: hello" in ran.stdout and "ACTIVE" not in ran.stdout
