"""Every command from a "workstation" over SSH, against the real sshd and the real cluster.

The client is this test process's user (root) with a ``config.yaml`` that points at
``kdtest@127.0.0.1:PORT``: jobs run as the ordinary user ``kdtest``, exactly as from a laptop.
Most tests use a dedicated sshd started from the cluster's own sshd_config, host key and user
(on a free port, ``LogLevel VERBOSE``, its own log): it lets the tests count connections from
the outside ("Accepted publickey" lines) and kill the server in the middle of a command. One
test uses the cluster's sshd on 127.0.0.1:2222 itself. The dedicated sshd also listens on
[::1] so a jump host can be named by its IPv6 literal. Missing sshd or cluster: the tests
FAIL, they never skip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from konduktor_slurm.store import Store
from tests.conftest import KONDUKTOR, TEST_USER, Run, held_job_record

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

SSH_DIR = Path("/var/lib/konduktor-cluster/ssh")
CLUSTER_SSH_PORT = 2222
REMOTE_HOME = Path(f"/home/{TEST_USER}")
REMOTE_JOBS = REMOTE_HOME / ".konduktor" / "jobs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DedicatedSSHD:
    """An sshd with the cluster's config on its own port and log, that tests may kill."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.log = directory / "sshd.log"
        self.pid_file = directory / "sshd.pid"

    def start(self) -> None:
        subprocess.run(
            [
                "/usr/sbin/sshd",
                "-f",
                str(SSH_DIR / "sshd_config"),
                "-p",
                str(self.port),
                "-o",
                f"PidFile={self.pid_file}",
                "-o",
                "LogLevel=VERBOSE",
                "-o",
                "ListenAddress=::1",  # as well as the config's 127.0.0.1
                "-E",
                str(self.log),
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.05)

    def accepted(self) -> int:
        """How many SSH logins this server has accepted so far."""
        return self.log.read_text().count("Accepted publickey for ")

    def _processes(self) -> list[int]:
        """The listener and every sshd process below it (one pair per connection)."""
        listener = int(self.pid_file.read_text())
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == "sshd":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
        found, todo = [], [listener]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children.get(pid, [])
        return found

    def kill(self) -> None:
        """Drop every connection at once, as a crashed login node or a cut network would."""
        for pid in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _listening(self.port):
            assert time.monotonic() < deadline
            time.sleep(0.05)

    def stop(self) -> None:
        if self.pid_file.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(self.pid_file.read_text()), signal.SIGTERM)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DedicatedSSHD]:
    if os.geteuid() != 0:
        pytest.fail("the SSH live tests start a dedicated sshd: run them as root", pytrace=False)
    if not _listening(CLUSTER_SSH_PORT):
        pytest.fail(
            f"the cluster's sshd is not listening on 127.0.0.1:{CLUSTER_SSH_PORT} "
            "(run `make cluster`)",
            pytrace=False,
        )
    for name in ("sshd_config", "ssh_host_ed25519_key.pub", "kdtest_ed25519"):
        if not (SSH_DIR / name).exists():
            pytest.fail(f"{SSH_DIR / name} is missing (run `make cluster`)", pytrace=False)
    server = DedicatedSSHD(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@dataclass
class Workstation:
    """A laptop's konduktor: its own store, key, known_hosts and config.yaml."""

    directory: Path
    port: int

    @property
    def key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def trust(self, port: int, host: str = "127.0.0.1") -> None:
        key_type, key = (SSH_DIR / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        with self.known_hosts.open("a") as handle:
            handle.write(f"[{host}]:{port} {key_type} {key}\n")

    def configure(self, port: int | None = None, **ssh_options: object) -> Path:
        options = {
            "host": f"{TEST_USER}@127.0.0.1:{port or self.port}",
            "identity_file": str(self.key),
            "known_hosts": str(self.known_hosts),
            **ssh_options,
        }
        options = {key: value for key, value in options.items() if value is not None}
        path = self.directory / "config.yaml"
        path.write_text(json.dumps({"ssh": options}))  # JSON is YAML
        return path

    def run(self, *args: str, timeout: float = 180, env: dict | None = None) -> Run:
        # From the project directory, as a user would: a task's relative workdir and
        # file_mounts are relative to where konduktor runs (as in Konduktor).
        proc = subprocess.run(
            [KONDUKTOR, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env(), **(env or {})},
            stdin=subprocess.DEVNULL,
            cwd=self.directory,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KONDUKTOR_HOME": str(self.directory / "kdhome"),
            "KONDUKTOR_CONFIG": str(self.directory / "config.yaml"),
        }

    def status(self, name: str) -> dict:
        result = self.run("status", "--json", name)
        assert result.returncode == 0, result.output
        return json.loads(result.stdout)["jobs"][0]


@pytest.fixture
def laptop(sshd: DedicatedSSHD, tmp_path: Path) -> Workstation:
    station = Workstation(tmp_path, sshd.port)
    shutil.copy(SSH_DIR / "kdtest_ed25519", station.key)
    station.key.chmod(0o600)
    station.trust(sshd.port)
    station.configure()
    return station


@pytest.fixture
def remote_cleanup() -> Iterator[list[str]]:
    """Task names whose snapshots and node workdirs on the cluster are removed afterwards."""
    names: list[str] = []
    yield names
    queue = subprocess.run(
        ["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True, check=False
    ).stdout.split("\n")
    ids = [
        line.split()[0]
        for line in queue
        if line.split()[1:2] and any(line.split()[1].startswith(f"{name}-") for name in names)
    ]
    if ids:
        subprocess.run(["scancel", *ids], check=False)
    for name in names:
        for root in (REMOTE_JOBS, REMOTE_HOME / "konduktor_workdir"):
            for path in root.glob(f"{name}-*"):
                shutil.rmtree(path, ignore_errors=True)
        (REMOTE_JOBS / ".latest" / name).unlink(missing_ok=True)


def submitted(output: str) -> tuple[str, str]:
    match = re.search(r"Submitted (\S+) \(Slurm job (\d+)\)", output)
    assert match, output
    return match.group(1), match.group(2)


def slurm_job_names() -> list[str]:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def assert_one_line_error(result: Run, *needles: str) -> None:
    assert result.returncode != 0, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


def counting(sshd: DedicatedSSHD) -> Callable[[Callable[[], Run]], tuple[Run, int]]:
    def measure(command: Callable[[], Run]) -> tuple[Run, int]:
        before = sshd.accepted()
        result = command()
        time.sleep(0.2)  # the log line is written by the server as the login completes
        return result, sshd.accepted() - before

    return measure


def test_two_node_job_over_ssh_places_files_on_both_nodes_one_connection_each(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "train.py").write_text("v1\n")
    (project / ".gitignore").write_text("ignored.bin\n")
    (project / "ignored.bin").write_text("not staged\n")
    (tmp_path / "data.txt").write_text("dataset\n")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("lr: 1\n")
    cfg_dest = f"/tmp/kd-ssh-{tag}/cfg"
    task = tmp_path / "task.yaml"
    task.write_text(
        f"name: sshfiles{tag}\nnum_nodes: 2\nworkdir: project\n"
        f"envs:\n  SECRET_TOKEN: hunter2-{tag}\n"
        f"file_mounts:\n  ~/kd-ssh-{tag}/data.txt: data.txt\n  {cfg_dest}: configs\n"
        "run: |\n  sleep 2\n"
        '  echo "pwd=$(pwd) user=$(id -un) node=$SLURMD_NODENAME"\n'
        "  cat src/train.py\n  ls ignored.bin 2>&1 || true\n"
        f"  cat ~/kd-ssh-{tag}/data.txt {cfg_dest}/a.yaml\n",
    )
    measure = counting(sshd)

    launched, connections = measure(lambda: laptop.run("launch", "-y", "-d", str(task)))
    assert launched.returncode == 0, launched.output
    assert connections == 1, "launch (staging with rsync included) must use one SSH connection"
    name, job_id = submitted(launched.stdout)
    # Later edits on the laptop never change a job already launched.
    (project / "src" / "train.py").write_text("v2\n")

    followed, connections = measure(lambda: laptop.run("logs", "--follow", name))
    assert followed.returncode == 0, followed.output
    assert connections == 1
    assert f"{name}: COMPLETED" in followed.stderr
    node_dir = REMOTE_HOME / "konduktor_workdir" / name
    for rank, host in (("0", "node1"), ("1", "node2")):
        expected = f"{rank}: pwd={node_dir} user={TEST_USER} node={host}"
        assert expected in followed.stdout, followed.stdout
        assert f"{rank}: v1" in followed.stdout
        assert f"{rank}: dataset" in followed.stdout
        assert f"{rank}: lr: 1" in followed.stdout
    assert "v2" not in followed.stdout
    assert "No such file" in followed.stdout  # the .gitignore'd file was not staged
    assert (REMOTE_HOME / f"kd-ssh-{tag}" / "data.txt").read_text() == "dataset\n"
    assert Path(cfg_dest, "a.yaml").read_text() == "lr: 1\n"

    status, connections = measure(lambda: laptop.run("status", "--json", name))
    assert status.returncode == 0, status.output
    assert connections <= 1  # the store already knows the job finished: maybe no call at all
    job = json.loads(status.stdout)["jobs"][0]
    assert job["status"] == "COMPLETED" and job["slurm_job_id"] == job_id
    assert job["job_dir"] == str(REMOTE_JOBS / name)

    # Private on the cluster: job dir and script 0700, and the secret is in no process's argv.
    assert (REMOTE_JOBS / name).stat().st_mode & 0o777 == 0o700
    assert (REMOTE_JOBS / name / "sbatch.sh").stat().st_mode & 0o777 == 0o700
    assert (REMOTE_JOBS / name / "workdir").stat().st_mode & 0o077 == 0
    assert f"hunter2-{tag}" not in sshd.log.read_text()
    shutil.rmtree(f"/tmp/kd-ssh-{tag}", ignore_errors=True)

    listed, connections = measure(lambda: laptop.run("--help"))
    assert listed.returncode == 0 and connections == 0


def test_stop_start_and_down_over_ssh_one_connection_each(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path, remote_cleanup: list[str]
) -> None:
    task_name = f"sshstop{uuid.uuid4().hex[:6]}"
    remote_cleanup.append(task_name)
    task = tmp_path / "task.yaml"
    task.write_text(
        f"name: {task_name}\nrun: |\n"
        '  echo "attempt=$KONDUKTOR_RESTART_ATTEMPT"\n'
        "  for i in $(seq 1 60); do echo tick $i; sleep 1; done\n"
    )
    launched = laptop.run("launch", "-y", "-d", str(task))
    assert launched.returncode == 0, launched.output
    name, _ = submitted(launched.stdout)
    deadline = time.monotonic() + 60
    while laptop.status(name)["status"] != "ACTIVE":
        assert time.monotonic() < deadline, laptop.status(name)
        time.sleep(1)
    measure = counting(sshd)

    # The remote account is an ordinary user: auto mode requeues, and says so.
    stopped, connections = measure(lambda: laptop.run("stop", "-y", name))
    assert stopped.returncode == 0, stopped.output
    assert connections == 1
    assert "stopping by requeue instead" in stopped.stdout and "GPUs released" in stopped.stdout
    job = laptop.status(name)
    assert job["status"] == "SUSPENDED (by user)", job
    assert job["detail"].startswith(f"stopped by {TEST_USER}"), job  # the remote user

    started, connections = measure(lambda: laptop.run("start", "-y", name))
    assert started.returncode == 0, started.output
    assert connections == 1
    deadline = time.monotonic() + 30
    while laptop.status(name)["status"] != "ACTIVE":
        assert time.monotonic() < deadline, laptop.status(name)
        time.sleep(1)

    taken, connections = measure(lambda: laptop.run("down", "-y", name))
    assert taken.returncode == 0, taken.output
    assert connections == 1
    # Cancelled by the remote account, named as the cluster knows it (uid looked up there).
    job = laptop.status(name)
    assert (job["status"], job["detail"]) == ("FAILED", f"cancelled by {TEST_USER}"), job
    listed = json.loads(laptop.run("status", "--json").stdout)
    assert name not in {entry["name"] for entry in listed["jobs"]}
    assert listed["user"] == TEST_USER  # the account on the cluster, not the laptop's

    # The cron report works from the laptop too, over the same single connection.
    reported, connections = measure(lambda: laptop.run("report", "--format", "json"))
    assert reported.returncode == 0, reported.output
    assert connections == 1
    report = json.loads(reported.stdout)
    assert report["users"] == [TEST_USER]
    states = [t["status"] for t in report["transitions"] if t["job"] == name]
    assert states[-1] == "FAILED" and "SUSPENDED (by user)" in states, states


def test_relaunch_sends_only_the_changed_file(
    laptop: Workstation, tmp_path: Path, remote_cleanup: list[str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    remote_cleanup.append(f"relaunch{tag}")
    project = tmp_path / "project"
    project.mkdir()
    for index in range(20):
        (project / f"shard{index:02}.bin").write_bytes(os.urandom(100_000))
    task = tmp_path / "task.yaml"
    task.write_text(f"name: relaunch{tag}\nworkdir: project\nrun: 'true'\n")

    first = laptop.run("launch", "-y", "-d", str(task))
    assert first.returncode == 0, first.output
    first_name, _ = submitted(first.stdout)
    assert re.search(r"staged workdir: 20/20 files, 2000000/2000000 bytes copied", first.stderr)

    (project / "shard07.bin").write_bytes(os.urandom(100_000))
    second = laptop.run("launch", "-y", "-d", str(task))
    assert second.returncode == 0, second.output
    second_name, _ = submitted(second.stdout)
    match = re.search(
        r"staged workdir: (\d+)/(\d+) files, (\d+)/(\d+) bytes copied, (\d+) bytes sent.*"
        r"hard-linked from (\S+)",
        second.stderr,
    )
    assert match, second.stderr
    files_sent, files, size_sent, _, bytes_sent, linked_from = match.groups()
    assert (int(files_sent), int(files), int(size_sent)) == (1, 20, 100_000)
    assert int(bytes_sent) < 100_000 + 10_000  # one file's worth, not 2 MB
    assert linked_from == first_name
    old, new = REMOTE_JOBS / first_name / "workdir", REMOTE_JOBS / second_name / "workdir"
    assert (old / "shard00.bin").stat().st_ino == (new / "shard00.bin").stat().st_ino
    assert (old / "shard07.bin").read_bytes() != (new / "shard07.bin").read_bytes()
    assert (new / "shard07.bin").read_bytes() == (project / "shard07.bin").read_bytes()


def test_unknown_host_key_is_refused_with_how_to_accept_it(
    laptop: Workstation, tmp_path: Path
) -> None:
    laptop.known_hosts.write_text("")
    name = f"hostkey{uuid.uuid4().hex[:6]}"
    task = tmp_path / "task.yaml"
    task.write_text(f"name: {name}\nrun: 'true'\n")

    refused = laptop.run("launch", "-y", str(task))
    assert_one_line_error(
        refused, "is not in", "refusing", "ssh-keyscan", "accept_new_host_keys: true"
    )
    assert not any(job.startswith(f"{name}-") for job in slurm_job_names())
    assert laptop.known_hosts.read_text() == ""

    laptop.configure(accept_new_host_keys=True)
    accepted = laptop.run("check", "--json")
    assert accepted.returncode == 0, accepted.output
    assert json.loads(accepted.stdout)["ok"] is True
    assert f"[127.0.0.1]:{laptop.port} ssh-ed25519 " in laptop.known_hosts.read_text()


def test_check_against_the_cluster_sshd(laptop: Workstation) -> None:
    laptop.trust(CLUSTER_SSH_PORT)
    laptop.configure(port=CLUSTER_SSH_PORT)
    result = laptop.run("check")
    assert result.returncode == 0, result.output
    assert re.search(r"transport\s+ok\s+ssh kdtest@127.0.0.1:2222 \(user kdtest\)", result.stdout)
    assert re.search(r"slurm\s+ok\s+slurm\S* 22\.05", result.stdout)
    assert re.search(r"partitions\s+ok\s+gpu\* \(up, 2 nodes, gpu:h100:8\)", result.stdout)
    assert re.search(r"accounting\s+ok", result.stdout)
    # kdtest is an ordinary user: no scontrol suspend, so `auto` stops by requeueing.
    assert re.search(r"stop mode\s+ok\s+auto -> requeue", result.stdout)
    assert re.search(rf"jobs dir\s+ok\s+{REMOTE_JOBS} writable", result.stdout)
    data = json.loads(laptop.run("check", "--json").stdout)
    assert data["ok"] and data["may_suspend"] is False and data["slurm_version"].startswith("22.05")


def test_ssh_config_alias_through_a_jump_host(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path
) -> None:
    # ~/.ssh/config is honoured: the alias names the cluster's sshd, reached through the
    # dedicated sshd as ProxyJump (as a bastion host would be).
    home = tmp_path / "laptop-home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        f"Host kdcluster\n  HostName 127.0.0.1\n  Port {CLUSTER_SSH_PORT}\n"
        f"  User {TEST_USER}\n  IdentityFile {laptop.key}\n  ProxyJump kdbastion\n"
        f"Host kdbastion\n  HostName 127.0.0.1\n  Port {sshd.port}\n"
        f"  User {TEST_USER}\n  IdentityFile {laptop.key}\n"
    )
    laptop.trust(CLUSTER_SSH_PORT)
    (laptop.directory / "config.yaml").write_text(
        json.dumps({"ssh": {"host": "kdcluster", "known_hosts": str(laptop.known_hosts)}})
    )
    before = sshd.accepted()
    result = laptop.run("check", "--json", env={"HOME": str(home)})
    assert result.returncode == 0, result.output
    data = json.loads(result.stdout)
    assert data["transport"] == "ssh kdcluster" and data["ok"], data
    time.sleep(0.2)
    assert sshd.accepted() - before == 1  # one login on the bastion for the whole command


# A ProxyCommand for the tests: it records where ssh asked it to go (%h %p), then carries the
# bytes to the sshd on 127.0.0.1 at that port. It takes exactly three arguments, so a command
# line not run by a shell (``2>/dev/null`` passed on as an argument) makes it fail.
PROXY_RELAY = """\
import select, socket, sys

host, port, marker = sys.argv[1:]
with open(marker, "a") as handle:
    handle.write(f"{host} {port}\\n")
sock = socket.create_connection(("127.0.0.1", int(port)))
stdin, stdout = sys.stdin.buffer.raw, sys.stdout.buffer
readers = [stdin, sock]
while True:
    ready, _, _ = select.select(readers, [], [])
    if stdin in ready:
        data = stdin.read(65536)
        if data:
            sock.sendall(data)
        else:
            readers.remove(stdin)
            sock.shutdown(socket.SHUT_WR)
    if sock in ready:
        data = sock.recv(65536)
        if not data:
            break
        stdout.write(data)
        stdout.flush()
"""


def proxy_command(tmp_path: Path, target: str) -> tuple[str, Path]:
    """A ProxyCommand line through PROXY_RELAY to ``target`` (``%h %p`` or literal), its log."""
    relay = tmp_path / "proxy_relay.py"
    relay.write_text(PROXY_RELAY)
    marker = tmp_path / "proxy-calls"
    command = f"{shlex.quote(sys.executable)} {relay} {target} {marker} 2>/dev/null"
    return command, marker


def test_proxy_command_from_ssh_config_runs_the_job_as_kdtest_over_one_connection(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path, remote_cleanup: list[str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    remote_cleanup.append(f"proxied{tag}")
    home = tmp_path / "laptop-home"
    (home / ".ssh").mkdir(parents=True)
    command, marker = proxy_command(tmp_path, "%h %p")
    # The HostName resolves nowhere: only the ProxyCommand can reach it.
    (home / ".ssh" / "config").write_text(
        f"Host kdproxied\n  HostName kd-proxied.invalid\n  Port {sshd.port}\n"
        f"  User {TEST_USER}\n  IdentityFile {laptop.key}\n  ProxyCommand {command}\n"
    )
    laptop.trust(sshd.port, host="kd-proxied.invalid")
    (laptop.directory / "config.yaml").write_text(
        json.dumps({"ssh": {"host": "kdproxied", "known_hosts": str(laptop.known_hosts)}})
    )
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.txt").write_text(f"staged-through-proxy-{tag}\n")
    task = tmp_path / "task.yaml"
    task.write_text(
        f'name: proxied{tag}\nworkdir: project\nrun: |\n  echo "user=$(id -un)"\n  cat data.txt\n'
    )

    launched, connections = counting(sshd)(
        lambda: laptop.run("launch", "-y", str(task), env={"HOME": str(home)})
    )
    assert launched.returncode == 0, launched.output
    assert f"0: user={TEST_USER}" in launched.stdout, launched.output
    assert f"0: staged-through-proxy-{tag}" in launched.stdout  # rsync went through it too
    assert connections == 1
    # One proxy process, asked for the configured host and port: the one connection.
    assert marker.read_text() == f"kd-proxied.invalid {sshd.port}\n"


def test_proxy_command_in_config_yaml_and_a_failing_one(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path
) -> None:
    home = tmp_path / "empty-home"  # no ~/.ssh/config at all
    home.mkdir()
    command, marker = proxy_command(tmp_path, "%h %p")
    laptop.trust(sshd.port, host="kd-proxied.invalid")
    laptop.configure(host=f"{TEST_USER}@kd-proxied.invalid:{sshd.port}", proxy_command=command)
    checked, connections = counting(sshd)(
        lambda: laptop.run("check", "--json", env={"HOME": str(home)})
    )
    assert checked.returncode == 0, checked.output
    assert json.loads(checked.stdout)["ok"] is True
    assert connections == 1
    # %p is config.yaml's port, not ssh's default 22.
    assert marker.read_text() == f"kd-proxied.invalid {sshd.port}\n"

    laptop.configure(
        host=f"{TEST_USER}@kd-proxied.invalid:{sshd.port}",
        proxy_command="sh -c 'echo no route to the cluster >&2; exit 3'",
        connect_timeout=60,
    )
    task = tmp_path / "task.yaml"
    task.write_text("name: proxyfail\nrun: 'true'\n")
    start = time.monotonic()
    failed = laptop.run("launch", "-y", str(task), env={"HOME": str(home)})
    assert_one_line_error(
        failed,
        f"cannot connect to {TEST_USER}@kd-proxied.invalid:{sshd.port}",
        "ProxyCommand exited with status 3: no route to the cluster",
    )
    assert time.monotonic() - start < 30  # the proxy's end is noticed, not waited out


def test_jump_chain_of_an_ipv6_literal_and_a_user_host_port_hop(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path
) -> None:
    home = tmp_path / "empty-home"
    home.mkdir()
    laptop.trust(sshd.port, host="::1")
    laptop.trust(CLUSTER_SSH_PORT)
    laptop.configure(
        port=CLUSTER_SSH_PORT,
        jump_host=f"{TEST_USER}@[::1]:{sshd.port},{TEST_USER}@127.0.0.1:{sshd.port}",
    )
    seen = len(sshd.log.read_text())
    result = laptop.run("check", "--json", env={"HOME": str(home)})
    assert result.returncode == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] and data["transport"] == f"ssh {TEST_USER}@127.0.0.1:2222", data
    time.sleep(0.2)
    logins = re.findall(
        rf"Accepted publickey for {TEST_USER} from (\S+) port", sshd.log.read_text()[seen:]
    )
    # The first hop first, from the laptop over IPv6; the second hop through the first (so
    # from the jump host itself, 127.0.0.1); then the cluster's sshd through the second.
    assert logins == ["::1", "127.0.0.1"]


def test_read_tail_over_ssh_reads_only_the_end_of_a_huge_file(
    laptop: Workstation, sshd: DedicatedSSHD
) -> None:
    from konduktor_slurm.config import SSHSettings
    from konduktor_slurm.ssh import SSHTransport

    log = REMOTE_HOME / f"kd-tail-{uuid.uuid4().hex[:6]}.log"
    try:
        with log.open("wb") as handle:  # 1 GiB, sparse: only the last line is on disk
            handle.truncate(1 << 30)
            handle.seek(0, 2)
            handle.write(b"the last line\n")
        log.chmod(0o644)
        transport = SSHTransport(
            SSHSettings(
                host="127.0.0.1",
                user=TEST_USER,
                port=sshd.port,
                identity_file=str(laptop.key),
                known_hosts=str(laptop.known_hosts),
            )
        )
        assert transport.read_tail(str(log) + ".missing", 100) == b""  # connects, opens SFTP
        tracemalloc.start()
        try:
            tail = transport.read_tail(str(log), 14)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert tail == b"the last line\n"
        assert peak < 1 << 20  # reading the whole file would need 1 GiB
        assert transport.read_tail(str(log), 4) == b"ine\n"
        assert transport.connections == 1
        transport.close()
    finally:
        log.unlink(missing_ok=True)


@pytest.mark.parametrize("client", ["openssh", "ssh.py"])
def test_a_command_given_up_on_ends_on_the_login_node_too(
    laptop: Workstation, sshd: DedicatedSSHD, client: str
) -> None:
    """Closing an SSH channel does not end a command that has no terminal. A squeue we had
    given up on went on retrying a throttled slurmctld and took the user's next tokens
    (24.11, rl_enable); one stuck on a dead controller stays for its MessageTimeout. It must
    end there soon after our timeout, and the connection must go on serving."""
    from konduktor_slurm.config import SSHSettings
    from konduktor_slurm.openssh import OpenSSHTransport
    from konduktor_slurm.ssh import SSHTransport
    from konduktor_slurm.transport import CommandTimeout

    settings = SSHSettings(
        host="127.0.0.1",
        user=TEST_USER,
        port=sshd.port,
        identity_file=str(laptop.key),
        known_hosts=str(laptop.known_hosts),
    )
    ssh = shutil.which("ssh")
    assert ssh, "OpenSSH's client is not installed"
    transport = OpenSSHTransport(settings, ssh) if client == "openssh" else SSHTransport(settings)
    pid_file = REMOTE_HOME / f"kd-given-up-{uuid.uuid4().hex[:6]}.pid"
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="did not answer within 1s"):
            transport.run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], timeout=1)
        pid = int(pid_file.read_text())
        while Path(f"/proc/{pid}").exists():  # sshd runs here: its processes are ours to see
            assert time.monotonic() - started < 15, "the command outlived our timeout by 14 s"
            time.sleep(0.2)
        assert transport.run(["echo", "still here"], timeout=10).stdout == "still here\n"
    finally:
        transport.close()
        pid_file.unlink(missing_ok=True)


def test_unreachable_sshd_is_a_one_line_error(laptop: Workstation, tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    laptop.configure(port=port)
    task = tmp_path / "task.yaml"
    task.write_text("name: noreach\nrun: 'true'\n")
    launched = laptop.run("launch", "-y", str(task))
    assert_one_line_error(launched, f"kdtest@127.0.0.1:{port}", "connection refused")
    checked = laptop.run("check")
    assert checked.returncode == 1
    assert "Traceback" not in checked.output
    assert re.search(r"transport\s+FAIL\s+cannot connect to", checked.stdout)


def test_a_silent_server_and_an_unreachable_host_behind_a_jump_host(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path
) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("name: nosilence\nrun: 'true'\n")
    with socket.socket() as silent:  # accepts TCP connections, never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        laptop.configure(port=port, connect_timeout=2)
        start = time.monotonic()
        result = laptop.run("launch", "-y", str(task))
        assert_one_line_error(
            result, f"cannot connect to kdtest@127.0.0.1:{port}", "no SSH server answered within 2s"
        )
        assert time.monotonic() - start < 15

    nowhere = _free_port()
    laptop.configure(port=nowhere, jump_host=f"{TEST_USER}@127.0.0.1:{sshd.port}")
    result = laptop.run("launch", "-y", str(task))
    assert_one_line_error(
        result, f"jump host kdtest@127.0.0.1:{sshd.port} cannot reach 127.0.0.1:{nowhere}"
    )


def start_big_staging(
    laptop: Workstation, tmp_path: Path, task_name: str, run: str
) -> tuple[Path, subprocess.Popen]:
    """A launch of a 300 MB workdir (a few seconds over SSH), in a session of its own as a
    terminal runs it, once rsync writes the big file on the cluster: (task file, process)."""
    project = tmp_path / "project"
    project.mkdir()
    with (project / "big.bin").open("wb") as handle:
        for _ in range(30):
            handle.write(os.urandom(10_000_000))
    task = tmp_path / "task.yaml"
    task.write_text(f"name: {task_name}\nworkdir: project\nrun: {run}\n")
    proc = subprocess.Popen(
        [KONDUKTOR, "launch", "-y", str(task)],
        env=laptop.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    try:
        while not any(
            path.stat().st_size > 0
            for path in REMOTE_JOBS.glob(f"{task_name}-*/workdir/.big.bin.*")
        ):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "staging never started"
            time.sleep(0.02)
    except BaseException:
        proc.kill()
        raise
    return task, proc


def test_connection_dropped_mid_staging_fails_the_job_and_submits_nothing(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path, remote_cleanup: list[str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    remote_cleanup.append(f"drop{tag}")
    task, proc = start_big_staging(laptop, tmp_path, f"drop{tag}", "echo staged-fine")
    try:
        sshd.kill()  # cut the connection while rsync writes the big file
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sshd.start()
    result = Run(proc.returncode, stdout, stderr)
    assert_one_line_error(
        result, "staging failed", f"lost the SSH connection to kdtest@127.0.0.1:{sshd.port}"
    )
    assert "Nothing was submitted" in result.stderr
    assert not any(job.startswith(f"drop{tag}-") for job in slurm_job_names())
    jobs = json.loads(laptop.run("status", "--json").stdout)["jobs"]
    assert [(job["status"], job["detail"].split(":")[0]) for job in jobs] == [
        ("FAILED", "staging failed")
    ]

    # Re-running the same launch works once the login node is back.
    again = laptop.run("launch", "-y", str(task))
    assert again.returncode == 0, again.output
    assert "0: staged-fine" in again.stdout


def test_ctrl_c_mid_staging_over_ssh_submits_nothing_and_removes_the_snapshot(
    laptop: Workstation, tmp_path: Path, remote_cleanup: list[str]
) -> None:
    """Ctrl-C reaches konduktor, rsync and ssh alike (the terminal's process group)."""
    tag = uuid.uuid4().hex[:6]
    remote_cleanup.append(f"intr{tag}")
    _, proc = start_big_staging(laptop, tmp_path, f"intr{tag}", "'true'")
    try:
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr.endswith("Error: interrupted while staging; nothing was submitted\n"), stderr
    assert "Traceback" not in stderr
    assert not any(job.startswith(f"intr{tag}-") for job in slurm_job_names())
    (job,) = json.loads(laptop.run("status", "--json").stdout)["jobs"]
    assert (job["status"], job["detail"]) == (
        "FAILED",
        "launch interrupted while staging; nothing was submitted",
    )
    assert not list(REMOTE_JOBS.glob(f"intr{tag}-*")), "the partial snapshot was left behind"


def test_follow_reports_a_dropped_connection_and_exits(
    laptop: Workstation, sshd: DedicatedSSHD, tmp_path: Path
) -> None:
    task = tmp_path / "task.yaml"
    task.write_text("name: follow-drop\nrun: |\n  echo started\n  sleep 60\n")
    launched = laptop.run("launch", "-y", "-d", str(task))
    assert launched.returncode == 0, launched.output
    name, job_id = submitted(launched.stdout)
    proc = subprocess.Popen(
        [KONDUKTOR, "logs", "--follow", name],
        env=laptop.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the job printed
        assert "started" in line or "konduktor:" in line, line
        sshd.kill()
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sshd.start()
        subprocess.run(["scancel", job_id], check=False)
    result = Run(proc.returncode, stdout, stderr)
    assert_one_line_error(result, f"lost the SSH connection to kdtest@127.0.0.1:{sshd.port}")


def test_python_sdk_over_ssh_launches_and_returns_the_result(
    laptop: Workstation,
    sshd: DedicatedSSHD,
    tmp_path: Path,
    remote_cleanup: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The SDK from a laptop: the same calls as on the login node, over the configured SSH."""
    import konduktor_slurm as konduktor

    tag = uuid.uuid4().hex[:6]
    remote_cleanup.append(f"sdkssh{tag}")
    for key, value in laptop.env().items():
        if key.startswith("KONDUKTOR_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "data.txt").write_text("from the laptop\n")
    task = konduktor.Task(
        f"sdkssh{tag}",
        workdir="project",
        run='echo "user=$(id -un)"; cat data.txt\n'
        'echo \'{"who": "\'$(id -un)\'"}\' > "$KONDUKTOR_OUTPUT_DIR/result.json"\n',
    )
    before = sshd.accepted()
    job = konduktor.launch(task, detach_run=True)
    assert sshd.accepted() - before == 1  # one SSH connection for the whole launch
    assert job.wait(timeout=120) == "succeeded"
    assert job.result() == {"who": TEST_USER}
    assert f"0: user={TEST_USER}\n0: from the laptop\n" in job.logs()
    assert job.logs(node_rank=0) == f"0: user={TEST_USER}\n0: from the laptop\n"
    with pytest.raises(konduktor.NoResultReportedError):
        konduktor.launch(konduktor.Task(f"sdkssh{tag}", run="true"), detach_run=True).result(
            timeout=120
        )


def test_rapid_same_size_rewrites_each_launch_ships_its_own_content(
    laptop: Workstation, tmp_path: Path, remote_cleanup: list[str]
) -> None:
    """A sweep that rewrites a config and relaunches: every job runs what was there at its
    launch, though each rewrite keeps the size and, within one tick, the modification time."""
    tag = uuid.uuid4().hex[:6]
    remote_cleanup.append(f"sweep{tag}")
    project = tmp_path / "project"
    project.mkdir()
    config = project / "config.txt"
    (tmp_path / "task.yaml").write_text(
        f"name: sweep{tag}\nworkdir: project\nrun: cat config.txt\n"
    )
    names = []
    for index in range(5):
        config.write_text(f"lr={index:03d}\n")
        # As on a filesystem with 2-second timestamps: rewrites within one tick keep the
        # same modification time (and the same size).
        tick = int(time.time()) // 2 * 2
        os.utime(config, (tick, tick))
        launched = laptop.run("launch", "-y", "-d", "task.yaml")
        assert launched.returncode == 0, launched.output
        names.append(re.search(r"Submitted (\S+)", launched.stdout).group(1))
    for index, name in enumerate(names):
        staged = REMOTE_JOBS / name / "workdir" / "config.txt"
        assert staged.read_text() == f"lr={index:03d}\n", name


# ---- `konduktor status` through OpenSSH's client (openssh.py) ------------------------------


def imported(result_stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result_stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.fixture
def short_tmpdir() -> Iterator[Path]:
    """A TMPDIR of our own (short enough for a control socket): what status leaves there."""
    directory = Path(tempfile.mkdtemp(prefix="kdt-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def masters_in(directory: Path) -> list[str]:
    """ssh processes whose control socket lies under ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if cmdline.startswith("ssh") and str(directory) in cmdline:
            found.append(cmdline)
    return found


def launch_task(
    laptop: Workstation, tmp_path: Path, remote_cleanup: list[str], prefix: str, body: str
) -> tuple[str, str]:
    """``launch -d`` of a task named ``<prefix><tag>`` with ``body``: (job name, Slurm id)."""
    task_name = f"{prefix}{uuid.uuid4().hex[:6]}"
    remote_cleanup.append(task_name)
    task = tmp_path / "task.yaml"
    task.write_text(f"name: {task_name}\n{body}")
    launched = laptop.run("launch", "-y", "-d", str(task))
    assert launched.returncode == 0, launched.output
    return submitted(launched.stdout)


def test_status_of_a_job_that_ended_unseen_is_one_connection_through_openssh(
    laptop: Workstation,
    sshd: DedicatedSSHD,
    tmp_path: Path,
    remote_cleanup: list[str],
    short_tmpdir: Path,
) -> None:
    name, job_id = launch_task(laptop, tmp_path, remote_cleanup, "sshstatus", "run: exit 3\n")
    deadline = time.monotonic() + 60  # ended on the cluster, not yet seen by konduktor
    while job_id in subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True,
                                   text=True).stdout.split():  # fmt: skip
        assert time.monotonic() < deadline
        time.sleep(1)
    env = {"TMPDIR": str(short_tmpdir)}

    # squeue, sacct, the ranks' exit codes and the canceller's name: one login for all.
    before = sshd.accepted()
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", KONDUKTOR, "status", "--json", name],
        capture_output=True,
        text=True,
        env={**laptop.env(), **env},
        stdin=subprocess.DEVNULL,
        cwd=laptop.directory,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    time.sleep(0.2)
    assert sshd.accepted() - before == 1
    job = json.loads(proc.stdout)["jobs"][0]
    assert (job["status"], job["rank_exit_codes"]) == ("FAILED", {"0": 3}), job
    modules = imported(proc.stderr)
    assert not {"paramiko", "fabric"} & modules  # OpenSSH's client did it

    # The master ended with the command: nothing is left running or lying around.
    deadline = time.monotonic() + 10
    while masters_in(short_tmpdir) or any(short_tmpdir.iterdir()):
        assert time.monotonic() < deadline, (masters_in(short_tmpdir), list(short_tmpdir.iterdir()))
        time.sleep(0.1)

    # The same through paramiko when asked: the same answer.
    again = laptop.run("status", "--json", name, env={"KONDUKTOR_SSH_CLIENT": "paramiko", **env})
    assert again.returncode == 0, again.output
    assert json.loads(again.stdout)["jobs"][0]["status"] == "FAILED"


def test_status_through_openssh_refuses_an_unknown_host_as_ssh_py_does(
    laptop: Workstation, short_tmpdir: Path
) -> None:
    store = Store(laptop.directory / "kdhome" / "state.db")
    store.add(held_job_record("unknownhost-1a2b", "999999", TEST_USER, "/nonexistent"))
    store.close()
    laptop.known_hosts.write_text("")
    result = laptop.run("status", env={"TMPDIR": str(short_tmpdir)})
    # The last known states, and ssh.py's one line on why (not OpenSSH's own words).
    assert result.returncode == 3, result.output
    assert "unknownhost-1a2b" in result.stdout and "(stale)" in result.stdout
    assert "Traceback" not in result.output
    warning = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert len(warning) == 1 and "refusing to connect" in warning[0], result.stderr
    assert "ssh-keyscan" in warning[0] and "Host key verification failed" not in result.stderr
    assert laptop.known_hosts.read_text() == ""
    assert not masters_in(short_tmpdir) and not any(short_tmpdir.iterdir())


def test_status_with_accept_new_host_keys_through_openssh_remembers_the_key(
    laptop: Workstation, sshd: DedicatedSSHD, short_tmpdir: Path
) -> None:
    store = Store(laptop.directory / "kdhome" / "state.db")
    store.add(held_job_record("acceptnew-1a2b", "999998", TEST_USER, "/nonexistent"))
    store.close()
    laptop.known_hosts.write_text("")
    laptop.configure(accept_new_host_keys=True)
    result = laptop.run("status", "--json", env={"TMPDIR": str(short_tmpdir)})
    assert result.returncode == 0, result.output
    # Written as ssh.py writes it, so later commands (through paramiko) read it.
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519 " in laptop.known_hosts.read_text()
    checked = laptop.run("check", "--json")
    assert checked.returncode == 0 and json.loads(checked.stdout)["ok"], checked.output


# Runs a bare `konduktor status --json` (entry.py's path) and says on stderr whether the
# transport took over the login entry.py started as the process started.
_CLAIM_WITNESS = """
import sys
from konduktor_slurm import entry, login_ahead
claim = login_ahead.claim
def witnessed(*args):
    login = claim(*args)
    sys.stderr.write("early login: " + ("taken over" if login else "none") + "\\n")
    return login
login_ahead.claim = witnessed
sys.argv = ["konduktor", "status", "--json"]
entry.run()
"""


def test_a_bare_status_starts_its_login_as_it_starts_and_leaves_nothing(
    laptop: Workstation,
    sshd: DedicatedSSHD,
    tmp_path: Path,
    remote_cleanup: list[str],
    short_tmpdir: Path,
) -> None:
    from konduktor_slurm import login_ahead

    body = "slurm:\n  sbatch_options: ['--hold']\nrun: 'true'\n"
    name, _ = launch_task(laptop, tmp_path, remote_cleanup, "early", body)
    held = "SUSPENDED (by user)"  # --hold: a user hold, as `konduktor stop` makes
    env = {**laptop.env(), "TMPDIR": str(short_tmpdir)}

    def status() -> tuple[dict, str]:
        before = sshd.accepted()
        proc = subprocess.run([sys.executable, "-c", _CLAIM_WITNESS], capture_output=True,
                              text=True, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        time.sleep(0.2)
        assert sshd.accepted() - before == 1  # one login, whoever started it
        deadline = time.monotonic() + 10  # the master ends with the command, its dir too
        while masters_in(short_tmpdir) or any(short_tmpdir.iterdir()):
            left = (masters_in(short_tmpdir), list(short_tmpdir.rglob("*")))
            assert time.monotonic() < deadline, left
            time.sleep(0.1)
        jobs = {job["name"]: job["status"] for job in json.loads(proc.stdout)["jobs"]}
        return jobs, proc.stderr

    # The first status logs in as before, and remembers how (privately: it is a command).
    jobs, stderr = status()
    assert jobs[name] == held and "early login: none" in stderr
    remembered = laptop.directory / "kdhome" / login_ahead.CACHE_NAME
    assert remembered.stat().st_mode & 0o777 == 0o600
    # The next one starts that login before loading anything; its squeue rides it.
    jobs, stderr = status()
    assert jobs[name] == held and "early login: taken over" in stderr

    # A remembered login that is not the one the config asks for (here: as nobody) is
    # ended unused, and the status is the config's, over a login of its own.
    head = 1 + len(login_ahead._key(env["KONDUKTOR_CONFIG"], env) or [])
    client, host, *options = login_ahead._records(remembered.read_bytes())[0][head:]
    # (ssh takes an option's first value: nobody's login, which has no key, is refused.)
    login_ahead.remember(remembered.parent, env["KONDUKTOR_CONFIG"], client,
                         ["-o", "User=nobody", *options], host)  # fmt: skip
    assert login_ahead._remembered(env)[2][1] == "User=nobody"  # type: ignore[index]
    jobs, stderr = status()
    assert jobs[name] == held and "early login: none" in stderr
    assert login_ahead._remembered(env)[2] == options  # type: ignore[index]

    # The login node gone: the login started ahead fails at once, and the status is what
    # it always was then: the last known states, one warning line, exit 3, nothing left.
    sshd.kill()
    try:
        start = time.monotonic()
        proc = subprocess.run([sys.executable, "-c", _CLAIM_WITNESS], capture_output=True,
                              text=True, env=env, stdin=subprocess.DEVNULL)  # fmt: skip
        assert time.monotonic() - start < 10
        assert proc.returncode == 3, proc.stderr[-3000:]
        assert "early login: taken over" in proc.stderr
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("Warning:")]
        assert len(warnings) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert {job["name"]: job["status"] for job in json.loads(proc.stdout)["jobs"]} == jobs
        time.sleep(0.5)
        assert not masters_in(short_tmpdir) and not any(short_tmpdir.iterdir())
    finally:
        sshd.start()
