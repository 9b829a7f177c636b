"""The SSH login of a status, started ahead: before konduktor has loaded anything.

A ``konduktor status`` over SSH costs about what ``ssh host squeue`` costs (openssh.py) plus
what konduktor does before the login starts and after Slurm has answered. The login is most
of it (a key exchange and the authentication: several round trips), so it should start as
early as it can:

* **As the process starts** (``start_early``, from entry.py, for a bare ``status``): the
  previous status over SSH left what it ran in ``$KONDUKTOR_HOME/ssh-ahead`` (``remember``),
  keyed on the config file as it was then and on the environment that shaped the command.
  When config.yaml, that environment and this konduktor are unchanged, and the store holds
  a job Slurm will be asked about, that command starts at once, with nothing loaded but
  ``os`` and ``sqlite3`` (not even ``subprocess``: the process is ``posix_spawn``'s). The
  transport then ``claim``s it only if it is exactly the command it would start itself;
  anything else is killed unused, and the transport starts its own. Like the config cache,
  the file is read only when it is ours and nobody else can write it: it holds a command
  that is run. (No racy-mtime rule is needed: a config edited within its timestamps'
  granularity at most starts a login that is then not claimed.)
* **The first command rides the login.** The login runs ``DEFERRED_COMMAND`` on the login
  node: a shell that reads one command line from stdin and runs it. The first command is
  written to it once it is known, so it needs no second ``ssh`` process (a multiplexing
  client, which costs a process start and its own config parsing); later commands
  multiplex over the master as before.

The login's process is an ``AheadLogin``: the few ``subprocess.Popen`` methods the transport
uses, over a pid and three pipes.
"""

from __future__ import annotations

import os
import stat

from konduktor_slurm.private_files import read_bytes

TYPE_CHECKING = False  # typing's import is what this module avoids (see above)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

CACHE_NAME = "ssh-ahead"
_MAGIC = "konduktor-ssh-ahead 1"
MAX_CACHE_BYTES = 64 * 1024
CONTROL_PERSIST_SECONDS = 30  # a master konduktor did not end (killed) ends itself then
# Run by the login node's shell for the login started ahead: one line, the first command.
# (sh, not the account's shell: the command line is quoted for a POSIX shell.)
DEFERRED_COMMAND = "exec /bin/sh -c 'IFS= read -r line && eval \"$line\"'"
# What shapes the ssh command besides config.yaml: which ssh (PATH, KONDUKTOR_SSH_CLIENT)
# and ~ in paths (HOME).
_ENVIRONMENT = ("HOME", "PATH", "KONDUKTOR_SSH_CLIENT")
_RECORDS_KEPT = 4  # environments remembered (a terminal's, cron's, ...)

_early: AheadLogin | None = None  # started by start_early, not yet claimed


class AheadLogin:
    """An ``ssh`` process, as much of ``subprocess.Popen`` as the transport uses."""

    def __init__(self, argv: Sequence[str], socket_dir: str) -> None:
        self.argv = list(argv)
        self.socket_dir = socket_dir
        self.returncode: int | None = None
        child_in, self._stdin = os.pipe()
        stdout, child_out = os.pipe()
        stderr, child_err = os.pipe()
        try:
            self.pid = os.posix_spawn(
                self.argv[0],
                self.argv,
                os.environ,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, child_in, 0),
                    (os.POSIX_SPAWN_DUP2, child_out, 1),
                    (os.POSIX_SPAWN_DUP2, child_err, 2),
                ],
            )
        except BaseException:
            for fd in (self._stdin, stdout, stderr):
                os.close(fd)
            raise
        finally:
            for fd in (child_in, child_out, child_err):
                os.close(fd)
        self._stdout, self._stderr = stdout, stderr
        # What was read from stdout and stderr, kept across a timed-out communicate().
        self._read: dict[int, list[bytes]] = {stdout: [], stderr: []}
        self._open = {stdout, stderr}

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise _timeout(self.argv, timeout)
            time.sleep(0.002)
        return code

    def kill(self) -> None:
        if self.poll() is None:  # not reaped yet: the pid is still this process's
            os.kill(self.pid, 9)

    def communicate(
        self, input: bytes | None = None, timeout: float | None = None
    ) -> tuple[bytes, bytes]:
        """Write ``input`` and close stdin, read stdout and stderr to their ends, wait for
        the exit status (``returncode``). ``subprocess.TimeoutExpired`` when that takes
        longer than ``timeout``; what was read is kept for the next call, as Popen does."""
        import selectors
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        if self._stdin >= 0:
            stdin, self._stdin = self._stdin, -1
            try:
                data = memoryview(input or b"")
                while data:
                    data = data[os.write(stdin, data) :]
            except BrokenPipeError:
                pass  # ssh has ended: its answer (or its failure) is on stdout and stderr
            finally:
                os.close(stdin)
        with selectors.DefaultSelector() as selector:
            for fd in self._open:
                selector.register(fd, selectors.EVENT_READ)
            while self._open:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise _timeout(self.argv, timeout)
                for key, _ in selector.select(left):
                    block = os.read(key.fd, 65536)
                    if block:
                        self._read[key.fd].append(block)
                    else:
                        selector.unregister(key.fd)
                        self._open.discard(key.fd)
                        os.close(key.fd)
        self.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return b"".join(self._read[self._stdout]), b"".join(self._read[self._stderr])

    def release(self) -> None:
        """Kill it if it still runs, reap it, close its pipes (a login nobody used)."""
        import contextlib

        self.kill()
        with contextlib.suppress(Exception):  # reaped later by nobody: nothing more to do
            self.wait(5)
        for fd in (self._stdin, *self._open):
            if fd >= 0:
                os.close(fd)
        self._stdin = -1
        self._open.clear()


