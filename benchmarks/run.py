"""Speed and memory of what people and cron run most, each next to its physical floor.

Run with `make bench` (needs the local cluster and its sshd on 127.0.0.1:2222). It prints,
it asserts nothing, and it takes a few minutes on 2 cores. Every line reads

    what | ours | floor | ratio | target | ok/MISSED

where the floor is the least any tool could do for the same answer (a Python start plus the
Slurm, ssh and rsync commands it cannot avoid), measured in the same run, and the targets are
issue 14's. Ratios mean the same on a fast laptop and on a busy 2-core machine; the few
absolute targets (10,000 jobs, 100,000-job reports, a 200-variant grid) are seconds and MiB.
The "no slower than" lines between two of our own commands (`status --json` against the
table) print the median of paired ratios and its 95% interval: MISSED only when the
interval lies wholly above 1, "ok (at par)" when the run cannot tell the two apart.

How it measures:

- konduktor-slurm is installed as pip installs it (not editable: an editable install's import
  hook makes every Python start, the floor's too, pay for pathlib and re) into a scratch venv
  beside the project's, and byte-compiled, as `pip install` does. Its dependencies are the
  project venv's.
- Runs alternate with their floor's (ours, floor, ours, floor, ...), so a load spike from
  someone else's tests hits both sides; the figures are medians. Memory is the peak RSS of
  our process (GNU time's %M), or of its largest child if that is larger.
- Launches of the 1 GB workdir start with the disk's dirty pages written back (os.sync, not
  timed), for both sides: the same rsync took 4 to 12 s here depending on what the previous
  run had left in the page cache.
- Setups use real Slurm jobs, held so they stay PENDING and cost no GPU, and are cancelled at
  the end; only jobs this script submitted are cancelled. The cluster's MaxJobCount (10,000,
  shared with everyone's tests) rules out 10,000 real jobs: the 10,000-job store holds 9,000
  finished jobs and 1,000 held elements of one real job array, as a user after a few sweeps.
"""

from __future__ import annotations

import compileall
import json
import os
import random
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from konduktor_slurm.slurm import (  # noqa: E402
    IDS_PER_CALL,
    runs_command,
    sacct_command,
    squeue_command,
)
from konduktor_slurm.store import _COLUMNS, JobRecord, Store, _to_row  # noqa: E402

PROJECT_PYTHON = Path(sys.executable)
SSH_DIR = Path("/var/lib/konduktor-cluster/ssh")
SSH_PORT = 2222
SSH_USER = "kdtest"
# Konduktor itself, for the --help reference: a venv of its own (its dependencies are not
# ours), made on the first `make bench` that can reach PyPI; /tmp/kvenv if someone made one.
REFERENCE_VENV = ROOT / ".bench" / "konduktor-nightly"
REFERENCE_CANDIDATES = (REFERENCE_VENV / "bin" / "konduktor", Path("/tmp/kvenv/bin/konduktor"))
MIB = 1024 * 1024
# Launched jobs are held, as the floor's sbatch --hold: nothing runs, no GPU is taken.
HELD = "slurm:\n  sbatch_options: ['--hold']\n"


# ---- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss: int  # peak resident set, bytes


def run_once(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> Sample:
    """One run, output discarded: wall time and peak RSS.

    The peak RSS is GNU time's %M (the process's own, or its largest child's): the rusage of
    a child forked from this big benchmark process itself would count the fork's pages too.
    """
    with tempfile.NamedTemporaryFile("r", prefix="konduktor-bench-rss-") as rss:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", rss.name, *argv], env=env, cwd=cwd,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(
                f"benchmark setup broken: {shlex.join(argv)} exited {proc.returncode}: "
                f"{proc.stderr.decode(errors='replace').strip()[-500:]}"
            )
        return Sample(seconds, int(rss.read().split()[-1]) * 1024)


