"""config.yaml: every setting and its defaults; every problem as ``file:line: key: message``,
all at once; files that cannot be config files; the cache of validated settings."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from konduktor_slurm.config import CACHE_NAME, ConfigError, Settings, load_settings, parse_jump_hop
from konduktor_slurm.stop_modes import StopMode
from konduktor_slurm.task import TaskIssue, parse_task

KONDUKTOR = str(Path(sys.executable).parent / "konduktor")


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KONDUKTOR_HOME", str(tmp_path / "home"))
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("KONDUKTOR_CONFIG", str(path))
    return path


def load(config_file: Path, text: str) -> Settings:
    config_file.write_text(text)
    return load_settings()


def issues(config_file: Path, content: str | bytes) -> list[TaskIssue]:
    if isinstance(content, str):
        config_file.write_text(content)
    else:
        config_file.write_bytes(content)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    found = excinfo.value.issues
    assert str(excinfo.value) == "\n".join(str(issue) for issue in found)
    return found


def only_issue(config_file: Path, content: str | bytes) -> TaskIssue:
    found = issues(config_file, content)
    assert len(found) == 1, found
    assert found[0].file == str(config_file)
    return found[0]


# --------------------------------------------------------------------------------------
# good configs
# --------------------------------------------------------------------------------------


def test_without_a_file_everything_is_local_with_defaults(config_file: Path, tmp_path: Path):
    settings = load_settings()
    assert settings.ssh is None and not settings.remote
    assert settings.jobs_dir == str(tmp_path / "home" / "jobs")
    assert settings.node_workdir == "~/konduktor_workdir"
    assert settings.stop_mode == StopMode.AUTO
    assert (settings.partition, settings.account, settings.qos) == (None, None, None)
    assert settings.slurm_timeout == 30.0
    assert settings.retention == 30 * 86400.0  # finished jobs' snapshots kept a month
    assert settings.store_path == tmp_path / "home" / "state.db"


@pytest.mark.parametrize("text", ["", "# nothing set yet\n", "ssh: false\n", "ssh: null\n"])
def test_an_empty_config_or_ssh_off_is_local_with_defaults(config_file: Path, text: str) -> None:
    settings = load(config_file, text)
    assert settings.ssh is None
    assert settings.slurm_timeout == 30.0 and settings.gres_map == {}


@pytest.mark.parametrize(
    ("value", "host", "user", "port"),
    [
        ("login", "login", None, None),
        ("kdtest@127.0.0.1:2222", "127.0.0.1", "kdtest", 2222),
        ("alice@login.example.org", "login.example.org", "alice", None),
        ("[::1]:2200", "::1", None, 2200),
    ],
)
def test_ssh_target_forms(config_file: Path, value: str, host: str, user, port) -> None:
    settings = load(config_file, f"ssh: '{value}'\n")
    assert settings.ssh is not None
    assert (settings.ssh.host, settings.ssh.user, settings.ssh.port) == (host, user, port)
    assert settings.ssh.accept_new_host_keys is False  # never trust a new host by default
    assert settings.ssh.connect_timeout == 15.0
    # Over SSH, jobs_dir is on the cluster: ~ is the remote home, resolved on first use.
    assert settings.jobs_dir == "~/.konduktor/jobs"


def test_ssh_mapping_with_every_option(config_file: Path) -> None:
    settings = load(
        config_file,
        "ssh:\n  host: login\n  user: bob\n  port: 2200\n  identity_file: ~/.ssh/k\n"
        "  jump_host: bastion\n  known_hosts: /kh\n  accept_new_host_keys: true\n"
        "  connect_timeout: 5\n"
        "jobs_dir: /shared/kd\nnode_workdir: /scratch/kd\npartition: gpu\naccount: research\n"
        "qos: normal\nstop_mode: requeue\ngres_map: {A100-80GB: a100_80g}\n"
        "slurm_bin_dir: /opt/slurm/bin\nslurm_timeout: 12\n",
    )
    ssh = settings.ssh
    assert ssh is not None
    assert (ssh.host, ssh.user, ssh.port, ssh.identity_file) == ("login", "bob", 2200, "~/.ssh/k")
    assert (ssh.jump_host, ssh.known_hosts, ssh.accept_new_host_keys) == ("bastion", "/kh", True)
    assert ssh.connect_timeout == 5.0
    assert ssh.display == "bob@login:2200"
    assert settings.jobs_dir == "/shared/kd" and settings.node_workdir == "/scratch/kd"
    assert (settings.partition, settings.account, settings.qos) == ("gpu", "research", "normal")
    assert settings.stop_mode == StopMode.REQUEUE
    assert settings.gres_map == {"A100-80GB": "a100_80g"}
    assert settings.slurm_bin_dir == "/opt/slurm/bin" and settings.slurm_timeout == 12.0


def test_ssh_proxy_command_and_jump_chains(config_file: Path) -> None:
    proxied = load(config_file, "ssh:\n  host: login\n  proxy_command: nc -x socks:1080 %h %p\n")
    assert proxied.ssh is not None
    assert (proxied.ssh.proxy_command, proxied.ssh.jump_host) == ("nc -x socks:1080 %h %p", None)
    chain = "kdtest@[::1]:2222,ssh://bob@gw.example.org:22,bastion"
    jumped = load(config_file, f"ssh:\n  host: login\n  jump_host: '{chain}'\n")
    assert jumped.ssh is not None and jumped.ssh.jump_host == chain


@pytest.mark.parametrize(
    ("text", "attribute", "expected"),
    [
        ("partition: gpu,low\n", "partition", "gpu,low"),  # sbatch takes a list
        ("partition: 3\n", "partition", "3"),  # a number is taken as written
        ("slurm_timeout: '45'\n", "slurm_timeout", 45.0),  # as earlier versions accepted
        ("slurm_timeout: 1\n", "slurm_timeout", 1.0),
        ("slurm_timeout: 3600\n", "slurm_timeout", 3600.0),
        ("slurm_timeout: 2.5\n", "slurm_timeout", 2.5),
        ("stop_mode: signal\n", "stop_mode", StopMode.SIGNAL),
        ("gres_map: null\n", "gres_map", {}),
        (
            "gres_map: {H100: h100, L40S: l40s.48g}\n",
            "gres_map",
            {"H100": "h100", "L40S": "l40s.48g"},
        ),
        ("ssh: login\njobs_dir: /shared/jobs/\n", "jobs_dir", "/shared/jobs"),
        ("ssh: login\njobs_dir: '~'\n", "jobs_dir", "~"),
        ("node_workdir: /scratch/kd/\n", "node_workdir", "/scratch/kd"),
        ("node_workdir: ~/work.dir-1\n", "node_workdir", "~/work.dir-1"),
        ("retention: 12h\n", "retention", 43200.0),
        ("retention: 1.5d\n", "retention", 1.5 * 86400),
        ("retention: 0s\n", "retention", 0.0),  # pruned as soon as a job ends
        ("retention: ' 2W '\n", "retention", 14 * 86400.0),
        ("retention: never\n", "retention", None),
        ("retention: Never\n", "retention", None),
        ("retention: null\n", "retention", 30 * 86400.0),  # unset: the default
    ],
)
def test_accepted_values(config_file: Path, text: str, attribute: str, expected) -> None:
    assert getattr(load(config_file, text), attribute) == expected


def test_local_jobs_dir_under_home_is_this_machines_home(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    assert load(config_file, "jobs_dir: ~/kd/jobs\n").jobs_dir == str(tmp_path / "me/kd/jobs")


@pytest.mark.parametrize(
    "ssh",
    ["{host: 'h:22', port: 22}", "{host: 'bob@h', user: bob}", "{host: h, jump_host: none}"],
)
def test_the_same_value_twice_in_ssh_is_no_conflict(config_file: Path, ssh: str) -> None:
    assert load(config_file, f"ssh: {ssh}\n").ssh is not None


@pytest.mark.parametrize(
    ("spec", "hop"),
    [
        ("bastion", (None, "bastion", None)),
        ("bob@bastion:2200", ("bob", "bastion", 2200)),
        ("[::1]:2222", (None, "::1", 2222)),
        ("kdtest@[::1]", ("kdtest", "::1", None)),
        ("fe80::1", (None, "fe80::1", None)),  # a bare IPv6 address takes no port
        (" ssh://bob@127.0.0.1:22 ", ("bob", "127.0.0.1", 22)),
    ],
)
def test_jump_hop_forms(spec: str, hop: tuple) -> None:
    assert parse_jump_hop(spec) == hop


@pytest.mark.parametrize("spec", ["", "@host", "[::1", "[::1]x", "host:", "host:http", "h:99999"])
def test_malformed_jump_hops(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_jump_hop(spec)


# --------------------------------------------------------------------------------------
# bad configs: one issue each, with the line and the key
# --------------------------------------------------------------------------------------

SECONDS = "expected a number of seconds from 1 to 3600, got "
TARGET = "expected an ~/.ssh/config alias or user@host[:port], got "
SSH_FORM = (
    "expected a host like 'user@login.example.org:22' or a mapping of SSH settings "
    "(host, user, port, ...), got "
)
NOT_ABSOLUTE = (
    "must be an absolute path or start with ~/ (your home directory on the cluster), got "
)
GRES = "expected a Slurm GRES type name (letters, digits, '_', '.', '-'), got "
MODES = "expected one of auto, suspend, requeue, signal, checkpoint, got "
RETENTION = "expected a duration like 30d, 12h or 0s, or never, got "

BAD_CONFIGS = [
    # unknown and repeated keys
    ("partiton: gpu\n", 1, "partiton", "unknown field; did you mean 'partition'?"),
    (
        "partition: gpu\ncolour: blue\n",
        2,
        "colour",
        "unknown field; expected one of: ssh, jobs_dir, node_workdir, partition, account, qos, "
        "gres_map, stop_mode, slurm_bin_dir, slurm_timeout, retention",
    ),
    ("port: 2222\n", 1, "port", "unknown field; did you mean 'ssh.port'?"),
    (
        "ssh:\n  host: x\n  identityfile: k\n",
        3,
        "ssh.identityfile",
        "unknown field; did you mean 'identity_file'?",
    ),
    (
        "ssh:\n  host: x\n  password: hunter2\n",
        3,
        "ssh.password",
        "unknown field; expected one of: host, user, port, identity_file, jump_host, "
        "proxy_command, known_hosts, accept_new_host_keys, connect_timeout",
    ),
    (
        "ssh:\n  host: x\n  partition: gpu\n",
        3,
        "ssh.partition",
        "unknown field; did you mean top-level 'partition'?",
    ),
    (
        "partition: gpu\naccount: a\npartition: low\n",
        3,
        "partition",
        "duplicate key: also set on line 1; only one value can be used",
    ),
    (
        "ssh:\n  host: h\n  user: bob\n  host: g\n",
        4,
        "ssh.host",
        "duplicate key: also set on line 2; only one value can be used",
    ),
    # ssh
    ("ssh: 'a b'\n", 1, "ssh.host", TARGET + "'a b'"),
    ("ssh: 'login*'\n", 1, "ssh.host", TARGET + "'login*'"),
    ("ssh: ''\n", 1, "ssh.host", TARGET + "''"),
    (
        "ssh:\n  user: bob\n",
        1,
        "ssh.host",
        "missing: the cluster's login node, an ~/.ssh/config alias or user@host[:port]",
    ),
    ("ssh: [a, b]\n", 1, "ssh", SSH_FORM + "a list"),
    ("ssh: true\n", 1, "ssh", SSH_FORM + "true"),
    (
        "ssh: 'bob@h:99999'\n",
        1,
        "ssh.host",
        "expected a port from 1 to 65535 after ':', got 'bob@h:99999'",
    ),
    (
        "partition: gpu\nssh:\n  host: h\n  port: 70000\n",
        4,
        "ssh.port",
        "expected 1-65535, got 70000",
    ),
    ("ssh:\n  host: h\n  port: abc\n", 3, "ssh.port", "expected 1-65535, got 'abc'"),
    ("ssh:\n  host: h\n  port: true\n", 3, "ssh.port", "expected 1-65535, got true"),
    (
        "ssh:\n  host: h\n  user: 'bob smith'\n",
        3,
        "ssh.user",
        "expected a user name (no spaces, '@' or ':'), got 'bob smith'",
    ),
    (
        "ssh:\n  host: 'h:22'\n  port: 2200\n",
        3,
        "ssh.port",
        "is 2200 but ssh.host 'h:22' says port 22; set the port in one place",
    ),
    (
        "ssh:\n  host: 'alice@h'\n  user: bob\n",
        3,
        "ssh.user",
        "is 'bob' but ssh.host 'alice@h' says 'alice'; set the user in one place",
    ),
    (
        "ssh:\n  host: h\n  jump_host: 'gw,[::1'\n",
        3,
        "ssh.jump_host",
        "'[::1' is not [user@]host[:port] (hops separated by commas; an IPv6 address in "
        "brackets: [::1]:22)",
    ),
    (
        "ssh:\n  host: h\n  jump_host: gw\n  proxy_command: nc %h %p\n",
        4,
        "ssh.proxy_command",
        "set together with ssh.jump_host (line 3); set one of them (a ProxyJump or a "
        "ProxyCommand, not both)",
    ),
    (
        "ssh:\n  host: h\n  proxy_command: |\n    nc %h %p\n    Port 1\n",
        3,
        "ssh.proxy_command",
        "must be a single line without control characters, got 'nc %h %p\\nPort 1\\n'",
    ),
    ("ssh:\n  host: h\n  identity_file: ''\n", 3, "ssh.identity_file", "must not be empty"),
    (
        "ssh:\n  host: h\n  known_hosts: [a]\n",
        3,
        "ssh.known_hosts",
        "expected a path to a file on this machine, got a list",
    ),
    (
        "ssh:\n  host: h\n  accept_new_host_keys: 'yes'\n",
        3,
        "ssh.accept_new_host_keys",
        "expected true or false, got 'yes'",
    ),
    ("ssh:\n  host: h\n  connect_timeout: 0\n", 3, "ssh.connect_timeout", SECONDS + "0"),
    ("ssh:\n  host: h\n  connect_timeout: .nan\n", 3, "ssh.connect_timeout", SECONDS + "nan"),
    # slurm_timeout: NaN, infinities, zero, negative, absurdly large, not a number
    ("slurm_timeout: .nan\n", 1, "slurm_timeout", SECONDS + "nan"),
    ("slurm_timeout: .inf\n", 1, "slurm_timeout", SECONDS + "inf"),
    ("slurm_timeout: -.inf\n", 1, "slurm_timeout", SECONDS + "-inf"),
    ("slurm_timeout: 0\n", 1, "slurm_timeout", SECONDS + "0"),
    ("slurm_timeout: -5\n", 1, "slurm_timeout", SECONDS + "-5"),
    ("slurm_timeout: 0.5\n", 1, "slurm_timeout", SECONDS + "0.5"),
    ("slurm_timeout: 86400\n", 1, "slurm_timeout", SECONDS + "86400"),
    ("slurm_timeout: 1e9\n", 1, "slurm_timeout", SECONDS + "'1e9'"),
    ("slurm_timeout: soon\n", 1, "slurm_timeout", SECONDS + "'soon'"),
    ("slurm_timeout: true\n", 1, "slurm_timeout", SECONDS + "true"),
    # jobs_dir and node_workdir: paths in #SBATCH lines and job scripts
    ("jobs_dir: relative/dir\n", 1, "jobs_dir", NOT_ABSOLUTE + "'relative/dir'"),
    (
        "jobs_dir: /shared/my jobs\n",
        1,
        "jobs_dir",
        "must not contain spaces (it becomes part of #SBATCH lines), got '/shared/my jobs'",
    ),
    (
        'jobs_dir: "/shared/\\tjobs"\n',
        1,
        "jobs_dir",
        "must not contain control characters, got '/shared/\\tjobs'",
    ),
    ("jobs_dir: /shared/../etc\n", 1, "jobs_dir", "must not contain '..', got '/shared/../etc'"),
    (
        "jobs_dir: /shared/%u/jobs\n",
        1,
        "jobs_dir",
        "must not contain '%' (Slurm expands %j, %u, ... in the job's output path), "
        "got '/shared/%u/jobs'",
    ),
    (
        "jobs_dir: [a]\n",
        1,
        "jobs_dir",
        "expected a directory like '~/.konduktor/jobs' or '/shared/konduktor/jobs', got a list",
    ),
    ("node_workdir: scratch\n", 1, "node_workdir", NOT_ABSOLUTE + "'scratch'"),
    (
        "node_workdir: ~/work dir\n",
        1,
        "node_workdir",
        "must not contain spaces (it becomes part of the job's scripts), got '~/work dir'",
    ),
    ("node_workdir: ~/a/../../b\n", 1, "node_workdir", "must not contain '..', got '~/a/../../b'"),
    (
        'node_workdir: "/scratch/\\e[31m"\n',
        1,
        "node_workdir",
        "must not contain control characters, got '/scratch/\\x1b[31m'",
    ),
    # Slurm names
    (
        "partition: gpu low\n",
        1,
        "partition",
        "expected a Slurm partition name (letters, digits, '_', '.', '-'), or several joined by "
        "',', got 'gpu low'",
    ),
    (
        "account: res;earch\n",
        1,
        "account",
        "expected a Slurm account name (letters, digits, '_', '.', '-'), got 'res;earch'",
    ),
    ("qos: ''\n", 1, "qos", "expected a Slurm qos name (letters, digits, '_', '.', '-'), got ''"),
    # gres_map: types end up in `#SBATCH --gres=gpu:<type>:<count>`
    (
        "gres_map: [h100]\n",
        1,
        "gres_map",
        "expected a mapping of accelerator name: Slurm GRES type, like {A100-80GB: a100_80g}, "
        "got a list",
    ),
    ("gres_map: {H100: h 100}\n", 1, "gres_map.H100", GRES + "'h 100'"),
    ('gres_map:\n  A100: a100\n  H100: "h100\\n"\n', 3, "gres_map.H100", GRES + "'h100\\n'"),
    ("gres_map: {H100: null}\n", 1, "gres_map.H100", GRES + "nothing (null)"),
    ("gres_map: {H100: 'gpu:h100'}\n", 1, "gres_map.H100", GRES + "'gpu:h100'"),
    (
        "gres_map: {'8 H100': h100}\n",
        1,
        "gres_map['8 H100']",
        "expected an accelerator name like 'A100-80GB', got '8 H100'",
    ),
    # retention
    (
        "retention: 30\n",
        1,
        "retention",
        RETENTION + "'30' (give a unit: 30d, 12h, 90m, 0s)",
    ),
    ("retention: soon\n", 1, "retention", RETENTION + "'soon'"),
    ("retention: -1d\n", 1, "retention", RETENTION + "'-1d'"),
    ("retention: false\n", 1, "retention", RETENTION + "false"),
    ("retention: [30d]\n", 1, "retention", RETENTION + "a list"),
    (
        "retention: 99999999999d\n",
        1,
        "retention",
        "'99999999999d' is more than 100 years; give a shorter duration, or never",
    ),
    # stop_mode, slurm_bin_dir
    ("stop_mode: suspnd\n", 1, "stop_mode", MODES + "'suspnd'; did you mean 'suspend'?"),
    ("stop_mode: pause\n", 1, "stop_mode", MODES + "'pause'"),  # nothing close: no hint
    (
        "slurm_bin_dir: bin\n",
        1,
        "slurm_bin_dir",
        "must be an absolute path like '/opt/slurm/bin', got 'bin'",
    ),
]

BAD_FILES = [
    (
        b"partition: gpu\naccount: caf\xe9\n",  # Latin-1
        2,
        "is not UTF-8 text (byte 0xe9 at offset 27); save it as UTF-8",
    ),
    (
        b"- a\n- b\n",
        1,
        "expected a mapping of settings (ssh, jobs_dir, partition, ...), got a list",
    ),
    (
        b"ssh: [unclosed\n",
        2,
        "invalid YAML: expected ',' or ']', but got '<stream end>' (while parsing a flow "
        "sequence started on line 1)",
    ),
    (
        b"partition: gpu\n---\nqos: x\n",
        2,
        "this file holds 2 YAML documents separated by '---'; a config file is one mapping: "
        "remove the '---' line and keep one set of settings",
    ),
    (
        b"ssh: " + b"[" * 70 + b"]" * 70 + b"\n",
        1,
        "is nested more than 64 levels deep; a config file is a few levels",
    ),
    (
        b"a: &a [1,1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        b"e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
        None,
        "expands to more than 100000 values (YAML aliases used many times); write the values out",
    ),
    (
        b"partition: gpu\x07\n",
        1,
        "invalid YAML: unacceptable character #x0007: special characters are not allowed",
    ),
    (
        b"partition: gpu\n\tqos: x\n",
        2,
        "invalid YAML: found character '\\t' that cannot start any token (while scanning for "
        "the next token)",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    BAD_CONFIGS,
    ids=[f"{index}-{case[2]}" for index, case in enumerate(BAD_CONFIGS)],
)
def test_a_bad_value_is_one_issue_naming_the_line_and_the_key(
    config_file: Path, text: str, line: int, key: str, message: str
) -> None:
    issue = only_issue(config_file, text)
    assert (issue.line, issue.field, issue.message) == (line, key, message)
    assert str(issue) == f"{config_file}:{line}: {key}: {message}"


@pytest.mark.parametrize(("content", "line", "message"), BAD_FILES)
def test_a_file_that_is_no_config_is_one_issue_naming_the_line(
    config_file: Path, content: bytes, line: int | None, message: str
) -> None:
    issue = only_issue(config_file, content)
    assert (issue.line, issue.field, issue.message) == (line, "", message)


def test_every_problem_is_reported_at_once_in_file_order(config_file: Path) -> None:
    found = issues(
        config_file,
        "slurm_timeout: .nan\n"
        "ssh:\n"
        "  host: login\n"
        "  port: 70000\n"
        "  identityfile: ~/.ssh/k\n"
        "gres_map: {H100: h 100}\n"
        "stop_mode: suspnd\n"
        "partiton: gpu\n",
    )
    assert [(issue.line, issue.field) for issue in found] == [
        (1, "slurm_timeout"),
        (4, "ssh.port"),
        (5, "ssh.identityfile"),
        (6, "gres_map.H100"),
        (7, "stop_mode"),
        (8, "partiton"),
    ]


# --------------------------------------------------------------------------------------
# files that cannot be a config file, and konduktor's home
# --------------------------------------------------------------------------------------


def test_a_fifo_is_refused_at_once(config_file: Path) -> None:
    os.mkfifo(config_file)
    started = time.monotonic()
    issue = only_issue_of_existing(config_file)
    assert issue.message == "is a FIFO, not a regular file; give the config file as a file"
    assert time.monotonic() - started < 5


def only_issue_of_existing(path: Path) -> TaskIssue:
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    (issue,) = excinfo.value.issues
    assert issue.file == str(path) and issue.line is None
    return issue


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/dev/zero", "is a device or socket, not a regular file; give the config file as a file"),
        ("/dev/null", "is a device or socket, not a regular file; give the config file as a file"),
        ("/", "is a directory, not a config file"),
    ],
)
def test_devices_and_directories_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, path: str, message: str
) -> None:
    monkeypatch.setenv("KONDUKTOR_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KONDUKTOR_CONFIG", path)
    assert only_issue_of_existing(Path(path)).message == message


def test_a_config_over_1_mib_is_refused(config_file: Path) -> None:
    config_file.write_text("# padding\n" * 110_000)
    issue = only_issue_of_existing(config_file)
    assert issue.message == "is 1100000 bytes; a config file may be at most 1048576 (1 MiB)"


def test_a_dangling_symlink_is_named_not_taken_for_no_config(config_file: Path) -> None:
    config_file.symlink_to("/nonexistent/config.yaml")
    issue = only_issue_of_existing(config_file)
    assert issue.message == (
        "is a symbolic link to /nonexistent/config.yaml, which does not exist: fix the link or "
        "remove it"
    )


def test_konduktor_home_being_a_file_is_one_line_saying_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / ".konduktor"
    home.write_text("oops")
    monkeypatch.setenv("KONDUKTOR_HOME", str(home))
    monkeypatch.delenv("KONDUKTOR_CONFIG", raising=False)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    assert str(excinfo.value) == (
        f"{home}: is a file, but konduktor keeps its job store and settings in this directory: "
        "move the file away, or set KONDUKTOR_HOME to a directory"
    )


def test_an_unreadable_config_is_one_line_saying_what_to_do() -> None:
    """Run as an unprivileged user (root reads anything): 'nobody' when the tests are root."""
    directory = Path(tempfile.mkdtemp(prefix="kd-config-"))
    try:
        directory.chmod(0o755)
        config = directory / "config.yaml"
        config.write_text("partition: gpu\n")
        config.chmod(0o000)
        code = (
            "from konduktor_slurm.config import ConfigError, load_settings\n"
            "try:\n    load_settings()\nexcept ConfigError as exc:\n    print(exc)\n"
        )
        env = {
            **os.environ,
            "KONDUKTOR_HOME": str(directory / "home"),
            "KONDUKTOR_CONFIG": str(config),
        }
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd="/",
            user="nobody" if os.geteuid() == 0 else None,
        )
        assert result.stderr == ""
        assert result.stdout == (
            f"{config}: cannot read the config file (Permission denied): make it readable "
            f"(chmod u+r {config}) or set KONDUKTOR_CONFIG to another file\n"
        )
    finally:
        shutil.rmtree(directory)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            b"partition: gpu\naccount: caf\xe9\n",
            "is not UTF-8 text (byte 0xe9 at offset 27); save it as UTF-8",
        ),
        (b"slurm_timeout: .nan\n", "slurm_timeout: expected a number of seconds"),
        (b"gres_map: {H100: h 100}\n", "gres_map.H100: expected a Slurm GRES type name"),
    ],
)
def test_the_cli_prints_the_one_line_error_with_exit_code_2(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    env = {**os.environ, "KONDUKTOR_HOME": str(tmp_path / "home"), "KONDUKTOR_CONFIG": str(config)}
    result = subprocess.run([KONDUKTOR, "status"], capture_output=True, text=True, env=env)
    assert result.returncode == 2, result
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: {config}:") and expected in line, line


# --------------------------------------------------------------------------------------
# the cache of validated settings
# --------------------------------------------------------------------------------------


def write_settled(path: Path, text: str) -> None:
    """A config file as a laptop has it: written a while ago (cacheable)."""
    path.write_text(text)
    past = time.time() - 60
    os.utime(path, (past, past))


def cache_of(config_file: Path) -> Path:
    return config_file.parent / "home" / CACHE_NAME


def tamper(cache: Path, **values: object) -> None:
    """Change cached values, keeping the key: what load_settings returns then shows whether
    it read the cache."""
    payload = json.loads(cache.read_text())
    payload["values"].update(values)
    cache.write_text(json.dumps(payload))


def test_validated_settings_are_cached_0600_and_read_back(config_file: Path) -> None:
    text = (
        "ssh:\n  host: kdtest@127.0.0.1:2222\n  jump_host: gw\n  accept_new_host_keys: true\n"
        "partition: gpu\ngres_map: {H100: h100}\nstop_mode: signal\nslurm_timeout: 12\n"
    )
    write_settled(config_file, text)
    validated = load_settings()
    cache = cache_of(config_file)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert load_settings() == validated  # read back from the cache: the very same settings
    tamper(cache, partition="from-the-cache")
    assert load_settings().partition == "from-the-cache"


def test_retention_never_survives_the_cache(config_file: Path) -> None:
    write_settled(config_file, "retention: never\n")
    assert load_settings().retention is None
    cache = cache_of(config_file)
    assert json.loads(cache.read_text())["values"]["retention"] == "never"
    assert load_settings().retention is None  # read back from the cache
    tamper(cache, retention=60)
    assert load_settings().retention == 60.0


def test_a_changed_config_is_validated_again_and_the_cache_rewritten(config_file: Path) -> None:
    write_settled(config_file, "partition: gpu\n")
    load_settings()
    tamper(cache_of(config_file), partition="stale")
    write_settled(config_file, "partition: high\n")
    assert load_settings().partition == "high"
    assert json.loads(cache_of(config_file).read_text())["values"]["partition"] == "high"


def test_a_rewrite_keeping_size_and_mtime_is_still_seen(config_file: Path) -> None:
    """``cp -p``, ``rsync -t``, ``touch -r``: the change time gives them away."""
    write_settled(config_file, "partition: low\n")
    load_settings()
    tamper(cache_of(config_file), partition="stale")
    before = config_file.stat()
    time.sleep(0.05)  # past the kernel's timestamp granularity
    config_file.write_text("partition: lox\n")
    os.utime(config_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert config_file.stat().st_size == before.st_size
    assert load_settings().partition == "lox"


def test_a_config_that_became_invalid_is_reported_not_served_from_the_cache(
    config_file: Path,
) -> None:
    write_settled(config_file, "partition: gpu\n")
    load_settings()
    write_settled(config_file, "partition: gpu low\n")
    with pytest.raises(ConfigError):
        load_settings()


def test_an_invalid_or_just_written_config_is_not_cached(config_file: Path) -> None:
    write_settled(config_file, "slurm_timeout: .nan\n")
    with pytest.raises(ConfigError):
        load_settings()
    assert not cache_of(config_file).exists()
    config_file.write_text("partition: gpu\n")  # now: might be edited again this instant
    assert load_settings().partition == "gpu"
    assert not cache_of(config_file).exists()


def test_each_config_file_has_its_own_settings(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "other.yaml"
    write_settled(config_file, "partition: gpu\n")
    write_settled(other, "partition: low\n")
    for _ in range(2):
        monkeypatch.setenv("KONDUKTOR_CONFIG", str(config_file))
        assert load_settings().partition == "gpu"
        monkeypatch.setenv("KONDUKTOR_CONFIG", str(other))
        assert load_settings().partition == "low"


def good_cache_text(config_file: Path, **values: object) -> str:
    payload = json.loads(cache_of(config_file).read_text())
    payload["values"].update(values)
    return json.dumps(payload)


DAMAGE = {
    "empty": lambda good: "",
    "truncated": lambda good: good[: len(good) // 2],
    "not json": lambda good: "partition: evil\n",
    "a list": lambda good: "[]",
    "no values": lambda good: json.dumps({"key": json.loads(good)["key"]}),
    "wrong type": lambda good: good.replace('"partition": "gpu"', '"partition": 5'),
    "bad stop_mode": lambda good: good.replace('"stop_mode": null', '"stop_mode": "evil"'),
    "bad retention": lambda good: good.replace('"retention": null', '"retention": "soon"'),
    "negative retention": lambda good: good.replace('"retention": null', '"retention": -1'),
    "extra value": lambda good: good.replace('"qos": null', '"qos": null, "evil": 1'),
    "other version": lambda good: good.replace('"version": "', '"version": "0.0.0-'),
    "over 64 KiB": lambda good: good[:-1] + ', "pad": "' + "x" * 70_000 + '"}',
    "nested too deep": lambda good: "[" * 60_000,  # json.loads: RecursionError
}


@pytest.mark.parametrize("damage", DAMAGE, ids=list(DAMAGE))
def test_a_damaged_cache_is_ignored_and_rewritten(config_file: Path, damage: str) -> None:
    write_settled(config_file, "partition: gpu\n")
    load_settings()
    cache = cache_of(config_file)
    cache.write_text(DAMAGE[damage](good_cache_text(config_file)))
    assert load_settings().partition == "gpu"
    rewritten = json.loads(cache.read_text())
    assert rewritten["values"]["partition"] == "gpu"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_a_cache_others_may_write_or_a_symlink_is_not_trusted(config_file: Path) -> None:
    """The cache may hold a proxy_command, which is run: only our own 0600-ish file counts."""
    write_settled(config_file, "ssh: login\n")
    load_settings()
    cache = cache_of(config_file)
    planted = {**json.loads(cache.read_text())["values"]["ssh"], "proxy_command": "touch /x"}
    cache.write_text(good_cache_text(config_file, ssh=planted))
    cache.chmod(0o666)
    assert load_settings().ssh.proxy_command is None  # type: ignore[union-attr]
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600  # rewritten
    elsewhere = config_file.parent / "planted.json"
    elsewhere.write_text(good_cache_text(config_file, ssh=planted))
    cache.unlink()
    cache.symlink_to(elsewhere)
    assert load_settings().ssh.proxy_command is None  # type: ignore[union-attr]
    assert not cache.is_symlink()


def imported_modules(
    argv: list[str], env: dict[str, str]
) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=env
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return result, modules


SLOW = {
    "pydantic",
    "pydantic_core",
    "yaml",
    "konduktor_slurm.config_schema",
    "konduktor_slurm.task",
}


def test_status_with_a_cached_or_no_config_imports_neither_pydantic_nor_yaml(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    write_settled(config, "ssh: kdtest@127.0.0.1:2222\npartition: gpu\ngres_map: {H100: h100}\n")
    env = {**os.environ, "KONDUKTOR_HOME": str(tmp_path / "home"), "KONDUKTOR_CONFIG": str(config)}
    first, modules = imported_modules([KONDUKTOR, "status"], env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert modules >= SLOW  # validated once: the probe sees what it looks for
    second, modules = imported_modules([KONDUKTOR, "status"], env)
    assert second.returncode == 0 and "No jobs" in second.stdout, second.stderr[-2000:]
    assert not SLOW & modules, SLOW & modules
    env["KONDUKTOR_CONFIG"] = str(tmp_path / "none.yaml")
    third, modules = imported_modules([KONDUKTOR, "status"], env)
    assert third.returncode == 0 and not SLOW & modules, SLOW & modules


# --------------------------------------------------------------------------------------
# what the settings do
# --------------------------------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.calls = 0

    def home(self) -> str:
        self.calls += 1
        return "/home/remote"


def test_remote_tilde_is_resolved_only_when_needed(config_file: Path) -> None:
    transport = FakeTransport()
    settings = load(config_file, "ssh: login\n")
    assert settings.resolve_jobs_dir(transport) == "/home/remote/.konduktor/jobs"  # type: ignore[arg-type]
    assert transport.calls == 1
    absolute = load(config_file, "ssh: login\njobs_dir: /shared/jobs/\n")
    assert absolute.resolve_jobs_dir(transport) == "/shared/jobs"  # type: ignore[arg-type]
    assert transport.calls == 1  # no round trip for an absolute path


def test_default_partition_account_qos_apply_only_where_the_task_sets_none(
    config_file: Path, tmp_path: Path
) -> None:
    settings = load(config_file, "partition: low\naccount: research\nqos: normal\n")
    bare = parse_task("run: 'true'\n", source="t.yaml", base_dir=tmp_path)
    applied = settings.apply_slurm_defaults(bare)
    assert (applied.slurm.partition, applied.slurm.account, applied.slurm.qos) == (
        "low",
        "research",
        "normal",
    )
    own = parse_task("run: 'true'\nslurm:\n  partition: high\n", source="t.yaml", base_dir=tmp_path)
    assert settings.apply_slurm_defaults(own).slurm.partition == "high"
    assert settings.apply_slurm_defaults(own).slurm.account == "research"


def test_ssh_config_selects_the_ssh_transport_without_importing_paramiko(
    config_file: Path, tmp_path: Path
) -> None:
    config_file.write_text("ssh: kdtest@127.0.0.1:2222\n")
    code = (
        "import sys\n"
        "from konduktor_slurm.service.session import load_config, open_slurm\n"
        "slurm = open_slurm(load_config())\n"
        "print(type(slurm.transport).__name__, slurm.transport.description)\n"
        "print('paramiko' in sys.modules, 'fabric' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == ["SSHTransport ssh kdtest@127.0.0.1:2222", "False False"]
