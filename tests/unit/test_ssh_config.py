"""How ~/.ssh/config and config.yaml become fabric connections, checked without connecting.

Each test writes its own ``~/.ssh/config`` in a temporary HOME and looks at the fabric
``Connection`` chain the SSH transport would open: host, user, port, keys, jump hosts in the
order they are reached, and the ProxyCommand that would run.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from konduktor_slurm.config import SSHSettings
from konduktor_slurm.ssh import SSHError, SSHTransport

SSH_CONFIG = """\
Host login
  HostName login.example.org
  User alice
  Port 2200
  IdentityFile ~/.ssh/login_key
  ProxyJump bastion,carol@[::1]:2022

Host bastion
  HostName bastion.example.org
  User bob
  IdentityFile ~/.ssh/bastion_key

Host proxied
  HostName inner.example.org
  User dave
  ProxyCommand nc -X 5 -x socks.example.org:1080 %h %p
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(SSH_CONFIG)
    return tmp_path


def planned(**settings: object):
    """The login node's connection as the transport builds it (nothing is opened)."""
    return SSHTransport(SSHSettings(**settings)).connection()  # type: ignore[arg-type]


def chain(connection) -> list:
    """Every hop, the first one reached first, the login node last."""
    hops = [connection]
    while hops[0].gateway:
        assert not isinstance(hops[0].gateway, str), hops[0].gateway
        hops.insert(0, hops[0].gateway)
    return hops


def describe(connection) -> tuple:
    return (connection.original_host, connection.host, connection.user, connection.port)


def test_an_alias_resolves_hostname_user_port_key_and_jump_hosts_in_order(home: Path) -> None:
    target = planned(host="login")
    hops = chain(target)
    # ProxyJump a,b: a is reached first, b through a, the login node through b (as ssh -J).
    assert [describe(hop) for hop in hops] == [
        ("bastion", "bastion.example.org", "bob", 22),
        ("::1", "::1", "carol", 2022),
        ("login", "login.example.org", "alice", 2200),
    ]
    assert target.connect_kwargs["key_filename"] == [f"{home}/.ssh/login_key"]
    assert target.connect_kwargs["look_for_keys"] is False  # only the configured key
    assert hops[0].connect_kwargs["key_filename"] == [f"{home}/.ssh/bastion_key"]
    assert not hops[1].connect_kwargs["key_filename"]  # no key given: agent and ~/.ssh/id_*
    assert hops[1].connect_kwargs["look_for_keys"] is True
    for hop in hops:
        assert hop.connect_kwargs["allow_agent"] is True
        assert "password" not in hop.connect_kwargs
        assert hop.connect_timeout == 15.0
        assert hop.connect_kwargs["banner_timeout"] == 15.0
        assert hop.known_hosts == f"{home}/.ssh/known_hosts"


def test_config_yaml_wins_over_ssh_config(home: Path) -> None:
    target = planned(
        host="login",
        user="zed",
        port=2222,
        identity_file="~/keys/cluster",
        jump_host="none",
        known_hosts="~/kh",
        connect_timeout=2.5,
    )
    assert describe(target) == ("login", "login.example.org", "zed", 2222)
    # config.yaml's key first; ~/.ssh/config's stays as a fallback, as with ssh -i.
    assert target.connect_kwargs["key_filename"] == [
        f"{home}/keys/cluster",
        f"{home}/.ssh/login_key",
    ]
    assert target.gateway is False  # jump_host: none turns ~/.ssh/config's ProxyJump off
    assert target.known_hosts == f"{home}/kh"
    assert target.connect_timeout == 2.5  # not truncated to 2 (fabric's int())


def test_proxy_command_expands_with_the_port_that_is_used(home: Path) -> None:
    target = planned(host="proxied", port=2022)
    assert describe(target) == ("proxied", "inner.example.org", "dave", 2022)
    assert target.gateway == "nc -X 5 -x socks.example.org:1080 inner.example.org 2022"


def test_config_yaml_proxy_command_replaces_an_ssh_config_proxy_jump(home: Path) -> None:
    target = planned(host="login", proxy_command="ssh -W %h:%p -l %r gw.example.org")
    assert target.gateway == "ssh -W login.example.org:2200 -l alice gw.example.org"


def test_config_yaml_jump_hosts_with_ipv6_literals_and_ports(home: Path) -> None:
    target = planned(
        host="proxied",  # its ProxyCommand gives way to config.yaml's jump_host
        identity_file="/keys/k",
        jump_host="kdtest@[::1]:2222, ssh://gw.example.org:2200,bastion",
    )
    hops = chain(target)
    assert [describe(hop) for hop in hops] == [
        ("::1", "::1", "kdtest", 2222),
        ("gw.example.org", "gw.example.org", getpass.getuser(), 2200),
        ("bastion", "bastion.example.org", "bob", 22),
        ("proxied", "inner.example.org", "dave", 22),
    ]
    # Jump hosts without a key of their own use config.yaml's; bastion has its own.
    assert [hop.connect_kwargs["key_filename"] for hop in hops] == [
        ["/keys/k"],
        ["/keys/k"],
        [f"{home}/.ssh/bastion_key"],
        ["/keys/k"],
    ]


def test_a_jump_host_on_the_same_address_as_the_login_node(home: Path) -> None:
    target = planned(host="127.0.0.1", port=2222, jump_host="kdtest@127.0.0.1:2200")
    assert [describe(hop) for hop in chain(target)] == [
        ("127.0.0.1", "127.0.0.1", "kdtest", 2200),
        ("127.0.0.1", "127.0.0.1", getpass.getuser(), 2222),
    ]


def test_a_first_jump_host_is_reached_through_its_own_proxy_command(home: Path) -> None:
    (home / ".ssh" / "config").write_text(
        "Host inner\n  ProxyJump outer\nHost outer\n  ProxyCommand connect-proxy %h %p\n"
    )
    target = planned(host="inner")
    assert target.gateway.original_host == "outer"
    assert target.gateway.gateway == "connect-proxy outer 22"


def test_a_catch_all_proxy_jump_does_not_route_the_jump_host_through_itself(home: Path) -> None:
    (home / ".ssh" / "config").write_text("Host *\n  ProxyJump bastion\n")
    target = planned(host="login.example.org")
    assert target.gateway.original_host == "bastion"
    assert target.gateway.gateway is False


@pytest.mark.parametrize(
    ("ssh_config", "needles"),
    [
        ("Host login\n  ProxyJump kdtest@[::1\n", ["ProxyJump for login", "'kdtest@[::1'"]),
        ("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n", ["ProxyJump for", "loop"]),
        ("Host login\n  = no key here\n", ["cannot read ~/.ssh/config", "Unparsable line"]),
    ],
)
def test_a_broken_ssh_config_is_one_line_naming_the_problem(
    home: Path, ssh_config: str, needles: list[str]
) -> None:
    (home / ".ssh" / "config").write_text(ssh_config)
    with pytest.raises(SSHError) as excinfo:
        planned(host="a" if "Host a" in ssh_config else "login")
    message = str(excinfo.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message


def test_each_hop_checks_host_keys_from_the_configured_known_hosts(home: Path) -> None:
    key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known = home / "kh"
    known.write_text(f"[login.example.org]:2200 ssh-ed25519 {key}\n")
    target = planned(host="login", known_hosts=str(known))
    assert target.client.get_host_keys().lookup("[login.example.org]:2200") is not None
    # fabric's own client would accept any new host; ours refuses (no AutoAddPolicy).
    for hop in chain(target):
        assert type(hop.client._policy).__name__ == "_HostKeyPolicy"
