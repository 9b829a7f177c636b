"""config.yaml's schema, as pydantic models, checked the way task files are.

Imported only when config.yaml must be validated (it changed since its settings were cached,
see ``config.load_settings``): pydantic costs about 100 ms and PyYAML 15 ms, which
``konduktor status`` must not pay on every run.

The types read like the task schema's (``task/schema.py``): ``expect(what)`` words a failed
check as "expected <what>, got <value>", ``must`` is a check, ``After`` rules run on accepted
values and fail with their own message. Problems are collected by the task files' ``Checker``,
so every one reads ``<config path>:<line>: <key>: <what is wrong>``, all of them at once.

Values that end up in job scripts or ``#SBATCH`` lines (jobs_dir, node_workdir, gres_map
types, partition/account/qos) and in ssh_config lines (host, user, jump_host,
proxy_command) are refused here, naming the key, rather than failing later at render or
connect time and blaming the task file.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator as After
from pydantic import BeforeValidator as Before
from pydantic import Field, model_validator
from pydantic import PlainValidator as Plain

from konduktor_slurm.config import ConfigError, parse_jump_hop
from konduktor_slurm.stop_modes import STOP_MODES, StopMode
from konduktor_slurm.task import rules
from konduktor_slurm.task.checker import Checker, Level, close_match
from konduktor_slurm.task.errors import TaskError, TaskIssue
from konduktor_slurm.task.schema import (
    Section,
    Text,
    ValidationError,
    expect,
    field_names,
    mapping_of,
    must,
    slurm_name,
)
from konduktor_slurm.task.source import as_text, load_yaml

# user@host[:port]; host may be an [IPv6] literal or a ~/.ssh/config alias. Not a pattern
# (* ? ! ,) nor quoted: ssh.py hands the host to ssh_config as a Host line.
SSH_TARGET_RE = re.compile(
    r"(?:(?P<user>[^@\s:\x00-\x1f\x7f]+)@)?"
    r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^@\s:\[\]*?!,\"'\x00-\x1f\x7f]+)"
    r"(?::(?P<port>\d+))?"
)
SSH_TARGET_EXPECTED = "an ~/.ssh/config alias or user@host[:port]"
USER_RE = re.compile(r"[^@\s:\x00-\x1f\x7f]+")
# One or more partitions: sbatch --partition takes a comma-separated list.
PARTITIONS_RE = re.compile(r"[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*")
# GPU model names start with a letter, as in task files (H100, A100-80GB, L40S).
ACCELERATOR_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
# A Slurm GRES type, written into `#SBATCH --gres=gpu:<type>:<count>`.
GRES_TYPE_RE = re.compile(r"[A-Za-z0-9_.-]+")
NUMBER_RE = re.compile(r"[+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# Per Slurm call and per SSH connect: below a second is a typo, above an hour a hang.
MIN_SECONDS = 1
MAX_SECONDS = 3600


# ---- rules ------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """Text written into an ssh_config line (or used as a local path): one line."""
    if not text.strip():
        rules.fail("must not be empty")
    if rules.CONTROL_RE.search(text):
        rules.fail(f"must be a single line without control characters, got {text!r}")
    return text


def _target_port(text: str) -> str:
    match = SSH_TARGET_RE.fullmatch(text)
    if match and match["port"] is not None and not 1 <= int(match["port"]) <= 65535:
        rules.fail(f"expected a port from 1 to 65535 after ':', got {text!r}")
    return text


def _jump_hops(text: str) -> str:
    if text.strip().lower() == "none":  # ssh_config's "ProxyJump none"
        return text
    for hop in text.split(","):
        try:
            parse_jump_hop(hop)
        except ValueError:
            rules.fail(
                f"{hop.strip()!r} is not [user@]host[:port] (hops separated by commas; an IPv6 "
                "address in brackets: [::1]:22)"
            )
    return text


def _job_path(key: str) -> Any:
    """jobs_dir / node_workdir: paths that go into #SBATCH lines and job scripts."""

    where = "#SBATCH lines" if key == "jobs_dir" else "the job's scripts"

    def check(text: str) -> str:
        if rules.CONTROL_RE.search(text):
            rules.fail(f"must not contain control characters, got {text!r}")
        if any(char.isspace() for char in text):
            rules.fail(f"must not contain spaces (it becomes part of {where}), got {text!r}")
        if not (text == "~" or text.startswith(("/", "~/"))):
            rules.fail(
                f"must be an absolute path or start with ~/ (your home directory on the "
                f"cluster), got {text!r}"
            )
        if ".." in text.split("/"):
            rules.fail(f"must not contain '..', got {text!r}")
        if key == "jobs_dir" and "%" in text:
            rules.fail(
                f"must not contain '%' (Slurm expands %j, %u, ... in the job's output path), "
                f"got {text!r}"
            )
        return text

    return After(check)


def _bin_dir(text: str) -> str:
    if rules.CONTROL_RE.search(text):
        rules.fail(f"must not contain control characters, got {text!r}")
    if not text.startswith("/"):
        rules.fail(f"must be an absolute path like '/opt/slurm/bin', got {text!r}")
    return text


