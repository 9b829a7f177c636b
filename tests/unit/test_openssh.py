"""When `konduktor status` uses OpenSSH's client, and what it tells ssh (openssh.py).

The live tests (tests/live/test_ssh.py) run it against the real sshd; these pin down the
choice of client and that every config.yaml setting reaches ssh as ssh.py applies it.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from konduktor_slurm.config import Settings, SSHSettings
from konduktor_slurm.openssh import OpenSSHTransport, openssh_client
from konduktor_slurm.service.session import open_slurm
from konduktor_slurm.ssh import SSHTransport


def options(**settings: object) -> dict[str, str]:
    transport = OpenSSHTransport(SSHSettings(**settings), "/usr/bin/ssh")  # type: ignore[arg-type]
    args = transport._options()
    assert args[::2] == ["-o"] * (len(args) // 2)
    return dict(arg.split("=", 1) for arg in args[1::2])


def test_config_yaml_settings_become_ssh_options() -> None:
    given = options(
        host="login",
        user="alice",
        port=2222,
        identity_file="~/.ssh/id_ed25519",
        known_hosts="~/kh",
        jump_host="bastion:22",
        connect_timeout=7.4,
    )
    home = str(Path.home())
    assert given["User"] == "alice" and given["Port"] == "2222"
    assert given["IdentityFile"] == f"{home}/.ssh/id_ed25519"
    assert given["UserKnownHostsFile"] == f"{home}/kh"
    assert (given["ProxyJump"], given["ProxyCommand"]) == ("bastion:22", "none")
    assert given["ConnectTimeout"] == "7"
    assert given["StrictHostKeyChecking"] == "yes" and given["BatchMode"] == "yes"
    proxied = options(host="login", proxy_command="nc -X 5 -x socks:1080 %h %p")
    assert (proxied["ProxyCommand"], proxied["ProxyJump"]) == (
        "nc -X 5 -x socks:1080 %h %p",
        "none",
    )
    assert options(host="login", accept_new_host_keys=True)["StrictHostKeyChecking"] == "accept-new"
    # Not set in config.yaml: left to ~/.ssh/config, as ssh.py leaves it.
    assert not {"User", "Port", "IdentityFile", "UserKnownHostsFile", "ProxyJump"} & set(
        options(host="login")
    )


def test_a_command_line_is_quoted_once_and_slurm_bin_dir_applies() -> None:
    transport = OpenSSHTransport(SSHSettings(host="login"), "ssh", slurm_bin_dir="/opt/slurm/bin/")
    line = transport._command_line(["squeue", "--name=a b;rm -rf ~"])
    assert shlex.split(line) == ["/opt/slurm/bin/squeue", "--name=a b;rm -rf ~"]
    assert shlex.split(transport._command_line(["grep", "x"])) == ["grep", "x"]


def test_the_client_is_openssh_unless_asked_or_home_is_elsewhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("KONDUKTOR_SSH_CLIENT", raising=False)
    assert openssh_client() is not None  # ssh is installed here, HOME is the account's
    monkeypatch.setenv("KONDUKTOR_SSH_CLIENT", "paramiko")
    assert openssh_client() is None
    monkeypatch.delenv("KONDUKTOR_SSH_CLIENT")
    # OpenSSH reads the account's ~/.ssh/config, paramiko $HOME's: they would differ.
    monkeypatch.setenv("HOME", str(tmp_path))
    assert openssh_client() is None
    monkeypatch.undo()
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh on PATH
    assert openssh_client() is None


def test_only_a_commands_only_session_over_ssh_gets_it(tmp_path: Path) -> None:
    ssh = Settings(
        home=tmp_path, config_path=tmp_path / "c.yaml", jobs_dir="~/j", ssh=SSHSettings("login")
    )
    assert isinstance(open_slurm(ssh, commands_only=True).transport, OpenSSHTransport)
    assert isinstance(open_slurm(ssh).transport, SSHTransport)
    local = Settings(home=tmp_path, config_path=tmp_path / "c.yaml", jobs_dir=str(tmp_path))
    assert type(open_slurm(local, commands_only=True).transport).__name__ == "LocalTransport"
