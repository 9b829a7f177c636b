"""The command table: every command loads its module when it runs or is listed, so a
command's start-up pays for its own module only.
"""

from __future__ import annotations

import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import konduktor_slurm.cli as cli
from tests.conftest import KONDUKTOR


def test_the_table_names_every_command_and_the_module_that_defines_it() -> None:
    for module in pkgutil.iter_modules(cli.__path__):
        __import__(f"konduktor_slurm.cli.{module.name}")
    registered = {
        name: command.callback.__module__ if command.callback else type(command).__module__
        for name, command in cli.main.commands.items()
    }
    assert registered == {
        name: f"konduktor_slurm.cli.{module}" for name, module in cli.COMMAND_MODULES.items()
    }


def test_each_command_is_found_by_name_and_help_lists_the_visible_ones() -> None:
    context = click.Context(cli.main)
    for name in cli.COMMAND_MODULES:
        command = cli.main.get_command(context, name)
        assert command is not None and command.name == name
    assert cli.main.get_command(context, "no-such-command") is None
    shown = cli.main.get_help(context)
    for name, command in cli.main.commands.items():
        assert (f"\n  {name} " in shown) != command.hidden, name


def _imported_by(tmp_path: Path, *args: str) -> set[str]:
    """The modules ``konduktor <args>`` imports, on an empty store."""
    env = {**os.environ, "KONDUKTOR_HOME": str(tmp_path / "home")}
    env.pop("KONDUKTOR_CONFIG", None)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", KONDUKTOR, *args],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0 and "jobs" in result.stdout.lower(), result.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }


SLOW = {"logging", "difflib", "jinja2", "pydantic", "yaml", "rich", "fabric", "paramiko"}


def test_status_loads_no_other_command(tmp_path: Path) -> None:
    modules = _imported_by(tmp_path, "status", "--limit", "5")
    commands = {m for m in modules if m.startswith("konduktor_slurm.cli.")}
    assert commands == {"konduktor_slurm.cli.status"}
    assert not SLOW & modules, SLOW & modules


@pytest.mark.parametrize("args", [("status",), ("status", "--json")])
def test_a_bare_status_does_not_even_load_click(tmp_path: Path, args: tuple[str, ...]) -> None:
    # What cron and watch loops run: answered by konduktor_slurm.entry, without click.
    modules = _imported_by(tmp_path, *args)
    assert "click" not in modules
    assert not {m for m in modules if m.startswith("konduktor_slurm.cli")}
    assert not SLOW & modules, SLOW & modules


@pytest.mark.parametrize(
    ("typed", "meant"),
    [("lauch", "launch"), ("stauts", "status"), ("lgos", "logs"), ("dwon", "down"),
     ("reslut", "result"), ("dashbaord", "dashboard")],
)  # fmt: skip
def test_a_mistyped_command_names_the_one_meant(typed: str, meant: str) -> None:
    # A fresh process: the group loads commands lazily, so click's own hint, which looks
    # only at the commands loaded, had none to offer.
    result = subprocess.run(
        [KONDUKTOR, typed, "x"], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 2, result.stderr
    assert f"Error: No such command '{typed}'. Did you mean '{meant}'?" in result.stderr


def test_an_unknown_command_far_from_any_gets_no_guess() -> None:
    result = CliRunner().invoke(cli.main, ["frobnicate"])
    assert result.exit_code == 2
    assert (
        "No such command 'frobnicate'.\n" in result.output and "Did you mean" not in result.output
    )


@pytest.mark.parametrize("name", sorted(cli.SKYPILOT_TWINS))
def test_skypilots_commands_of_other_names_point_to_their_twins(name: str) -> None:
    result = CliRunner().invoke(cli.main, [name, "launch", "task.yaml"])
    assert result.exit_code == 2, result.output
    assert f"Here, SkyPilot's `sky {name}` is `konduktor " in result.output
    # Every konduktor command it names is one that exists.
    named = re.findall(r"`konduktor (\w+)", result.output)
    named += re.findall(r"`(\w+)`", result.output.split("is `konduktor", 1)[1])
    context = click.Context(cli.main)
    for command in named:
        assert cli.main.get_command(context, command) is not None, command


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["mycluster", "3"], 2), (["mycluster", "3", "--follow"], 2), (["a", "--", "-y"], 2)],
)
def test_logs_given_skypilots_cluster_and_job_id_says_what_to_type(
    argv: list[str], words: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `sky logs CLUSTER JOB_ID` from habit: a usage error that names konduktor's form,
    # before any store or Slurm is touched.
    monkeypatch.setenv("KONDUKTOR_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli.main, ["logs", *argv])
    assert result.exit_code == 2, result.output
    assert f"logs takes one JOB_NAME, got {words} words" in result.output
    assert "is `konduktor logs JOB_NAME` here" in result.output
    assert not (tmp_path / "home").exists()