def _seconds_text(value: Any) -> Any:
    """'30' -> 30.0, as earlier versions accepted; YAML 1.1 reads 1e3 as text too."""
    if isinstance(value, str) and NUMBER_RE.fullmatch(value.strip()):
        return float(value)
    return value


def _stop_mode(value: Any) -> StopMode:
    text = as_text(value)
    if isinstance(text, str) and text in STOP_MODES:
        return StopMode(text)
    hint = close_match(text, STOP_MODES) if isinstance(text, str) else None
    rules.fail(
        f"expected one of {', '.join(STOP_MODES)}, got {rules.describe(value)}"
        + (f"; did you mean {hint!r}?" if hint else "")
    )


def _retention(value: Any) -> float | str:
    """``30d``, ``12h``, ``0s`` -> seconds; ``never`` stays "never" (None means unset)."""
    from konduktor_slurm.durations import RETENTION_EXPECTED, DurationError, parse_retention

    text = as_text(value)
    if isinstance(text, str) and not isinstance(value, bool):
        try:
            seconds = parse_retention(text)
        except DurationError as exc:
            hint = " (give a unit: 30d, 12h, 90m, 0s)" if NUMBER_RE.fullmatch(text.strip()) else ""
            rules.fail(f"{exc}{hint}")
        return "never" if seconds is None else seconds
    rules.fail(f"expected {RETENTION_EXPECTED}, got {rules.describe(value)}")


def _ssh_value(value: Any) -> Any:
    """``ssh: login`` is ``ssh: {host: login}``; ``ssh: false`` (or null) means local."""
    if value is False:
        return None
    text = as_text(value)
    return {"host": text} if isinstance(text, str) else value


# ---- types ------------------------------------------------------------------------------

SSHTarget = Annotated[
    str, must(SSH_TARGET_RE.fullmatch), Text, expect(SSH_TARGET_EXPECTED), After(_target_port)
]
UserName = Annotated[
    str, must(USER_RE.fullmatch), Text, expect("a user name (no spaces, '@' or ':')")
]
Port = Annotated[int, Field(ge=1, le=65535), Before(rules.whole_number), expect("1-65535")]
LocalFile = Annotated[str, Text, expect("a path to a file on this machine"), After(_one_line)]
JumpHost = Annotated[
    str,
    Text,
    expect("ProxyJump hops like 'bastion' or 'bob@gw.example.org:2200,login2'"),
    After(_one_line),
    After(_jump_hops),
]
ProxyCommand = Annotated[
    str, expect("a ProxyCommand like 'nc -x socks.example.org:1080 %h %p'"), After(_one_line)
]
Seconds = Annotated[
    float,
    Field(ge=MIN_SECONDS, le=MAX_SECONDS, allow_inf_nan=False),
    Before(_seconds_text),
    expect(f"a number of seconds from {MIN_SECONDS} to {MAX_SECONDS}"),
]
JobsDir = Annotated[
    str,
    must(bool),
    Text,
    expect("a directory like '~/.konduktor/jobs' or '/shared/konduktor/jobs'"),
    _job_path("jobs_dir"),
]
NodeWorkdir = Annotated[
    str,
    must(bool),
    Text,
    expect("a directory like '~/konduktor_workdir' or '/scratch/konduktor'"),
    _job_path("node_workdir"),
]
Partition = Annotated[
    str,
    must(PARTITIONS_RE.fullmatch),
    Text,
    expect("a Slurm partition name (letters, digits, '_', '.', '-'), or several joined by ','"),
]
AcceleratorName = Annotated[
    str, must(ACCELERATOR_RE.fullmatch), Text, expect("an accelerator name like 'A100-80GB'")
]
GresType = Annotated[
    str,
    must(GRES_TYPE_RE.fullmatch),
    Text,
    expect("a Slurm GRES type name (letters, digits, '_', '.', '-')"),
]
GresMap = Annotated[
    dict[AcceleratorName, GresType],
    mapping_of("accelerator name: Slurm GRES type, like {A100-80GB: a100_80g}"),
]
StopModeValue = Annotated[StopMode, Plain(_stop_mode)]
Retention = Annotated[float | str, Plain(_retention)]
SlurmBinDir = Annotated[
    str, must(bool), Text, expect("a directory like '/opt/slurm/bin'"), After(_bin_dir)
]


