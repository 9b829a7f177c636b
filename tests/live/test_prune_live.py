"""Pruning on the real cluster: finished jobs' snapshots and node workdirs go, their status,
logs and results stay.

The jobs run with their own node_workdir (a fresh directory under /tmp, as the account that
runs them), so what the nodes remove is this test's and nobody else's.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import status_json, write_task
from tests.live.test_launch import unique
from tests.live.test_ssh import (
    REMOTE_HOME,
    REMOTE_JOBS,
    SSH_DIR,
    DedicatedSSHD,
    Workstation,
    counting,
    submitted,
)

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]


@pytest.fixture
def node_workdir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="kd-prune-nw-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def configure(kd_home: Path, node_workdir: Path, retention: str) -> None:
    (kd_home / "config.yaml").write_text(f"node_workdir: {node_workdir}\nretention: {retention}\n")


def launched_name(output: str) -> str:
    match = re.search(r"Submitted (\S+) \(Slurm job \d+\)", output)
    assert match, output
    return match.group(1)


def launch_and_wait(kd, task: Path, *extra: str) -> str:
    result = kd("launch", "-y", "--wait", *extra, str(task), timeout=240)
    assert result.returncode == 0, result.output
    return launched_name(result.stdout)


def test_a_pruned_job_keeps_its_status_logs_and_result(
    kd, kd_home: Path, tmp_path: Path, node_workdir: Path
) -> None:
    configure(kd_home, node_workdir, "30d")
    name = unique("prune")
    code = tmp_path / "code"
    code.mkdir()
    mounted = f"/tmp/kd-prune-data-{name}.txt"
    (code / "train.sh").write_text(
        f'echo "training with $(cat {mounted})"\n'
        'echo \'{"loss": 0.25}\' > "$KONDUKTOR_OUTPUT_DIR/result.json"\n'
    )
    (tmp_path / "data.txt").write_text("the data\n")
    task = write_task(
        tmp_path,
        f"name: {name}\nworkdir: {code}\n"
        f"file_mounts:\n  {mounted}: {tmp_path / 'data.txt'}\n"
        "run: bash train.sh\n",
    )
    try:
        first = launch_and_wait(kd, task)
    finally:
        Path(mounted).unlink(missing_ok=True)  # placed by the job on the (shared) /tmp
    first_dir = Path(status_json(kd, first)["jobs"][0]["job_dir"])
    assert (first_dir / "workdir" / "train.sh").is_file() and (first_dir / "mounts").is_dir()

    # Its task's latest snapshot: the next launch hard-links from it, so it stays.
    kept = kd("prune", "--older-than", "0s", "-y")
    assert kept.returncode == 0, kept.output
    assert f"Kept {first}: the latest snapshot of task {name}" in kept.stdout
    assert (first_dir / "workdir" / "train.sh").is_file()

    try:
        second = launch_and_wait(kd, task)
    finally:
        Path(mounted).unlink(missing_ok=True)
    second_dir = Path(status_json(kd, second)["jobs"][0]["job_dir"])
    started = time.monotonic()
    pruned = kd("prune", "--older-than", "0s", "-y", "--json")
    elapsed = time.monotonic() - started
    assert pruned.returncode == 0, pruned.output
    payload = json.loads(pruned.stdout)
    assert [unit["name"] for unit in payload["pruned"]] == [first], payload
    assert [unit["name"] for unit in payload["kept"]] == [second], payload
    assert payload["bytes_freed"] is not None and elapsed < 10
    assert not (first_dir / "workdir").exists() and not (first_dir / "mounts").exists()
    assert (second_dir / "workdir" / "train.sh").is_file()  # hard links survive
    assert (first_dir / "sbatch.sh").is_file() and (first_dir / "job.log").is_file()

    status = kd("status", first)
    assert status.returncode == 0, status.output
    assert re.search(r"(?m)^Status:\s+COMPLETED", status.stdout), status.stdout
    assert re.search(r"(?m)^Snapshot:\s+pruned .*\(logs and results kept\)$", status.stdout)
    assert status_json(kd, first)["jobs"][0]["snapshot_pruned_at"] is not None
    assert status_json(kd, second)["jobs"][0]["snapshot_pruned_at"] is None
    logs = kd("logs", "--no-follow", first)
    assert logs.returncode == 0 and "training with the data" in logs.stdout, logs.output
    result = kd("result", first)
    assert result.returncode == 0 and json.loads(result.stdout) == {"loss": 0.25}, result.output

    again = kd("prune", "--older-than", "0s", "-y", "--json")
    assert json.loads(again.stdout)["pruned"] == []  # a job is pruned once


def test_with_retention_0s_nodes_remove_finished_node_workdirs_and_launch_prunes(
    kd, kd_home: Path, tmp_path: Path, node_workdir: Path
) -> None:
    configure(kd_home, node_workdir, "0s")
    code = tmp_path / "code"
    code.mkdir()
    (code / "weights.bin").write_bytes(b"w" * 4096)
    first_task_name, other_task_name = unique("prunea"), unique("pruneb")
    first_task = write_task(
        tmp_path, f"name: {first_task_name}\nworkdir: {code}\nrun: ls\n", "first.yaml"
    )
    first = launch_and_wait(kd, first_task)
    first_node_dir = node_workdir / first
    assert (first_node_dir / ".konduktor-finished").is_file()
    assert (first_node_dir / "weights.bin").is_file()
    assert not list(first_node_dir.glob(".konduktor-running-*"))
    time.sleep(1.5)  # the mark is now older than the retention, to the second

    # A job of another task: `first` stays its task's latest snapshot, so the launch's own
    # prune keeps it and its node workdir; the node that runs this job removes the latter.
    other_task = write_task(
        tmp_path,
        f"name: {other_task_name}\nworkdir: {code}\n"
        "run: |\n"
        '  for i in $(seq 120); do [ -d "$GONE" ] || break; sleep 0.25; done\n'
        '  [ -d "$GONE" ] && echo "still there" || echo "removed by the node"\n',
        "other.yaml",
    )
    other = launch_and_wait(kd, other_task, "--env", f"GONE={first_node_dir}")
    logs = kd("logs", "--no-follow", other)
    assert "removed by the node" in logs.stdout, logs.output
    assert not first_node_dir.exists()
    assert (node_workdir / other / ".konduktor-finished").is_file()
    first_dir = Path(status_json(kd, first)["jobs"][0]["job_dir"])
    assert (first_dir / "workdir" / "weights.bin").is_file()  # still its task's latest

    # Launching the first task again makes the first job's snapshot prunable: the launch
    # removes it by itself, quietly.
    again = kd("launch", "-y", "-d", str(first_task), timeout=240)
    assert again.returncode == 0, again.output
    assert "Warning" not in again.stderr, again.stderr
    assert not (first_dir / "workdir").exists()
    assert status_json(kd, first)["jobs"][0]["snapshot_pruned_at"] is not None
    assert status_json(kd, other)["jobs"][0]["snapshot_pruned_at"] is None  # its task's latest
    rerun = launched_name(again.stdout)
    deadline = time.monotonic() + 120
    while status_json(kd, rerun)["jobs"][0]["status"] not in ("COMPLETED", "FAILED"):
        assert time.monotonic() < deadline, f"{rerun} did not finish"
        time.sleep(1)

    # `konduktor report` (cron) prunes as well: with pruning off, a newer launch leaves the
    # rerun's snapshot; the next report, with retention 0s again, removes it.
    configure(kd_home, node_workdir, "never")
    launch_and_wait(kd, first_task)
    rerun_dir = Path(status_json(kd, rerun)["jobs"][0]["job_dir"])
    assert (rerun_dir / "workdir" / "weights.bin").is_file()
    configure(kd_home, node_workdir, "0s")
    report = kd("report", "--since", "1h")
    assert report.returncode == 0 and "Warning" not in report.stderr, report.output
    assert not (rerun_dir / "workdir").exists()
    assert status_json(kd, rerun)["jobs"][0]["snapshot_pruned_at"] is not None


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedSSHD]:
    """An sshd of the cluster's own config on a port of its own, to count connections."""
    server = DedicatedSSHD(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def laptop(sshd: DedicatedSSHD, tmp_path: Path) -> Workstation:
    station = Workstation(tmp_path, sshd.port)
    shutil.copy(SSH_DIR / "kdtest_ed25519", station.key)
    station.key.chmod(0o600)
    station.trust(sshd.port)
    station.configure()
    return station


def remove_remote(name: str) -> None:
    for root in (REMOTE_JOBS, REMOTE_HOME / "konduktor_workdir"):
        for path in root.glob(f"{name}-*"):
            shutil.rmtree(path, ignore_errors=True)
    (REMOTE_JOBS / ".latest" / name).unlink(missing_ok=True)


def test_prune_over_ssh_is_one_connection_and_removes_on_the_cluster(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path
) -> None:
    """From a laptop: the snapshots and node workdirs are on the cluster, the store here."""
    name = unique("prunessh")
    project = tmp_path / "project"
    project.mkdir()
    (project / "model.bin").write_bytes(b"m" * 300_000)
    task = tmp_path / "task.yaml"
    task.write_text(f"name: {name}\nworkdir: project\nrun: echo trained on $(hostname)\n")
    try:
        names = []
        for _ in range(2):
            launched = laptop.run("launch", "-y", "--wait", str(task), timeout=240)
            assert launched.returncode == 0, launched.output
            names.append(submitted(launched.stdout)[0])
        first, second = names
        first_node_dir = REMOTE_HOME / "konduktor_workdir" / first
        assert (first_node_dir / ".konduktor-finished").is_file()

        pruned, connections = counting(sshd)(
            lambda: laptop.run("prune", "--older-than", "0s", "-y", "--json")
        )
        assert pruned.returncode == 0, pruned.output
        assert connections == 1
        payload = json.loads(pruned.stdout)
        assert [unit["name"] for unit in payload["pruned"]] == [first], payload
        # model.bin is hard-linked into the second snapshot: only the node workdir's copy
        # is freed.
        assert 300_000 <= payload["bytes_freed"] < 400_000, payload
        assert not (REMOTE_JOBS / first / "workdir").exists() and not first_node_dir.exists()
        assert (REMOTE_JOBS / second / "workdir" / "model.bin").is_file()
        assert (REMOTE_HOME / "konduktor_workdir" / second).is_dir()
        assert laptop.status(first)["snapshot_pruned_at"] is not None
        logs = laptop.run("logs", "--no-follow", first)
        assert logs.returncode == 0 and "trained on" in logs.stdout, logs.output
    finally:
        remove_remote(name)
