"""Training that saves its work: `stop --mode checkpoint`, a preemption with a grace time and
a time limit, each on the real cluster with a training-loop stand-in that saves its step on
the checkpoint signal and resumes from it; event_callback and `report --notify`.

The two slow scenarios (a time limit of one minute; a preemption with GraceTime=30 and
Slurm's requeue) start when the module starts, in the background, and are checked by the
last tests: the module takes about as long as the slowest of them, not their sum.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import KONDUKTOR, TEST_USER, Run, make_runner, status_json, wait_for_status
from tests.live.test_control_live import squeue_field
from tests.live.test_launch import submitted_name, unique
from tests.live.test_lifecycle_live import cleanup, launch_detached

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

PYTHON = "/usr/bin/python3"  # the nodes' own Python (the machine-wide python3 is a slow shim)

# The training-loop stand-in: counts steps (0.1 s each); on the task's checkpoint signal
# it saves its step (atomically) and exits 0; a new run resumes from the saved step.
# Arguments: the step to stop at, where to keep the checkpoint (default: the job's
# KONDUKTOR_CHECKPOINT_DIR), and "slow" to take 4 s to save.
STANDIN = """\
import os, signal, sys, time
rank = os.environ["RANK"]
where = os.environ["KONDUKTOR_CHECKPOINT_DIR"]
if len(sys.argv) > 2 and sys.argv[2] != "-":
    where = sys.argv[2]
os.makedirs(where, exist_ok=True)
path = os.path.join(where, f"rank-{rank}.step")
step = int(open(path).read()) if os.path.exists(path) else 0
attempt = os.environ["KONDUKTOR_RESTART_ATTEMPT"]
print(f"rank {rank} attempt {attempt} starts at step {step}", flush=True)
name = "SIG" + os.environ["KONDUKTOR_CHECKPOINT_SIGNAL"]
got = []
signal.signal(getattr(signal, name), lambda sig, frame: got.append(sig))
target = int(sys.argv[1])
while step < target and not got:
    step += 1
    time.sleep(0.1)
    if step % 10 == 0:
        print(f"rank {rank} step {step}", flush=True)
if got and sys.argv[3:] == ["slow"]:
    time.sleep(4)
tmp = path + ".tmp"
with open(tmp, "w") as handle:
    handle.write(str(step))
os.replace(tmp, path)
print(f"rank {rank} saved step {step}" + (f" on {name}" if got else ", done"), flush=True)
"""


def code_dir(parent: Path, owner: str | None = None) -> Path:
    code = parent / f"code-{time.monotonic_ns()}"
    code.mkdir()
    (code / "train.py").write_text(STANDIN)
    if owner:
        for path in (code, code / "train.py"):
            shutil.chown(path, owner, owner)
    return code


def task_yaml(
    name: str,
    code: Path,
    run: str,
    *,
    nodes: int = 1,
    job_config: str = "",
    resources: str = "",
    extra: str = "",
) -> str:
    return (
        f"name: {name}\nnum_nodes: {nodes}\nworkdir: {code}\n"
        f"resources:\n  cpus: 1\n  memory: 1\n{resources}"
        f"  job_config:\n{job_config}{extra}run: {run}\n"
    )


def log_of(kd: Callable[..., Run], name: str) -> str:
    return kd("logs", name).stdout


def wait_for_line(kd: Callable[..., Run], name: str, pattern: str, timeout: float = 90) -> str:
    """The log once a line matches ``pattern`` (a regex)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = log_of(kd, name)
        if re.search(pattern, text, re.MULTILINE):
            return text
        time.sleep(0.5)
    raise AssertionError(f"{name}: no line like {pattern!r} within {timeout:g}s:\n{text}")


def saved_on_signal(log: str, rank: int) -> int:
    match = re.search(rf"^{rank}: rank {rank} saved step (\d+) on SIG\w+$", log, re.MULTILINE)
    assert match, log
    return int(match.group(1))


# ---- the slow scenarios, started with the module ----------------------------------------


@dataclass
class Background:
    kd: Callable[..., Run]
    home: Path
    time_limited: str = ""
    preempted: str = ""
    preemptor: str = unique("ckhigh")
    seen: list[tuple[str, str]] = field(default_factory=list)  # the preempted job's states
    problems: list[str] = field(default_factory=list)
    driver: threading.Thread | None = None


def _partition_problem() -> str | None:
    config = subprocess.run(
        ["scontrol", "show", "partition", "lowgrace"], capture_output=True, text=True
    )
    if config.returncode != 0 or "GraceTime=30" not in config.stdout:
        return "the lowgrace partition (GraceTime=30) is missing: run `make cluster` as root"
    params = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    if not re.search(r"preempt_send_user_signal|send_user_signal", params.stdout):
        return "Slurm does not send the user signal at preemption: run `make cluster` as root"
    return None