def checked(argv: list[str], **kwargs: object) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise SystemExit(f"benchmark setup broken: {shlex.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def median(values: list[float]) -> float:
    return statistics.median(values)


def alternate(sides: dict[str, Callable[[], Sample]], repeat: int) -> dict[str, list[Sample]]:
    """Run every side once per round, ``repeat`` rounds, so load hits all of them alike."""
    samples: dict[str, list[Sample]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, side in sides.items():
            samples[name].append(side())
    return samples


def seconds(samples: list[Sample]) -> float:
    return median([sample.seconds for sample in samples])


def peak(samples: list[Sample]) -> float:
    return median([float(sample.rss) for sample in samples])


# ---- printing ----------------------------------------------------------------------------

RESULTS: list[bool] = []
HEADER = f"{'what':<46} {'ours':>10} {'floor':>10} {'ratio':>7}  {'target':<14} result"


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value / MIB:.1f} MiB"


def line(
    what: str,
    ours: float,
    floor: float | None,
    unit: str,
    *,
    ratio_target: float | None = None,
    absolute_target: float | None = None,
) -> None:
    """One result line; the target is a ratio to the floor or an absolute value."""
    ratio = ours / floor if floor else None
    if ratio_target is not None:
        ok = ratio is not None and ratio <= ratio_target
        target = f"<= {ratio_target:g}x"
    elif absolute_target is not None:
        ok = ours <= absolute_target
        target = f"<= {_value(absolute_target, unit)}"
    else:
        ok = None
        target = "(reference)"
    if ok is not None:
        RESULTS.append(ok)
    verdict = "" if ok is None else ("ok" if ok else "MISSED")
    ratio_text = f"{ratio:.2f}x" if ratio is not None else "-"
    print(
        f"{what:<46} {_value(ours, unit):>10} {_value(floor, unit):>10} {ratio_text:>7}  "
        f"{target:<14} {verdict}",
        flush=True,
    )


def note(text: str) -> None:
    print(f"  {text}", flush=True)


def parity_line(what: str, ours: list[Sample], theirs: list[Sample]) -> None:
    """A "no slower than" line between two of our own commands that do nearly the same work
    (``status --json`` and the table), run in the same rounds.

    Their gap (0.2 ms of 50 here) is far below one run's noise (about 1 ms), so the ratio of
    two medians lands either side of 1.00 from run to run. The ratio here is the median of
    the rounds' paired ratios, with its 95% interval (bootstrap over the rounds): MISSED
    when the whole interval lies above 1, i.e. ours measurably slower; "at par" when the
    run cannot tell the two apart. The interval is printed, so a reader sees the resolution.
    """
    ratios = [a.seconds / b.seconds for a, b in zip(ours, theirs, strict=True)]
    point = median(ratios)
    rng = random.Random(14)
    resampled = sorted(median(rng.choices(ratios, k=len(ratios))) for _ in range(2000))
    low, high = resampled[49], resampled[1950]
    ok = low <= 1.0
    RESULTS.append(ok)
    verdict = "MISSED" if not ok else "ok" if high <= 1.0 else "ok (at par)"
    print(
        f"{what:<46} {_value(seconds(ours), 's'):>10} {_value(seconds(theirs), 's'):>10} "
        f"{f'{point:.3f}x':>7}  {'<= 1x':<14} {verdict}",
        flush=True,
    )
    note(f"(paired ratio over {len(ratios)} rounds, 95% interval {low:.3f}x-{high:.3f}x)")


# ---- the installation under test -----------------------------------------------------------


def install(scratch: Path) -> Path:
    """konduktor-slurm installed into a scratch venv as pip installs it (the package copied
    into site-packages, byte-compiled, a console script), its dependencies the project venv's;
    returns the venv's bin directory."""
    venv = scratch / "venv"
    checked([str(PROJECT_PYTHON.resolve()), "-m", "venv", "--without-pip", str(venv)])
    site = next((venv / "lib").glob("python3*/site-packages"))
    project_site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"))
    shutil.copytree(
        ROOT / "konduktor_slurm",
        site / "konduktor_slurm",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # A plain path line: the project venv's packages, without processing its .pth files (the
    # editable install's hook among them).
    (site / "zz-project-dependencies.pth").write_text(f"{project_site}\n")
    compileall.compile_dir(site / "konduktor_slurm", quiet=1)
    # The console script pip writes, for the entry point pyproject.toml names.
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, function = entry["konduktor"].split(":")
    script = venv / "bin" / "konduktor"
    script.write_text(
        f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {function}\n"
        f"if __name__ == '__main__':\n    sys.exit({function}())\n"
    )
    script.chmod(0o755)
    return venv / "bin"


# ---- Slurm setups --------------------------------------------------------------------------

SUBMITTED: list[str] = []  # job (or array) ids this script submitted: cancelled at the end
SSH_SUBMITTED: list[str] = []  # the same, submitted as the SSH user


def held_jobs(count: int, prefix: str) -> list[str]:
    """``count`` real held jobs (one sbatch each), their ids."""
    ids = []
    for index in range(count):
        job_id = checked(
            ["sbatch", "--parsable", "--hold", "-o", "/dev/null", "--comment=konduktor",
             f"--job-name={prefix}-{index}", "--wrap", "true"]
        ).strip()  # fmt: skip
        ids.append(job_id)
        SUBMITTED.append(job_id)
    return ids


def held_array(count: int, name: str) -> list[str]:
    """One real held job array of ``count`` elements (a grid sweep's shape); element ids."""
    array_id = checked(
        ["sbatch", "--parsable", "--hold", f"--array=0-{count - 1}", "-o", "/dev/null",
         "--comment=konduktor", f"--job-name={name}", "--wrap", "true"]
    ).strip()  # fmt: skip
    SUBMITTED.append(array_id)
    return [f"{array_id}_{index}" for index in range(count)]


def record(name: str, job_id: str | None, user: str, now: float, **fields: object) -> JobRecord:
    values: dict = {
        "name": name,
        "task_name": name.rsplit("-", 1)[0],
        "user": user,
        "resources": "1x(4CPU, 16GiMEM, H100:1)",
        "num_nodes": 1,
        "gpus_per_node": 1,
        "job_dir": f"/nonexistent/jobs/{name}",
        "log_path": f"/nonexistent/jobs/{name}/job.log",
        "state": "PENDING",
        "detail": "submitted",
        "created_at": now,
        "slurm_job_id": job_id,
        "submitted_at": now,
    }
    values.update(fields)
    return JobRecord(**values)


def finished_record(name: str, index: int, user: str, at: float) -> JobRecord:
    """A job that ran and ended at ``at`` (COMPLETED, one in ten FAILED), as the tracker
    leaves it; its Slurm id is long gone from the queue and is never asked about again."""
    failed = index % 10 == 0
    return record(
        name,
        str(90_000_000 + index),
        user,
        at - 3600,
        submitted_at=at - 3600,
        start_time=at - 3000,
        end_time=at,
        state="FAILED" if failed else "COMPLETED",
        detail="exit code 1 (rank 0)" if failed else "",
        terminal=True,
        extra={
            "slurm_state": "FAILED" if failed else "COMPLETED",
            "reason": None,
            "priority": None,
            "node_list": "node1",
            "exit_code": "1:0" if failed else "0:0",
            "rank_exit_codes": {"0": 1 if failed else 0},
            "restarts": 0,
        },
    )


def fill_store(home: Path, jobs: list[JobRecord]) -> None:
    """Write ``jobs`` (and their lifecycles as transitions) in one transaction.

    Straight SQL through the store's own row encoding: Store.add() records one job a
    transaction, far too slow to set up 100,000 jobs for every benchmark run.
    """
    home.mkdir(parents=True, exist_ok=True)
    store = Store(home / "state.db")
    transitions = []
    for job in jobs:
        transitions.append((job.name, "CREATED", "staging workdir", job.created_at))
        transitions.append((job.name, "PENDING", "submitted", job.submitted_at or job.created_at))
        if job.start_time:
            transitions.append((job.name, "ACTIVE", "", job.start_time))
        if job.terminal:
            transitions.append((job.name, job.state, job.detail, job.end_time))
    with store.transaction():
        db = store._db
        db.executemany(
            f"INSERT INTO jobs ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})",
            [_to_row(job) for job in jobs],
        )
        db.executemany(
            "INSERT INTO transitions (job_name, state, detail, at) VALUES (?,?,?,?)", transitions
        )
    store.close()


def cancel_everything() -> None:
    for start in range(0, len(SUBMITTED), IDS_PER_CALL):
        subprocess.run(["scancel", *SUBMITTED[start : start + IDS_PER_CALL]], check=False)
    if SSH_SUBMITTED:
        ssh_command(f"scancel {' '.join(SSH_SUBMITTED)}", check=False)


# ---- SSH ---------------------------------------------------------------------------------

SSH_FILES: dict[str, Path] = {}


def ssh_workstation(scratch: Path) -> Path:
    """A laptop's key, known_hosts and config.yaml for kdtest@127.0.0.1:2222 (as the SSH
    live tests configure it); returns the config.yaml."""
    key = scratch / "id_ed25519"
    shutil.copy(SSH_DIR / "kdtest_ed25519", key)
    key.chmod(0o600)
    key_type, host_key = (SSH_DIR / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    known_hosts = scratch / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{SSH_PORT} {key_type} {host_key}\n")
    config = scratch / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "ssh": {
                    "host": f"{SSH_USER}@127.0.0.1:{SSH_PORT}",
                    "identity_file": str(key),
                    "known_hosts": str(known_hosts),
                }
            }
        )
    )
    # A laptop's config.yaml is older than a status: konduktor validates one written within
    # the last 2 s every time (config.RACY_SECONDS), which would time pydantic's import in the
    # first rounds instead of the config cache a user's status reads.
    an_hour_ago = time.time() - 3600
    os.utime(config, (an_hour_ago, an_hour_ago))
    SSH_FILES.update(key=key, known_hosts=known_hosts)
    return config


