"""config.yaml: every setting, its defaults, and errors that name the key and the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from konduktor_slurm.config import ConfigError, Settings, load_settings, parse_jump_hop
from konduktor_slurm.task import parse_task


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KONDUKTOR_HOME", str(tmp_path / "home"))
    path = tmp_path / "config.yaml"
    monkeypatch.setenv("KONDUKTOR_CONFIG", str(path))
    return path


def load(config_file: Path, text: str) -> Settings:
    config_file.write_text(text)
    return load_settings()


def error(config_file: Path, text: str) -> str:
    config_file.write_text(text)
    with pytest.raises(ConfigError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert message.startswith(f"{config_file}: "), message
    return message


def test_without_a_file_everything_is_local_with_defaults(config_file: Path, tmp_path: Path):
    settings = load_settings()
    assert settings.ssh is None and not settings.remote
    assert settings.jobs_dir == str(tmp_path / "home" / "jobs")
    assert settings.node_workdir == "~/konduktor_workdir"
    assert settings.stop_mode == "auto"
    assert (settings.partition, settings.account, settings.qos) == (None, None, None)
    assert settings.slurm_timeout == 30.0


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
    assert settings.stop_mode == "requeue"
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


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("partiton: gpu\n", ["partiton: unknown setting", "did you mean 'partition'?"]),
        ("ssh:\n  host: x\n  identityfile: k\n", ["ssh.identityfile", "'identity_file'"]),
        ("ssh:\n  host: x\n  password: hunter2\n", ["ssh.password: unknown setting"]),
        ("ssh: 'a b'\n", ["ssh.host", "user@host[:port]"]),
        ("ssh: {user: bob}\n", ["ssh.host: missing"]),
        ("ssh: [a, b]\n", ["ssh: expected a host"]),
        ("ssh: 'login*'\n", ["ssh.host", "is not an ~/.ssh/config alias"]),
        ("ssh: {host: h, jump_host: 'a,[::1'}\n", ["ssh.jump_host: '[::1' is not [user@]host"]),
        (
            "ssh: {host: h, jump_host: gw, proxy_command: nc %h %p}\n",
            ["ssh.jump_host and ssh.proxy_command: set one of them"],
        ),
        ("ssh:\n  host: h\n  proxy_command: |\n    nc %h %p\n    Port 1\n", ["single line"]),
        ("ssh: {host: h, user: 'bob smith'}\n", ["ssh.user: 'bob smith' is not a user name"]),
        ("ssh: 'h:99999'\n", ["ssh.port: expected 1-65535"]),
        ("ssh: {host: h, port: abc}\n", ["ssh.port"]),
        ("ssh: {host: h, accept_new_host_keys: 'yes'}\n", ["accept_new_host_keys: expected true"]),
        ("ssh: h\njobs_dir: relative/dir\n", ["jobs_dir: 'relative/dir' must be absolute"]),
        ("node_workdir: scratch\n", ["node_workdir"]),
        ("stop_mode: suspnd\n", ["stop_mode: expected one of", "did you mean 'suspend'?"]),
        ("partition: 'gpu low'\n", ["partition: 'gpu low' is not a valid Slurm partition"]),
        ("slurm_timeout: soon\n", ["slurm_timeout: expected seconds"]),
        ("gres_map: [h100]\n", ["gres_map: expected a mapping"]),
        ("ssh: [unclosed\n", ["not valid YAML"]),
        ("- just\n- a list\n", ["expected a mapping of settings"]),
    ],
)
def test_bad_config_names_the_key_and_the_file(config_file: Path, text: str, needles) -> None:
    message = error(config_file, text)
    for needle in needles:
        assert needle in message, message


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