def _preempt(background: Background) -> None:
    """Once the low-priority job has made progress, take its node's GPUs with a job in the
    high partition; once that one has ended, lift Slurm's requeue delay (cred_expire, 15 s
    here) as `konduktor start` does, so the test does not wait for it."""
    kd, name = background.kd, background.preempted
    try:
        wait_for_line(kd, name, r"^0: rank 0 step 20$", timeout=120)
        node = squeue_field(name, "%N")
        subprocess.run(
            ["sbatch", "--parsable", "-p", "high", "-w", node, "--gres=gpu:h100:8",
             f"--job-name={background.preemptor}", "-o", "/dev/null", "--wrap", "sleep 3"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["squeue", "-h", "-t", "all", "--name", background.preemptor, "-o", "%T"],
                capture_output=True, text=True,
            ).stdout.strip()  # fmt: skip
            if state in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            job = status_json(kd, name)["jobs"][0]  # what `status` shows meanwhile
            background.seen.append((job["status"], job["detail"]))
            time.sleep(1)
        job_id = squeue_field(name, "%i")
        subprocess.run(["scontrol", "update", f"jobid={job_id}", "starttime=now"], check=False)
    except Exception as exc:  # reported by the test that checks the outcome
        background.problems.append(f"{type(exc).__name__}: {exc}")


@pytest.fixture(scope="module", autouse=True)
def background(cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    home = tmp_path_factory.mktemp("ckhome")
    kd = make_runner(home)
    state = Background(kd, home)
    work = tmp_path_factory.mktemp("ckwork")
    # A time limit of one minute; the signal comes checkpoint_grace (or up to 60 s more:
    # Slurm's resolution) before it.
    state.time_limited = launch_detached(
        kd,
        work,
        task_yaml(
            unique("cktime"),
            code_dir(work),
            f"{PYTHON} train.py 100000",
            job_config="    checkpoint_grace: 30\n",
            extra="slurm:\n  time_limit: '1'\n",
        ),
        "time.yaml",
    )
    problem = _partition_problem()
    if problem is None:
        state.preempted = launch_detached(
            kd,
            work,
            task_yaml(
                unique("ckpre"),
                code_dir(work),
                f"{PYTHON} train.py 300",
                job_config="    checkpoint_grace: 25\n",
                resources="  accelerators: H100:8\n",
                extra="slurm:\n  partition: lowgrace\n",
            ),
            "preempt.yaml",
        )
        state.driver = threading.Thread(target=_preempt, args=(state,), daemon=True)
        state.driver.start()
    else:
        state.problems.append(problem)
    yield state
    for name in (state.time_limited, state.preempted):
        if name:
            cleanup(kd, name)
    subprocess.run(["scancel", "--name", state.preemptor], check=False)


# ---- stop --mode checkpoint -----------------------------------------------------------


def test_an_ordinary_user_stop_checkpoints_keeps_the_workdir_and_says_checkpointing(
    kd_user, user_dir: Path
) -> None:
    """auto as a user who may not suspend: the task checkpoints, so it saves first. It keeps
    its checkpoint in its workdir on the node (the run's working directory), which a new
    run of the job finds there; it takes 4 s to save, during which status says so."""
    code = code_dir(user_dir, owner=TEST_USER)
    text = task_yaml(
        unique("ckuser"),
        code,
        f"{PYTHON} train.py 200 ckpt slow",
        job_config="    checkpoint_signal: SIGUSR2\n    checkpoint_grace: 30\n",
    )
    task = user_dir / "task.yaml"
    task.write_text(text)
    shutil.chown(task, TEST_USER, TEST_USER)
    launched = kd_user("launch", "-y", "-d", str(task))
    assert launched.returncode == 0, launched.output
    name = submitted_name(launched.stdout)
    try:
        wait_for_line(kd_user, name, r"^0: rank 0 step 20$")
        stop = subprocess.Popen(
            ["runuser", "-u", TEST_USER, "--", "env", f"KONDUKTOR_HOME={user_dir / 'kdhome'}",
             KONDUKTOR, "stop", "-y", name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=user_dir,
        )  # fmt: skip
        seen = []
        while stop.poll() is None:
            job = status_json(kd_user, name)["jobs"][0]
            seen.append((job["status"], job["detail"]))
            time.sleep(0.5)
        out, err = stop.communicate()
        assert stop.returncode == 0, (out, err)
        assert "Slurm lets only operators suspend jobs, so a job whose task declares" in out
        assert f"{name}: every rank got SIGUSR2" in out
        assert any(
            state == "ACTIVE" and detail.startswith(f"checkpointing: stop asked by {TEST_USER}")
            for state, detail in seen
        ), seen
        saved = saved_on_signal(log_of(kd_user, name), 0)
        node_copy = Path(f"~{TEST_USER}").expanduser() / "konduktor_workdir" / name / "ckpt"
        assert (node_copy / "rank-0.step").read_text() == str(saved)

        started = kd_user("start", "-y", name)
        assert started.returncode == 0, started.output
        done = wait_for_status(kd_user, name, {"COMPLETED", "FAILED"}, timeout=120)
        assert done["status"] == "COMPLETED", done
        log = wait_for_line(kd_user, name, r"^0: rank 0 saved step 200, done$", 15)
        assert f"0: rank 0 attempt 1 starts at step {saved}" in log, log
    finally:
        cleanup(kd_user, name)


# ---- event_callback and report --notify -------------------------------------------------


def test_event_callback_runs_once_per_change_with_a_follower_and_reports_racing(
    kd, kd_home: Path, tmp_path: Path
) -> None:
    events = tmp_path / "events.log"
    name = launch_detached(
        kd,
        tmp_path,
        f"name: {unique('ckcb')}\n"
        'event_callback: echo "$KONDUKTOR_JOB_NAME $KONDUKTOR_OLD_STATE>$KONDUKTOR_NEW_STATE '
        f'$KONDUKTOR_RESTART_ATTEMPT" >> {events}\n'
        "run: sleep 6\n",
    )
    env = {**os.environ, "KONDUKTOR_HOME": str(kd_home)}
    env.pop("KONDUKTOR_CONFIG", None)
    follower = subprocess.Popen(
        [KONDUKTOR, "logs", "--follow", name], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    reports = 0
    try:
        while follower.poll() is None:
            report = kd("report", "--format", "json")
            assert report.returncode == 0, report.output
            json.loads(report.stdout)  # the callbacks' output stays out of the report
            reports += 1
        assert follower.returncode == 0, follower.communicate()
        kd("report")
        assert reports >= 2
        history = status_json(kd, name)["jobs"][0]["history"]
        states = [entry["status"] for entry in history]
        expected = [
            f"{name} {old}>{new} 0" for old, new in zip(["", *states], states, strict=False)
        ]
        assert events.read_text().splitlines() == expected
        assert states[-1] == "COMPLETED"
    finally:
        follower.kill()
        cleanup(kd, name)


class Hook(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), HookHandler)
        self.delay = delay
        self.received: list[dict] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/T0/B0/s3cr3t"


class HookHandler(BaseHTTPRequestHandler):
    server: Hook

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay)
        self.server.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def serving(hook: Hook) -> Hook:
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    return hook


def test_report_notify_posts_the_news_and_a_dead_or_slow_webhook_costs_seconds(
    kd, tmp_path: Path
) -> None:
    name = launch_detached(kd, tmp_path, f"name: {unique('cknote')}\nrun: echo oops; exit 3\n")
    good, slow = serving(Hook()), serving(Hook(delay=60))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"
    try:
        wait_for_status(kd, name, {"FAILED"}, timeout=60)
        began = time.monotonic()
        report = kd("report", "--notify", good.url, "--notify", dead, "--notify", slow.url)
        took = time.monotonic() - began
        assert report.returncode == 0, report.output
        assert name in report.stdout  # the report itself is out, as without --notify
        assert took < 20, f"report --notify took {took:.1f}s"
        dead_says, slow_says = report.stderr.splitlines()
        assert dead_says.startswith(f"Warning: could not notify {dead.rsplit('/', 1)[0]}: ")
        assert "refused" in dead_says and "(after 3 attempts)" in dead_says
        slow_host = slow.url.split("/services")[0]
        assert slow_says.startswith(f"Warning: could not notify {slow_host}: timed out")
        assert "s3cr3t" not in report.stderr
        (message,) = good.received
        assert f"FAILED {name}" in message["text"] and "exited 3" in message["text"]
        assert message["konduktor"]["failures"][0]["exit_code"] == 3
        assert [t["status"] for t in message["konduktor"]["transitions"] if t["job"] == name][
            -1
        ] == "FAILED"
        # The cursor moved as without --notify: the next report has no news to post.
        again = kd("report", "--notify", good.url)
        assert again.returncode == 0 and len(good.received) == 1
    finally:
        for hook in (good, slow):
            hook.shutdown()
            hook.server_close()
        cleanup(kd, name)


# ---- the slow scenarios' outcomes ---------------------------------------------------------


# After the 1-node tests: a 2-node job launched while the background preemption's job
# waits in the high partition for its node would wait with it (Slurm keeps that node for
# the higher tier), ~40 s of the suite's time.
def test_a_two_node_job_stopped_by_checkpoint_resumes_both_ranks_from_their_step(
    kd, tmp_path: Path
) -> None:
    name = launch_detached(
        kd,
        tmp_path,
        task_yaml(
            unique("ck2n"),
            code_dir(tmp_path),
            f"{PYTHON} train.py 250",
            nodes=2,
            job_config="    checkpoint_grace: 40\n",
        ),
    )
    try:
        wait_for_line(kd, name, r"^0: rank 0 step 30$")
        wait_for_line(kd, name, r"^1: rank 1 step 30$")
        began = time.monotonic()
        stopped = kd("stop", "-y", "--mode", "checkpoint", name)
        took = time.monotonic() - began
        assert stopped.returncode == 0, stopped.output
        assert f"{name}: every rank got SIGHUP; waiting up to 40s" in stopped.stdout
        assert f"Stopped {name}: every rank got the task's checkpoint signal" in stopped.stdout
        assert "now SUSPENDED (by user) (checkpointed and stopped by root" in stopped.stdout
        assert took < 20, f"the ranks exited at once, yet stop took {took:.1f}s"
        assert squeue_field(name, "%T|%r") == "PENDING|job requeued in held state"

        job = status_json(kd, name)["jobs"][0]
        checkpoint = Path(job["job_dir"]) / "checkpoint"
        steps = {rank: int((checkpoint / f"rank-{rank}.step").read_text()) for rank in (0, 1)}
        log = log_of(kd, name)
        assert steps == {0: saved_on_signal(log, 0), 1: saved_on_signal(log, 1)}, log
        assert min(steps.values()) >= 30
        assert "0: konduktor: rank 0 got SIGHUP" in log and "1: konduktor: rank 1 got SIGHUP" in log

        started = kd("start", "-y", name)
        assert started.returncode == 0, started.output
        assert "resumes from its checkpoint" in started.stdout
        done = wait_for_status(kd, name, {"COMPLETED", "FAILED"}, timeout=120)
        assert done["status"] == "COMPLETED", done
        for rank in (0, 1):
            # The last lines may reach the log a moment after Slurm says the job ended.
            log = wait_for_line(kd, name, rf"^{rank}: rank {rank} saved step 250, done$", 15)
            assert f"{rank}: rank {rank} attempt 0 starts at step 0" in log
            assert f"{rank}: rank {rank} attempt 1 starts at step {steps[rank]}" in log, log
        history = [entry["status"] for entry in status_json(kd, name)["jobs"][0]["history"]]
        assert history[-3:] == ["SUSPENDED (by user)", "ACTIVE", "COMPLETED"] or history[-4:] == [
            "SUSPENDED (by user)", "SUSPENDED (by system)", "ACTIVE", "COMPLETED"
        ], history  # fmt: skip
    finally:
        cleanup(kd, name)


def test_at_its_time_limit_a_job_saves_then_ends_failed_timeout_with_its_checkpoint(
    background: Background,
) -> None:
    kd, name = background.kd, background.time_limited
    done = wait_for_status(kd, name, {"COMPLETED", "FAILED"}, timeout=240)
    assert done["status"] == "FAILED" and done["detail"].startswith("timeout"), done
    log = wait_for_line(kd, name, "DUE TO TIME LIMIT", 15)
    saved = saved_on_signal(log, 0)
    assert saved > 0
    assert (Path(done["job_dir"]) / "checkpoint" / "rank-0.step").read_text() == str(saved)
    # The run ended on the signal, yet the job waited for its limit: not COMPLETED.
    assert "waiting for Slurm to end or requeue the job" in log


def test_a_preempted_job_saves_in_its_grace_time_and_resumes_after_the_requeue(
    background: Background,
) -> None:
    assert not background.problems, background.problems
    kd, name = background.kd, background.preempted
    done = wait_for_status(kd, name, {"COMPLETED", "FAILED"}, timeout=300)
    assert done["status"] == "COMPLETED", done
    log = wait_for_line(kd, name, r"^0: rank 0 saved step 300, done$", 15)
    saved = saved_on_signal(log, 0)
    assert saved >= 20
    assert "DUE TO PREEMPTION" in log
    assert f"0: rank 0 attempt 1 starts at step {saved}" in log, log
    # While it was requeued and the high-priority job ran, status said why it waited.
    assert ("SUSPENDED (by system)", "preempted, awaiting reschedule (restart 1)") in (
        background.seen
    ), background.seen
