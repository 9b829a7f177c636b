"""What konduktor reads from the real cluster, read right: a foreign job named ``a|b`` in an
operator's report, hostlists expanded by Slurm, what `check` asks, the last lines of a large
log (locally and over SSH) and ages beyond any date."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from konduktor_slurm.config import load_settings
from konduktor_slurm.slurm import Slurm
from konduktor_slurm.transport import LocalTransport
from tests.conftest import TEST_USER, Run, wait_for_status, write_task
from tests.live.test_ssh import CLUSTER_SSH_PORT, REMOTE_HOME, SSH_DIR, Workstation

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]


def launched(result: Run) -> str:
    assert result.returncode == 0, result.output
    match = re.search(r"Submitted (\S+) \(Slurm job", result.stdout)
    assert match, result.output
    return match.group(1)


def one_line_error(result: Run, *needles: str) -> None:
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    [error] = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    for needle in needles:
        assert needle in error, result.stderr


# ---- report -u: a foreign job named a|b beside a konduktor job


def test_report_bills_a_foreign_job_named_a_pipe_b_and_the_konduktor_job_right(
    kd: Callable[..., Run], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    foreign_name = f"a|b-{tag}"  # sacct's default delimiter, in another user's job name
    task = write_task(
        tmp_path,
        f"name: pipebill{tag}\nresources:\n  accelerators: H100:8\nrun: sleep 3\n",
    )
    name = launched(kd("launch", "-y", "-d", str(task)))
    sbatch = ["sbatch", "--parsable", "-o", "/dev/null", f"--job-name={foreign_name}"]
    foreign = subprocess.run(
        ["runuser", "-u", TEST_USER, "--", *sbatch, "--gres=gpu:h100:2", "--wrap", "sleep 3"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/tmp",
    ).stdout.strip()
    try:
        job = wait_for_status(kd, name, {"COMPLETED", "FAILED"}, timeout=180)
        assert job["status"] == "COMPLETED", job
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # sacct lags: until it says the foreign job ended
            state = subprocess.run(
                ["sacct", "-n", "-X", "-P", "-o", "State", "-j", foreign],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if state == "COMPLETED":
                break
            time.sleep(1)
        assert state == "COMPLETED", state

        result = kd("report", "-u", "--since", "30m", "--format", "json")
        assert result.returncode == 0, result.output
        report = json.loads(result.stdout)
        assert report["accounting_error"] is None, report
        usage = {u["name"]: u for u in report["usage"]["jobs"]}
        ours = usage[name]
        assert (ours["user"], ours["runs_billed"], ours["running"]) == ("root", 1, False)
        assert ours["active_seconds"] == pytest.approx(job["duration_seconds"], abs=2)
        assert ours["gpu_hours"] == pytest.approx(ours["active_seconds"] * 8 / 3600)
        assert ours["node_hours"] == pytest.approx(ours["active_seconds"] / 3600)
        theirs = usage[foreign_name]  # split on "|", this was "a" of user "b-<tag>"
        assert (theirs["user"], theirs["runs_billed"]) == (TEST_USER, 1)
        assert theirs["active_seconds"] >= 3
        assert theirs["gpu_hours"] == pytest.approx(theirs["active_seconds"] * 2 / 3600)
        users = {u["user"]: u for u in report["usage"]["users"]}
        assert users[TEST_USER]["gpu_hours"] >= theirs["gpu_hours"]
        assert (name, "COMPLETED") in {(t["job"], t["status"]) for t in report["transitions"]}
        assert report["counts"]["COMPLETED"] >= 1
    finally:
        subprocess.run(["scancel", foreign], check=False)
        kd("down", "-y", name)


# ---- hostlists: Slurm's own expansion, one scontrol call


def test_hostlists_expanded_by_the_clusters_scontrol() -> None:
    lists = ["rack[1-2]-node[01-02]", "node[1-3,7],gpu01", "a-[01-03]", "node[1-2]"]
    assert Slurm(LocalTransport()).expand_hostlists([*lists, lists[0], ""]) == {
        "rack[1-2]-node[01-02]": ["rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"],
        "node[1-3,7],gpu01": ["node1", "node2", "node3", "node7", "gpu01"],
        "a-[01-03]": ["a-01", "a-02", "a-03"],
        "node[1-2]": ["node1", "node2"],
    }


# ---- konduktor check, on the login node


def test_check_reads_what_the_cluster_offers(kd: Callable[..., Run]) -> None:
    result = kd("check", "--json")
    assert result.returncode == 0, result.output
    data = json.loads(result.stdout)
    assert data["slurm_version"].startswith("22.05.")
    partitions = {p["name"]: p for p in data["partitions"]}
    assert partitions["gpu"] == {
        "name": "gpu",
        "default": True,
        "available": "up",
        "nodes": 2,
        "gres": "gpu:h100:8",
    }
    assert {"low", "high"} <= partitions.keys() and not partitions["low"]["default"]
    checks = {c["name"]: c for c in data["checks"]}
    assert checks["accounting"]["result"] == "ok"
    assert data["may_suspend"] is True and "root is root" in checks["stop mode"]["detail"]


# ---- the last lines of a large log


LINES_PER_RANK = 4000
NOISY_RUN = (
    "run: |\n"
    f"  for i in $(seq 1 {LINES_PER_RANK}); do\n"
    '    echo "line $i of rank $RANK: café ✓ padding-padding-padding-padding"\n'
    "  done\n"
)


def expected_tail(rank: int, count: int) -> list[str]:
    first = LINES_PER_RANK - count + 1
    return [
        f"{rank}: line {i} of rank {rank}: café ✓ padding-padding-padding-padding"
        for i in range(first, LINES_PER_RANK + 1)
    ]


def test_logs_n_on_a_log_larger_than_a_tail(kd: Callable[..., Run], tmp_path: Path) -> None:
    task = write_task(tmp_path, f"name: bigtail\nnum_nodes: 2\n{NOISY_RUN}")
    name = launched(kd("launch", "-y", "-d", str(task)))
    try:
        job = wait_for_status(kd, name, {"COMPLETED", "FAILED"}, timeout=180)
        assert job["status"] == "COMPLETED", job
        assert Path(job["log_path"]).stat().st_size > 4 * 64 * 1024  # several first tails
        result = kd("logs", "-n", "3", "--node-rank", "1", name)
        assert result.returncode == 0, result.output
        assert result.stdout.splitlines() == expected_tail(1, 3)
        # More lines of one rank than the first tail holds: the tail grows until it does.
        result = kd("logs", "-n", "3000", "--node-rank", "0", name)
        assert result.stdout.splitlines() == expected_tail(0, 3000)
        everything = kd("logs", "-n", "100000", name).stdout.splitlines()
        assert len(everything) == len(kd("logs", name).stdout.splitlines()) >= 2 * LINES_PER_RANK
        assert "\ufffd" not in result.stdout
    finally:
        kd("down", "-y", name)


@pytest.fixture
def cluster_laptop(tmp_path: Path) -> Iterator[Workstation]:
    """A workstation reaching the cluster's sshd (127.0.0.1:2222) as the ordinary user."""
    station = Workstation(tmp_path, CLUSTER_SSH_PORT)
    shutil.copy(SSH_DIR / "kdtest_ed25519", station.key)
    station.key.chmod(0o600)
    station.trust(CLUSTER_SSH_PORT)
    station.configure()
    yield station


