"""When `konduktor status` uses OpenSSH's client, and what it tells ssh (openssh.py).

The live tests (tests/live/test_ssh.py) run it against the real sshd; these pin down the
choice of client and that every config.yaml setting reaches ssh as ssh.py applies it.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from konduktor_slurm.config import Settings, SSHSettings
from konduktor_slurm.login_ahead import DEFERRED_COMMAND
from konduktor_slurm.openssh import OpenSSHTransport, openssh_client
from konduktor_slurm.service.session import open_slurm
from konduktor_slurm.ssh import SSHTransport


def options(**settings: object) -> dict[str, str]:
    transport = OpenSSHTransport(SSHSettings(**settings), "/usr/bin/ssh")  # type: ignore[arg-type]
    args = transport._options()
    assert args[::2] == ["-o"] * (len(args) // 2)
    return dict(arg.split("=", 1) for arg in args[1::2])


def test_config_yaml_settings_become_ssh_options() -> None:
    given = options(
        host="login",
        user="alice",
        port=2222,
        identity_file="~/.ssh/id_ed25519",
        known_hosts="~/kh",
        jump_host="bastion:22",
        connect_timeout=7.4,
    )
    home = str(Path.home())
    assert given["User"] == "alice" and given["Port"] == "2222"
    assert given["IdentityFile"] == f"{home}/.ssh/id_ed25519"
    assert given["UserKnownHostsFile"] == f"{home}/kh"
    assert (given["ProxyJump"], given["ProxyCommand"]) == ("bastion:22", "none")
    assert given["ConnectTimeout"] == "7"
    assert given["StrictHostKeyChecking"] == "yes" and given["BatchMode"] == "yes"
    proxied = options(host="login", proxy_command="nc -X 5 -x socks:1080 %h %p")
    assert (proxied["ProxyCommand"], proxied["ProxyJump"]) == (
        "nc -X 5 -x socks:1080 %h %p",
        "none",
    )
    assert options(host="login", accept_new_host_keys=True)["StrictHostKeyChecking"] == "accept-new"
    # Not set in config.yaml: left to ~/.ssh/config, as ssh.py leaves it.
    assert not {"User", "Port", "IdentityFile", "UserKnownHostsFile", "ProxyJump"} & set(
        options(host="login")
    )


def test_a_command_line_is_quoted_once_and_slurm_bin_dir_applies(fake_ssh) -> None:
    transport, log = fake_ssh
    transport.slurm_bin_dir = "/opt/slurm/bin/"
    transport.run(["squeue", "--name=a b;rm -rf ~"], timeout=5)
    transport.run(["grep", "x"], timeout=0.5)
    lines = [shlex.split(call.split(" -- login ", 1)[1]) for call in log.read_text().splitlines()]
    # Bounded on the login node too: 2 s after we stop waiting (ceil(0.5) + 2 = 3).
    assert lines == [
        ["timeout", "--kill-after=5", "7", "/opt/slurm/bin/squeue", "--name=a b;rm -rf ~"],
        ["timeout", "--kill-after=5", "3", "grep", "x"],
    ]
    transport.close()


def test_the_client_is_openssh_unless_asked_or_home_is_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KONDUKTOR_SSH_CLIENT", raising=False)
    assert openssh_client() is not None  # ssh is installed here, HOME is the account's
    monkeypatch.setenv("KONDUKTOR_SSH_CLIENT", "paramiko")
    assert openssh_client() is None
    monkeypatch.delenv("KONDUKTOR_SSH_CLIENT")
    # OpenSSH reads the account's ~/.ssh/config, paramiko $HOME's: they would differ.
    monkeypatch.setenv("HOME", str(tmp_path))
    assert openssh_client() is None
    monkeypatch.undo()
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh on PATH
    assert openssh_client() is None


def test_only_a_commands_only_session_over_ssh_gets_it(tmp_path: Path) -> None:
    ssh = Settings(
        home=tmp_path, config_path=tmp_path / "c.yaml", jobs_dir="~/j", ssh=SSHSettings("login")
    )
    assert isinstance(open_slurm(ssh, commands_only=True).transport, OpenSSHTransport)
    assert isinstance(open_slurm(ssh).transport, SSHTransport)
    local = Settings(home=tmp_path, config_path=tmp_path / "c.yaml", jobs_dir=str(tmp_path))
    assert type(open_slurm(local, commands_only=True).transport).__name__ == "LocalTransport"


# ---- run(), against a stand-in for ssh ---------------------------------------------------

# What OpenSSH's client does, as far as run() can see: the master's socket appears once it is
# logged in (FAKE_SSH_LOGIN seconds, or never), then the command runs; exit 255 is ssh's own
# failure. Every call is logged.
FAKE_SSH = r"""#!/bin/sh
echo "$*" >> "$FAKE_SSH_LOG"
socket=""; master=no
while [ $# -gt 0 ]; do
  case "$1" in
    -o) case "$2" in
          ControlPath=*) socket="${2#ControlPath=}";;
          ControlMaster=yes) master=yes;;
        esac; shift 2;;
    -O) [ "$2" = exit ] || exit 0
        if [ -n "$FAKE_SSH_SLOW_EXIT" ]; then  # the master unlinks its socket a moment later
          (sleep "$FAKE_SSH_SLOW_EXIT"; rm -f "$socket") >/dev/null 2>&1 &
        else rm -f "$socket"; fi
        exit 0;;
    -G) echo "user fakeuser"; exit 0;;
    --) shift; shift; break;;
    *) shift;;
  esac
