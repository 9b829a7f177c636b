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
      connect_timeout: 15              # seconds, 1-3600
    jobs_dir: ~/.konduktor/jobs   # on the cluster's shared filesystem; ~ is the cluster's home
    node_workdir: ~/konduktor_workdir   # where each node runs the job (one subdir per job)
    partition: gpu                # defaults when a task sets none (partition: 'gpu,low' too)
    account: research
    qos: normal
    gres_map: {A100-80GB: a100_80g}   # accelerator name -> Slurm GRES type
    stop_mode: auto               # auto | suspend | requeue | signal | checkpoint
    slurm_bin_dir: /opt/slurm/bin
    slurm_timeout: 30             # seconds per Slurm call, 1-3600
    retention: 30d                # finished jobs' snapshots and node workdirs (or: never)

``~/.ssh/config`` fills in what is not set here (HostName, User, Port, IdentityFile, ProxyJump,
ProxyCommand); ``jump_host`` and ``proxy_command`` exclude each other, as in ssh_config.
jobs_dir and node_workdir are absolute or under ``~/``, without whitespace, control
characters or ``..`` (they end up in ``#SBATCH`` lines and job scripts).

Validation (``config_schema``: pydantic models, the task files' ``Checker``) reports every
problem at once as ``<config path>:<line>: <key>: <what is wrong>``, in a ``ConfigError``.
It costs pydantic's and PyYAML's imports (~115 ms), and every command reads config.yaml, so
the validated settings are cached as JSON in ``$KONDUKTOR_HOME/config-cache.json``, keyed by
the config file's path, device, inode, size, mtime and ctime: an unchanged file is read from
the cache without importing either. A damaged or foreign cache (not ours, writable by
others, for another file or another konduktor version) is ignored and rewritten.

Nothing here imports fabric or paramiko: ``ssh.py`` does, when a command first talks to the
cluster.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from konduktor_slurm import __version__
from konduktor_slurm.stop_modes import STOP_MODES, StopMode

# The task package is not imported at run time: ~7 ms that `konduktor status` skips.
if TYPE_CHECKING:
    from konduktor_slurm.task import Task
    from konduktor_slurm.task.errors import TaskIssue
    from konduktor_slurm.transport import Transport

DEFAULT_REMOTE_JOBS_DIR = "~/.konduktor/jobs"
DEFAULT_NODE_WORKDIR = "~/konduktor_workdir"
DEFAULT_SLURM_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 15.0
# How long a finished job's staged snapshot and node workdirs are kept (config ``retention``):
# a month is what people look back on; logs, results and the store's record stay forever.
DEFAULT_RETENTION = 30 * 86400.0

CACHE_NAME = "config-cache.json"
# Bump when the cached values change shape or meaning.
CACHE_FORMAT = 1
# A config file written less than this long ago is not cached: a second edit within the
# file system's timestamp granularity could keep size and times (git's "racy" files).
RACY_SECONDS = 2.0
MAX_CACHE_BYTES = 64 * 1024


class ConfigError(ValueError):
    """config.yaml (or konduktor's home directory) cannot be used. ``issues`` lists every
    problem as ``<path>:<line>: <key>: <message>``; the message has one line per issue."""

    def __init__(self, issues: Sequence[TaskIssue]) -> None:
        self.issues: list[TaskIssue] = list(issues)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


def _refuse(path: Path, message: str) -> ConfigError:
    from konduktor_slurm.task.errors import TaskIssue

    return ConfigError([TaskIssue(str(path), None, "", message)])


class SSHSettings(NamedTuple):
    """The login node, as configured. ``~/.ssh/config`` is applied later, by ssh.py."""

    host: str  # alias or hostname, as written
    user: str | None = None
    port: int | None = None
    identity_file: str | None = None
    jump_host: str | None = None  # ProxyJump: comma-separated [user@]host[:port] hops
    proxy_command: str | None = None  # ProxyCommand, %h %p %r expanded
    known_hosts: str | None = None
    accept_new_host_keys: bool = False
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    @property
    def display(self) -> str:
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        return f"{user}{self.host}{port}"


class Settings(NamedTuple):
    """What config.yaml (and its defaults) say, as konduktor uses it."""

    home: Path
    config_path: Path
    # Local mode: an absolute local path. SSH mode: as written; a leading ~ is the remote home
    # (see ``resolve_jobs_dir``).
    jobs_dir: str
    gres_map: Mapping[str, str] = MappingProxyType({})  # read-only: one default for all
    slurm_bin_dir: str | None = None
    slurm_timeout: float = DEFAULT_SLURM_TIMEOUT
    ssh: SSHSettings | None = None
    node_workdir: str = DEFAULT_NODE_WORKDIR
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    stop_mode: StopMode = StopMode.AUTO
    # Seconds a finished job's snapshot and node workdirs are kept; None: never pruned.
    retention: float | None = DEFAULT_RETENTION

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


# ---- loading ------------------------------------------------------------------------------


def load_settings() -> Settings:
    """The settings: defaults, overridden by config.yaml if there is one.

    Every command calls this. An unchanged config.yaml is read from the cache (stat calls and
    a small JSON file); only a new or changed one is validated, with PyYAML and pydantic.
    """
    home = konduktor_home()
    _check_home(home)
    config_path = Path(os.environ.get("KONDUKTOR_CONFIG") or home / "config.yaml").expanduser()
    info = _stat_config(config_path)
    if info is None:
        return build_settings({}, home, config_path)
    key = _cache_key(config_path, info)
    values = _read_cache(home, key) if key is not None else None
    if values is None:
        values = _validate(config_path)
        if key is not None and time.time_ns() - info.st_mtime_ns > RACY_SECONDS * 1e9:
            _write_cache(home, key, values)
    return build_settings(values, home, config_path)


def konduktor_home() -> Path:
    """``$KONDUKTOR_HOME``, default ``~/.konduktor`` (it may not exist yet)."""
    return Path(os.environ.get("KONDUKTOR_HOME") or Path.home() / ".konduktor").expanduser()


def _check_home(home: Path) -> None:
    try:
        info = os.stat(home)
    except OSError:
        return  # missing: created on first use; anything else is reported where it is used
    if not stat.S_ISDIR(info.st_mode):
        raise _refuse(
            home,
            "is a file, but konduktor keeps its job store and settings in this directory: "
            "move the file away, or set KONDUKTOR_HOME to a directory",
        )


def _stat_config(config_path: Path) -> os.stat_result | None:
    """The config file's stat, or None when there is no config file (all defaults)."""
    try:
        return os.stat(config_path)
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(config_path):
            raise _refuse(
                config_path,
                f"is a symbolic link to {os.readlink(config_path)}, which does not exist: fix "
                "the link or remove it",
            ) from None
        return None
    except OSError as exc:
        raise _unreadable(config_path, exc.strerror or str(exc)) from None


def _unreadable(config_path: Path, reason: str) -> ConfigError:
    return _refuse(
        config_path,
        f"cannot read the config file ({reason}): make it readable (chmod u+r "
        f"{config_path}) or set KONDUKTOR_CONFIG to another file",
    )


def _validate(config_path: Path) -> dict[str, Any]:
    """config.yaml's settings, validated (the slow path: PyYAML and pydantic)."""
    from konduktor_slurm.task.errors import TaskError
    from konduktor_slurm.task.source import read_source

    try:
        # Regular files only (a FIFO or /dev/zero is refused at once), 1 MiB, UTF-8.
        text = read_source(config_path, "config file")
    except TaskError as exc:
        if not os.access(config_path, os.R_OK) and os.path.exists(config_path):
            raise _unreadable(config_path, "Permission denied") from None
        raise ConfigError(exc.issues) from None
    from konduktor_slurm.config_schema import check_config

    return check_config(text, str(config_path))


def build_settings(values: Mapping[str, Any], home: Path, config_path: Path) -> Settings:
    """``Settings`` from validated values (``config_schema.values_of``); None: the default."""
    ssh_values = values.get("ssh")
    ssh = None
    if ssh_values:
        timeout = ssh_values.get("connect_timeout")
        ssh = SSHSettings(**{**ssh_values, "connect_timeout": timeout or DEFAULT_CONNECT_TIMEOUT})
    jobs_dir = values.get("jobs_dir")
    if ssh is None:
        # Local: the login node itself; ~ is this machine's home.
        jobs_dir = str(Path(jobs_dir or home / "jobs").expanduser().absolute())
    else:
        jobs_dir = (jobs_dir or DEFAULT_REMOTE_JOBS_DIR).rstrip("/") or "/"
    node_workdir = (values.get("node_workdir") or DEFAULT_NODE_WORKDIR).rstrip("/") or "/"
    retention = values.get("retention")
    if retention is None:
        retention = DEFAULT_RETENTION
    return Settings(
        home=home,
        config_path=config_path,
        jobs_dir=jobs_dir,
        gres_map=dict(values.get("gres_map") or {}),
        slurm_bin_dir=values.get("slurm_bin_dir"),
        slurm_timeout=values.get("slurm_timeout") or DEFAULT_SLURM_TIMEOUT,
        ssh=ssh,
        node_workdir=node_workdir,
        partition=values.get("partition"),
        account=values.get("account"),
        qos=values.get("qos"),
        stop_mode=StopMode(values.get("stop_mode") or StopMode.AUTO),
        retention=None if retention == "never" else float(retention),
    )


# ---- the cache of validated settings ---------------------------------------------------------

_OPTIONAL_TEXT = (str, type(None))
_NUMBER = (int, float)
# The shape of cached values: anything else is a damaged cache, validated afresh.
_VALUE_TYPES: dict[str, tuple[type, ...]] = {
    "ssh": (dict, type(None)),
    "jobs_dir": _OPTIONAL_TEXT,
    "node_workdir": _OPTIONAL_TEXT,
    "partition": _OPTIONAL_TEXT,
    "account": _OPTIONAL_TEXT,
    "qos": _OPTIONAL_TEXT,
    "gres_map": (dict,),
    "stop_mode": _OPTIONAL_TEXT,
    "slurm_bin_dir": _OPTIONAL_TEXT,
    "slurm_timeout": (*_NUMBER, type(None)),
    "retention": (*_NUMBER, str, type(None)),  # seconds, or "never"
}
_SSH_TYPES: dict[str, tuple[type, ...]] = {
    "host": (str,),
    "user": _OPTIONAL_TEXT,
    "port": (int, type(None)),
    "identity_file": _OPTIONAL_TEXT,
    "jump_host": _OPTIONAL_TEXT,
    "proxy_command": _OPTIONAL_TEXT,
    "known_hosts": _OPTIONAL_TEXT,
    "accept_new_host_keys": (bool,),
    "connect_timeout": (*_NUMBER, type(None)),
}


def _cache_key(config_path: Path, info: os.stat_result) -> dict[str, Any] | None:
    """What the cached settings depend on: this file as it is now, and this konduktor (its
    version and schema module). None for anything but a regular file (never cached)."""
    if not stat.S_ISREG(info.st_mode):
        return None
    try:
        schema = os.stat(Path(__file__).with_name("config_schema.py"))
        schema_key = [schema.st_size, schema.st_mtime_ns]
    except OSError:
        schema_key = None
    return {
        "format": CACHE_FORMAT,
        "version": __version__,
        "schema": schema_key,
        "path": os.path.abspath(config_path),
        "file": [
            info.st_dev,
            info.st_ino,
            info.st_size,
            info.st_mtime_ns,
            info.st_ctime_ns,
        ],
    }


def _read_cache(home: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The cached values for ``key``, or None when the cache is missing, for another file,
    damaged or not trustworthy (it may hold a proxy_command, which is run)."""
    from konduktor_slurm.private_files import read_json

    payload = read_json(home / CACHE_NAME, MAX_CACHE_BYTES)
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    values = payload.get("values")
    return values if _well_formed(values) else None


def _well_formed(values: Any) -> bool:
    if not isinstance(values, dict) or values.keys() != _VALUE_TYPES.keys():
        return False
    if not all(
        isinstance(values[name], types) and not isinstance(values[name], bool)
        for name, types in _VALUE_TYPES.items()
    ):
        return False
    if values["stop_mode"] is not None and values["stop_mode"] not in STOP_MODES:
        return False
    retention = values["retention"]
    if isinstance(retention, str) and retention != "never":
        return False
    if isinstance(retention, int | float) and not 0 <= retention < float("inf"):
        return False
    gres_map = values["gres_map"]
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in gres_map.items()):
        return False
    ssh = values["ssh"]
    if ssh is None:
        return True
    return ssh.keys() == _SSH_TYPES.keys() and all(
        isinstance(ssh[name], types) and (bool in types or not isinstance(ssh[name], bool))
        for name, types in _SSH_TYPES.items()
    )


def _write_cache(home: Path, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Atomically, 0600; a cache that cannot be written is no error."""
    import json

    from konduktor_slurm.private_files import write_atomically

    write_atomically(home / CACHE_NAME, json.dumps({"key": key, "values": values}))