def ssh_argv(command: str) -> list[str]:
    """``ssh host command`` as a person types it (the floor of a status over SSH)."""
    return [
        "ssh", "-p", str(SSH_PORT), "-i", str(SSH_FILES["key"]),
        "-o", f"UserKnownHostsFile={SSH_FILES['known_hosts']}", "-o", "BatchMode=yes",
        f"{SSH_USER}@127.0.0.1", command,
    ]  # fmt: skip


def ssh_command(command: str, check: bool = True) -> str:
    result = subprocess.run(ssh_argv(command), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise SystemExit(f"benchmark setup broken: ssh {command!r}: {result.stderr.strip()}")
    return result.stdout


# ---- the benchmarks ------------------------------------------------------------------------


@dataclass
class Bench:
    bin: Path
    scratch: Path

    @property
    def konduktor(self) -> str:
        return str(self.bin / "konduktor")

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    def env(self, home: Path, **extra: str) -> dict[str, str]:
        env = {**os.environ, "KONDUKTOR_HOME": str(home), **extra}
        env.pop("KONDUKTOR_CONFIG", None)
        env.update(extra)
        return env

    def python_start(self) -> Sample:
        return run_once([self.python, "-c", "pass"])

    def ours(
        self, *args: str, env: dict[str, str], cwd: Path | None = None
    ) -> Callable[[], Sample]:
        return lambda: run_once([self.konduktor, *args], env, cwd)


def sum_samples(*parts: Sample) -> Sample:
    return Sample(sum(part.seconds for part in parts), max(part.rss for part in parts))


def status_200(bench: Bench) -> None:
    home = bench.scratch / "status200"
    now = time.time()
    ids = held_jobs(200, f"kbench{os.getpid()}")
    fill_store(home, [record(f"kb200-{i}", job_id, "root", now) for i, job_id in enumerate(ids)])
    env = bench.env(home)
    queue, acct = squeue_command(ids), sacct_command(ids)
    samples = alternate(
        {
            "table": bench.ours("status", env=env),
            "json": bench.ours("status", "--json", env=env),
            "python": bench.python_start,
            "squeue": lambda: run_once(queue),
            "sacct": lambda: run_once(acct),
        },
        repeat=21,
    )
    floor1 = seconds(samples["python"]) + seconds(samples["squeue"])
    floor2 = floor1 + seconds(samples["sacct"])
    table = seconds(samples["table"])
    print("\nstatus, 200 pending jobs (floor: Python start + the squeue status runs, + sacct)")
    line("status (table) vs Python + squeue", table, floor1, "s", ratio_target=4)
    line("status (table) vs Python + squeue + sacct", table, floor2, "s", ratio_target=1.3)
    parity_line("status --json vs status (table)", samples["json"], samples["table"])
    line("status (table) peak memory vs Python's", peak(samples["table"]),
         peak(samples["python"]), "MiB")  # fmt: skip


def status_10k(bench: Bench) -> None:
    home = bench.scratch / "status10k"
    now = time.time()
    elements = held_array(1000, f"kbench10k{os.getpid()}")
    jobs = [finished_record(f"kb10k-old{i}", i, "root", now - 86400 - i * 60) for i in range(9000)]
    jobs += [record(f"kb10k-{i}", job_id, "root", now) for i, job_id in enumerate(elements)]
    fill_store(home, jobs)
    env = bench.env(home)
    queue = squeue_command(user="root")  # what a refresh of more than IDS_PER_CALL jobs asks
    samples = alternate(
        {
            "table": bench.ours("status", env=env),
            "json": bench.ours("status", "--json", env=env),
            "python": bench.python_start,
            "squeue": lambda: run_once(queue),
        },
        # 9 rounds: each takes ~1 s, and the two are at par here (0.5% apart in instructions,
        # callgrind), far inside a round's noise, which more rounds would not settle.
        repeat=9,
    )
    floor = seconds(samples["python"]) + seconds(samples["squeue"])
    print("\nstatus, 10,000 jobs: 9,000 finished + 1,000 held elements of a real job array")
    note("(MaxJobCount is 10,000 for everyone on this cluster: 10,000 real jobs cannot be)")
    line("status (table)", seconds(samples["table"]), floor, "s", absolute_target=1.5)
    line("status (table) peak memory", peak(samples["table"]), None, "MiB",
         absolute_target=60 * MIB)  # fmt: skip
    line("status --json", seconds(samples["json"]), floor, "s", absolute_target=1.5)
    line("status --json peak memory", peak(samples["json"]), None, "MiB",
         absolute_target=60 * MIB)  # fmt: skip
    parity_line("status --json vs status (table)", samples["json"], samples["table"])


def status_ssh(bench: Bench) -> None:
    config = ssh_workstation(bench.scratch)
    home = bench.scratch / "status-ssh"
    count, prefix = 20, f"kbssh{os.getpid()}"
    script = (
        f"for i in $(seq 0 {count - 1}); do sbatch --parsable --hold -o /dev/null "
        f"--comment=konduktor --job-name={prefix}-$i --wrap true; done"
    )
    ids = ssh_command(script).split()
    SSH_SUBMITTED.extend(ids)
    now = time.time()
    fill_store(
        home, [record(f"{prefix}-{i}", job_id, SSH_USER, now) for i, job_id in enumerate(ids)]
    )
    env = bench.env(home, KONDUKTOR_CONFIG=str(config))
    queue = shlex.join(squeue_command(ids))
    samples = alternate(
        {
            "ours": bench.ours("status", env=env),
            "python": bench.python_start,
            "ssh": lambda: run_once(ssh_argv(queue)),
        },
        repeat=13,
    )
    floor = seconds(samples["python"]) + seconds(samples["ssh"])
    print(f"\nstatus over SSH ({SSH_USER}@127.0.0.1:{SSH_PORT}), {count} pending jobs")
    line("status vs Python + `ssh host squeue`", seconds(samples["ours"]), floor, "s",
         ratio_target=1.2)  # fmt: skip
    line("status over SSH peak memory", peak(samples["ours"]), None, "MiB",
         absolute_target=35 * MIB)  # fmt: skip


def make_workdir(directory: Path, files: int = 10_000, total: int = 1 << 30) -> None:
    """``files`` files of random bytes, ``total`` in all, in 100 subdirectories, dated an
    hour ago (a project nobody edited in the last seconds: nothing to compare by content)."""
    size = total // files
    block = os.urandom(1 << 20)
    hour_ago = time.time() - 3600
    for index in range(files):
        path = directory / f"d{index % 100:02}" / f"f{index:05}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        offset = (index * 7919) % (len(block) - size) if size < len(block) else 0
        data = (block[offset : offset + size] + index.to_bytes(8, "big"))[:size]
        path.write_bytes(data)
        os.utime(path, (hour_ago, hour_ago))


def settle() -> None:
    """Write back what earlier runs left dirty, so that no run pays for another's 1 GB
    (a copy's time is otherwise the disk's whim: 4 to 12 s for the same rsync here)."""
    os.sync()


def submitted_id(output: str) -> str:
    match = re.search(r"Slurm job (\d+)", output)
    if not match:
        raise SystemExit(f"benchmark setup broken: no Slurm job id in {output!r}")
    return match.group(1)


def launch_and_record(argv: list[str], env: dict[str, str], cwd: Path) -> Sample:
    """A launch, timed; the job it submitted is remembered for scancel."""
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"benchmark setup broken: {shlex.join(argv)}: {result.stderr.strip()}")
    for job_id in re.findall(r"Slurm job(?: array)? (\d+)", result.stdout + result.stderr):
        SUBMITTED.append(job_id)
    return Sample(elapsed, 0)


