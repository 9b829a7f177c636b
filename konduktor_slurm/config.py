"""Where konduktor keeps its state and how it reaches the cluster.

``$KONDUKTOR_HOME`` (default ``~/.konduktor``) holds the job store; the optional
``config.yaml`` there (or ``$KONDUKTOR_CONFIG``) holds cluster settings:

.. code-block:: yaml

    ssh: login.cluster            # ~/.ssh/config alias, or user@host[:port]; absent: local
    # or, with options:
    ssh:
      host: kdtest@127.0.0.1:2222
      identity_file: ~/.ssh/id_ed25519
      jump_host: bastion.example.org   # ProxyJump: [user@]host[:port], comma-separated hops
      # proxy_command: nc -X 5 -x socks.example.org:1080 %h %p   # ProxyCommand (%h %p %r)
      known_hosts: ~/.ssh/known_hosts
      accept_new_host_keys: false      # true: trust (and remember) a host seen the first time
      connect_timeout: 15
    jobs_dir: ~/.konduktor/jobs   # on the cluster's shared filesystem; ~ is the cluster's home
    node_workdir: ~/konduktor_workdir   # where each node runs the job (one subdir per job)
    partition: gpu                # defaults when a task sets none
    account: research
    qos: normal
    gres_map: {A100-80GB: a100_80g}
    stop_mode: auto
    slurm_bin_dir: /opt/slurm/bin
    slurm_timeout: 30

``~/.ssh/config`` fills in what is not set here (HostName, User, Port, IdentityFile, ProxyJump,
ProxyCommand); ``jump_host`` and ``proxy_command`` exclude each other, as in ssh_config.
Nothing here imports fabric or paramiko: ``ssh.py`` does, when a command first talks to the
cluster.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from konduktor_slurm.control import STOP_MODES

if TYPE_CHECKING:
    from konduktor_slurm.task import Task
    from konduktor_slurm.transport import Transport

KNOWN_KEYS = {
    "jobs_dir",
    "gres_map",
    "slurm_bin_dir",
    "slurm_timeout",
    "ssh",
    "node_workdir",
    "partition",
    "account",
    "qos",
    "stop_mode",
}
SSH_KEYS = {
    "host",
    "user",
    "port",
    "identity_file",
    "jump_host",
    "proxy_command",
    "known_hosts",
    "accept_new_host_keys",
    "connect_timeout",
}
DEFAULT_REMOTE_JOBS_DIR = "~/.konduktor/jobs"
DEFAULT_NODE_WORKDIR = "~/konduktor_workdir"

# user@host[:port]; host may be an [IPv6] literal or a ~/.ssh/config alias. Not a pattern
# (* ? ! ,) nor quoted: ssh.py hands the host to ssh_config as a Host line.
_SSH_TARGET = re.compile(
    r"^(?:(?P<user>[^@\s:]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@\s:\[\]*?!,\"']+)"
    r"(?::(?P<port>\d+))?$"
)
_SLURM_NAME = re.compile(r"^[A-Za-z0-9_.,+-]+$")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SSHSettings:
    """The login node, as configured. ``~/.ssh/config`` is applied later, by ssh.py."""

    host: str  # alias or hostname, as written
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    jump_host: str | None = None  # ProxyJump: comma-separated [user@]host[:port] hops
    proxy_command: str | None = None  # ProxyCommand, %h %p %r expanded
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    connect_timeout: float = 15.0

    @property
    def display(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


@dataclass(frozen=True)
class Settings:
    home: Path
    config_path: Path
    # Local mode: an absolute local path. SSH mode: as written; a leading ~ is the remote home
    # (see ``resolve_jobs_dir``).
    jobs_dir: str
    gres_map: dict[str, str] = field(default_factory=dict)
    slurm_bin_dir: str | None = None
    slurm_timeout: float = 30.0
    ssh: SSHSettings | None = None
    node_workdir: str = DEFAULT_NODE_WORKDIR
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    stop_mode: str = "auto"

    @property
    def store_path(self) -> Path:
        return self.home / "state.db"

    @property
    def remote(self) -> bool:
        return self.ssh is not None

    def resolve_jobs_dir(self, transport: Transport) -> str:
        """``jobs_dir`` with a leading ``~`` replaced by the home directory where jobs run."""
        return expand_home(self.jobs_dir, transport.home) if self.remote else self.jobs_dir

    def apply_slurm_defaults(self, task: Task) -> Task:
        """The configured partition/account/qos, for the ones the task leaves unset."""
        from dataclasses import replace

        slurm = task.slurm
        defaults = {
            name: getattr(self, name)
            for name in ("partition", "account", "qos")
            if getattr(self, name) and getattr(slurm, name) is None
        }
        return replace(task, slurm=replace(slurm, **defaults)) if defaults else task


def expand_home(path: str, home: Any) -> str:
    """Replace a leading ``~`` / ``~/`` by ``home()`` (called only when needed)."""
    if path == "~":
        return str(home())
    if path.startswith("~/"):
        return f"{str(home()).rstrip('/')}/{path[2:]}"
    return path


def _did_you_mean(word: str, choices: set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_keys(config_path: Path, data: dict, known: set[str], prefix: str = "") -> None:
    for key in data:
        if not isinstance(key, str) or key not in known:
            raise ConfigError(
                f"{config_path}: {prefix}{key}: unknown setting{_did_you_mean(str(key), known)}"
                f" (known: {', '.join(sorted(known))})"
            )


def _text(config_path: Path, key: str, value: Any, *, allow_empty: bool = False) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigError(f"{config_path}: {key}: expected text, got {value!r}")
    text = str(value).strip()
    if not text and not allow_empty:
        raise ConfigError(f"{config_path}: {key}: must not be empty")
    return text


def _number(config_path: Path, key: str, value: Any, default: float) -> float:
    if value is None:
        return default
    try:
        if isinstance(value, bool):
            raise TypeError
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{config_path}: {key}: expected seconds, got {value!r}") from None
    if number <= 0:
        raise ConfigError(f"{config_path}: {key}: expected a positive number of seconds")
    return number


def parse_ssh(config_path: Path, value: Any) -> SSHSettings | None:
    """``ssh:`` as a string (``alias`` / ``user@host[:port]``) or as a mapping with options."""
    if value is None or value is False:
        return None
    options: dict[str, Any]
    if isinstance(value, str):
        options = {"host": value}
    elif isinstance(value, dict):
        _check_keys(config_path, value, SSH_KEYS, "ssh.")
        options = dict(value)
    else:
        raise ConfigError(
            f"{config_path}: ssh: expected a host like 'user@login.example.org:22' or a "
            f"mapping with 'host:', got {value!r}"
        )
    target = _text(config_path, "ssh.host", options.get("host"))
    if not target:
        raise ConfigError(f"{config_path}: ssh.host: missing (the cluster's login node)")
    match = _SSH_TARGET.match(target)
    if not match:
        raise ConfigError(
            f"{config_path}: ssh.host: {target!r} is not an ~/.ssh/config alias or user@host[:port]"
        )
    user = _ssh_line(config_path, "ssh.user", options.get("user")) or match["user"]
    if user and any(c.isspace() for c in user):
        raise ConfigError(f"{config_path}: ssh.user: {user!r} is not a user name")
    port: int | None = None
    port_value = options.get("port", match["port"])
    if port_value is not None:
        try:
            if isinstance(port_value, bool):
                raise TypeError
            port = int(port_value)
        except (TypeError, ValueError):
            port = 0
        if not 1 <= port <= 65535:
            raise ConfigError(f"{config_path}: ssh.port: expected 1-65535, got {port_value!r}")
    accept = options.get("accept_new_host_keys", False)
    if not isinstance(accept, bool):
        raise ConfigError(
            f"{config_path}: ssh.accept_new_host_keys: expected true or false, got {accept!r}"
        )
    jump_host = _ssh_line(config_path, "ssh.jump_host", options.get("jump_host"))
    if jump_host and jump_host.lower() != "none":
        for hop in jump_host.split(","):
            try:
                parse_jump_hop(hop)
            except ValueError:
                raise ConfigError(
                    f"{config_path}: ssh.jump_host: {hop.strip()!r} is not [user@]host[:port] "
                    "(hops separated by commas; an IPv6 address in brackets: [::1]:22)"
                ) from None
    proxy_command = _ssh_line(config_path, "ssh.proxy_command", options.get("proxy_command"))
    if jump_host and proxy_command:
        raise ConfigError(
            f"{config_path}: ssh.jump_host and ssh.proxy_command: set one of them (a ProxyJump "
            "or a ProxyCommand, not both)"
        )
    return SSHSettings(
        host=match["host"].strip("[]"),
        user=user,
        port=port,
        identity_file=_text(config_path, "ssh.identity_file", options.get("identity_file")),
        jump_host=jump_host,
        proxy_command=proxy_command,
        known_hosts=_text(config_path, "ssh.known_hosts", options.get("known_hosts")),
        accept_new_host_keys=accept,
        connect_timeout=_number(
            config_path, "ssh.connect_timeout", options.get("connect_timeout"), 15.0
        ),
    )


def parse_jump_hop(spec: str) -> tuple[str | None, str, int | None]:
    """One ProxyJump hop, ``[ssh://][user@]host[:port]``: (user, host, port).

    The host may be an ``[IPv6]`` literal (``kdtest@[::1]:2222``); a bare IPv6 address takes no
    port. ValueError when the hop is malformed.
    """
    text = spec.strip().removeprefix("ssh://")
    user, at, rest = text.rpartition("@")
    port_text: str | None = None
    if rest.startswith("["):
        host, bracket, after = rest[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise ValueError(spec)
        port_text = after[1:] if after else None
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host = rest
    if not host or (at and not user) or any(c.isspace() or c in "@[]" for c in host + user):
        raise ValueError(spec)
    port = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(spec)
        port = int(port_text)
    return user or None, host, port


def _ssh_line(config_path: Path, key: str, value: Any) -> str | None:
    """Text that ssh.py writes into an ssh_config line: one line, no line breaks."""
    text = _text(config_path, key, value)
    if text is not None and ("\n" in text or "\r" in text):
        raise ConfigError(f"{config_path}: {key}: must be a single line")
    return text


def _slurm_name(config_path: Path, key: str, value: Any) -> str | None:
    text = _text(config_path, key, value)
    if text is not None and not _SLURM_NAME.match(text):
        raise ConfigError(f"{config_path}: {key}: {text!r} is not a valid Slurm {key} name")
    return text


def load_settings() -> Settings:
    home = Path(os.environ.get("KONDUKTOR_HOME") or Path.home() / ".konduktor").expanduser()
    config_path = Path(os.environ.get("KONDUKTOR_CONFIG") or home / "config.yaml").expanduser()
    data: dict = {}
    if config_path.exists():
        import yaml  # only paid for when a config file exists

        try:
            loaded = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{config_path}: cannot read: {exc.strerror}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config_path}: expected a mapping of settings")
        _check_keys(config_path, loaded, KNOWN_KEYS)
        data = loaded
    gres_map = data.get("gres_map") or {}
    if not isinstance(gres_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in gres_map.items()
    ):
        raise ConfigError(f"{config_path}: gres_map: expected a mapping like {{H100: h100}}")
    timeout = _number(config_path, "slurm_timeout", data.get("slurm_timeout"), 30.0)
    ssh = parse_ssh(config_path, data.get("ssh"))
    jobs_dir = _text(config_path, "jobs_dir", data.get("jobs_dir"))
    if ssh is None:
        # Local: the login node itself. Relative paths would depend on the current directory.
        jobs_dir = str(Path(jobs_dir or home / "jobs").expanduser().absolute())
    else:
        jobs_dir = (jobs_dir or DEFAULT_REMOTE_JOBS_DIR).rstrip("/") or "/"
        if not (jobs_dir.startswith("/") or jobs_dir == "~" or jobs_dir.startswith("~/")):
            raise ConfigError(
                f"{config_path}: jobs_dir: {jobs_dir!r} must be absolute or start with ~/ "
                "(the cluster's home directory)"
            )
    node_workdir = _text(config_path, "node_workdir", data.get("node_workdir"))
    if node_workdir is not None and not (
        node_workdir.startswith("/") or node_workdir == "~" or node_workdir.startswith("~/")
    ):
        raise ConfigError(
            f"{config_path}: node_workdir: {node_workdir!r} must be absolute or start with ~/"
        )
    stop_mode = _text(config_path, "stop_mode", data.get("stop_mode")) or "auto"
    if stop_mode not in STOP_MODES:
        raise ConfigError(
            f"{config_path}: stop_mode: expected one of {', '.join(STOP_MODES)}, got "
            f"{stop_mode!r}{_did_you_mean(stop_mode, set(STOP_MODES))}"
        )
    return Settings(
        home=home,
        config_path=config_path,
        jobs_dir=jobs_dir,
        gres_map=gres_map,
        slurm_bin_dir=_text(config_path, "slurm_bin_dir", data.get("slurm_bin_dir")),
        slurm_timeout=timeout,
        ssh=ssh,
        node_workdir=(node_workdir or DEFAULT_NODE_WORKDIR).rstrip("/") or "/",
        partition=_slurm_name(config_path, "partition", data.get("partition")),
        account=_slurm_name(config_path, "account", data.get("account")),
        qos=_slurm_name(config_path, "qos", data.get("qos")),
        stop_mode=stop_mode,
    )
