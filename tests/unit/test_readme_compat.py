"""The README's compatibility tables cover every Konduktor and SkyPilot field and flag, and
every flag the table calls supported is one the CLI really takes."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from konduktor_slurm.cli import main
from konduktor_slurm.task import compat

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README[README.index("## Coming from Konduktor or SkyPilot") :]
SECTION = SECTION[: SECTION.index("\n## ", 5)]

# Konduktor's CLI (konduktor --help of konduktor-nightly, autumn 2026) plus SkyPilot's --secret.
KONDUKTOR_FLAGS = {
    "launch": [
        "--dryrun", "-d", "--detach-run", "-n", "--name", "--workdir", "--cloud", "--num-nodes",
        "--max-restarts", "--completions", "--cpus", "--memory", "--disk-size", "--image-id",
        "--env-file", "--env", "--gpus", "-y", "--yes", "-s", "--skip-image-check", "--wait",
        "--wait-timeout", "--secret",
    ],
    "status": ["-u", "--all-users", "-l", "--limit", "--after", "--before", "-s",
               "--status-filter"],
    "logs": ["--follow", "--no-follow", "-n", "--num-lines", "--num_lines", "-N",
             "--node-rank", "--node_rank", "--start-offset", "--status"],
    "stop": ["-a", "--all", "--all-users", "--all_users", "-y", "--yes"],
    "start": ["-a", "--all", "--all-users", "--all_users", "-y", "--yes"],
    "down": ["-a", "--all", "--all-users", "--all_users", "-y", "--yes"],
    "result": ["--timeout"],
}  # fmt: skip
# SkyPilot's `sky launch` flags (sky/client/cli/flags.py and command.py, autumn 2026) that
# are not Konduktor's too: each must be in the table and taken, never "No such option".
SKYPILOT_LAUNCH_FLAGS = [
    "--infra", "--region", "--zone", "--use-spot", "--no-use-spot", "-t", "--instance-type",
    "--disk-tier", "--network-tier", "--ports", "-i", "--idle-minutes-to-autostop", "--down",
    "--wait-for", "-c", "--cluster", "-r", "--retry-until-up", "--fast", "--async",
    "--detach-setup", "--clone-disk-from", "--git-url", "--git-ref", "--no-setup",
    "--num-jobs",
]  # fmt: skip
KONDUKTOR_COMMANDS = [
    "status", "logs", "result", "launch", "down", "stop", "start", "check", "secret", "serve",
    "worker", "cluster", "login", "logout", "whoami",
]  # fmt: skip


def rows(title: str) -> list[str]:
    table = SECTION[SECTION.index(title) :]
    return [line for line in table.splitlines() if line.startswith("| ")]


def test_every_ignored_field_is_in_the_table_as_ignored() -> None:
    for entry in compat.IGNORED:
        name = entry.path[-1]
        matching = [
            row
            for row in rows("### Task fields")
            if f"`{name}`" in row or (f"{'.'.join(entry.path)}`" in row)
        ]
        assert matching, entry.path
        assert any("ignored" in row for row in matching), (entry.path, matching)


def test_every_refused_field_is_in_the_table_as_refused() -> None:
    for path in compat.REFUSED:
        matching = [row for row in rows("### Task fields") if path[-1] in row]
        assert any("**refused**" in row for row in matching), path
    for feature in ("cloud storage", "tpu", "pipeline", "git repository", "Alternatives"):
        assert any(
            feature.lower() in row.lower() and "refused" in row for row in rows("### Task fields")
        ), feature


def _command(name: str) -> click.Command | None:
    return main.get_command(click.Context(main), name)


def _options(command: click.Command | None) -> set[str]:
    assert command is not None
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


@pytest.mark.parametrize("command", sorted(KONDUKTOR_FLAGS))
def test_every_konduktor_flag_is_in_the_table_and_taken_by_the_cli(command: str) -> None:
    table = "\n".join(rows("### Command line"))
    ours = _options(_command(command))
    for flag in KONDUKTOR_FLAGS[command]:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", table), (command, flag)
        assert flag in ours, (command, flag)


def test_every_konduktor_command_answers() -> None:
    table = "\n".join(rows("### Command line"))
    for name in KONDUKTOR_COMMANDS:
        assert _command(name) is not None, name
        assert f"`{name}" in table or f"`{name}`" in table or name in table, name


def test_skypilots_status_refresh_is_in_the_table_and_taken_by_the_cli() -> None:
    table = "\n".join(rows("### Command line"))
    assert "`status -r/--refresh` (SkyPilot)" in table
    assert {"-r", "--refresh"} <= _options(_command("status"))


def test_every_skypilot_launch_flag_is_in_the_table_and_taken_by_the_cli() -> None:
    table = "\n".join(rows("### Command line"))
    ours = _options(_command("launch"))
    for flag in SKYPILOT_LAUNCH_FLAGS:
        assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", table), flag
        assert flag in ours, flag