def relaunch(bench: Bench) -> None:
    work = Path(tempfile.mkdtemp(prefix="konduktor-bench-workdir-", dir="/tmp"))
    try:
        project = work / "project"
        make_workdir(project / "data")
        task = project / "task.yaml"
        task.write_text(f"name: kbrelaunch\nworkdir: data\n{HELD}run: 'true'\n")
        floor_script = work / "floor.sh"
        floor_script.write_text("#!/bin/sh\ntrue\n")
        submit = ["sbatch", "--parsable", "--hold", "-o", "/dev/null", str(floor_script)]
        runs = {"first": 0, "again": 0, "rsync": 0}
        # The floor's snapshots lie as deep as konduktor's (<home>/jobs/<job>/workdir): rsync
        # opens every path one component at a time, so depth costs it time per file.
        snapshots = work / "home-floor" / "jobs"
        snapshots.mkdir(parents=True)
        base = snapshots / "kbrelaunch-base" / "workdir"
        base.parent.mkdir()
        checked(["rsync", "-a", f"{project / 'data'}/", f"{base}/"])

        def first() -> Sample:
            settle()
            runs["first"] += 1
            home = work / f"home-first-{runs['first']}"
            sample = launch_and_record(
                [bench.konduktor, "launch", "-y", "-d", str(task)], bench.env(home), project
            )
            shutil.rmtree(home)
            return sample

        again_home = work / "home-again"
        launch_and_record(
            [bench.konduktor, "launch", "-y", "-d", str(task)], bench.env(again_home), project
        )

        def again() -> Sample:
            settle()
            sample = launch_and_record(
                [bench.konduktor, "launch", "-y", "-d", str(task)], bench.env(again_home), project
            )
            jobs = sorted((again_home / "jobs").glob("kbrelaunch-*"), key=os.path.getmtime)
            for old in jobs[:-1]:  # keep the newest: the next launch's --link-dest base
                shutil.rmtree(old)
            return sample

        def rsync_fresh() -> Sample:
            settle()
            runs["rsync"] += 1
            target = snapshots / f"kbrelaunch-{runs['rsync']:04}" / "workdir"
            target.parent.mkdir()
            sample = sum_samples(
                run_once(["rsync", "-a", f"{project / 'data'}/", f"{target}/"]), sbatch()
            )
            shutil.rmtree(target.parent)
            return sample

        def rsync_linked() -> Sample:
            settle()
            runs["rsync"] += 1
            target = snapshots / f"kbrelaunch-{runs['rsync']:04}" / "workdir"
            target.parent.mkdir()
            sample = sum_samples(
                run_once(
                    ["rsync", "-a", f"--link-dest={base}/", f"{project / 'data'}/", f"{target}/"]
                ),
                sbatch(),
            )
            shutil.rmtree(target.parent)
            return sample

        def sbatch() -> Sample:
            start = time.perf_counter()
            SUBMITTED.append(checked(submit).strip())
            return Sample(time.perf_counter() - start, 0)

        linked = alternate({"again": again, "floor": rsync_linked}, repeat=7)
        # Five: a 1 GB copy takes 4-10 s here, by the disk's whim; three left the median to chance.
        fresh = alternate({"first": first, "floor": rsync_fresh}, repeat=5)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nlaunch -y -d of a 1 GB, 10,000-file workdir")
    line("re-launch, unchanged vs rsync --link-dest+sbatch", seconds(linked["again"]),
         seconds(linked["floor"]), "s", ratio_target=1.3)  # fmt: skip
    line("first launch vs rsync + sbatch", seconds(fresh["first"]), seconds(fresh["floor"]),
         "s", ratio_target=1.2)  # fmt: skip


