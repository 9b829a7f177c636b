"""A status over SSH starts the previous status's login as the process starts
(login_ahead.py): when it may, when it must not, and that nothing else is ever run.

Against the stand-in for ssh of test_openssh.py (it logs every call); the live tests
(tests/live/test_ssh.py) run the same against the real sshd.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from konduktor_slurm import login_ahead
from konduktor_slurm.config import SSHSettings
from konduktor_slurm.openssh import OpenSSHTransport
from konduktor_slurm.store import Store
from tests.conftest import held_job_record
from tests.unit.test_openssh import FAKE_SSH


class Laptop:
    """A KONDUKTOR_HOME with a config.yaml for ``login``, a store, and the fake ssh."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = root / "kdhome"
        self.home.mkdir()
        self.config = self.home / "config.yaml"
        self.config.write_text("ssh: login\n")
        self.client = root / "ssh"
        self.client.write_text(FAKE_SSH)
        self.client.chmod(0o755)
        self.log = root / "calls.log"
        monkeypatch.setenv("FAKE_SSH_LOG", str(self.log))
        monkeypatch.setenv("KONDUKTOR_HOME", str(self.home))
        monkeypatch.delenv("KONDUKTOR_CONFIG", raising=False)
        monkeypatch.setenv("FAKE_SSH_LOGIN", "0.05")
        self.store = Store(self.home / "state.db")
        self.store.add(held_job_record("waiting-1a2b", "77", "u", "/j"))
        self.store.close()

    def transport(self) -> OpenSSHTransport:
        return OpenSSHTransport(
            SSHSettings("login", connect_timeout=2.0),
            str(self.client),
            config_path=str(self.config),
            remember_in=self.home,
        )

    def calls(self) -> list[str]:
        if not self.log.exists():
            return []
        lines = self.log.read_text().splitlines()
        return [line for line in lines if line.startswith("-o BatchMode")]

    def wait_for_calls(self, count: int) -> list[str]:
        """The calls, once ``count`` have started (a spawned ssh logs when it runs)."""
        deadline = time.monotonic() + 5
        while len(self.calls()) < count:
            assert time.monotonic() < deadline, self.calls()
            time.sleep(0.005)
        return self.calls()

    def first_status(self) -> None:
        """What a status over SSH leaves: its login remembered."""
        transport = self.transport()
        transport.connect_ahead()
        assert transport.run(["echo", "first"], timeout=5).stdout == "first\n"
        transport.close()
        self.log.unlink()


@pytest.fixture
def laptop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Laptop:
    short = Path(tempfile.mkdtemp(prefix="kdt-", dir="/tmp"))  # a socket path is short
    request.addfinalizer(lambda: shutil.rmtree(short, ignore_errors=True))
    monkeypatch.setenv("TMPDIR", str(short))
    request.addfinalizer(login_ahead.abandon)  # a test that failed half-way leaves none
    return Laptop(tmp_path, monkeypatch)


def wait_until_empty(directory: Path) -> None:
    deadline = time.monotonic() + 5
    while any(directory.iterdir()):
        assert time.monotonic() < deadline, list(directory.iterdir())
        time.sleep(0.02)


def test_the_next_status_logs_in_before_loading_and_its_first_command_rides_it(
    laptop: Laptop,
) -> None:
    laptop.first_status()
    remembered = (laptop.home / login_ahead.CACHE_NAME).stat()
    assert remembered.st_mode & 0o777 == 0o600

    login_ahead.start_early()
    calls = laptop.wait_for_calls(1)  # before any transport exists: the login is under way
    assert len(calls) == 1 and calls[0].endswith(f"-- login {login_ahead.DEFERRED_COMMAND}")
    transport = laptop.transport()
    transport.connect_ahead()  # takes it over, starts none
    first = transport.run(["sh", "-c", "echo out; echo err >&2; exit 4"], timeout=5)
    second = transport.run(["echo", "second"], timeout=5)
    assert (first.returncode, first.stdout, first.stderr) == (4, "out\n", "err\n")
    assert second.stdout == "second\n"
    assert len(laptop.calls()) == 2 and "ControlMaster=no" in laptop.calls()[1]
    transport.close()
    # Taken over, so not written again.
    assert (laptop.home / login_ahead.CACHE_NAME).stat().st_mtime_ns == remembered.st_mtime_ns
    wait_until_empty(Path(os.environ["TMPDIR"]))