class SSHSection(Section):
    """SSH settings (host, user, port, ...)"""

    host: SSHTarget
    user: UserName | None = None
    port: Port | None = None
    identity_file: LocalFile | None = None
    jump_host: JumpHost | None = None
    proxy_command: ProxyCommand | None = None
    known_hosts: LocalFile | None = None
    accept_new_host_keys: Annotated[bool, expect("true or false")] | None = None
    connect_timeout: Seconds | None = None

    @model_validator(mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return value
        rules.fail(
            "expected a host like 'user@login.example.org:22' or a mapping of SSH settings "
            f"(host, user, port, ...), got {rules.describe(value)}"
        )


class ConfigSchema(Section):
    """settings (ssh, jobs_dir, partition, ...)"""

    ssh: Annotated[SSHSection | None, Before(_ssh_value)] = None
    jobs_dir: JobsDir | None = None
    node_workdir: NodeWorkdir | None = None
    partition: Partition | None = None
    account: slurm_name("account") | None = None
    qos: slurm_name("qos") | None = None
    gres_map: GresMap | None = None
    stop_mode: StopModeValue | None = None
    slurm_bin_dir: SlurmBinDir | None = None
    slurm_timeout: Seconds | None = None
    retention: Retention | None = None


TOP_LEVEL = field_names(ConfigSchema)
SSH_KEYS = field_names(SSHSection)
LEVELS = {
    (): Level(TOP_LEVEL, {key: f"'ssh.{key}'" for key in SSH_KEYS}),
    ("ssh",): Level(SSH_KEYS, {key: f"top-level '{key}'" for key in TOP_LEVEL if key != "ssh"}),
}
MESSAGES = {"missing": "missing: the cluster's login node, " + SSH_TARGET_EXPECTED}


# ---- validation -------------------------------------------------------------------------


def check_config(text: str, source: str) -> dict[str, Any]:
    """The settings in config.yaml's ``text``, as plain JSON-ready values (None: not set),
    or a ConfigError listing every problem as ``source:line: key: message``."""
    try:
        data, positions = load_yaml(text, source, what="config file")
    except TaskError as exc:
        raise ConfigError(exc.issues) from None
    if data is None:  # empty, or only comments: every default
        return values_of(ConfigSchema())
    if not isinstance(data, dict):
        message = (
            f"expected a mapping of settings (ssh, jobs_dir, partition, ...), got "
            f"{rules.describe(data)}"
        )
        raise ConfigError([TaskIssue(source, positions.root_line, "", message)])
    ck = Checker(source, positions)
    ck.report_duplicates(positions.duplicates)
    model = None
    try:
        model = ConfigSchema.model_validate(data)
    except ValidationError as exc:
        ck.report(exc.errors(include_url=False), data, LEVELS, MESSAGES, ("gres_map",))
    _check_ssh_across_keys(ck, data.get("ssh"))
    if ck.issues or model is None:
        raise ConfigError(ck.sorted_issues())
    return values_of(model)


def _check_ssh_across_keys(ck: Checker, ssh: Any) -> None:
    """What is set twice in ``ssh:``: a gateway both ways, a user or port in host and apart."""
    if not isinstance(ssh, dict):
        return
    if ssh.get("jump_host") is not None and ssh.get("proxy_command") is not None:
        line = ck.line(("ssh", "jump_host"))
        ck.error(
            ("ssh", "proxy_command"),
            f"set together with ssh.jump_host{f' (line {line})' if line else ''}; set one of "
            "them (a ProxyJump or a ProxyCommand, not both)",
        )
    target = as_text(ssh.get("host"))
    match = SSH_TARGET_RE.fullmatch(target) if isinstance(target, str) else None
    if match is None:
        return
    port = rules.whole_number(ssh.get("port"))
    if match["port"] is not None and isinstance(port, int) and port != int(match["port"]):
        ck.error(
            ("ssh", "port"),
            f"is {port} but ssh.host {target!r} says port {match['port']}; set the port in "
            "one place",
        )
    user = as_text(ssh.get("user"))
    if match["user"] is not None and isinstance(user, str) and user != match["user"]:
        ck.error(
            ("ssh", "user"),
            f"is {user!r} but ssh.host {target!r} says {match['user']!r}; set the user in one "
            "place",
        )


def values_of(model: ConfigSchema) -> dict[str, Any]:
    """The validated settings as the plain values config.py caches (JSON) and builds
    ``Settings`` from; the ssh target is split into host, user and port here."""
    ssh: dict[str, Any] | None = None
    if model.ssh is not None:
        section = model.ssh
        match = SSH_TARGET_RE.fullmatch(section.host)
        assert match is not None  # validated by SSHTarget
        target_port = int(match["port"]) if match["port"] is not None else None
        ssh = {
            "host": match["host"].strip("[]"),
            "user": section.user or match["user"],
            "port": section.port if section.port is not None else target_port,
            "identity_file": section.identity_file,
            "jump_host": section.jump_host,
            "proxy_command": section.proxy_command,
            "known_hosts": section.known_hosts,
            "accept_new_host_keys": bool(section.accept_new_host_keys),
            "connect_timeout": section.connect_timeout,
        }
    return {
        "ssh": ssh,
        "jobs_dir": model.jobs_dir,
        "node_workdir": model.node_workdir,
        "partition": model.partition,
        "account": model.account,
        "qos": model.qos,
        "gres_map": dict(model.gres_map or {}),
        "stop_mode": None if model.stop_mode is None else model.stop_mode.value,
        "slurm_bin_dir": model.slurm_bin_dir,
        "slurm_timeout": model.slurm_timeout,
        "retention": model.retention,
    }
