"""Commands on the login node through the system's OpenSSH client, for a konduktor command
that only runs commands there (``konduktor status``).

Why: importing paramiko (ssh.py's library) costs a status about 0.2 s and 25 MiB before the
first byte goes out; OpenSSH's client is a small process of its own. A status over SSH thus
costs about what ``ssh host squeue`` costs, plus konduktor's own start.

The promises of ssh.py hold:

* **One connection per konduktor command.** The first command opens a ControlMaster (its
  socket in a private 0700 directory) and runs over it; later commands multiplex over the
  same connection. A status that will ask Slurm starts the master ahead (``connect_ahead``,
  login_ahead.py): the login's round trips, most of a status over SSH, then overlap
  konduktor loading its modules and reading the store, and the first command rides that
  login's own session. ``close()`` ends the master; if konduktor is killed first, the
  master ends itself after ``CONTROL_PERSIST_SECONDS`` without a session.
* **The same settings.** config.yaml's values are ``-o`` options, which win over
  ``~/.ssh/config`` exactly as ssh.py's override block does (user, port, identity file,
  ProxyJump or ProxyCommand, known_hosts, connect timeout). Host keys are checked against the
  same known_hosts files; an unknown host is refused unless ``accept_new_host_keys``
  (OpenSSH's ``accept-new``); a changed key is always refused. Keys and ssh-agent only, never
  a prompt (``BatchMode``).
* **One-line errors.** When OpenSSH cannot do it (no ``ssh`` on PATH, ``$HOME`` other than the
  account's home: OpenSSH reads the account's ``~/.ssh/config`` where ssh.py reads
  ``$HOME``'s, or any failure of ssh itself: exit 255), the command runs through ssh.py
  instead, whose errors name what is wrong. The commands of a status only read, so running
  one again is harmless.

``KONDUKTOR_SSH_CLIENT=paramiko`` makes every command use ssh.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from typing import TYPE_CHECKING

from konduktor_slurm import login_ahead
from konduktor_slurm.login_ahead import CONTROL_PERSIST_SECONDS, private_directory
from konduktor_slurm.transport import DEFAULT_TIMEOUT, CommandResult, remote_command_line

if TYPE_CHECKING:
    from pathlib import Path

    from konduktor_slurm.config import SSHSettings
    from konduktor_slurm.login_ahead import AheadLogin
    from konduktor_slurm.ssh import SSHTransport

CLIENT_ENV = "KONDUKTOR_SSH_CLIENT"  # "paramiko": never use OpenSSH's client
SSH_FAILED = 255  # ssh's own exit status when it could not connect or lost the connection
# The first command rides the login started ahead as one line of its stdin (a longer one,
# or one with a newline or with input, runs as the commands after it do).
_MAX_RIDING_LINE = 32 * 1024


def _on_path(program: str) -> str | None:
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _account_home() -> str | None:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return None


def openssh_client() -> str | None:
    """The ``ssh`` to use, or None when ssh.py must do it (see the module's docstring)."""
    if os.environ.get(CLIENT_ENV, "").strip().lower() == "paramiko":
        return None
    home = os.path.expanduser("~")
    if os.path.realpath(home) != os.path.realpath(_account_home() or ""):
        return None
    return _on_path("ssh")


class OpenSSHTransport:
    """A Transport whose commands go through OpenSSH's ``ssh``; files, rsync and anything
    else through ssh.py (opened only if asked: a status never asks)."""

    def __init__(
        self,
        settings: SSHSettings,
        client: str,
        *,
        slurm_bin_dir: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        config_path: str | None = None,
        remember_in: Path | None = None,
    ) -> None:
        self.settings = settings
        self.client = client
        self.slurm_bin_dir = slurm_bin_dir
        self.timeout = timeout
        self.config_path = config_path
        self.remember_in = remember_in  # where a login started ahead is kept for the next one
        self.description = f"ssh {settings.display}"
        self._socket_dir: str | None = None  # holds the ControlMaster's socket once opened
        self._ahead: AheadLogin | None = None  # the login connect_ahead() started
        self._failed = False  # ssh failed once: every later command goes through ssh.py
        self._paramiko: SSHTransport | None = None
        self._user: str | None = None

    # ---- what ssh is told

    def _options(self) -> list[str]:
        s = self.settings
        options = {
            "BatchMode": "yes",  # keys and ssh-agent only: never a password or passphrase prompt
            "PreferredAuthentications": "publickey",
            "StrictHostKeyChecking": "accept-new" if s.accept_new_host_keys else "yes",
            "HashKnownHosts": "no",  # a key accepted is written as ssh.py writes it
            "ConnectTimeout": str(max(1, round(s.connect_timeout))),
            "ServerAliveInterval": "15",  # ssh.py's keepalive
            "LogLevel": "ERROR",  # no "Permanently added ..." among a command's output
            "ClearAllForwardings": "yes",
            "ForwardAgent": "no",
            "ForwardX11": "no",
            "RequestTTY": "no",
            "RemoteCommand": "none",  # ours is the command (ssh.py ignores RemoteCommand too)
            "PermitLocalCommand": "no",
        }
        if s.user:
            options["User"] = s.user
        if s.port:
            options["Port"] = str(s.port)
        if s.identity_file:
            options["IdentityFile"] = os.path.expanduser(s.identity_file)
        if s.known_hosts:
            options["UserKnownHostsFile"] = os.path.expanduser(s.known_hosts)
        if s.jump_host:
            options.update(ProxyJump=s.jump_host, ProxyCommand="none")
        if s.proxy_command:
            options.update(ProxyCommand=s.proxy_command, ProxyJump="none")
        return [arg for key, value in options.items() for arg in ("-o", f"{key}={value}")]

    def _control(self, master: bool) -> list[str]:
        assert self._socket_dir is not None
        control = ["-o", f"ControlPath={self._socket_dir}/master"]
        if master:
            return [*control, "-o", "ControlMaster=yes",
                    "-o", f"ControlPersist={CONTROL_PERSIST_SECONDS}"]  # fmt: skip
        return [*control, "-o", "ControlMaster=no"]

    # ---- commands

    def connect_ahead(self) -> None:
        """Start logging in now, in the background, for the commands that will follow: the
        login's round trips (most of a status over SSH) then overlap konduktor's own start
        (its imports, the store), and the first command rides the login (login_ahead.py).

        The login entry.py started as the process started is taken over when it is this
        one; otherwise one starts now, and is remembered for the next status. Failures
        surface at the first command, which then runs through ssh.py like any other
        OpenSSH failure."""
        if self._failed or self._socket_dir is not None:
            return
        options, host = self._options(), self.settings.host
        ahead = login_ahead.claim(self.client, options, host)
        if ahead is None:
            ahead = login_ahead.spawn(self.client, options, host)
            if self.remember_in is not None and self.config_path is not None:
                login_ahead.remember(self.remember_in, self.config_path, self.client, options,
                                     host)  # fmt: skip
        self._ahead, self._socket_dir = ahead, ahead.socket_dir

    def run(
        self, argv: list[str], *, timeout: float = DEFAULT_TIMEOUT, input_text: str | None = None
    ) -> CommandResult:
        if self._failed:
            return self.paramiko().run(argv, timeout=timeout, input_text=input_text)
        line = remote_command_line(argv, timeout, self.slurm_bin_dir)
        if self._ahead is not None:
            ahead, self._ahead = self._ahead, None
            if not self._wait_for_master(ahead):
                ahead.release()
                return self._fall_back(argv, timeout, input_text)
            if input_text is None and "\n" not in line and len(line) < _MAX_RIDING_LINE:
                return self._finish(ahead, argv, timeout, None, (line + "\n").encode())
            ahead.release()  # its shell reads no line: the command goes as the next ones do
        opening = self._socket_dir is None
        if opening:
            self._socket_dir = private_directory()
        ssh = [
            self.client, *self._options(), *self._control(master=opening),
            "--", self.settings.host, line,
        ]  # fmt: skip
        proc = subprocess.Popen(
            ssh,
            stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if opening and not self._wait_for_master(proc):
            return self._fall_back(argv, timeout, input_text)
        stdin = input_text.encode() if input_text is not None else None
        return self._finish(proc, argv, timeout, input_text, stdin)

    def _finish(
        self,
        proc: subprocess.Popen | AheadLogin,
        argv: list[str],
        timeout: float,
        input_text: str | None,
        stdin: bytes | None,
    ) -> CommandResult:
        """The command's answer (``stdin`` is what its ssh reads), over a connection that
        is up: ``timeout`` is the command's, as in ssh.py."""
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=5)
            if not self._master_alive():
                return self._fall_back(argv, timeout, input_text)
            from konduktor_slurm.ssh import SSHCommandTimeout

            raise SSHCommandTimeout(
                f"{argv[0]} did not answer within {timeout:g}s on {self.settings.display}"
            ) from None
        if proc.returncode == SSH_FAILED:
            return self._fall_back(argv, timeout, input_text)
        return CommandResult(
            tuple(argv), proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def _wait_for_master(self, proc: subprocess.Popen | AheadLogin) -> bool:
        """Whether the ControlMaster came up (its socket appears once logged in) within the
        connect timeout. ``proc`` is the ssh that opens it: one running the first command
        (which then runs over it), or connect_ahead's, which waits for its first command."""
        import time

        socket = f"{self._socket_dir}/master"
        deadline = time.monotonic() + self.settings.connect_timeout
        exited_at: float | None = None
        while not os.path.exists(socket):
            if exited_at is None and proc.poll() is not None:
                if proc.returncode == SSH_FAILED:
                    return False
                exited_at = time.monotonic()  # the detached master may bind a moment later
            if exited_at is not None and time.monotonic() - exited_at > 1.0:
                return False
            if time.monotonic() > deadline:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.communicate(timeout=5)
                return False
            time.sleep(0.002)
        return True

    def _fall_back(self, argv: list[str], timeout: float, input_text: str | None) -> CommandResult:
        """ssh failed (or the login node's answer never came): ssh.py from now on, which
        either gets through or says in one line why not."""
        self._failed = True
        self._close_master()
        return self.paramiko().run(argv, timeout=timeout, input_text=input_text)

    def _master_alive(self) -> bool:
        if self._socket_dir is None:
            return False
        check = [self.client, *self._control(master=False), "-O", "check", self.settings.host]
        try:
            return subprocess.run(check, capture_output=True, timeout=5).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def paramiko(self) -> SSHTransport:
        """ssh.py's transport (its one connection opened on first use)."""
        if self._paramiko is None:
            from konduktor_slurm.ssh import SSHTransport

            self._paramiko = SSHTransport(
                self.settings,
                slurm_bin_dir=self.slurm_bin_dir,
                timeout=self.timeout,
                config_path=self.config_path,
            )
        return self._paramiko

    @property
    def connections(self) -> int:
        """SSH connections opened (jump hosts not counted)."""
        opened = 1 if self._socket_dir is not None and not self._failed else 0
        return opened + (self._paramiko.connections if self._paramiko is not None else 0)

    @property
    def user(self) -> str:
        """The remote account, as ssh resolves it (``ssh -G``: no connection needed)."""
        if self._failed:
            return self.paramiko().user
        if self._user is None:
            resolved = subprocess.run(
                [self.client, *self._options(), "-G", "--", self.settings.host],
                capture_output=True,
                text=True,
                timeout=30,
            )
            for line in resolved.stdout.splitlines():
                key, _, value = line.partition(" ")
                if key == "user" and value.strip():
                    self._user = value.strip()
                    break
            else:
                return self.paramiko().user
        return self._user

    # ---- the rest: files and rsync through ssh.py (not what a status does)

    def home(self) -> str:
        return self.paramiko().home()

    def read_bytes(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        return self.paramiko().read_bytes(path, offset, limit)

    def read_tail(self, path: str, max_bytes: int) -> bytes:
        return self.paramiko().read_tail(path, max_bytes)

    def write_file(self, path: str, data: str, mode: int = 0o600) -> None:
        self.paramiko().write_file(path, data, mode)

    def make_dirs(self, path: str, mode: int = 0o700) -> None:
        self.paramiko().make_dirs(path, mode)

    def rsync_destination(self, path: str) -> str:
        return self.paramiko().rsync_destination(path)

    def rsync_shell(self) -> contextlib.AbstractContextManager[str | None]:
        return self.paramiko().rsync_shell()

    def close(self) -> None:
        if self._ahead is not None:
            # No command came (or it is still logging in): stop it; a master it already
            # forked is told to exit below like any other.
            self._ahead.release()
        self._ahead = None
        self._close_master()
        if self._paramiko is not None:
            self._paramiko.close()

    def _close_master(self) -> None:
        """End the master and remove its directory, without waiting for either: the
        command's answer is out, and `ssh -O exit` takes a process start and a round trip.
        (A master that does not get the message ends itself after CONTROL_PERSIST_SECONDS.)"""
        directory, self._socket_dir = self._socket_dir, None
        if directory is not None:
            login_ahead.end_master(self.client, directory)
