"""config.yaml through the real ``konduktor`` command, against the real cluster.

A bad config.yaml is one ``Error:`` line naming the file, line and key, exit code 2, no
traceback, and nothing reaches Slurm; a good one (validated once, then read from the cache)
decides the partition and GRES type of real jobs, locally and over SSH.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KONDUKTOR, TEST_USER, Run, status_json, write_task, write_user_file

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

SSH_DIR = Path("/var/lib/konduktor-cluster/ssh")
CACHE = "config-cache.json"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def write_settled(path: Path, content: str | bytes) -> Path:
    """A config.yaml as a laptop has it: written a while ago, so its settings are cached."""
    if isinstance(content, str):
        path.write_text(content)
    else:
        path.write_bytes(content)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def slurm_jobs_named(prefix: str) -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
    )
    return [name for name in out.stdout.split() if name.startswith(f"{prefix}-")]


def assert_config_error(result: Run, expected: str) -> None:
    """Exit 2, nothing on stdout, exactly one line on stderr: ``Error: <expected>``."""
    assert result.returncode == 2, result.output
    assert "Traceback" not in result.output, result.output
    assert result.stdout == "", result.output
    assert result.stderr == f"Error: {expected}\n", result.stderr


BAD = [
    (
        b"partition: gpu\naccount: caf\xe9\n",  # Latin-1
        "2: is not UTF-8 text (byte 0xe9 at offset 27); save it as UTF-8",
    ),
    (
        b"slurm_timeout: .nan\n",
        "1: slurm_timeout: expected a number of seconds from 1 to 3600, got nan",
    ),
    (
        b"partition: gpu\ngres_map:\n  H100: h100 --wrap=evil\n",
        "3: gres_map.H100: expected a Slurm GRES type name (letters, digits, '_', '.', '-'), "
        "got 'h100 --wrap=evil'",
    ),
    (
        b"jobs_dir: /tmp/my jobs\n",
        "1: jobs_dir: must not contain spaces (it becomes part of #SBATCH lines), "
        "got '/tmp/my jobs'",
    ),
    (
        b"node_workdir: ~/../root\n",
        "1: node_workdir: must not contain '..', got '~/../root'",
    ),
    (b"partiton: low\n", "1: partiton: unknown field; did you mean 'partition'?"),
]


@pytest.mark.parametrize(
    ("content", "expected"), BAD, ids=[b.split(b":")[0].decode() for b, _ in BAD]
)
def test_a_bad_config_is_one_line_and_exit_2_for_status_and_launch(
    kd: Callable[..., Run], kd_home: Path, tmp_path: Path, content: bytes, expected: str
) -> None:
    config = write_settled(kd_home / "config.yaml", content)
    name = unique("badcfg")
    task = write_task(tmp_path, f"name: {name}\nresources:\n  accelerators: H100:1\nrun: 'true'\n")
    assert_config_error(kd("status"), f"{config}:{expected}")
    assert_config_error(kd("launch", "--dryrun", str(task)), f"{config}:{expected}")
    assert_config_error(kd("launch", "-y", "-d", str(task)), f"{config}:{expected}")
    assert slurm_jobs_named(name) == []
    assert not (kd_home / CACHE).exists()


def test_a_fifo_as_config_is_refused_at_once(kd: Callable[..., Run], kd_home: Path) -> None:
    config = kd_home / "config.yaml"
    os.mkfifo(config)
    started = time.monotonic()
    result = kd("status", timeout=30)
    assert_config_error(
        result, f"{config}: is a FIFO, not a regular file; give the config file as a file"
    )
    assert time.monotonic() - started < 10


def test_konduktor_home_being_a_file_is_one_line(kd: Callable[..., Run], tmp_path: Path) -> None:
    home = tmp_path / "dot-konduktor"
    home.write_text("not a directory\n")
    result = kd("status", env={"KONDUKTOR_HOME": str(home)})
    assert_config_error(
        result,
        f"{home}: is a file, but konduktor keeps its job store and settings in this "
        "directory: move the file away, or set KONDUKTOR_HOME to a directory",
    )


def test_a_config_the_user_cannot_read_is_one_line(
    kd_user: Callable[..., Run], user_dir: Path
) -> None:
    config = user_dir / "kdhome" / "config.yaml"
    config.write_text("partition: low\n")  # root's, 0600: kdtest cannot read it
    config.chmod(0o600)
    assert_config_error(
        kd_user("status"),
        f"{config}: cannot read the config file (Permission denied): make it readable "
        f"(chmod u+r {config}) or set KONDUKTOR_CONFIG to another file",
    )


def test_a_good_config_decides_partition_and_gres_of_a_real_job(
    kd: Callable[..., Run], kd_home: Path, tmp_path: Path
) -> None:
    config = write_settled(
        kd_home / "config.yaml",
        "partition: low\ngres_map: {A100-80GB: h100}\nslurm_timeout: 20\nstop_mode: requeue\n",
    )
    name = unique("cfg")
    task = write_task(
        tmp_path,
        f"name: {name}\nresources:\n  accelerators: A100-80GB:1\n"
        'run: echo "gpus=$CUDA_VISIBLE_DEVICES"\n',
    )
    dry = kd("launch", "--dryrun", str(task))
    assert dry.returncode == 0, dry.output
    assert "#SBATCH --partition=low\n" in dry.stdout
    assert "#SBATCH --gres=gpu:h100:1\n" in dry.stdout
    cache = kd_home / CACHE
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600  # validated once, cached

    launched = kd("launch", "-y", str(task))  # read from the cache this time
    assert launched.returncode == 0, launched.output
    assert "0: gpus=0" in launched.stdout
    jobs = [j for j in status_json(kd)["jobs"] if j["task_name"] == name]
    assert [j["status"] for j in jobs] == ["COMPLETED"], jobs
    job = jobs[0]
    partition = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job["slurm_job_id"], "-o", "%P"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert partition == "low"
    status = kd("status")
    assert status.returncode == 0 and job["name"] in status.stdout, status.output

    write_settled(config, "partition: high\n")  # a changed file is validated again
    again = kd("launch", "--dryrun", str(task))
    assert again.returncode == 0, again.output
    assert "#SBATCH --partition=high\n" in again.stdout
    assert json.loads(cache.read_text())["values"]["partition"] == "high"


def test_a_cache_owned_by_someone_else_is_ignored(
    kd_user: Callable[..., Run], user_dir: Path
) -> None:
    """A cache kdtest did not write (here: root's, claiming another partition) is not
    trusted: the settings come from kdtest's config.yaml, and the cache is rewritten."""
    home = user_dir / "kdhome"
    config = write_user_file(home, "config.yaml", "partition: low\n")
    past = time.time() - 60
    os.utime(config, (past, past))
    task = write_user_file(user_dir, "task.yaml", f"name: {unique('owner')}\nrun: 'true'\n")
    first = kd_user("launch", "--dryrun", str(task))
    assert first.returncode == 0 and "#SBATCH --partition=low\n" in first.stdout, first.output
    cache = home / CACHE
    payload = json.loads(cache.read_text())
    payload["values"]["partition"] = "high"
    cache.write_text(json.dumps(payload))
    shutil.chown(cache, "root", "root")
    cache.chmod(0o644)
    second = kd_user("launch", "--dryrun", str(task))
    assert second.returncode == 0 and "#SBATCH --partition=low\n" in second.stdout, second.output
    assert cache.owner() == TEST_USER
    assert json.loads(cache.read_text())["values"]["partition"] == "low"


def test_a_cached_ssh_config_reaches_the_cluster(tmp_path: Path) -> None:
    """From a "laptop" (root, its own store) to kdtest@127.0.0.1:2222, the cluster's sshd:
    the first command validates config.yaml, the next ones read the cache."""
    key = tmp_path / "id_ed25519"
    shutil.copy(SSH_DIR / "kdtest_ed25519", key)
    key.chmod(0o600)
    key_type, host_key = (SSH_DIR / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:2222 {key_type} {host_key}\n")
    config = write_settled(
        tmp_path / "config.yaml",
        f"ssh:\n  host: {TEST_USER}@127.0.0.1:2222\n  identity_file: {key}\n"
        f"  known_hosts: {known_hosts}\n  connect_timeout: 10\n"
        "partition: low\nslurm_timeout: 20\n",
    )
    home = tmp_path / "kdhome"
    env = {**os.environ, "KONDUKTOR_HOME": str(home), "KONDUKTOR_CONFIG": str(config)}
    task = write_task(tmp_path, f"name: {unique('sshcfg')}\nrun: 'true'\n")

    def konduktor(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KONDUKTOR, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    check = konduktor("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ssh kdtest@127.0.0.1:2222 (user kdtest)" in check.stdout
    assert (home / CACHE).exists()
    dry = konduktor("launch", "--dryrun", str(task))
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "#SBATCH --partition=low\n" in dry.stdout
    assert f"#SBATCH --chdir=/home/{TEST_USER}/.konduktor/jobs/" in dry.stdout
    status = konduktor("status")
    assert status.returncode == 0, status.stdout + status.stderr