def grid(bench: Bench) -> None:
    work = Path(tempfile.mkdtemp(prefix="konduktor-bench-grid-", dir="/tmp"))
    try:
        (work / "code").mkdir()
        (work / "code" / "train.py").write_text("print('hello')\n")
        task = work / "task.yaml"
        task.write_text(f"name: kbgrid\nworkdir: code\n{HELD}run: 'true'\n")
        home = work / "home"
        a = ",".join(f"{value / 1000:g}" for value in range(1, 21))
        b = ",".join(str(seed) for seed in range(10))
        argv = [bench.konduktor, "launch", "-y", "-d", str(task), "--grid", f"A={a}",
                "--grid", f"B={b}"]  # fmt: skip
        floor_script = work / "floor.sh"
        floor_script.write_text("#!/bin/sh\ntrue\n")
        array = ["sbatch", "--parsable", "--hold", "--array=0-199", "-o", "/dev/null",
                 str(floor_script)]  # fmt: skip

        def floor() -> Sample:
            start = time.perf_counter()
            SUBMITTED.append(checked(array).strip())
            return sum_samples(bench.python_start(), Sample(time.perf_counter() - start, 0))

        samples = alternate(
            {"ours": lambda: launch_and_record(argv, bench.env(home), work), "floor": floor},
            repeat=3,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nlaunch --grid A=<20 values> --grid B=<10 values>: 200 variants")
    line("grid launch (floor: Python + one sbatch --array)", seconds(samples["ours"]),
         seconds(samples["floor"]), "s", absolute_target=5.0)  # fmt: skip


def report_100k(bench: Bench) -> None:
    from konduktor_slurm.service.report import BILLED_UNTIL, CURSOR_ID

    home = bench.scratch / "report100k"
    now = time.time()
    rng = random.Random(14)
    # A year of a busy team: 99,900 jobs (about 270 a day) that ended over the past 365
    # days, and 100 held ones.
    jobs = [
        finished_record(f"kbrep{i // 1000}-{i}", i, "root", now - rng.uniform(60, 365 * 86400))
        for i in range(99_900)
    ]
    elements = held_array(100, f"kbrep{os.getpid()}")
    jobs += [record(f"kbrep-live-{i}", job_id, "root", now) for i, job_id in enumerate(elements)]
    fill_store(home, jobs)
    # The hourly cron report ran an hour ago: its cursor and billing stop there.
    store = Store(home / "state.db")
    hour_ago = now - 3600
    reported = store._db.execute(  # setup only: no store method answers "the last id before"
        "SELECT max(id) FROM transitions WHERE at <= ?", (hour_ago,)
    ).fetchone()[0]
    with store.transaction():
        store.set_meta(CURSOR_ID, str(reported))
        store.set_meta(BILLED_UNTIL, repr(hour_ago))
    store.close()
    env = bench.env(home)
    month = now - 30 * 86400
    window, hourly = runs_command(since=month, user="root"), runs_command(since=hour_ago)
    queue = squeue_command(elements)
    samples = alternate(
        {
            "report": bench.ours("report", "--since", "30d", env=env),
            "cron": bench.ours("report", env=env),
            "python": bench.python_start,
            "squeue": lambda: run_once(queue),
            "sacct": lambda: run_once(window),
            "sacct hour": lambda: run_once(hourly),
        },
        repeat=5,
    )
    floor = sum(seconds(samples[side]) for side in ("python", "squeue", "sacct"))
    floor_hour = sum(seconds(samples[side]) for side in ("python", "squeue", "sacct hour"))
    in_month = sum(1 for job in jobs if job.end_time and job.end_time > month)
    print(
        f"\nreport over a store of 100,000 jobs ({len(jobs) - 100:,} ended over a year, 100 held)"
    )
    note("(floor: Python start + squeue of the unfinished jobs + one sacct of the window)")
    line(f"report --since 30d ({in_month:,} jobs ended in it)", seconds(samples["report"]),
         floor, "s", absolute_target=2.0)  # fmt: skip
    line("report --since 30d peak memory", peak(samples["report"]), None, "MiB",
         absolute_target=200 * MIB)  # fmt: skip
    line("report, hourly cron (since the last report)", seconds(samples["cron"]), floor_hour,
         "s", absolute_target=2.0)  # fmt: skip
    line("report, hourly cron peak memory", peak(samples["cron"]), None, "MiB",
         absolute_target=200 * MIB)  # fmt: skip


def help_reference(bench: Bench) -> None:
    print("\n--help start-up (a reference, not a target)")
    home = bench.scratch / "help"
    ours = bench.ours("--help", env=bench.env(home))
    sides: dict[str, Callable[[], Sample]] = {"ours": ours, "python": bench.python_start}
    reference = konduktor_reference()
    if reference is not None:
        # Konduktor writes a log file under ~/.konduktor: give it a scratch home.
        reference_env = {**os.environ, "HOME": str(bench.scratch / "konduktor-home")}
        sides["konduktor"] = lambda: run_once([str(reference), "--help"], reference_env)
    samples = alternate(sides, repeat=5)
    line("konduktor-slurm --help vs Python start", seconds(samples["ours"]),
         seconds(samples["python"]), "s")  # fmt: skip
    line("konduktor-slurm --help peak memory", peak(samples["ours"]), None, "MiB")
    if reference is None:
        return
    line("konduktor-slurm --help vs Konduktor's --help", seconds(samples["ours"]),
         seconds(samples["konduktor"]), "s")  # fmt: skip
    line("Konduktor's --help peak memory", peak(samples["konduktor"]), None, "MiB")


def konduktor_reference() -> Path | None:
    """Konduktor's own ``konduktor``, installed from PyPI (konduktor-nightly) into a venv of
    its own the first time; None, with a note saying why, when it cannot be."""
    for candidate in REFERENCE_CANDIDATES:
        if candidate.exists():
            return candidate
    print(f"  (installing konduktor-nightly into {REFERENCE_VENV} for the reference)", flush=True)
    try:
        subprocess.run([str(PROJECT_PYTHON), "-m", "venv", str(REFERENCE_VENV)],
                       check=True, capture_output=True, text=True, timeout=120)  # fmt: skip
        subprocess.run(
            [str(REFERENCE_VENV / "bin" / "pip"), "install", "--quiet", "konduktor-nightly"],
            check=True, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        why = last[0]
    except (subprocess.TimeoutExpired, OSError) as exc:
        why = str(exc)
    else:
        return REFERENCE_CANDIDATES[0]
    shutil.rmtree(REFERENCE_VENV, ignore_errors=True)
    note(f"Konduktor's --help not measured: konduktor-nightly could not be installed ({why})")
    return None


@contextmanager
def scratch_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="konduktor-bench-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def machine() -> str:
    cpus = os.cpu_count()
    load = os.getloadavg()[0]
    model = ""
    with open("/proc/cpuinfo") as handle:
        for text in handle:
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    version = checked(["sinfo", "--version"]).strip()
    python = sys.version.split()[0]
    return f"{cpus} cores ({model}), load {load:.1f} at start, {version}, Python {python}"


def main() -> int:
    wanted = set(sys.argv[1:])  # e.g. `benchmarks/run.py status ssh`: only those sections
    sections = {
        "status": status_200,
        "10k": status_10k,
        "ssh": status_ssh,
        "launch": relaunch,
        "grid": grid,
        "report": report_100k,
        "help": help_reference,
    }
    unknown = wanted - sections.keys()
    if unknown:
        print(f"unknown sections {sorted(unknown)}; known: {', '.join(sections)}")
        return 2
    started = time.monotonic()
    print(f"konduktor-slurm benchmarks on {machine()}")
    print("medians of alternated runs; floors measured in the same run\n")
    print(HEADER)
    with scratch_dir() as scratch:
        bench = Bench(install(scratch), scratch)
        try:
            for name, section in sections.items():
                if not wanted or name in wanted:
                    section(bench)
        finally:
            cancel_everything()
    missed = RESULTS.count(False)
    verdict = f"; {missed} MISSED" if missed else ""
    took = time.monotonic() - started
    print(
        f"\n{len(RESULTS) - missed} of {len(RESULTS)} lines within target{verdict} ({took:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