done
if [ "$FAKE_SSH_FAIL" = yes ]; then echo "ssh: connect to host: refused" >&2; exit 255; fi
if [ $master = yes ]; then
  [ "$FAKE_SSH_LOGIN" = never ] && exec sleep 30
  sleep "${FAKE_SSH_LOGIN:-0}"; : > "$socket"
fi
line=$1
case "$line" in  # sshd would leave the command to its wrapper's timeout; here a kill ends it
  "timeout --kill-after="*) line=${line#timeout --kill-after=* }; line=${line#* };;
esac
case "$line" in  # as sshd runs it: the account's shell -c (exec: a kill ends the command)
  exec\ *) exec sh -c "$line";;
  *) exec sh -c "exec $line";;
esac
"""


class Recorded:
    """ssh.py's transport, as the fallback: records what it is asked."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.connections = 1

    def run(self, argv: list[str], *, timeout: float, input_text: str | None = None):
        from konduktor_slurm.transport import CommandResult

        self.calls.append(argv)
        return CommandResult(tuple(argv), 0, "from ssh.py\n", "")

    def close(self) -> None:
        return None


@pytest.fixture
def fake_ssh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> tuple[OpenSSHTransport, Path]:
    client = tmp_path / "ssh"
    client.write_text(FAKE_SSH)
    client.chmod(0o755)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    short = Path(tempfile.mkdtemp(prefix="kdt-", dir="/tmp"))  # a socket path is short
    request.addfinalizer(lambda: shutil.rmtree(short, ignore_errors=True))
    monkeypatch.setenv("TMPDIR", str(short))
    transport = OpenSSHTransport(SSHSettings("login", connect_timeout=1.0), str(client))
    recorded = Recorded()
    monkeypatch.setattr(transport, "paramiko", lambda: recorded)
    return transport, log


def test_commands_share_one_master_and_close_ends_it(fake_ssh) -> None:
    transport, log = fake_ssh
    first = transport.run(["echo", "a b"], timeout=5)
    second = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=5)
    assert (first.returncode, first.stdout) == (0, "a b\n")
    assert (second.returncode, second.stdout, second.stderr) == (3, "out\n", "err\n")
    calls = log.read_text().splitlines()
    assert "ControlMaster=yes" in calls[0] and "ControlMaster=no" in calls[1]
    assert transport.connections == 1 and transport.user == "fakeuser"
    transport.close()
    deadline = time.monotonic() + 5
    tmpdir = Path(os.environ["TMPDIR"])
    while any(tmpdir.iterdir()):  # the socket's directory, removed after -O exit
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert any("-O exit" in call for call in log.read_text().splitlines())


