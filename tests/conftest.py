"""Shared test helpers.

Live tests drive the real ``konduktor`` console script against the real local Slurm cluster
(docker/cluster-up.sh, started by ``make test``). There is no mock of Slurm: when the cluster
is missing, live tests FAIL (never skip), in CI and elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from konduktor_slurm.store import JobRecord

ROOT = Path(__file__).resolve().parent.parent
KONDUKTOR = str(Path(sys.executable).parent / "konduktor")

# Jobs run `setup` and `run` after the user's ~/.bashrc, as SkyPilot does. Where that is a
# pyenv's (`pyenv init` rehashes its shims under a lock file), a job killed mid-rehash, as
# tests kill many, leaves the lock behind, and every later job start on the machine waits
# pyenv's PYENV_REHASH_TIMEOUT (60 s) for it on each rank, then prints two warning lines into
# the job's log: a CI run went from 20 to 40 min, and tests that compare logs failed. So while
# the tests run, a lock older than 1.5 s is removed (a live rehash holds it for well under a
# second), and their jobs (sbatch exports this environment) wait up to 3 s for it, which is
# longer: they get the lock, with no warning. The README's "When things break" says the same.
os.environ["PYENV_REHASH_TIMEOUT"] = "3"
_PYENV_LOCK = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "shims" / ".pyenv-shim"


def _remove_stale_pyenv_lock(older_than: float = 1.5) -> None:
    try:
        if time.time() - _PYENV_LOCK.stat().st_mtime > older_than:
            _PYENV_LOCK.unlink()
    except OSError:
        pass


def _keep_removing_stale_pyenv_locks() -> None:
    while True:
        _remove_stale_pyenv_lock()
        time.sleep(0.25)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _cluster_problem() -> str | None:
    if shutil.which("sinfo") is None:
        return "Slurm is not installed (run `make cluster` as root)"
    try:
        proc = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %T"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 15 s"
    if proc.returncode != 0:
        return f"slurmctld is not reachable: {proc.stderr.strip()} (run `make cluster`)"
    states = dict(line.split() for line in proc.stdout.splitlines() if line.strip())
    if not {"node1", "node2"} <= states.keys():
        return f"expected nodes node1 and node2, sinfo shows {states}"
    return None


@pytest.fixture(scope="session")
def cluster() -> None:
    """The live cluster, or a test failure saying how to start it."""
    problem = _cluster_problem()
    if problem:
        pytest.fail(f"live Slurm cluster unavailable: {problem}", pytrace=False)


@pytest.fixture
def kd_home(tmp_path: Path) -> Path:
    home = tmp_path / "kdhome"
    home.mkdir()
    return home


def make_runner(home: Path, default_timeout: float = 300) -> Callable[..., Run]:
    """The konduktor CLI as a user runs it, with its own store (and config) in ``home``."""

    def run(
        *args: str,
        timeout: float = default_timeout,
        cwd: Path | None = None,
        env: dict | None = None,
    ) -> Run:
        full_env = {**os.environ, "KONDUKTOR_HOME": str(home), **(env or {})}
        full_env.pop("KONDUKTOR_CONFIG", None)
        proc = subprocess.run(
            [KONDUKTOR, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def kd(kd_home: Path) -> Callable[..., Run]:
    """Run the konduktor CLI as a user would, with its own store under a temp dir."""
    return make_runner(kd_home)


def status_json(kd: Callable[..., Run], name: str | None = None) -> dict:
    result = kd("status", "--json", *([name] if name else []))
    assert result.returncode == 0, result.output
    return json.loads(result.stdout)


def launch_sweep(run: Callable[..., Run], task: Path, grid: str) -> tuple[str, str, list[str]]:
    """`konduktor launch -y -d --grid <grid> <task>`: the sweep's name, its Slurm job
    array's id and its variants' names."""
    launched = run("launch", "-y", "-d", "--grid", grid, str(task))
    assert launched.returncode == 0, launched.output
    match = re.search(
        r"Submitted sweep (\S+): (\d+) variants .* \(Slurm job array (\d+)\)", launched.stdout
    )
    assert match, launched.stdout
    sweep, count, array = match.groups()
    return sweep, array, [f"{sweep}-{index}" for index in range(int(count))]


def wait_for_status(
    kd: Callable[..., Run], name: str, wanted: set[str], timeout: float = 120
) -> dict:
    """Poll `konduktor status --json NAME` until its status is one of ``wanted``."""
    return wait_until(kd, name, lambda job: job["status"] in wanted, str(wanted), timeout)


def wait_until(
    kd: Callable[..., Run], name: str, reached: Callable[[dict], bool], what: str, timeout: float
) -> dict:
    """Poll `konduktor status --json NAME` once a second until ``reached(job)``."""
    deadline = time.monotonic() + timeout
    job: dict = {}
    while time.monotonic() < deadline:
        job = status_json(kd, name)["jobs"][0]
        if reached(job):
            return job
        time.sleep(1)
    raise AssertionError(f"{name} never reached {what}; last seen {job}")


def squeue_fields(name: str, fields: str) -> list[str]:
    """``squeue -t all -n NAME -o FIELDS`` (e.g. "%P %l"): what Slurm shows of a job by its
    name, in any state it still remembers, split into words."""
    return subprocess.run(
        ["squeue", "-h", "-t", "all", "-n", name, "-o", fields],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()


def write_task(directory: Path, text: str, filename: str = "task.yaml") -> Path:
    path = directory / filename
    path.write_text(text)
    return path


TEST_USER = "kdtest"  # created by docker/cluster-up.sh: an ordinary, non-operator user


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A directory owned by the ordinary test user (pytest's tmp_path is root-only)."""
    directory = Path(tempfile.mkdtemp(prefix="kd-user-", dir="/tmp"))
    shutil.chown(directory, TEST_USER, TEST_USER)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def kd_user(cluster: None, user_dir: Path) -> Callable[..., Run]:
    """Run the konduktor CLI as the ordinary test user, with its own store in ``user_dir``."""
    home = user_dir / "kdhome"
    home.mkdir()
    shutil.chown(home, TEST_USER, TEST_USER)

    def run(*args: str, timeout: float = 300, env: dict | None = None) -> Run:
        extra = [f"{key}={value}" for key, value in (env or {}).items()]
        proc = subprocess.run(
            [
                "runuser",
                "-u",
                TEST_USER,
                "--",
                "env",
                f"KONDUKTOR_HOME={home}",
                *extra,
                KONDUKTOR,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=user_dir,
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run


def write_user_file(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    shutil.chown(path, TEST_USER, TEST_USER)
    return path


# ---- a job that ends at once, launched when the session starts, so that slurmctld forgets it
# (MinJobAge) while the other tests run; tests/live/test_store_live.py rebuilds a store from
# accounting alone with it, at the end, instead of waiting ten idle minutes for it.


class Launched:
    def __init__(self, home: Path, name: str, job_id: str, launched_at: float) -> None:
        self.home, self.name, self.job_id, self.launched_at = home, name, job_id, launched_at

    def run(self, *args: str) -> Run:
        env = {**os.environ, "KONDUKTOR_HOME": str(self.home)}
        env.pop("KONDUKTOR_CONFIG", None)
        proc = subprocess.run(
            [KONDUKTOR, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def finished_early(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Launched:
    import re
    import uuid

    directory = tmp_path_factory.mktemp("early")
    name = f"early{uuid.uuid4().hex[:6]}"
    task = write_task(directory, f"name: {name}\nrun: |\n  echo 'long ago on rank '$RANK\n")
    launched = Launched(directory / "kdhome", name, "", time.monotonic())
    result = launched.run("launch", "-y", "-d", str(task))
    assert result.returncode == 0, result.output
    match = re.search(r"Submitted (\S+) \(Slurm job (\d+)\)", result.stdout)
    assert match, result.stdout
    launched.name, launched.job_id = match.group(1), match.group(2)
    return launched


# `make test` runs pytest-xdist workers (-n 3): each Slurm cluster's tests run in order in
# one worker, as a serial run does (they share its two nodes, its controller and its daemons,
# which some of them fill, kill or restart), while the unit tests, which need no cluster,
# spread over the others. The compatibility tests run on the cluster of their release
# (tests/compat, parametrized "[24.11]"), the live tests on the host's 22.05.
HOST_CLUSTER = "22.05"


def cluster_of(nodeid: str) -> str | None:
    """The cluster a test runs jobs on, from its node id; None for a unit test."""
    if nodeid.startswith("tests/live/"):
        return HOST_CLUSTER
    if nodeid.startswith("tests/compat/"):
        return nodeid.rpartition("[")[2].rstrip("]") or HOST_CLUSTER
    return None


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """xdist's scope scheduling, a scope being a cluster's tests (or one unit test).

    (Not xdist's own ``--dist loadgroup`` marks: with pytest 9.2 its renamed node ids are
    ignored and a group's tests spread over workers.)"""
    from xdist.scheduler import LoadScopeScheduling

    class ByCluster(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            cluster = cluster_of(nodeid)
            return f"slurm-{cluster}" if cluster else nodeid

    return ByCluster(config, log)


@pytest.fixture(scope="session", autouse=True)
def _remove_stale_pyenv_locks_meanwhile() -> None:
    """From the first test on, pyenv's locks left by killed jobs are removed (_PYENV_LOCK)."""
    import threading

    threading.Thread(target=_keep_removing_stale_pyenv_locks, daemon=True).start()


_early_job_launched = False


@pytest.fixture(autouse=True)
def _launch_the_early_job_first(request: pytest.FixtureRequest) -> None:
    """When a collected test uses ``finished_early``, launch it before the first test on the
    host's cluster runs (under xdist: in the worker that runs that cluster's group)."""
    global _early_job_launched
    if _early_job_launched or cluster_of(request.node.nodeid) != HOST_CLUSTER:
        return
    _early_job_launched = True
    if any("finished_early" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("finished_early")


def submit_held_jobs(home: Path, count: int, prefix: str) -> list[str]:
    """``count`` real Slurm jobs, held (so they stay PENDING), known to the store in ``home``.

    For measuring status at scale without launching hundreds of jobs through the CLI.
    """
    from konduktor_slurm.store import Store

    store = Store(home / "state.db")
    ids = []
    for index in range(count):
        name = f"{prefix}-{index}"
        job_id = subprocess.run(
            [
                "sbatch",
                "--parsable",
                "--hold",
                "-o",
                "/dev/null",
                "--comment=konduktor",
                f"--job-name={name}",
                "--wrap",
                "true",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        ids.append(job_id)
        store.add(held_job_record(name, job_id, "root", str(home / "jobs" / name)))
    store.close()
    return ids


def held_job_record(name: str, job_id: str, user: str, job_dir: str) -> JobRecord:
    """What the store holds for a held job submitted outside `konduktor launch`."""
    from konduktor_slurm.store import JobRecord

    now = time.time()
    return JobRecord(
        name=name,
        task_name=name.rsplit("-", 1)[0],
        user=user,
        resources="1x(-)",
        num_nodes=1,
        job_dir=job_dir,
        log_path="/dev/null",
        state="PENDING",
        created_at=now,
        slurm_job_id=job_id,
        submitted_at=now,
    )


SLURM_COMMANDS = ("squeue", "sacct", "sinfo", "sbatch", "scontrol", "scancel")


@pytest.fixture
def counted_slurm(tmp_path: Path) -> tuple[Path, Path]:
    """A Slurm bin dir of wrappers that log each call, then run the real command."""
    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    for command in SLURM_COMMANDS:
        real = subprocess.run(["which", command], capture_output=True, text=True).stdout.strip()
        wrapper = bin_dir / command
        wrapper.write_text(f'#!/bin/sh\necho {command} >> "{calls}"\nexec {real} "$@"\n')
        wrapper.chmod(0o755)
    return bin_dir, calls
