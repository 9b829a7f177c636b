"""Run commands and move files, on this machine or over one SSH connection (``ssh.py``).

Everything that touches the cluster goes through a ``Transport`` so the Slurm adapter and
staging never care where they run. Every call has a timeout: cron must never hang.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

DEFAULT_TIMEOUT = 30.0
# The paths one command is given, in characters: over SSH the whole command is one argument
# of the remote shell, which Linux caps at 128 KiB (20,000 jobs' directories are about
# 1.4 MB).
PATHS_PER_CALL_CHARS = 64 * 1024


def in_bounded_runs(paths: list[str]) -> Iterator[list[str]]:
    """``paths`` in runs of at most PATHS_PER_CALL_CHARS characters, at least one path
    each: a command per run keeps every command line short."""
    run: list[str] = []
    size = 0
    for path in paths:
        if run and size + len(path) + 1 > PATHS_PER_CALL_CHARS:
            yield run
            run, size = [], 0
        run.append(path)
        size += len(path) + 1
    if run:
        yield run


SLURM_COMMANDS = frozenset(
    {"sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "sacctmgr", "srun", "sprio"}
)
# What a command on the login node outlives our giving up on it by, before it is sent
# SIGTERM there (and SIGKILL REMOTE_KILL_AFTER_SECONDS later): our own timeout must fire
# first, so a late answer is still a CommandTimeout and never the wrapper's exit 124.
REMOTE_GRACE_SECONDS = 2
REMOTE_KILL_AFTER_SECONDS = 5


def with_slurm_bin_dir(argv: list[str], bin_dir: str | None) -> list[str]:
    """``argv`` with its Slurm command (its first word, or the one ``timeout N`` runs) taken
    from ``bin_dir`` (config's slurm_bin_dir: a site's /opt/slurm/bin)."""
    at = 2 if len(argv) > 2 and argv[0] == "timeout" else 0
    if not bin_dir or not argv or argv[at] not in SLURM_COMMANDS:
        return argv
    return [*argv[:at], f"{bin_dir.rstrip('/')}/{argv[at]}", *argv[at + 1 :]]


def remote_command_line(argv: list[str], timeout: float, bin_dir: str | None = None) -> str:
    """The shell line that runs ``argv`` on the login node and ends it there soon after we
    stop waiting for it.

    Closing an SSH channel does not end a command that has no terminal: a squeue we gave up
    on went on retrying slurmctld on the login node (seen on 24.11 throttled by its rate
    limit: it took the user's next tokens and starved the squeue asked after it), and one
    stuck on a dead controller stays for its MessageTimeout. coreutils' ``timeout`` (in its
    own process group, so whatever the command started goes too) bounds it there.
    """
    limit = math.ceil(timeout) + REMOTE_GRACE_SECONDS
    wrapper = ["timeout", f"--kill-after={REMOTE_KILL_AFTER_SECONDS}", str(limit)]
    return shlex.join([*wrapper, *with_slurm_bin_dir(argv, bin_dir)])


class TransportError(RuntimeError):
    """The command could not be run at all (missing binary, timeout, lost connection)."""


class CommandTimeout(TransportError):
    """The command started but did not finish within its timeout (the way there is fine)."""


class CommandResult(NamedTuple):
    """A finished command: its argv, exit status and output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Transport(Protocol):
    """What the rest of the tool needs from "the cluster side"."""

    description: str

    def run(
        self, argv: list[str], *, timeout: float = DEFAULT_TIMEOUT, input_text: str | None = None
    ) -> CommandResult: ...

    def read_bytes(self, path: str, offset: int = 0, limit: int | None = None) -> bytes: ...

    def read_tail(self, path: str, max_bytes: int) -> bytes:
        """At most the last ``max_bytes`` of the file (b"" if it is missing), never reading the
        rest of it: a log's tail costs the same for a 1 KB and a 100 GB log."""
        ...

    def write_file(self, path: str, data: str, mode: int = 0o600) -> None: ...

    def make_dirs(self, path: str, mode: int = 0o700) -> None: ...

    def rsync_destination(self, path: str) -> str: ...

    def rsync_shell(self) -> contextlib.AbstractContextManager[str | None]:
        """While entered: the ``--rsh`` command rsync must use (None: no remote shell)."""
        ...

    def home(self) -> str: ...

    @property
    def user(self) -> str:
        """The account Slurm commands run as (the remote user over SSH)."""
        ...

    def close(self) -> None: ...


class LocalTransport:
    """The login-node case: the Slurm commands and the shared filesystem are right here."""

    description = "local"

    def __init__(self, slurm_bin_dir: str | None = None) -> None:
        # Sites install Slurm under /opt/slurm/bin and the like; prefer it when configured.
        self._env = dict(os.environ)
        if slurm_bin_dir:
            self._env["PATH"] = f"{slurm_bin_dir}{os.pathsep}{self._env.get('PATH', '')}"

    def run(
        self, argv: list[str], *, timeout: float = DEFAULT_TIMEOUT, input_text: str | None = None
    ) -> CommandResult:
        try:
            proc = subprocess.run(
                argv,
                input=input_text,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self._env,
                stdin=None if input_text is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise TransportError(f"{argv[0]}: command not found on this machine") from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandTimeout(f"{argv[0]} did not answer within {timeout:g}s") from exc
        return CommandResult(tuple(argv), proc.returncode, proc.stdout, proc.stderr)

    def read_bytes(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read() if limit is None else handle.read(limit)
        except FileNotFoundError:
            return b""

    def read_tail(self, path: str, max_bytes: int) -> bytes:
        if max_bytes <= 0:
            return b""
        try:
            with open(path, "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - max_bytes))
                return handle.read(max_bytes)
        except FileNotFoundError:
            return b""

    def write_file(self, path: str, data: str, mode: int = 0o600) -> None:
        # Create with the final mode so secrets are never briefly world-readable.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(data)
        os.chmod(path, mode)

    def make_dirs(self, path: str, mode: int = 0o700) -> None:
        Path(path).mkdir(parents=True, exist_ok=True, mode=mode)
        os.chmod(path, mode)

    def rsync_destination(self, path: str) -> str:
        return path

    def rsync_shell(self) -> contextlib.AbstractContextManager[str | None]:
        return contextlib.nullcontext(None)

    def home(self) -> str:
        return str(Path.home())

    @property
    def user(self) -> str:
        return getpass.getuser()

    def close(self) -> None:
        return None