def test_logs_n_over_ssh_reads_the_tail(cluster_laptop: Workstation, tmp_path: Path) -> None:
    task = write_task(tmp_path, f"name: sshtail{uuid.uuid4().hex[:6]}\n{NOISY_RUN}")
    name = launched(cluster_laptop.run("launch", "-y", "-d", str(task)))
    try:
        deadline = time.monotonic() + 180
        while cluster_laptop.status(name)["status"] not in ("COMPLETED", "FAILED"):
            assert time.monotonic() < deadline
            time.sleep(1)
        result = cluster_laptop.run("logs", "-n", "2", "--node-rank", "0", name)
        assert result.returncode == 0, result.output
        assert result.stdout.splitlines() == expected_tail(0, 2)
    finally:
        cluster_laptop.run("down", "-y", name)
        for path in (REMOTE_HOME / ".konduktor" / "jobs").glob(f"{name}*"):
            shutil.rmtree(path, ignore_errors=True)


def test_ssh_transport_read_tail(
    cluster_laptop: Workstation, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = REMOTE_HOME / f"tail-{uuid.uuid4().hex[:6]}.bin"
    data = bytes(range(256)) * 1024  # 256 KiB
    path.write_bytes(data)
    shutil.chown(path, TEST_USER, TEST_USER)
    for key, value in cluster_laptop.env().items():
        monkeypatch.setenv(key, value)
    config = load_settings()
    from konduktor_slurm.ssh import SSHTransport

    assert config.ssh is not None
    transport = SSHTransport(config.ssh, timeout=30)
    try:
        assert transport.read_tail(str(path), 1000) == data[-1000:]
        assert transport.read_tail(str(path), 10**9) == data  # more than the file: all of it
        assert transport.read_tail(str(path), 0) == b""
        assert transport.read_tail(str(path) + ".missing", 10) == b""
    finally:
        transport.close()
        path.unlink()


# ---- ages beyond any date: one-line errors, no OverflowError


def test_ages_beyond_any_date_are_one_line_errors(kd: Callable[..., Run]) -> None:
    one_line_error(kd("status", "--after", "1e400d"), "--after", "1e400d")
    one_line_error(kd("status", "--before", "100000000d"), "--before", "more than 100 years")
    one_line_error(kd("report", "--since", "100000000d"), "--since", "more than 100 years")
    one_line_error(kd("report", "--stuck-after", "1e400d"), "--stuck-after", "expected an age")
    assert kd("status", "--after", "1w").returncode == 0