@pytest.mark.parametrize(
    "change",
    ["config edited", "other HOME", "paramiko asked", "file others can write", "nothing to ask"],
)
def test_no_login_starts_early_unless_everything_still_holds(
    laptop: Laptop, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    laptop.first_status()
    if change == "config edited":
        laptop.config.write_text("ssh: login2\n")
    elif change == "other HOME":
        monkeypatch.setenv("HOME", "/nonexistent")
    elif change == "paramiko asked":
        monkeypatch.setenv("KONDUKTOR_SSH_CLIENT", "paramiko")
    elif change == "file others can write":  # it holds a command that would be run
        (laptop.home / login_ahead.CACHE_NAME).chmod(0o666)
    else:
        for path in laptop.home.glob("state.db*"):
            path.unlink()
        store = Store(laptop.home / "state.db")  # a finished job only: Slurm is not asked
        store.add(dataclasses.replace(held_job_record("done-1a2b", "76", "u", "/j"), terminal=True))
        store.close()
    login_ahead.start_early()
    time.sleep(0.2)  # time enough for an ssh to start and log
    assert laptop.calls() == []
    assert login_ahead.claim(str(laptop.client), [], "login") is None


def test_a_login_that_is_not_the_transports_is_ended_unused(laptop: Laptop) -> None:
    laptop.first_status()
    login_ahead.start_early()
    early = login_ahead._early
    assert early is not None
    laptop.wait_for_calls(1)
    # A transport whose login differs from the remembered one (here: as another user).
    transport = OpenSSHTransport(
        SSHSettings("login", connect_timeout=2.0, user="other"),
        str(laptop.client),
        config_path=str(laptop.config),
        remember_in=laptop.home,
    )
    transport.connect_ahead()
    assert early.poll() is not None  # killed and reaped
    assert transport.run(["echo", "ok"], timeout=5).stdout == "ok\n"
    calls = laptop.calls()
    assert len(calls) == 2 and "User=other" in calls[1] and "User=other" not in calls[0]
    transport.close()
    wait_until_empty(Path(os.environ["TMPDIR"]))
    # Now remembered first; the previous one is kept for its own environment.
    assert login_ahead._remembered(os.environ) is not None
    assert "User=other" in login_ahead._remembered(os.environ)[2]  # type: ignore[index]


def test_a_login_nobody_claims_is_ended_and_leaves_nothing(laptop: Laptop) -> None:
    laptop.first_status()
    login_ahead.start_early()
    early = login_ahead._early
    assert early is not None
    deadline = time.monotonic() + 5
    while not os.path.exists(f"{early.socket_dir}/master"):  # logged in, master forked
        assert time.monotonic() < deadline
        time.sleep(0.01)
    login_ahead.abandon()  # entry.py's, when the status failed before asking Slurm
    assert early.poll() is not None and login_ahead._early is None
    wait_until_empty(Path(os.environ["TMPDIR"]))


def test_each_environment_keeps_its_own_login(
    laptop: Laptop, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop.first_status()  # a terminal's
    terminal = login_ahead._remembered(os.environ)
    terminal_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # cron's
    assert login_ahead._remembered(os.environ) is None
    laptop.first_status()
    assert login_ahead._remembered(os.environ) is not None
    monkeypatch.setenv("PATH", terminal_path)
    assert login_ahead._remembered(os.environ) == terminal
    records = login_ahead._records((laptop.home / login_ahead.CACHE_NAME).read_bytes())
    assert len(records) == 2
    for index in range(6):  # bounded
        monkeypatch.setenv("PATH", f"/opt/{index}:/usr/bin:/bin")
        laptop.first_status()
    assert len(login_ahead._records((laptop.home / login_ahead.CACHE_NAME).read_bytes())) == 4


def test_the_store_hint_reads_a_path_that_needs_quoting(tmp_path: Path) -> None:
    home = tmp_path / "a dir?#%"
    store = Store(home / "state.db")
    assert not login_ahead.may_ask_slurm(str(home / "state.db"))
    store.add(held_job_record("waiting-1a2b", "77", "u", "/j"))
    store.close()
    assert login_ahead.may_ask_slurm(str(home / "state.db"))
