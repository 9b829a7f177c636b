"""A damaged job store on the real cluster: `konduktor store rebuild` keeps it aside and
re-records the jobs Slurm knows, so none is lost track of; status, logs and down work on them
again. A running job comes back from squeue, locally and over SSH; a job that ended long ago
(slurmctld has forgotten it: MinJobAge) comes back from accounting.

The last test needs a finished job slurmctld has forgotten (MinJobAge, 600 s on the embedded
cluster). tests/conftest.py's ``finished_early`` launches it when the session starts, so in
`make test` the wait overlaps the tests that run before this module; run alone, this module
waits for it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import launch_sweep, status_json, wait_for_status, write_task
from tests.live.test_launch import submitted_name, unique
from tests.live.test_lifecycle_live import cleanup
from tests.live.test_ssh import (
    CLUSTER_SSH_PORT,
    REMOTE_HOME,
    REMOTE_JOBS,
    SSH_DIR,
    Workstation,
)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

EXIT_STORE = 6


def damage(path: Path) -> str:
    """Overwrite the SQLite header, as a bad copy or a crashed disk would; the sha256 of
    what is left, to find the file again where rebuild put it."""
    data = bytearray(path.read_bytes())
    data[:100] = b"\x00garbage" * 12 + b"\x00" * 4
    path.write_bytes(bytes(data))
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return hashlib.sha256(bytes(data)).hexdigest()


def kept_aside(home: Path, digest: str) -> Path:
    aside = list(home.glob("state.db.damaged-*"))
    assert len(aside) == 1, aside
    assert re.fullmatch(r"state\.db\.damaged-\d{8}-\d{6}", aside[0].name)
    assert hashlib.sha256(aside[0].read_bytes()).hexdigest() == digest  # kept, as it was
    return aside[0]


def integrity(path: Path) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA integrity_check").fetchall()
    finally:
        db.close()


def slurm_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "State", "-j", job_id],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    return out[0] if out else ""


def wait_for(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(2)


def min_job_age() -> int:
    config = subprocess.run(
        ["scontrol", "show", "config"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"^MinJobAge\s*=\s*(\d+)", config, re.MULTILINE)
    assert match, "scontrol show config has no MinJobAge"
    return int(match.group(1))


def forgotten_by_slurmctld(job_id: str) -> bool:
    queue = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%i"],
        capture_output=True,
        text=True,
        check=False,
    )
    return job_id not in queue.stdout.split()


# ---- a running job, on the login node ----------------------------------------------------------


def test_a_running_job_survives_a_damaged_store(kd, kd_home: Path, tmp_path: Path, finished_early):
    name = unique("survivor")
    task = write_task(
        tmp_path, f'name: {name}\nrun: |\n  echo "started on rank $RANK"\n  sleep 90\n'
    )
    launched = kd("launch", "-y", "-d", str(task))
    assert launched.returncode == 0, launched.output
    job_name = submitted_name(launched.stdout)
    try:
        before = wait_for_status(kd, job_name, {"ACTIVE"}, timeout=120)
        store = kd_home / "state.db"

        # A damaged value first: the row is read around and Slurm is asked again.
        db = sqlite3.connect(store)
        db.execute("UPDATE jobs SET state='RUNNING?!' WHERE name=?", (job_name,))
        db.commit()
        db.close()
        shown = kd("status")
        assert shown.returncode == 0, shown.output
        assert re.search(rf"{job_name}\s+ACTIVE", shown.stdout), shown.stdout
        assert shown.stderr.count("\n") == 1 and "state is 'RUNNING?!'" in shown.stderr
        assert kd("status").stderr == ""  # the refresh wrote the state back

        # Then the whole file.
        digest = damage(store)
        broken = kd("status")
        assert broken.returncode == EXIT_STORE and broken.stdout == "", broken.output
        assert broken.stderr.count("\n") == 1 and "konduktor store rebuild" in broken.stderr
        assert "Traceback" not in broken.output

        rebuilt = kd("store", "rebuild", "-y")
        assert rebuilt.returncode == 0, rebuilt.output
        aside = kept_aside(kd_home, digest)
        assert f"Kept the old store as {aside} (not deleted)." in rebuilt.stdout
        assert re.search(rf"{job_name}\s+ACTIVE", rebuilt.stdout), rebuilt.stdout
        assert integrity(store) == [("ok",)]

        after = status_json(kd, job_name)["jobs"][0]
        assert after["status"] == "ACTIVE"
        for field in ("slurm_job_id", "resources", "num_nodes", "log_path", "job_dir", "task_name"):
            assert after[field] == before[field], field
        history = status_json(kd, job_name)["jobs"][0]["history"]
        assert [h["status"] for h in history] == ["PENDING", "ACTIVE"]
        assert history[0]["detail"] == "re-recorded from Slurm by `konduktor store rebuild`"

        logs = kd("logs", job_name)
        assert logs.returncode == 0 and "started on rank 0" in logs.stdout, logs.output
        check = kd("store", "check")
        assert check.returncode == 0 and "The store is sound." in check.stdout, check.output

        down = kd("down", "-y", job_name)
        assert down.returncode == 0, down.output
        wait_for(
            "the cancellation", lambda: slurm_state(after["slurm_job_id"]).startswith("CANC"), 60
        )
    finally:
        cleanup(kd, job_name)


# ---- a grid sweep: one Slurm job array, a record per variant ------------------------------------


def test_a_sweep_comes_back_variant_by_variant(kd, kd_home: Path, tmp_path: Path) -> None:
    """Each element of the sweep's job array is re-recorded as the variant launch made, with
    its own state, log and result; one still running goes on being followed."""
    name = unique("sweepback")
    release = tmp_path / "release"
    task = write_task(
        tmp_path,
        f"name: {name}\nrun: |\n"
        '  echo "variant seed=$SEED"\n'
        '  echo "{\\"seed\\": $SEED}" > "$KONDUKTOR_OUTPUT_DIR/result.json"\n'
        '  [ "$SEED" != 1 ] || exit 7\n'
        f'  if [ "$SEED" = 2 ]; then until [ -e {release} ]; do sleep 1; done; fi\n',
    )
    sweep, array, variants = launch_sweep(kd, task, "SEED=0,1,2")
    try:
        wait_for_status(kd, variants[0], {"COMPLETED"}, timeout=120)
        wait_for_status(kd, variants[1], {"FAILED"}, timeout=120)
        wait_for_status(kd, variants[2], {"ACTIVE"}, timeout=120)
        before = {job["name"]: job for job in status_json(kd)["jobs"]}

        damage(kd_home / "state.db")
        rebuilt = kd("store", "rebuild", "-y")
        assert rebuilt.returncode == 0, rebuilt.output
        for variant in variants:
            assert variant in rebuilt.stdout, rebuilt.stdout
        assert not re.search(rf"^\s*{sweep}\s", rebuilt.stdout, re.MULTILINE), rebuilt.stdout

        after = {job["name"]: job for job in status_json(kd)["jobs"]}
        assert sorted(name for name in after if name.startswith(sweep)) == variants
        for index, variant in enumerate(variants):
            job = after[variant]
            assert job["slurm_job_id"] == f"{array}_{index}"
            for field in ("status", "job_dir", "log_path", "task_name", "resources"):
                assert job[field] == before[variant][field], (variant, field)
        assert after[variants[1]]["detail"] == "rank 0 exited 7", after[variants[1]]

        logs = kd("logs", "--no-follow", variants[1])
        assert logs.returncode == 0 and "variant seed=1" in logs.stdout, logs.output
        assert "seed=0" not in logs.stdout
        result = kd("result", variants[0])
        assert result.returncode == 0 and json.loads(result.stdout) == {"seed": 0}, result.output

        release.touch()  # the running variant ends; the rebuilt store follows it
        wait_for_status(kd, variants[2], {"COMPLETED"}, timeout=120)
        down = kd("down", "-y", f"{sweep}-*")  # the sweep is still one unit to act on
        assert down.returncode == 0, down.output
        assert not any(job["name"].startswith(sweep) for job in status_json(kd)["jobs"])
    finally:
        release.touch()
        subprocess.run(["scancel", array], check=False)


def test_a_sweep_taken_down_while_it_waited_comes_back_variant_by_variant(
    kd, kd_home: Path, tmp_path: Path
) -> None:
    """Slurm 22.05 keeps an array whose waiting elements were all cancelled as one plain
    record ("<array id>", no element): each variant must still come back, cancelled."""
    hog = subprocess.run(
        ["sbatch", "--parsable", "-N2", "--gres=gpu:h100:8", "--job-name=sweephog",
         "--output=/dev/null", "--wrap", "sleep 300"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().split(";")[0]  # fmt: skip
    name = unique("sweepwait")
    submitted: list[str] = []
    try:
        task = write_task(
            tmp_path,
            f"name: {name}\nnum_nodes: 2\nresources:\n  accelerators: H100:8\nrun: sleep 1\n",
        )
        sweep, array, variants = launch_sweep(kd, task, "SEED=0,1,2")
        submitted.append(array)
        for variant in variants:
            wait_for_status(kd, variant, {"PENDING"}, timeout=60)
        down = kd("down", "-y", f"{sweep}-*")
        assert down.returncode == 0, down.output
        wait_for("the cancellation", lambda: slurm_state(array).startswith("CANC"), 60)

        damage(kd_home / "state.db")
        rebuilt = kd("store", "rebuild", "-y")
        assert rebuilt.returncode == 0, rebuilt.output
        # `down` marks were only in the old store: the variants show again, as Slurm has them.
        shown = {job["name"]: job for job in status_json(kd)["jobs"]}
        for index, variant in enumerate(variants):
            job = shown[variant]
            assert (job["status"], job["slurm_job_id"]) == ("FAILED", f"{array}_{index}"), job
            assert "cancel" in job["detail"].lower(), job
        assert sweep not in shown
    finally:
        subprocess.run(["scancel", hog, *submitted], check=False)


# ---- a running job, from a workstation over SSH -------------------------------------------------


@pytest.fixture
def laptop(tmp_path: Path) -> Iterator[Workstation]:
    station = Workstation(tmp_path, CLUSTER_SSH_PORT)
    shutil.copy(SSH_DIR / "kdtest_ed25519", station.key)
    station.key.chmod(0o600)
    station.trust(CLUSTER_SSH_PORT)
    station.configure()
    yield station


def test_rebuild_over_ssh_finds_the_remote_users_job(laptop: Workstation, finished_early) -> None:
    name = unique("sshstore")
    (laptop.directory / "task.yaml").write_text(
        f'name: {name}\nrun: |\n  echo "over ssh on rank $RANK"\n  sleep 90\n'
    )
    launched = laptop.run("launch", "-y", "-d", "task.yaml")
    assert launched.returncode == 0, launched.output
    job_name = submitted_name(launched.stdout)
    job_id = re.search(r"Slurm job (\d+)", launched.stdout).group(1)  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 120
        while laptop.status(job_name)["status"] != "ACTIVE":
            assert time.monotonic() < deadline, laptop.status(job_name)
            time.sleep(1)
        home = laptop.directory / "kdhome"
        digest = damage(home / "state.db")

        rebuilt = laptop.run("store", "rebuild", "-y")
        assert rebuilt.returncode == 0, rebuilt.output
        kept_aside(home, digest)
        job = laptop.status(job_name)
        assert (job["status"], job["slurm_job_id"], job["user"]) == ("ACTIVE", job_id, "kdtest")
        assert job["job_dir"] == f"{REMOTE_JOBS}/{job_name}"  # the cluster's path, not ours
        logs = laptop.run("logs", job_name)
        assert logs.returncode == 0 and "over ssh on rank 0" in logs.stdout, logs.output
        down = laptop.run("down", "-y", job_name)
        assert down.returncode == 0, down.output
    finally:
        subprocess.run(["scancel", job_id], check=False)
        shutil.rmtree(REMOTE_JOBS / job_name, ignore_errors=True)
        shutil.rmtree(REMOTE_HOME / "konduktor_workdir" / job_name, ignore_errors=True)


# ---- a job slurmctld has forgotten: accounting is all that is left ----------------------------


# MinJobAge (600 s here) plus slurmctld's purge sweep (every 60 s) is more than the suite's
# 600 s per test, most of it spent waiting.
@pytest.mark.timeout(1200)
def test_a_job_that_ended_long_ago_is_rerecorded_from_accounting(finished_early) -> None:
    job = finished_early
    wait_for("the early job's end", lambda: slurm_state(job.job_id) == "COMPLETED", 120)
    # slurmctld keeps a finished job for MinJobAge, then forgets it (squeue -t all no longer
    # shows it); it purges on a sweep, so allow a margin.
    remaining = min_job_age() + 240 - (time.monotonic() - job.launched_at)
    wait_for(
        "slurmctld forgetting the early job",
        lambda: forgotten_by_slurmctld(job.job_id),
        max(remaining, 60),
    )

    store = job.home / "state.db"
    digest = damage(store)
    # Without -y and without a terminal: what would be recorded, and from where; no change.
    preview = job.run("store", "rebuild")
    assert preview.returncode == 2, preview.output
    assert re.search(
        rf"{job.name}\s+Slurm job {job.job_id}\s+COMPLETED\s+\(from sacct\)", preview.stdout
    ), preview.stdout
    assert not list(job.home.glob("state.db.damaged-*"))

    rebuilt = job.run("store", "rebuild", "-y")
    assert rebuilt.returncode == 0, rebuilt.output
    kept_aside(job.home, digest)
    assert integrity(store) == [("ok",)]
    shown = job.run("status", "--json", job.name)
    assert shown.returncode == 0, shown.output
    (record,) = json.loads(shown.stdout)["jobs"]
    assert (record["status"], record["slurm_job_id"]) == ("COMPLETED", job.job_id)
    assert record["end_time"] and record["rank_exit_codes"] == {"0": 0}
    logs = job.run("logs", job.name)
    assert logs.returncode == 0 and "long ago on rank 0" in logs.stdout, logs.output