def test_the_directory_goes_once_a_slow_master_has_let_go_of_its_socket(
    fake_ssh, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport, _ = fake_ssh
    monkeypatch.setenv("FAKE_SSH_SLOW_EXIT", "0.5")
    assert transport.run(["echo", "a"], timeout=5).stdout == "a\n"
    tmpdir = Path(os.environ["TMPDIR"])
    transport.close()
    # The shell that waits is out of our process group: a Ctrl-C at the terminal that
    # stops konduktor does not cut it short.
    # (Looked for a few times: a process in the middle of its exec shows no command line.)
    deadline = time.monotonic() + 0.4  # it waits at least 0.5 s for the socket to go
    while not (groups := _process_groups(_processes_mentioning(str(tmpdir)))):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert os.getpgrp() not in groups
    # An rmdir right after `ssh -O exit` failed, and the directory stayed for good.
    deadline = time.monotonic() + 5
    while any(tmpdir.iterdir()):
        assert time.monotonic() < deadline, list(tmpdir.rglob("*"))
        time.sleep(0.05)


def _process_groups(pids: list[int]) -> set[int]:
    """The process groups of those still running (its `sleep 0.1`s come and go)."""
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    return groups


def _processes_mentioning(text: str) -> list[int]:
    """Other processes whose command line holds ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if (
                entry.name.isdigit()
                and int(entry.name) != os.getpid()
                and text.encode() in (entry / "cmdline").read_bytes()
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_ending_the_master_holds_nothing_of_the_caller_open(
    fake_ssh, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `konduktor status | cat` ends when konduktor does, not when the shell that removes
    # the socket's directory (after a slow master) does.
    transport, _ = fake_ssh
    monkeypatch.setenv("FAKE_SSH_SLOW_EXIT", "3")
    script = (
        "import sys\n"
        "from konduktor_slurm.config import SSHSettings\n"
        "from konduktor_slurm.openssh import OpenSSHTransport\n"
        f"t = OpenSSHTransport(SSHSettings('login'), {transport.client!r})\n"
        "print(t.run(['echo', 'done'], timeout=5).stdout, end='')\n"
        "t.close()\n"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (0, "done\n"), proc.stderr
    assert time.monotonic() - start < 2.5


def test_a_login_killed_half_way_leaves_no_directory(tmp_path: Path) -> None:
    from konduktor_slurm.login_ahead import end_master

    directory = tmp_path / "konduktor-ssh-1"
    directory.mkdir()
    (directory / "master.Xa1b2c3d4e5f6g7h8").write_text("")  # OpenSSH's temporary socket
    end_master("/usr/bin/ssh", str(directory))
    assert not directory.exists()


def test_a_command_that_hangs_is_a_timeout_not_a_lost_connection(fake_ssh) -> None:
    from konduktor_slurm.ssh import SSHCommandTimeout

    transport, _ = fake_ssh
    start = time.monotonic()
    with pytest.raises(SSHCommandTimeout, match=r"sleep did not answer within 0\.5s on login"):
        transport.run(["sleep", "10"], timeout=0.5)
    assert time.monotonic() - start < 3
    assert transport.run(["echo", "still here"], timeout=5).stdout == "still here\n"
    transport.close()


@pytest.mark.parametrize("ahead", [False, True], ids=["first-command", "connect-ahead"])
@pytest.mark.parametrize("failure", ["FAKE_SSH_FAIL=yes", "FAKE_SSH_LOGIN=never"])
def test_when_ssh_cannot_connect_ssh_py_runs_the_command(
    fake_ssh, failure: str, ahead: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport, log = fake_ssh
    name, value = failure.split("=")
    monkeypatch.setenv(name, value)
    if ahead:  # the login started before the first command (a status): the same outcome
        transport.connect_ahead()
    start = time.monotonic()
    result = transport.run(["squeue", "--me"], timeout=5)
    assert result.stdout == "from ssh.py\n"
    assert time.monotonic() - start < 4  # the connect timeout (1 s), not the command's
    assert transport.paramiko().calls == [["squeue", "--me"]]  # type: ignore[attr-defined]
    calls = len(log.read_text().splitlines())
    transport.run(["sacct"], timeout=5)  # and everything after it
    assert len(log.read_text().splitlines()) == calls
    transport.close()


def test_connect_ahead_logs_in_meanwhile_and_commands_run_over_it(
    fake_ssh, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport, log = fake_ssh
    monkeypatch.setenv("FAKE_SSH_LOGIN", "0.3")
    started = time.monotonic()
    transport.connect_ahead()
    assert time.monotonic() - started < 0.2  # it does not wait for the login
    first = transport.run(["sh", "-c", "echo 'a  b'; echo err >&2; exit 3"], timeout=5)
    second = transport.run(["echo", "b"], timeout=5)
    assert (first.returncode, first.stdout, first.stderr) == (3, "a  b\n", "err\n")
    assert (second.returncode, second.stdout) == (0, "b\n")
    # The first command rode the login's own session (no ssh of its own); the next one
    # multiplexes over its master.
    calls = log.read_text().splitlines()
    assert len(calls) == 2, calls
    assert "ControlMaster=yes" in calls[0] and calls[0].endswith(f"-- login {DEFERRED_COMMAND}")
    assert "ControlMaster=no" in calls[1]
    assert calls[1].endswith("-- login timeout --kill-after=5 7 echo b")
    assert transport.connections == 1
    transport.close()


@pytest.mark.parametrize(
    ("argv", "input_text"),
    [
        (["printf", "%s|", "two\nlines", "x"], None),  # a newline: not one line for read
        (["cat"], "from stdin\n"),  # input: the command reads stdin, not a line of it
        (["echo", "y" * 40_000], None),  # longer than a line ridden
    ],
    ids=["newline", "input", "long"],
)
def test_a_first_command_that_cannot_ride_the_login_runs_over_its_master(
    fake_ssh, monkeypatch: pytest.MonkeyPatch, argv: list[str], input_text: str | None
) -> None:
    transport, log = fake_ssh
    monkeypatch.setenv("FAKE_SSH_LOGIN", "0.1")
    transport.connect_ahead()
    result = transport.run(argv, timeout=5, input_text=input_text)
    expected = {"printf": "two\nlines|x|", "cat": "from stdin\n", "echo": "y" * 40_000 + "\n"}
    assert (result.returncode, result.stdout) == (0, expected[argv[0]])
    calls = [call for call in log.read_text().splitlines() if call.startswith("-o ")]
    assert len(calls) == 2 and "ControlMaster=no" in calls[1], calls
    assert transport.connections == 1
    transport.close()


def test_closing_before_any_command_stops_a_login_under_way(
    fake_ssh, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport, log = fake_ssh
    monkeypatch.setenv("FAKE_SSH_LOGIN", "never")
    transport.connect_ahead()
    ahead = transport._ahead
    deadline = time.monotonic() + 5
    # The (fake) ssh has logged its call and is logging in. Not merely "the log exists": the
    # shell creates the file before it writes the line (a fresh clone's CI run read it empty).
    while not (log.exists() and log.read_text().endswith("\n")):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert ahead is not None and ahead.poll() is None
    start = time.monotonic()
    transport.close()
    assert time.monotonic() - start < 2 and ahead.poll() is not None
    assert len(log.read_text().splitlines()) == 1  # no command ran


def test_a_status_logs_in_ahead_only_when_slurm_will_be_asked(tmp_path: Path) -> None:
    from konduktor_slurm.login_ahead import may_ask_slurm as _may_ask
    from konduktor_slurm.store import JobRecord, Store

    path = tmp_path / "home" / "state.db"
    assert not _may_ask(str(path))  # no store yet: nothing to ask about

    def job(name: str, slurm_id: str | None, terminal: bool) -> JobRecord:
        return JobRecord(name=name, task_name="t", user="u", resources="1x", num_nodes=1,
                         job_dir=f"/j/{name}", log_path=f"/j/{name}/log", state="PENDING",
                         created_at=1.0, slurm_job_id=slurm_id, terminal=terminal)  # fmt: skip

    store = Store(path)
    store.add(job("done-1", "11", terminal=True))
    store.add(job("staging-2", None, terminal=False))  # not submitted: Slurm knows nothing
    assert not _may_ask(str(path))
    store.add(job("waiting-3", "13", terminal=False))
    assert _may_ask(str(path))
    store.close()
    path.write_bytes(b"not a database" * 100)
    assert _may_ask(str(path))  # any doubt: yes (the store proper then says what is wrong)
