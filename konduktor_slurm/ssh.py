"""The cluster over SSH: one paramiko connection per CLI invocation, opened on first use.

Design:

* **One connection.** ``SSHTransport`` connects lazily (``konduktor --help`` and commands that
  never reach the cluster never touch the network, nor import paramiko) and reuses the one
  connection for every Slurm command (exec channels), for file reads and writes (SFTP on the
  same connection) and for rsync: staging runs the local ``rsync`` with ``--rsh`` pointing at
  a tiny relay (``python -m konduktor_slurm.ssh --rsync-relay SOCKET``) that hands rsync's
  stdin/stdout to this process over a private UNIX socket, and this process forwards them to
  ``rsync --server`` on an exec channel of the same connection. So a launch opens exactly one
  SSH connection (plus one per jump host), host keys and credentials are checked once, by the
  same code, and no OpenSSH client is needed on the workstation.
* **Configuration.** ``~/.ssh/config`` is honoured (Host, HostName, User, Port, IdentityFile,
  ProxyJump, UserKnownHostsFile) through ``paramiko.SSHConfig``; ``config.yaml`` settings win.
* **Host keys.** Verified against known_hosts; an unknown host is refused with a message saying
  how to accept it, unless ``accept_new_host_keys: true`` (then the key is appended to the
  known_hosts file). A changed key is always refused. Passwords are never used: keys (files or
  ssh-agent) only.
* **Failures.** Every call has a timeout. Errors raised here are ``SSHError``: a
  ``TransportError`` (so callers that handle cluster errors keep working) and a
  ``click.ClickException`` (so anything not handled ends the command with one
  ``Error: ...`` line naming the host and exit code 1, never a traceback). After the connection
  is lost, every later call fails at once with the same message (no silent reconnects).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import getpass
import hashlib
import os
import secrets
import select
import shlex
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from konduktor_slurm.transport import DEFAULT_TIMEOUT, CommandResult, TransportError

if TYPE_CHECKING:
    import paramiko

    from konduktor_slurm.config import SSHSettings

RELAY_FLAG = "--rsync-relay"
RSYNC_HOST = "konduktor"  # placeholder host in rsync destinations; the relay ignores it
SLURM_COMMANDS = frozenset(
    {"sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "sacctmgr", "srun", "sprio"}
)
KEEPALIVE_SECONDS = 15


class SSHError(TransportError, click.ClickException):
    """Anything that went wrong talking to the login node; the message names the host."""

    def __init__(self, message: str) -> None:
        TransportError.__init__(self, message)
        click.ClickException.__init__(self, message)

    def __str__(self) -> str:
        return self.message


def _fingerprint(key: Any) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SSHTransport:
    """Run commands and move files on the login node over one SSH connection."""

    def __init__(
        self,
        settings: SSHSettings,
        *,
        slurm_bin_dir: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        config_path: str | None = None,
    ) -> None:
        self.settings = settings
        self.slurm_bin_dir = slurm_bin_dir
        self.timeout = timeout
        self.config_path = config_path or "config.yaml"
        self.description = f"ssh {settings.display}"
        self.connections = 0  # SSH connections opened (jump hosts not counted)
        self._clients: list[paramiko.SSHClient] = []  # jump hosts first, the login node last
        self._sftp: paramiko.SFTPClient | None = None
        self._lost: str | None = None
        self._home: str | None = None

    # ---------------------------------------------------------------------------------
    # connection

    @property
    def host(self) -> str:
        return self.settings.display

    def _ssh_config(self, alias: str) -> dict[str, Any]:
        import paramiko

        path = Path("~/.ssh/config").expanduser()
        if not path.is_file():
            return {}
        try:
            return dict(paramiko.SSHConfig.from_path(str(path)).lookup(alias))
        except Exception as exc:  # a broken ~/.ssh/config must say so, not crash
            raise SSHError(f"{path}: cannot be read: {exc}") from exc

    def _resolve(
        self,
        alias: str,
        user: str | None,
        port: int | None,
        identity: str | None,
        fallback_identity: str | None = None,
    ) -> _Hop:
        """One hop's address and credentials: config.yaml first, then ~/.ssh/config."""
        options = self._ssh_config(alias)
        keys = [identity] if identity else list(options.get("identityfile", []))
        if not keys and fallback_identity:
            keys = [fallback_identity]
        known = (
            self.settings.known_hosts
            or ((options.get("userknownhostsfile") or "~/.ssh/known_hosts").split()[0])
        )
        return _Hop(
            hostname=options.get("hostname", alias),
            user=user or options.get("user") or getpass.getuser(),
            port=port or int(options.get("port", 22)),
            keys=[str(Path(key).expanduser()) for key in keys],
            known_hosts=str(Path(known).expanduser()),
            proxy_jump=options.get("proxyjump"),
        )

    def _connect_one(self, hop: _Hop, sock: Any = None) -> paramiko.SSHClient:
        """Connect to one hop (through ``sock``, a tunnel from the previous hop, if any)."""
        import paramiko

        hostname, user, port, keys, known = (
            hop.hostname,
            hop.user,
            hop.port,
            hop.keys,
            hop.known_hosts,
        )
        display = f"{user}@{hostname}" + (f":{port}" if port != 22 else "")

        client = paramiko.SSHClient()
        if os.path.isfile("/etc/ssh/ssh_known_hosts"):
            client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
        if os.path.isfile(known):
            try:
                client.load_host_keys(known)
            except Exception as exc:
                raise SSHError(f"{known}: not a valid known_hosts file: {exc}") from exc
        client.set_missing_host_key_policy(
            _HostKeyPolicy(known, self.settings.accept_new_host_keys, port, self.config_path)
        )
        timeout = self.settings.connect_timeout
        try:
            client.connect(
                hostname,
                port=port,
                username=user,
                key_filename=keys or None,
                look_for_keys=not keys,
                allow_agent=True,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                channel_timeout=timeout,
                sock=sock,
            )
        except _UnknownHostKey as exc:
            client.close()
            raise SSHError(str(exc)) from None
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise SSHError(
                f"the host key of {display} has CHANGED ({_fingerprint(exc.key)}, known_hosts "
                f"has {_fingerprint(exc.expected_key)}): refusing to connect. If the login node "
                f"was reinstalled, remove its old line from {known} and connect again."
            ) from None
        except paramiko.PasswordRequiredException:
            client.close()
            raise SSHError(
                f"cannot log in to {display}: the key is protected by a passphrase; load it "
                "into ssh-agent (ssh-add) - passwords are never read by konduktor"
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            tried = ", ".join(keys) if keys else "ssh-agent and ~/.ssh/id_*"
            raise SSHError(
                f"cannot log in to {display}: key authentication failed (tried {tried}); set "
                f"ssh.identity_file in {self.config_path} (passwords are not supported)"
            ) from None
        except TimeoutError:
            client.close()
            raise SSHError(f"cannot connect to {display}: no answer within {timeout:g}s") from None
        except socket.gaierror as exc:
            client.close()
            raise SSHError(f"cannot connect to {display}: unknown host ({exc.strerror})") from None
        except paramiko.ssh_exception.NoValidConnectionsError as exc:
            client.close()
            errors = list(exc.errors.values())
            reason = (getattr(errors[0], "strerror", None) if errors else None) or str(exc)
            raise SSHError(f"cannot connect to {display}: {reason.lower()}") from None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            client.close()
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise SSHError(f"cannot connect to {display}: {reason}") from None
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(KEEPALIVE_SECONDS)
        return client

    def _connect(self) -> paramiko.Transport:
        import logging

        # paramiko logs connection errors itself; without a handler Python would print them.
        paramiko_log = logging.getLogger("paramiko")
        paramiko_log.addHandler(logging.NullHandler())
        paramiko_log.propagate = False

        s = self.settings
        target = self._resolve(s.host, s.user, s.port, s.identity_file)
        jump = s.jump_host or target.proxy_jump
        hops = []
        for spec in jump.split(",") if jump and jump.lower() != "none" else []:
            user, _, rest = spec.strip().rpartition("@")
            host, _, port = rest.partition(":")
            port_number = int(port) if port.isdigit() else None
            hops.append(self._resolve(host, user or None, port_number, None, s.identity_file))
        sock = None
        for hop, after in zip(hops, [*hops[1:], target], strict=False):
            jump_client = self._connect_one(hop, sock)
            self._clients.append(jump_client)
            sock = self._tunnel(jump_client, hop, after)
        client = self._connect_one(target, sock)
        self._clients.append(client)
        self.connections += 1
        atexit.register(self.close)
        transport = client.get_transport()
        assert transport is not None
        return transport

    def _tunnel(self, client: paramiko.SSHClient, hop: _Hop, after: _Hop) -> Any:
        import paramiko

        transport = client.get_transport()
        try:
            assert transport is not None
            return transport.open_channel(
                "direct-tcpip",
                (after.hostname, after.port),
                ("127.0.0.1", 0),
                timeout=self.settings.connect_timeout,
            )
        except (paramiko.SSHException, OSError, AssertionError) as exc:
            raise SSHError(
                f"jump host {hop.hostname} cannot reach {after.hostname}:{after.port}: {exc}"
            ) from None

    def _transport(self) -> paramiko.Transport:
        if self._lost:
            raise SSHError(self._lost)
        if self._clients:
            transport = self._clients[-1].get_transport()
            if transport is not None and transport.is_active():
                return transport
            raise self._lose("the connection was closed")
        return self._connect()

    def _lose(self, reason: str) -> SSHError:
        if not self._lost:
            self._lost = f"lost the SSH connection to {self.host}: {reason}"
        return SSHError(self._lost)

    def _alive(self) -> bool:
        if not self._clients:
            return False
        transport = self._clients[-1].get_transport()
        return transport is not None and transport.is_active()

    # ---------------------------------------------------------------------------------
    # commands

    def _command_line(self, argv: list[str]) -> str:
        if self.slurm_bin_dir and argv and argv[0] in SLURM_COMMANDS:
            argv = [f"{self.slurm_bin_dir.rstrip('/')}/{argv[0]}", *argv[1:]]
        return shlex.join(argv)

    def run(
        self, argv: list[str], *, timeout: float = DEFAULT_TIMEOUT, input_text: str | None = None
    ) -> CommandResult:
        data = input_text.encode() if input_text is not None else None
        code, out, err = self._exec(self._command_line(argv), timeout, data, argv[0])
        return CommandResult(
            tuple(argv), code, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def _exec(
        self, command: str, timeout: float, data: bytes | None, name: str
    ) -> tuple[int, bytes, bytes]:
        import paramiko

        transport = self._transport()
        deadline = time.monotonic() + timeout
        out, err = bytearray(), bytearray()
        channel = None
        try:
            channel = transport.open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            if data:
                channel.sendall(data)
            channel.shutdown_write()
            while True:
                while channel.recv_stderr_ready():
                    err += channel.recv_stderr(65536)
                if channel.recv_ready():
                    out += channel.recv(65536)
                    continue
                if channel.eof_received or channel.closed:
                    # recv() drains what is left and returns b"" at the end.
                    chunk = channel.recv(65536)
                    if chunk:
                        out += chunk
                        continue
                    while channel.recv_stderr_ready():
                        err += channel.recv_stderr(65536)
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                if not transport.is_active():
                    raise EOFError
                select.select([channel], [], [], min(remaining, 1.0))
            if not transport.is_active() and not channel.exit_status_ready():
                raise EOFError
            if not channel.status_event.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError
            code = channel.recv_exit_status()
            if code == -1:  # closed without an exit status: usually the connection died
                settle = time.monotonic() + 1.0
                while transport.is_active() and time.monotonic() < settle:
                    time.sleep(0.02)
                if not transport.is_active():
                    raise EOFError
            return code, bytes(out), bytes(err)
        except TimeoutError:
            if not transport.is_active():
                raise self._lose("no answer") from None
            raise SSHError(f"{name} did not answer within {timeout:g}s on {self.host}") from None
        except (EOFError, OSError, paramiko.SSHException) as exc:
            if transport.is_active():
                raise SSHError(f"{name} on {self.host}: {exc or type(exc).__name__}") from None
            raise self._lose("the connection was closed") from None
        finally:
            if channel is not None:
                _close_quietly(channel)

    def shell(self, script: str, timeout: float | None = None) -> CommandResult:
        """Run a POSIX ``sh`` script (built with shlex quoting) on the login node."""
        return self.run(["sh", "-c", script], timeout=timeout or self.timeout)

    # ---------------------------------------------------------------------------------
    # files (SFTP on the same connection)

    def _sftp_client(self) -> paramiko.SFTPClient:
        import paramiko

        transport = self._transport()
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if not transport.is_active():
                    raise self._lose("the connection was closed") from None
                raise SSHError(f"SFTP is not available on {self.host}: {exc}") from None
            assert self._sftp is not None
            self._sftp.get_channel().settimeout(self.timeout)
        return self._sftp

    def _sftp_error(self, what: str, exc: BaseException) -> SSHError:
        if not self._alive():
            return self._lose("the connection was closed")
        if isinstance(exc, TimeoutError):
            return SSHError(f"{what} on {self.host}: no answer within {self.timeout:g}s")
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return SSHError(f"{what} on {self.host}: {reason}")

    def read_bytes(self, path: str, offset: int = 0, limit: int | None = None) -> bytes:
        import paramiko

        sftp = self._sftp_client()
        try:
            with sftp.open(path, "rb") as handle:
                if offset:
                    handle.seek(offset)
                return handle.read(limit) if limit is not None else handle.read()
        except FileNotFoundError:
            return b""
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._sftp_error(f"cannot read {path}", exc) from None

    def read_tail(self, path: str, max_bytes: int) -> bytes:
        import paramiko

        sftp = self._sftp_client()
        try:
            with sftp.open(path, "rb") as handle:
                handle.seek(max(0, handle.stat().st_size - max_bytes))
                return handle.read(max(0, max_bytes))
        except FileNotFoundError:
            return b""
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise self._sftp_error(f"cannot read {path}", exc) from None

    def write_file(self, path: str, data: str, mode: int = 0o600) -> None:
        """Atomically: a new temp file, chmod before any byte is written, then rename."""
        import paramiko

        sftp = self._sftp_client()
        directory, _, name = path.rpartition("/")
        temp = f"{directory}/.{name}.{secrets.token_hex(4)}.tmp"
        try:
            with sftp.open(temp, "wx") as handle:
                sftp.chmod(temp, mode)
                handle.write(data.encode())
            sftp.posix_rename(temp, path)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            error = self._sftp_error(f"cannot write {path}", exc)
            if self._alive():
                with contextlib.suppress(OSError, paramiko.SSHException):
                    sftp.remove(temp)
            raise error from None

    def make_dirs(self, path: str, mode: int = 0o700) -> None:
        octal = format(mode, "o")
        quoted = shlex.quote(path)
        result = self.shell(f"mkdir -p -m {octal} -- {quoted} && chmod {octal} -- {quoted}")
        if not result.ok:
            message = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[-1]
            raise SSHError(f"cannot create {path} on {self.host}: {message}")

    def home(self) -> str:
        if self._home is None:
            result = self.shell('printf "%s" "$HOME"')
            if not result.ok or not result.stdout.startswith("/"):
                raise SSHError(f"cannot find the home directory on {self.host}")
            self._home = result.stdout
        return self._home

    @property
    def user(self) -> str:
        """The remote account (connects if needed: it is who Slurm sees)."""
        return self._transport().get_username() or ""

    def rsync_destination(self, path: str) -> str:
        return f"{RSYNC_HOST}:{path}"

    def rsync_shell(self) -> _RsyncRelay:
        """Context manager giving rsync's ``--rsh`` command; the bytes flow over our channel."""
        return _RsyncRelay(self)

    def close(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
        for client in reversed(self._clients):
            with contextlib.suppress(Exception):
                client.close()
        self._clients = []


@dataclass(frozen=True)
class _Hop:
    hostname: str
    user: str
    port: int
    keys: list[str]
    known_hosts: str
    proxy_jump: str | None


class _UnknownHostKey(Exception):
    pass


class _HostKeyPolicy:
    """Refuse unknown hosts with a how-to, or accept and remember them when configured."""

    def __init__(self, known_hosts: str, accept_new: bool, port: int, config_path: str) -> None:
        self.known_hosts = known_hosts
        self.accept_new = accept_new
        self.port = port
        self.config_path = config_path

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        if self.accept_new:
            client.get_host_keys().add(hostname, key.get_name(), key)
            path = Path(self.known_hosts)
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "a") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            return
        bare = hostname.strip("[]").rsplit("]:", 1)[0] if hostname.startswith("[") else hostname
        port = f"-p {self.port} " if self.port != 22 else ""
        raise _UnknownHostKey(
            f"the host key of {hostname} ({key.get_name()} {_fingerprint(key)}) is not in "
            f"{self.known_hosts}: refusing to connect. To accept it, check the fingerprint with "
            f"your cluster's admins and add it (ssh-keyscan {port}{bare} >> {self.known_hosts}), "
            f"or set 'accept_new_host_keys: true' under 'ssh:' in {self.config_path}"
        )


class _RsyncRelay:
    """Carry one rsync session over an exec channel of the transport's connection."""

    def __init__(self, owner: SSHTransport) -> None:
        import tempfile

        self.owner = owner
        self.remote_stderr = ""
        self.error: str | None = None
        self._dir = tempfile.mkdtemp(prefix="konduktor-rsync-")  # mode 0700
        self._path = os.path.join(self._dir, "relay.sock")
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self._path)
        self._server.listen(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rsh = shlex.join([sys.executable, "-m", "konduktor_slurm.ssh", RELAY_FLAG, self._path])

    def __enter__(self) -> str:
        self.transport = self.owner._transport()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self.rsh

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._server.close()
        try:
            os.unlink(self._path)
            os.rmdir(self._dir)
        except OSError:
            pass
        if not self.owner._alive():
            raise self.owner._lose("the connection was closed while copying files")
        if self.error:
            raise SSHError(self.error)

    def _serve(self) -> None:
        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self._pump(conn)
            return

    def _pump(self, conn: socket.socket) -> None:
        import paramiko

        conn.settimeout(None)
        buffer = b""
        while b"\n" not in buffer:
            chunk = conn.recv(4096)
            if not chunk:
                return
            buffer += chunk
        line, rest = buffer.split(b"\n", 1)
        channel = None
        timeout = self.owner.timeout
        try:
            channel = self.transport.open_session(timeout=timeout)
            channel.settimeout(max(timeout, 60.0))
            channel.exec_command(line.decode())
            if rest:
                channel.sendall(rest)
            local_eof = False
            while not self._stop.is_set():
                if not self.transport.is_active():
                    return
                readers: list[Any] = [channel] if local_eof else [channel, conn]
                ready, _, _ = select.select(readers, [], [], 0.5)
                if conn in ready:
                    data = conn.recv(65536)
                    if data:
                        channel.sendall(data)
                    else:
                        local_eof = True
                        channel.shutdown_write()
                while channel.recv_stderr_ready():
                    self.remote_stderr += channel.recv_stderr(65536).decode(errors="replace")
                if channel.recv_ready() or channel.eof_received or channel.closed:
                    data = channel.recv(65536)
                    if data:
                        conn.sendall(data)
                    elif channel.eof_received or channel.closed:
                        break
            conn.shutdown(socket.SHUT_WR)
        except TimeoutError:
            self.error = f"rsync on {self.owner.host} made no progress for {timeout:g}s"
        except (OSError, EOFError, paramiko.SSHException):
            pass  # rsync itself reports what broke; a lost connection is checked on exit
        finally:
            if channel is not None:
                _close_quietly(channel)


def _close_quietly(channel: paramiko.Channel) -> None:
    """Close a paramiko channel that may sit on a dead connection.

    Closing sends a message, which raises once the connection is gone; raised from a
    ``finally`` it would replace the one-line "lost the connection" error with a traceback
    (or, in the rsync relay's thread, print one above it).
    """
    import paramiko

    with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
        channel.close()


def _relay_main(socket_path: str, args: list[str]) -> int:
    """The ``--rsh`` program rsync runs: ``relay SOCKET [-l USER] HOST COMMAND...``."""
    if args[:1] == ["-l"]:
        args = args[2:]
    command = " ".join(args[1:])  # like ssh: the remote shell parses it (rsync quoted it)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(socket_path)
        sock.sendall(command.encode() + b"\n")
        stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
        readers: list[Any] = [stdin, sock]
        while True:
            ready, _, _ = select.select(readers, [], [])
            if stdin in ready:
                data = os.read(stdin, 65536)
                if data:
                    sock.sendall(data)
                else:
                    readers.remove(stdin)
                    sock.shutdown(socket.SHUT_WR)
            if sock in ready:
                data = sock.recv(65536)
                if not data:
                    return 0
                view = memoryview(data)
                while view:
                    view = view[os.write(stdout, view) :]
    except OSError as exc:  # rsync or konduktor went away: rsync reports the failure
        print(f"konduktor rsync relay: {exc}", file=sys.stderr)
        return 255


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == RELAY_FLAG:
    sys.exit(_relay_main(sys.argv[2], sys.argv[3:]))