def _timeout(argv: list[str], timeout: float | None) -> Exception:
    import subprocess

    return subprocess.TimeoutExpired(argv, timeout or 0.0)


def private_directory() -> str:
    """A new 0700 directory for the control socket (a socket path must stay under ~100
    bytes: $TMPDIR when it is short, else /tmp)."""
    base = os.environ.get("TMPDIR") or "/tmp"
    if len(base) > 60:
        base = "/tmp"
    while True:
        path = os.path.join(base, f"konduktor-ssh-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


def master_argv(client: str, options: Sequence[str], host: str, socket_dir: str) -> list[str]:
    """The login started ahead: a ControlMaster running ``DEFERRED_COMMAND``."""
    return [
        client, *options, "-o", f"ControlPath={socket_dir}/master", "-o", "ControlMaster=yes",
        "-o", f"ControlPersist={CONTROL_PERSIST_SECONDS}", "--", host, DEFERRED_COMMAND,
    ]  # fmt: skip


def spawn(client: str, options: Sequence[str], host: str) -> AheadLogin:
    """Start logging in to ``host``, in a new private socket directory."""
    socket_dir = private_directory()
    try:
        return AheadLogin(master_argv(client, options, host, socket_dir), socket_dir)
    except BaseException:
        os.rmdir(socket_dir)
        raise


# ---- ahead of everything: the previous status's command ------------------------------------


def _key(config_path: str, environ: Mapping[str, str]) -> list[str] | None:
    """What the remembered command depends on, or None for a config that is not a regular
    file (no SSH without one)."""
    from konduktor_slurm import __version__

    try:
        info = os.stat(config_path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    file = [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns]
    return [
        __version__,
        os.path.abspath(config_path),
        *map(str, file),
        *(f"{name}={environ.get(name, '')}" for name in _ENVIRONMENT),
    ]


def _paths(environ: Mapping[str, str]) -> tuple[str, str]:
    """``$KONDUKTOR_HOME`` and the config file, as config.py finds them."""
    home = os.path.expanduser(environ.get("KONDUKTOR_HOME") or "~/.konduktor")
    return home, os.path.expanduser(environ.get("KONDUKTOR_CONFIG") or f"{home}/config.yaml")


def _records(data: bytes) -> list[list[str]]:
    """The file's records: each a list of fields, none empty (hence ``\\0\\0`` between
    records)."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return []
    return [record.split("\0") for record in text.split("\0\0") if record]


def remember(home: Path, config_path: str, client: str, options: Sequence[str], host: str) -> None:
    """Keep the login just started for the next status of this environment, in front of
    the last few others' (cron's PATH is not a terminal's: each keeps its own). Nothing
    when the config is not a file."""
    from konduktor_slurm.private_files import write_atomically

    key = _key(config_path, os.environ)
    if key is None:
        return
    record = [_MAGIC, *key, client, host, *options]
    if not all(record) or any("\0" in field for field in record):
        return  # (no argument holds a NUL; an empty one would read as a record's end)
    path = home / CACHE_NAME
    kept = _records(read_bytes(path, MAX_CACHE_BYTES) or b"")
    if kept[:1] == [record]:
        return  # already the newest: no write for every status
    head = record[: 1 + len(key)]
    others = [other for other in kept if other[: len(head)] != head][: _RECORDS_KEPT - 1]
    write_atomically(path, "\0\0".join("\0".join(fields) for fields in [record, *others]))


def _remembered(environ: Mapping[str, str]) -> tuple[str, str, list[str], str] | None:
    """(client, host, options, store path) of this environment's previous status over SSH
    when config.yaml and this konduktor are unchanged since, else None."""
    home, config_path = _paths(environ)
    data = read_bytes(os.path.join(home, CACHE_NAME), MAX_CACHE_BYTES)
    if data is None:  # (a status on the login node itself: no login, no file)
        return None
    key = _key(config_path, environ)
    if key is None:
        return None
    head = [_MAGIC, *key]
    for record in _records(data):
        if record[: len(head)] == head and len(record) >= len(head) + 2:
            client, host, *options = record[len(head) :]
            return client, host, options, os.path.join(home, "state.db")
    return None


def start_early(environ: Mapping[str, str] = os.environ) -> None:
    """Start the previous status's login now, if it still holds and Slurm will be asked.
    Never fails: anything unexpected leaves the login to the transport, as before."""
    global _early
    if _early is not None:
        return
    try:
        remembered = _remembered(environ)
        if remembered is None:
            return
        client, host, options, store_path = remembered
        if not may_ask_slurm(store_path) or not os.access(client, os.X_OK):
            return
        _early = spawn(client, options, host)
    except Exception:  # an optimisation: the transport logs in as usual
        return


def started_early() -> bool:
    """Whether start_early started a login nobody has claimed yet."""
    return _early is not None


def claim(client: str, options: Sequence[str], host: str) -> AheadLogin | None:
    """The login start_early started, if it is this one; any other is ended unused."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    if early.argv == master_argv(client, options, host, early.socket_dir):
        return early
    abandon(early)
    return None


def abandon(login: AheadLogin | None = None) -> None:
    """End a login nobody claimed (by default start_early's) and remove its directory."""
    global _early
    if login is None:
        login, _early = _early, None
    if login is not None:
        login.release()
        end_master(login.argv[0], login.socket_dir)


# `ssh -O exit` returns once the master has the message; the master unlinks its socket a
# moment later. The directory is removed after that (at most 5 s), else an rmdir that came
# first would leave it behind.
_END_MASTER = (
    '"$1" -o ControlPath="$2/master" -O exit konduktor; i=0; '
    'while [ -e "$2/master" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done; '
    'rm -rf -- "$2"'
)


def end_master(client: str, socket_dir: str) -> None:
    """Tell the master in ``socket_dir``, if it got that far, to end, and remove the
    directory, without waiting for either: a detached shell does it, with nothing of ours
    open (a pipe reading our output sees its end when we end)."""
    if not os.path.exists(f"{socket_dir}/master"):
        try:  # never logged in: nothing to tell (a master killed half-way left a temp socket)
            for entry in os.scandir(socket_dir):
                os.unlink(entry.path)
            os.rmdir(socket_dir)
        except OSError:
            pass
        return
    os.posix_spawn(
        "/bin/sh",
        ["/bin/sh", "-c", _END_MASTER, "sh", client, socket_dir],
        os.environ,
        file_actions=[(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)],
        setpgroup=0,  # a Ctrl-C in the terminal does not cut it short (POSIX, unlike setsid)
    )


def may_ask_slurm(store_path: str) -> bool:
    """Whether the store holds a submitted job that has not finished (a status asks Slurm
    about it), read straight from SQLite. Only a hint: the store proper is opened and
    checked later; any doubt (a damaged or locked file) says yes, and a store that does not
    exist yet says no."""
    import sqlite3

    if not os.path.isfile(store_path):
        return False
    try:
        uri = "file:" + _quote_uri_path(os.path.abspath(store_path)) + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=0.1)
        try:
            row = db.execute(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE terminal = 0 AND slurm_job_id IS NOT NULL)"
            ).fetchone()
        finally:
            db.close()
    except (sqlite3.Error, OSError, ValueError):
        return True
    return bool(row and row[0])


def _quote_uri_path(path: str) -> str:
    """A path as a file: URI's path (what pathlib's as_uri does, without pathlib)."""
    safe = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/")
    return "".join(chr(b) if b in safe else f"%{b:02X}" for b in os.fsencode(path))
