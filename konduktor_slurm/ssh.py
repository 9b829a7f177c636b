"""The cluster over SSH: one fabric ``Connection`` per CLI invocation, opened on first use.

Design:

* **One connection.** ``SSHTransport`` connects lazily (``konduktor --help`` and commands that
  never reach the cluster never touch the network, nor import fabric or paramiko) and reuses
  the one connection for every Slurm command (exec channels), for file reads and writes (the
  connection's SFTP client) and for rsync: staging runs the local ``rsync`` with ``--rsh``
  pointing at a tiny relay (``python -m konduktor_slurm.ssh --rsync-relay SOCKET``) that hands
  rsync's stdin/stdout to this process over a private UNIX socket, and this process forwards
  them to ``rsync --server`` on an exec channel of the same connection. So a launch opens
  exactly one SSH connection (plus one per jump host), host keys and credentials are checked
  once, by the same code, and no OpenSSH client is needed on the workstation.
* **Configuration: fabric.** ``fabric.Config`` reads ``~/.ssh/config`` (then
  ``/etc/ssh/ssh_config``, as OpenSSH does): Host, HostName, User, Port, IdentityFile,
  ProxyJump, ProxyCommand, UserKnownHostsFile. ``config.yaml`` settings win: they are read as
  the first ``Host`` block, the way ``ssh -o`` options are, so ``%h %p %r`` in a ProxyCommand
  expand with them. Every jump host is a fabric ``Connection`` used as the ``gateway`` of the
  next hop; a ProxyCommand is run through the shell as OpenSSH runs it.
* **Host keys.** Verified against known_hosts; an unknown host is refused with a message saying
  how to accept it, unless ``accept_new_host_keys: true`` (then the key is appended to the
  known_hosts file). A changed key is always refused. Passwords are never used: keys (files or
  ssh-agent) only.
* **Failures.** Every call has a timeout. Errors raised here are ``SSHError``: a
  ``TransportError`` (so callers that handle cluster errors keep working) and a
  ``click.ClickException`` (so anything not handled ends the command with one
  ``Error: ...`` line naming the host and exit code 1, never a traceback). After the connection
  is lost, or could not be made, every later call fails at once with the same message (no
  silent reconnects, no second wait for a host that did not answer).

fabric is used where it does the job: its ssh_config loading, ``Connection`` with gateways for
the jump hosts, and ``Connection.sftp()``. Commands and the rsync relay use exec channels of the
connection's paramiko transport directly: see ``SSHTransport._exec`` and ``_RsyncRelay`` for why.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import hashlib
import io
import os
import secrets
import select
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from konduktor_slurm.transport import (
    DEFAULT_TIMEOUT,
    CommandResult,
    CommandTimeout,
    TransportError,
    remote_command_line,
)

if TYPE_CHECKING:
    import fabric
    import paramiko

    from konduktor_slurm.config import SSHSettings

RELAY_FLAG = "--rsync-relay"
RSYNC_HOST = "konduktor"  # placeholder host in rsync destinations; the relay ignores it
KEEPALIVE_SECONDS = 15
MAX_JUMP_DEPTH = 8  # jump hosts reached through jump hosts of their own: deeper is a loop
SYSTEM_KNOWN_HOSTS = "/etc/ssh/ssh_known_hosts"


class SSHError(TransportError, click.ClickException):
    """Anything that went wrong talking to the login node; the message names the host."""

    def __init__(self, message: str) -> None:
        TransportError.__init__(self, message)
        click.ClickException.__init__(self, message)

    def __str__(self) -> str:
        return self.message


class SSHCommandTimeout(SSHError, CommandTimeout):
    """A command on the login node did not finish in time; the connection is fine."""


def _fingerprint(key: Any) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _display(user: str, host: str, port: int) -> str:
    """``user@host[:port]`` as people write it (an IPv6 literal in brackets when a port follows)."""
    if port == 22:
        return f"{user}@{host}"
    return f"{user}@[{host}]:{port}" if ":" in host else f"{user}@{host}:{port}"


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
        self._connection: fabric.Connection | None = None  # the plan; opened on first use
        self._opened: list[fabric.Connection] = []  # jump hosts first, the login node last
        self._sftp: paramiko.SFTPClient | None = None
        self._lost: str | None = None
        self._home: str | None = None

    # ---------------------------------------------------------------------------------
    # connection

    @property
    def host(self) -> str:
        return self.settings.display

    def connection(self) -> fabric.Connection:
        """The login node as a fabric ``Connection``, built but not opened.

        ``~/.ssh/config`` and ``config.yaml`` are applied, each jump host is the ``gateway`` of
        the next hop (the first hop's own ProxyJump/ProxyCommand honoured too) and every hop's
        client checks host keys with konduktor's policy.
        """
        if self._connection is None:
            self._connection = self._plan()
        return self._connection

    def _overrides(self) -> str:
        """config.yaml's settings as an ssh_config ``Host`` block, read before the files.

        In ssh_config the first value obtained wins, so this block wins over ~/.ssh/config
        exactly as ``ssh -o`` options do, and the files' ``%p``/``%r`` expand with these values.
        config.py keeps line breaks and host patterns out of these values.
        """
        s = self.settings
        lines = [f"Host {s.host}"]
        if s.user:
            lines.append(f"  User {s.user}")
        if s.port:
            lines.append(f"  Port {s.port}")
        if s.jump_host:
            lines += [f"  ProxyJump {s.jump_host}", "  ProxyCommand none"]
        if s.proxy_command:
            lines += [f"  ProxyCommand {s.proxy_command}", "  ProxyJump none"]
        return "\n".join(lines) + "\n"

    def _plan(self) -> fabric.Connection:
        import fabric
        import paramiko

        # lazy: fabric must not read ~/.fabric.yaml, /etc/fabric.yaml or FABRIC_* (which may
        # carry passwords or other connect_kwargs); only ssh_config is wanted here.
        config = fabric.Config(lazy=True)
        config.base_ssh_config.parse(io.StringIO(self._overrides()))
        try:
            config.load_ssh_config()  # ~/.ssh/config, then /etc/ssh/ssh_config
        except (OSError, UnicodeDecodeError, paramiko.SSHException) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SSHError(f"cannot read ~/.ssh/config or /etc/ssh/ssh_config: {reason}") from None
        return self._hop(config, self.settings.host, None, None, None, depth=0)

    def _hop(
        self,
        config: fabric.Config,
        alias: str,
        user: str | None,
        port: int | None,
        gateway: fabric.Connection | None,
        depth: int,
    ) -> fabric.Connection:
        """One hop: ``alias`` as ssh_config resolves it, reached through ``gateway``.

        ``gateway`` None: the hop's own ProxyJump / ProxyCommand (if any) decides.
        """
        connection_type = _fabric_types()[0]
        options = config.base_ssh_config.lookup(alias)
        own_gateway: Any = (
            gateway if gateway is not None else self._gateway(config, alias, options, depth)
        )
        identity = self.settings.identity_file
        is_target = depth == 0
        # config.yaml's key goes first for the login node; a jump host with keys of its own in
        # ~/.ssh/config uses those (fabric appends ssh_config's IdentityFile after these).
        extra = [identity] if identity and (is_target or not options.get("identityfile")) else []
        keys = [str(Path(key).expanduser()) for key in extra]
        has_keys = bool(keys or options.get("identityfile"))
        timeout = self.settings.connect_timeout
        connection = connection_type(
            alias,
            user=user,
            port=port,
            config=config,
            gateway=own_gateway if own_gateway else False,  # False: never fabric's own lookup
            connect_kwargs={
                "key_filename": keys,
                "look_for_keys": not has_keys,
                "allow_agent": True,
                "banner_timeout": timeout,
                "auth_timeout": timeout,
                # the timeout of opening channels: the next hop's tunnel, sessions, SFTP
                "channel_timeout": timeout,
            },
        )
        # fabric truncates connect_timeout to int (0.5 would mean "no timeout").
        connection.connect_timeout = timeout
        known = (
            self.settings.known_hosts
            or ((options.get("userknownhostsfile") or "~/.ssh/known_hosts").split()[0])
        )
        connection.known_hosts = str(Path(known).expanduser())
        connection.client = self._client(connection.known_hosts, connection.port)
        return connection

    def _gateway(
        self, config: fabric.Config, alias: str, options: dict[str, Any], depth: int
    ) -> fabric.Connection | str | None:
        """What ``alias`` is reached through: a chain of jump hosts, a proxy command, or None.

        ProxyJump hops are parsed here rather than by fabric: fabric's own ProxyJump support
        reads ``[::1]:22`` as a host named "[::1]:22" and walks a comma-separated chain from
        its last hop instead of its first.
        """
        from konduktor_slurm.config import parse_jump_hop  # not for the rsync relay's start

        jump = (options.get("proxyjump") or "").strip()
        if jump and jump.lower() != "none":
            if depth >= MAX_JUMP_DEPTH:
                raise SSHError(
                    f"ProxyJump for {alias} goes more than {MAX_JUMP_DEPTH} jump hosts deep "
                    "(a loop in ~/.ssh/config?)"
                )
            previous: fabric.Connection | None = None
            for index, spec in enumerate(jump.split(",")):
                try:
                    user, host, port = parse_jump_hop(spec)
                except ValueError:
                    raise SSHError(
                        f"ProxyJump for {alias}: {spec.strip()!r} is not [user@]host[:port]"
                    ) from None
                if index == 0 and depth > 0 and host == alias:
                    return None  # "Host * / ProxyJump bastion" also matches bastion itself
                previous = self._hop(config, host, user, port, previous, depth + 1)
            return previous
        command = options.get("proxycommand")  # already expanded (%h %p %r) by the lookup
        return command or None

    def _client(self, known_hosts: str, port: int) -> paramiko.SSHClient:
        """A paramiko client that checks host keys konduktor's way.

        It replaces the one fabric makes, which accepts any unknown host (AutoAddPolicy) and
        also trusts ~/.ssh/known_hosts ahead of the configured file.
        """
        import paramiko

        client = paramiko.SSHClient()
        if os.path.isfile(SYSTEM_KNOWN_HOSTS):
            with contextlib.suppress(OSError, paramiko.SSHException):
                client.load_system_host_keys(SYSTEM_KNOWN_HOSTS)
        if os.path.isfile(known_hosts):
            try:
                client.load_host_keys(known_hosts)
            except Exception as exc:
                raise SSHError(f"{known_hosts}: not a valid known_hosts file: {exc}") from exc
        client.set_missing_host_key_policy(
            _HostKeyPolicy(known_hosts, self.settings.accept_new_host_keys, port, self.config_path)
        )
        return client

    def _open(self, connection: fabric.Connection) -> None:
        """Open one hop (its gateway is open already), every failure as one line."""
        import paramiko

        display = _display(connection.user, connection.host, connection.port)
        timeout = self.settings.connect_timeout
        try:
            connection.open()
        except _UnknownHostKey as exc:
            raise SSHError(str(exc)) from None
        except paramiko.BadHostKeyException as exc:
            known = connection.known_hosts
            raise SSHError(
                f"the host key of {display} has CHANGED ({_fingerprint(exc.key)}, known_hosts "
                f"has {_fingerprint(exc.expected_key)}): refusing to connect. If the login node "
                f"was reinstalled, remove its old line from {known} and connect again."
            ) from None
        except paramiko.PasswordRequiredException:
            raise SSHError(
                f"cannot log in to {display}: the key is protected by a passphrase; load it "
                "into ssh-agent (ssh-add) - passwords are never read by konduktor"
            ) from None
        except paramiko.AuthenticationException:
            keys = connection.connect_kwargs.get("key_filename") or []
            tried = ", ".join(keys) if keys else "ssh-agent and ~/.ssh/id_*"
            raise SSHError(
                f"cannot log in to {display}: key authentication failed (tried {tried}); set "
                f"ssh.identity_file in {self.config_path} (passwords are not supported)"
            ) from None
        except paramiko.ChannelException as exc:  # only the gateway's direct-tcpip open raises it
            gateway = connection.gateway
            raise SSHError(
                f"jump host {_display(gateway.user, gateway.host, gateway.port)} cannot reach "
                f"{connection.host}:{connection.port}: {exc.text or exc}"
            ) from None
        except Exception as exc:
            proxy_failure = connection.proxy.failure() if connection.proxy is not None else None
            if proxy_failure:
                raise SSHError(f"cannot connect to {display}: {proxy_failure}") from None
            if isinstance(exc, TimeoutError):
                reason = f"no answer within {timeout:g}s"
            elif isinstance(exc, socket.gaierror):
                reason = f"unknown host ({exc.strerror})"
            elif isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
                errors = list(exc.errors.values())
                reason = (getattr(errors[0], "strerror", None) if errors else None) or str(exc)
                reason = reason.lower()
            elif isinstance(exc, paramiko.SSHException) and any(
                # paramiko's words when the peer (or the proxy) never speaks SSH in time
                words in str(exc)
                for words in ("protocol banner", "No existing session")
            ):
                reason = f"no SSH server answered within {timeout:g}s"
            elif isinstance(exc, OSError | paramiko.SSHException | EOFError):
                reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            else:
                raise
            raise SSHError(f"cannot connect to {display}: {reason}") from None
        assert connection.transport is not None
        connection.transport.set_keepalive(KEEPALIVE_SECONDS)

    def _connect(self) -> paramiko.Transport:
        import logging

        # paramiko logs connection errors itself; without a handler Python would print them.
        paramiko_log = logging.getLogger("paramiko")
        paramiko_log.addHandler(logging.NullHandler())
        paramiko_log.propagate = False

        atexit.register(self.close)
        try:
            target = self.connection()
            chain = [target]
            while isinstance(chain[0].gateway, _fabric_types()[0]):
                chain.insert(0, chain[0].gateway)
            for connection in chain:  # the first jump host first, each through the one before
                self._opened.append(connection)
                self._open(connection)
        except SSHError as exc:
            # Remembered: later calls in this command fail at once instead of waiting again.
            self._lost = exc.message
            self.close()
            raise
        self.connections += 1
        assert target.transport is not None
        return target.transport

    def _transport(self) -> paramiko.Transport:
        if self._lost:
            raise SSHError(self._lost)
        if self._opened:
            transport = self._opened[-1].transport
            if transport is not None and transport.is_active():
                return transport
            raise self._lose("the connection was closed")
        return self._connect()

    def _lose(self, reason: str) -> SSHError:
        if not self._lost:
            self._lost = f"lost the SSH connection to {self.host}: {reason}"
        return SSHError(self._lost)

    def _alive(self) -> bool:
        if not self._opened:
            return False
        transport = self._opened[-1].transport
        return transport is not None and transport.is_active()

    # ---------------------------------------------------------------------------------
    # commands

    def run(
        self, argv: list[str], *, timeout: float = DEFAULT_TIMEOUT, input_text: str | None = None
    ) -> CommandResult:
        data = input_text.encode() if input_text is not None else None
        line = remote_command_line(argv, timeout, self.slurm_bin_dir)
        code, out, err = self._exec(line, timeout, data, argv[0])
        return CommandResult(
            tuple(argv), code, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def _exec(
        self, command: str, timeout: float, data: bytes | None, name: str
    ) -> tuple[int, bytes, bytes]:
        """Run one command on an exec channel: (exit code, stdout, stderr), within ``timeout``.

        Not fabric's ``Connection.run``: measured on this cluster it costs the same per call
        (about 48 ms for ``true``, the sshd's session setup), but invoke's runner decodes every
        1000-byte read on its own, so a multi-byte character split between two reads turns into
        U+FFFD (136 of 30000 "é" in one measurement); its cleanup closes the channel unguarded
        (a traceback once the connection is gone) and a connection dropped mid-command comes
        back as exit code -1 instead of an error. Here the bytes are decoded once, whole.
        """
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
            raise SSHCommandTimeout(
                f"{name} did not answer within {timeout:g}s on {self.host}"
            ) from None
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
    # files (the connection's SFTP client)

    def _sftp_client(self) -> paramiko.SFTPClient:
        import paramiko

        transport = self._transport()
        if self._sftp is None:
            try:
                self._sftp = self._opened[-1].sftp()  # fabric's, on the same connection
            except (paramiko.SSHException, OSError, EOFError) as exc:
                if not transport.is_active():
                    raise self._lose("the connection was closed") from None
                raise SSHError(f"SFTP is not available on {self.host}: {exc}") from None
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
        """At most the last ``max_bytes`` of ``path`` (b"" if missing): one stat, one seek."""
        import paramiko

        if max_bytes <= 0:
            return b""
        sftp = self._sftp_client()
        try:
            with sftp.open(path, "rb") as handle:
                size = handle.stat().st_size or 0
                handle.seek(max(0, size - max_bytes))
                return handle.read(max_bytes)
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
        # fabric's Connection.close() skips a connection that already died and never closes
        # gateways; closing every client (and proxy command) here leaves nothing behind.
        for connection in reversed(self._opened):
            with contextlib.suppress(Exception):
                connection.client.close()
            if connection.proxy is not None:
                connection.proxy.close()
        self._opened = []


@functools.cache
def _fabric_types() -> tuple[type[fabric.Connection], type[paramiko.ProxyCommand]]:
    """fabric's Connection and paramiko's ProxyCommand, adjusted; made on first use (lazily)."""
    import subprocess
    import tempfile

    import fabric
    import paramiko

    class ShellProxyCommand(paramiko.ProxyCommand):
        """paramiko's ProxyCommand, run as OpenSSH runs it, and ending when the command ends.

        paramiko splits the command with shlex and runs it without a shell (no ``2>/dev/null``,
        no pipes), never reads its stderr (a chatty proxy blocks on a full pipe), and once the
        command has exited its ``recv`` spins until the banner timeout instead of reporting
        the end of the stream. Here: ``$SHELL -c "exec COMMAND"`` in its own session (Ctrl-C in
        the terminal must not kill the connection), stderr kept for the error message.
        """

        def __init__(self, command: str) -> None:  # not super().__init__: it starts the process
            shell = os.environ.get("SHELL") or "/bin/sh"
            self.cmd = [shell, "-c", f"exec {command}"]
            self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read by failure() after close()
            self.process = subprocess.Popen(
                self.cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                bufsize=0,
                start_new_session=True,
            )
            self.timeout: float | None = None
            self.stopped = False
            self.ended = False

        def recv(self, size: int) -> bytes:
            assert self.process.stdout is not None
            ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
            if not ready:
                raise TimeoutError  # paramiko's packetizer waits again (socket.timeout)
            data = os.read(self.process.stdout.fileno(), size)
            self.ended = not data  # b"": the command closed its output; paramiko sees EOF
            return data

        def close(self) -> None:
            if self.ended:  # it is ending on its own: let failure() see how
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(1)
            if self.process.poll() is None:
                self.stopped = True  # its end is then ours, not a failure of the command
                self.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(1)

        def failure(self) -> str | None:
            """Why the command ended, if it did: its last line on stderr, or its exit status."""
            try:
                code = self.process.wait(0.5)
            except subprocess.TimeoutExpired:
                return None
            if self.stopped:
                return None
            self.stderr.seek(0)
            lines = self.stderr.read().decode(errors="replace").strip().splitlines()
            said = f": {lines[-1].strip()}" if lines else ""
            return f"the ProxyCommand exited with status {code}{said}"

    class Connection(fabric.Connection):
        """fabric's Connection, never reconnecting behind our back, ProxyCommand as above."""

        # Class attributes: fabric turns assignments to unknown attributes into config entries.
        proxy: ShellProxyCommand | None = None
        known_hosts: str | None = None

        def open(self) -> Any:
            # fabric's methods (sftp(), run(), ...) call open() first, which would silently
            # reconnect a dropped connection; a lost connection must stay lost.
            if self.transport is not None and not self.is_connected:
                raise EOFError("the connection was closed")
            return super().open()

        def open_gateway(self) -> Any:
            if isinstance(self.gateway, str):
                # fabric would expand %h/%p again through a scratch config (where the port is
                # always 22) and run the command without a shell.
                self.proxy = ShellProxyCommand(self.gateway)
                return self.proxy
            return super().open_gateway()

    return Connection, ShellProxyCommand


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
