"""The same scenarios on every tested Slurm release: 22.05 (the host), 24.11 and 26.05.

Each release is a real cluster (docker/cluster-up.sh on the host; docker/chroot-up.sh for
the others, in debootstrap chroots) reached the way a workstation reaches a cluster: over
SSH as the ordinary user kdtest, with konduktor's SSH transport. When a cluster is missing
the tests FAIL (run `make cluster chroots`); they never skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from konduktor_slurm.store import Store
from tests.conftest import (
    KONDUKTOR,
    TEST_USER,
    Run,
    held_job_record,
    launch_sweep,
    status_json,
    wait_for_status,
    wait_until,
)
from tests.live.test_store_live import damage

pytestmark = pytest.mark.live


@dataclass(frozen=True)
class Release:
    name: str
    root: Path  # the cluster's filesystem as seen from here ("/" for the host's cluster)
    ssh_port: int
    up_command: str

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    @property
    def ssh_dir(self) -> Path:
        return self.path("/var/lib/konduktor-cluster/ssh")

    def as_user(self, *argv: str) -> str:
        """Run a command on the cluster as the test user, as a login shell there would."""
        prefix = [] if self.root == Path("/") else ["chroot", str(self.root)]
        proc = subprocess.run(
            [*prefix, "runuser", "-u", TEST_USER, "--", *argv],
            capture_output=True,
            text=True,
            check=True,
            cwd="/tmp",
        )
        return proc.stdout.strip()


RELEASES = {
    "22.05": Release("22.05", Path("/"), 2222, "make cluster"),
    "24.11": Release("24.11", Path("/var/lib/konduktor-chroots/24.11/root"), 2224, "make chroots"),
    "26.05": Release("26.05", Path("/var/lib/konduktor-chroots/26.05/root"), 2226, "make chroots"),
}


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module", params=sorted(RELEASES))
def release(request: pytest.FixtureRequest) -> Release:
    found = RELEASES[request.param]
    missing = [
        name
        for name in ("kdtest_ed25519", "ssh_host_ed25519_key.pub")
        if not (found.ssh_dir / name).exists()
    ]
    if missing or not _listening(found.ssh_port):
        pytest.fail(
            f"Slurm {found.name} cluster is not up (no sshd on 127.0.0.1:{found.ssh_port} "
            f"or no {found.ssh_dir}); run `{found.up_command}`",
            pytrace=False,
        )
    return found


@dataclass
class Laptop:
    """konduktor on a workstation whose config.yaml points at one release's login node."""

    directory: Path
    release: Release

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KONDUKTOR_HOME": str(self.directory / "kdhome"),
            "KONDUKTOR_CONFIG": str(self.directory / "config.yaml"),
        }

    def configure(self, **extra: object) -> None:
        ssh = {
            "host": f"{TEST_USER}@127.0.0.1:{self.release.ssh_port}",
            "identity_file": str(self.directory / "id_ed25519"),
            "known_hosts": str(self.directory / "known_hosts"),
        }
        (self.directory / "config.yaml").write_text(json.dumps({"ssh": ssh, **extra}))

    def run(self, *args: str, timeout: float = 180) -> Run:
        proc = subprocess.run(
            [KONDUKTOR, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(),
            stdin=subprocess.DEVNULL,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def status(self, name: str) -> dict:
        return status_json(self.run, name)["jobs"][0]

    def wait_for(self, name: str, wanted: set[str], timeout: float = 90) -> dict:
        return wait_for_status(self.run, name, wanted, timeout)

    def launch(self, text: str, *flags: str) -> tuple[Run, str]:
        task = self.directory / f"task-{time.monotonic_ns()}.yaml"
        task.write_text(text)
        result = self.run("launch", "-y", *flags, str(task))
        match = re.search(r"Submitted (\S+) \(Slurm job \d+\)", result.stdout)
        assert match, result.output
        return result, match.group(1)


@pytest.fixture
def laptop(release: Release, tmp_path: Path) -> Iterator[Laptop]:
    station = Laptop(tmp_path, release)
    shutil.copy(release.ssh_dir / "kdtest_ed25519", tmp_path / "id_ed25519")
    (tmp_path / "id_ed25519").chmod(0o600)
    key_type, key = (release.ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{release.ssh_port} {key_type} {key}\n")
    station.configure()
    yield station
    # Nothing of ours may keep the cluster's GPUs after a failed assertion.
    names = [job.name for job in Store(tmp_path / "kdhome" / "state.db").jobs(True)]
    if names:
        station.run("down", "-y", *names)


def _name(prefix: str) -> str:
    return f"{prefix}{time.monotonic_ns() % 10**6}"


def test_two_node_job_completes_with_ranks_and_gpus_and_an_srun_of_its_own(laptop: Laptop) -> None:
    result, name = laptop.launch(
        f"name: {_name('ranks')}\nnum_nodes: 2\nresources:\n  accelerators: H100:8\n"
        "run: |\n"
        '  echo "rank=$RANK of=$NUM_NODES master=$MASTER_ADDR gpus=$CUDA_VISIBLE_DEVICES"\n'
        # A plain srun on rank 0 (an MPI launcher): it shares the job with konduktor's step.
        '  if [ "$RANK" = 0 ]; then srun bash -c \'echo "step on $SLURMD_NODENAME"\'; fi\n'
    )
    assert result.returncode == 0, result.output
    steps = re.findall(r"^0: \d: step on (\S+)$", result.stdout, re.M)
    assert sorted(steps) == ["node1", "node2"], result.output
    lines = re.findall(r"^(\d): rank=(\d) of=2 master=(\S+) gpus=(\S+)$", result.stdout, re.M)
    assert sorted((prefix, rank) for prefix, rank, _, _ in lines) == [("0", "0"), ("1", "1")]
    assert len({master for _, _, master, _ in lines}) == 1
    assert {gpus for _, _, _, gpus in lines} == {"0,1,2,3,4,5,6,7"}
    assert f"{name}: COMPLETED" in result.stderr
    assert laptop.status(name)["status"] == "COMPLETED"


def test_failing_rank_fails_the_job_and_logs_follow_ends_with_it(laptop: Laptop) -> None:
    _, name = laptop.launch(
        f"name: {_name('rankfail')}\nnum_nodes: 2\n"
        'run: |\n  sleep 2\n  echo "rank $RANK done"\n  [ "$RANK" = 1 ] && exit 3\n  exit 0\n',
        "-d",
    )
    followed = laptop.run("logs", "--follow", name, timeout=120)
    assert followed.returncode == 1, followed.output
    assert "0: rank 0 done" in followed.stdout and "1: rank 1 done" in followed.stdout
    assert f"{name}: FAILED (rank 1 exited 3)" in followed.stderr
    job = laptop.status(name)
    assert (job["status"], job["rank_exit_codes"]) == ("FAILED", {"0": 0, "1": 3})


def test_pending_stop_start_and_cancel(laptop: Laptop, release: Release) -> None:
    blocker_task = (
        f"name: {_name('full')}\nnum_nodes: 2\nresources:\n  accelerators: H100:8\n"
        "run: |\n"
        '  echo "attempt=$KONDUKTOR_RESTART_ATTEMPT"\n'
        "  for i in $(seq 1 90); do echo tick $i; sleep 1; done\n"
    )
    _, blocker = laptop.launch(blocker_task, "-d")
    laptop.wait_for(blocker, {"ACTIVE"})
    _, waiting = laptop.launch(
        f"name: {_name('wait')}\nresources:\n  accelerators: H100:8\nrun: echo ran\n", "-d"
    )
    # Every GPU of the cluster is taken: the second job waits.
    # Slurm names the reason on its next scheduling pass; until then (24.11: a few seconds)
    # squeue says None, which konduktor shows as "waiting to be scheduled".
    laptop.wait_for(waiting, {"PENDING"}, timeout=30)
    job = wait_until(laptop.run, waiting, lambda job: job["reason"] == "Resources", "Resources", 30)
    assert (job["status"], job["reason"]) == ("PENDING", "Resources"), job

    # A waiting job is held by stop and goes back to waiting on start.
    assert laptop.run("stop", "-y", waiting).returncode == 0
    job = laptop.status(waiting)
    assert (job["status"], job["reason"]) == ("SUSPENDED (by user)", "JobHeldUser"), job
    assert laptop.run("start", "-y", waiting).returncode == 0
    assert laptop.status(waiting)["status"] == "PENDING"

    # A running job: suspended where Slurm lets kdtest (26.05), else requeued and held.
    stopped = laptop.run("stop", "-y", blocker)
    assert stopped.returncode == 0, stopped.output
    job = laptop.status(blocker)
    assert job["status"] == "SUSPENDED (by user)", job
    assert job["detail"].startswith(f"stopped by {TEST_USER}"), job
    started = laptop.run("start", "-y", blocker)
    assert started.returncode == 0, started.output
    laptop.wait_for(blocker, {"ACTIVE"}, timeout=60)  # after `waiting`, if that ran meanwhile
    log = laptop.run("logs", blocker).stdout
    restarted = "attempt=1" in log
    assert restarted == (release.name != "26.05"), log  # requeue restarts; suspend does not

    taken = laptop.run("down", "-y", blocker)
    assert taken.returncode == 0, taken.output
    job = laptop.status(blocker)
    assert (job["status"], job["detail"]) == ("FAILED", f"cancelled by {TEST_USER}"), job


def test_store_rebuild_brings_back_each_variant_of_a_sweep(laptop: Laptop) -> None:
    """A sweep of three 2-node variants, one at a time on the cluster: the first fails, the
    second is taken down running and the third waiting. Each release keeps such an array
    its own way in accounting ("<id>_[1-2]", a plain "<id>"); `store rebuild` must bring
    every variant back as it was."""
    task = laptop.directory / "sweep.yaml"
    task.write_text(
        f"name: {_name('sweep')}\nnum_nodes: 2\nresources:\n  accelerators: H100:8\n"
        'run: |\n  [ "$SEED" != 0 ] || exit 3\n  sleep 120\n'
    )
    sweep, array, variants = launch_sweep(laptop.run, task, "SEED=0,1,2")
    laptop.wait_for(variants[0], {"FAILED"})
    laptop.wait_for(variants[1], {"ACTIVE"})
    assert laptop.status(variants[2])["status"] == "PENDING"
    down = laptop.run("down", "-y", f"{sweep}-*")
    assert down.returncode == 0, down.output
    before = {variant: laptop.wait_for(variant, {"FAILED"}) for variant in variants}

    damage(Path(laptop.env()["KONDUKTOR_HOME"]) / "state.db")
    rebuilt = laptop.run("store", "rebuild", "-y")
    assert rebuilt.returncode == 0, rebuilt.output
    shown = {job["name"]: job for job in status_json(laptop.run)["jobs"]}
    assert sorted(name for name in shown if name.startswith(sweep)) == variants, shown
    for index, variant in enumerate(variants):
        job = shown[variant]
        assert job["slurm_job_id"] == f"{array}_{index}", job
        for field in ("status", "job_dir", "log_path", "resources"):
            assert job[field] == before[variant][field], (variant, field, job)
    assert shown[variants[0]]["detail"] == before[variants[0]]["detail"]
    assert all("cancelled" in shown[variant]["detail"] for variant in variants[1:]), shown


def test_a_sweep_is_held_released_and_cancelled_in_lists(laptop: Laptop, release: Release) -> None:
    """A sweep's stop and start are one `scontrol hold|release id,id,...` and its down one
    scancel of an array expression (`<id>_[0,2]`): each release must take them whole (a
    list it refused would be redone one job at a time: more than one scontrol)."""
    bin_dir, calls = _counting_bin_dir(release)
    laptop.configure(slurm_bin_dir=bin_dir)
    task = laptop.directory / "later.yaml"
    task.write_text(
        f"name: {_name('lists')}\nrun: 'true'\nslurm:\n  sbatch_options: ['--begin=now+1hour']\n"
    )
    sweep, _array, variants = launch_sweep(laptop.run, task, "SEED=0,1,2,3")
    for verb, state, held in (("stop", "SUSPENDED (by user)", True), ("start", "PENDING", False)):
        calls.write_text("")
        done = laptop.run(verb, "-y", f"{sweep}-*")
        assert done.returncode == 0 and "was not" not in done.output, done.output
        assert calls.read_text().split().count("scontrol") == 1, calls.read_text()
        for variant in variants:
            job = wait_until(
                laptop.run,
                variant,
                lambda job, held=held: (job["reason"] == "JobHeldUser") == held,
                f"{verb} of {variant}",
                30,
            )
            assert job["status"] == state, job
    calls.write_text("")
    down = laptop.run("down", "-y", variants[0], variants[2])
    assert down.returncode == 0, down.output
    assert calls.read_text().split().count("scancel") == 1, calls.read_text()
    for index, variant in enumerate(variants):
        job = laptop.wait_for(variant, {"FAILED"} if index % 2 == 0 else {"PENDING"})
        assert index % 2 or job["detail"] == f"cancelled by {TEST_USER}", job
    shutil.rmtree(calls.parent, ignore_errors=True)


# Slurm refills every user's bucket at the wall clock's multiples of rl_refill_period
# (slurmctld/rate_limit.c: time(NULL) / refill_period), 4 tokens at once: enough for one
# squeue (two RPCs here), so a throttled squeue ends at the next multiple.
REFILL_SECONDS = 20
RATE_LIMIT = (
    "SlurmctldParameters=rl_enable,rl_bucket_size=4,rl_refill_rate=4,"
    f"rl_refill_period={REFILL_SECONDS}"
)


def _spend_the_test_users_tokens(release: Release) -> float:
    """Just after a refill, spend the test user's tokens until slurmctld throttles it; return
    the seconds left before the next refill.

    Where the test stands in the refill period must not be left to chance: a refill during
    the status's first squeue try lets `scontrol ping` through (it says UP), and the path
    under test is not taken (seen on a loaded 2-core CI machine with a 5 s period)."""
    time.sleep(REFILL_SECONDS - time.time() % REFILL_SECONDS + 0.2)
    prefix = ["chroot", str(release.root), "runuser", "-u", TEST_USER, "--"]
    for _ in range(10):  # each squeue unthrottled spends tokens; a throttled one is cut at 1 s
        probe = subprocess.run(
            [*prefix, "timeout", "1", "squeue", "-v", "--noheader", "--jobs=1"],
            capture_output=True, text=True, cwd="/tmp",
        )  # fmt: skip
        if "RPC rate limited" in probe.stderr:
            return REFILL_SECONDS - time.time() % REFILL_SECONDS
    raise AssertionError(f"slurmctld of {release.name} never throttled {TEST_USER}")


def _restart_controller(release: Release) -> None:
    """Stop the release's slurmctld and start it again with its slurm.conf as it now is."""
    pid_file = release.path("/var/lib/konduktor-cluster/run/slurmctld.pid")
    pid = int(pid_file.read_text())
    os.kill(pid, 15)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    subprocess.run(
        ["chroot", str(release.root), "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
         "HOME=/root", "/usr/sbin/slurmctld"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    while time.monotonic() < deadline:
        ping = subprocess.run(
            ["chroot", str(release.root), "scontrol", "ping"], capture_output=True, text=True
        )
        if " is UP" in ping.stdout:
            return
        time.sleep(0.5)
    raise AssertionError(f"slurmctld of {release.name} did not come back")


@pytest.mark.parametrize(
    "release", [RELEASES["24.11"], RELEASES["26.05"]], ids=["24.11", "26.05"]
)  # Slurm 23.02+: 22.05 has no rate limit
def test_a_controller_throttling_the_user_is_slow_not_down(
    laptop: Laptop, release: Release
) -> None:
    """Slurm can hold each user's requests to a rate (rl_enable). Throttled, `scontrol ping`
    says at once that the controller is DOWN, and a status whose first squeue ran out
    reported every state stale (exit 3). The controller is up: status must wait out the
    client's pauses and be right."""
    _, name = laptop.launch(
        "name: rl\nrun: 'true'\nslurm:\n  sbatch_options: ['--begin=now+1hour']\n", "-d"
    )
    bin_dir, calls = _counting_bin_dir(release)
    laptop.configure(slurm_bin_dir=bin_dir)
    conf = release.path("/etc/slurm/slurm.conf")
    original = conf.read_text()
    conf.write_text(original + RATE_LIMIT + "\n")
    try:
        _restart_controller(release)
        left = _spend_the_test_users_tokens(release)
        # First squeue try (4 s), ping and probe (2 s) must all fall before the next refill.
        assert left > 12, f"tokens spent too late in the refill period: {left:.1f} s left"
        calls.write_text("")
        shown = laptop.run("status", "--json", timeout=120)
        logged = calls.read_text().split()
    finally:
        conf.write_text(original)
        _restart_controller(release)
        shutil.rmtree(calls.parent, ignore_errors=True)
    assert shown.returncode == 0, shown.output
    document = json.loads(shown.stdout)
    assert not document["stale"] and document["jobs"][0]["name"] == name, document
    assert document["jobs"][0]["status"] == "PENDING", document
    # The path under test: squeue's first try ran out, ping said DOWN, the probe said why.
    assert logged.count("scontrol") == 1 and logged.count("squeue") == 3, logged


# A training loop in bash (the test clusters' nodes have no Python): saves its step on the
# checkpoint signal, resumes from it. Slurm signals the steps differently by release
# (22.05 here: proctrack/cgroup, only srun's process; 24.11/26.05: proctrack/linuxproc,
# every process): the loop must get it exactly once either way.
BASH_STANDIN = (
    "run: |\n"
    '  ckpt="$KONDUKTOR_CHECKPOINT_DIR/rank-$RANK"\n'
    '  step=$(cat "$ckpt" 2>/dev/null || echo 0)\n'
    '  echo "rank $RANK attempt $KONDUKTOR_RESTART_ATTEMPT starts at step $step"\n'
    '  save() { echo "$step" > "$ckpt.tmp" && mv "$ckpt.tmp" "$ckpt"; '
    'echo "rank $RANK saved step $step on SIGHUP"; exit 0; }\n'
    "  trap save HUP\n"
    '  while [ "$step" -lt 120 ]; do step=$((step + 1)); sleep 0.1; '
    '[ $((step % 10)) = 0 ] && echo "rank $RANK step $step"; done\n'
    '  echo "rank $RANK done at step $step"\n'
)


def test_checkpoint_stop_and_start_resume_every_rank_from_its_step(laptop: Laptop) -> None:
    _, name = laptop.launch(
        f"name: {_name('ckpt')}\nnum_nodes: 2\n"
        "resources:\n  job_config:\n    checkpoint_grace: 30\n" + BASH_STANDIN,
        "-d",
    )
    wait_until(
        laptop.run,
        name,
        lambda job: all(
            f"{r}: rank {r} step 20" in laptop.run("logs", name).stdout for r in (0, 1)
        ),
        "step 20 on both ranks",
        60,
    )
    stopped = laptop.run("stop", "-y", "--mode", "checkpoint", name)
    assert stopped.returncode == 0, stopped.output
    assert laptop.status(name)["status"] == "SUSPENDED (by user)"
    log = laptop.run("logs", name).stdout
    saved = {
        rank: int(re.findall(rf"^{rank}: rank {rank} saved step (\d+) on SIGHUP$", log, re.M)[0])
        for rank in (0, 1)
    }
    assert all(step >= 20 for step in saved.values()), log
    assert laptop.run("start", "-y", name).returncode == 0
    assert laptop.wait_for(name, {"COMPLETED", "FAILED"}, timeout=90)["status"] == "COMPLETED"
    log = laptop.run("logs", name).stdout
    for rank in (0, 1):
        assert f"{rank}: rank {rank} attempt 1 starts at step {saved[rank]}" in log, log
        assert f"{rank}: rank {rank} done at step 120" in log


def _counting_bin_dir(release: Release) -> tuple[str, Path]:
    """Wrappers on the cluster that log each Slurm call, for `slurm_bin_dir` (a site's
    /opt/slurm/bin). Returns the directory as the cluster sees it, and the log's path here."""
    inside = f"/home/{TEST_USER}/kd-counted-{time.monotonic_ns()}"
    here = release.path(inside)
    (here / "bin").mkdir(parents=True)
    log = here / "calls.log"
    log.write_text("")
    for command in ("squeue", "sacct", "sbatch", "scontrol", "scancel", "sinfo", "sacctmgr"):
        wrapper = here / "bin" / command
        wrapper.write_text(
            f'#!/bin/sh\necho {command} >> "{inside}/calls.log"\nexec /usr/bin/{command} "$@"\n'
        )
        wrapper.chmod(0o755)
    owner = (release.path(f"/home/{TEST_USER}")).stat()
    for path in (here, here / "bin", log, *(here / "bin").iterdir()):
        os.chown(path, owner.st_uid, owner.st_gid)
    return f"{inside}/bin", log


def _add_held_jobs(release: Release, store_path: Path, count: int, prefix: str) -> list[str]:
    """``count`` real held jobs on the cluster, known to the laptop's store."""
    script = "; ".join(
        ["cd /tmp"]
        + [
            f"sbatch --parsable --hold -o /dev/null --comment=konduktor -J {prefix}-{i} --wrap true"
            for i in range(count)
        ]
    )
    ids = release.as_user("sh", "-c", script).split()
    store = Store(store_path)
    for index, job_id in enumerate(ids):
        name = f"{prefix}-{index}"
        store.add(held_job_record(name, job_id, TEST_USER, f"/home/{TEST_USER}/jobs/{name}"))
    store.close()
    return ids


def test_status_of_50_jobs_costs_the_same_slurm_calls_as_one(
    laptop: Laptop, release: Release
) -> None:
    bin_dir, calls = _counting_bin_dir(release)
    laptop.configure(slurm_bin_dir=bin_dir)
    store_path = Path(laptop.env()["KONDUKTOR_HOME"]) / "state.db"
    ids = _add_held_jobs(release, store_path, 1, "one")
    try:

        def count() -> list[str]:
            calls.write_text("")
            result = laptop.run("status", "--json")
            assert result.returncode == 0, result.output
            return sorted(calls.read_text().split())

        one = count()
        ids += _add_held_jobs(release, store_path, 49, "many")
        fifty = count()
        listed = json.loads(laptop.run("status", "--json").stdout)["jobs"]
        assert len(listed) == 50 and {job["status"] for job in listed} == {"SUSPENDED (by user)"}
        assert one == fifty == ["squeue"], (one, fifty)
    finally:
        release.as_user("scancel", *ids)
        shutil.rmtree(calls.parent, ignore_errors=True)


def test_check_reports_the_release(laptop: Laptop, release: Release) -> None:
    result = laptop.run("check", "--json")
    assert result.returncode == 0, result.output
    info = json.loads(result.stdout)
    assert info["slurm_version"].startswith(release.name), info
    # 26.05 lets a job's owner suspend it; older releases only operators.
    assert info["auto_stop_mode"] == ("suspend" if release.name == "26.05" else "requeue")
