"""SkyPilot's `sky launch` flags, typed from habit: each does what its task field does, or is
ignored with why, or refused with what to do; none is "No such option" any more."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from konduktor_slurm.cli import main
from konduktor_slurm.task import TaskOverrides, parse_task

TASK = "name: sp\nsetup: echo SETUP-RAN\nrun: echo RUN\n"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KONDUKTOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KONDUKTOR_CONFIG", raising=False)
    (tmp_path / "sp.yaml").write_text(TASK)


@pytest.mark.parametrize(
    ("overrides", "flag", "why"),
    [
        (TaskOverrides(region="us-east-1"), "--region", "no cloud, region or zone"),
        (TaskOverrides(zone="us-east-1a"), "--zone", "no cloud, region or zone"),
        (TaskOverrides(use_spot=True), "--use-spot", "no spot instances"),
        (TaskOverrides(instance_type="p4d.24xlarge"), "--instance-type", "slurm.partition"),
        (TaskOverrides(disk_tier="best"), "--disk-tier", "disks the cluster gives them"),
        (TaskOverrides(network_tier="best"), "--network-tier", "is ignored on Slurm"),
        (TaskOverrides(ports=["8080", "8081"]), "--ports", "ssh -L"),
        (TaskOverrides(idle_minutes=10, down=True), "--idle-minutes-to-autostop", "no cluster"),
        (TaskOverrides(down=True), "--down", "no cluster left to stop"),
    ],
)
def test_resource_flags_get_their_fields_warning_naming_the_flag(
    overrides: TaskOverrides, flag: str, why: str
) -> None:
    plain = parse_task(TASK)
    task = parse_task(TASK, overrides=overrides)
    warnings = [w for w in task.warnings if w.startswith(f"command line: {flag} ")]
    assert len(warnings) == 1 and why in warnings[0], task.warnings
    # Ignored means ignored: the job is the one the file alone makes.
    assert (task.resources, task.slurm, task.setup) == (plain.resources, plain.slurm, plain.setup)


def test_autostop_flags_with_wait_for_none_are_the_time_limit_even_over_the_files() -> None:
    task = parse_task(TASK, overrides=TaskOverrides(idle_minutes=90, wait_for="none"))
    assert task.slurm.time_limit == "0-01:30:00"
    assert any(
        w.startswith("command line: --idle-minutes-to-autostop with wait_for: none")
        for w in task.warnings
    ), task.warnings
    # A file's `autostop: true` (or a number) is replaced by the flags, as in SkyPilot.
    for written in ("true", "10", "{idle_minutes: 5, down: true}"):
        text = f"name: sp\nresources:\n  autostop: {written}\nrun: echo\n"
        task = parse_task(text, overrides=TaskOverrides(idle_minutes=5, wait_for="NONE"))
        assert task.slurm.time_limit == "0-00:05:00", written
    # A time limit set otherwise still wins, and the flag is named as ignored.
    text = "name: sp\nslurm:\n  time_limit: '2:00:00'\nrun: echo\n"
    task = parse_task(text, overrides=TaskOverrides(idle_minutes=5, wait_for="none"))
    assert task.slurm.time_limit == "2:00:00"
    assert task.warnings == (
        "command line: --idle-minutes-to-autostop is ignored on Slurm: the job's time limit "
        "is set in slurm.time_limit, and a Slurm job ends with its run",
    )


def test_no_use_spot_takes_the_files_spot_request_away_without_a_word() -> None:
    text = "name: sp\nresources:\n  use_spot: true\nrun: echo\n"
    assert any("use_spot" in warning for warning in parse_task(text).warnings)
    assert parse_task(text, overrides=TaskOverrides(use_spot=False)).warnings == ()


def test_no_setup_drops_the_tasks_setup_only() -> None:
    task = parse_task(TASK, overrides=TaskOverrides(no_setup=True))
    assert (task.setup, task.run) == (None, "echo RUN")


def test_zone_is_the_partition_when_the_cloud_is_slurm() -> None:
    task = parse_task(TASK, overrides=TaskOverrides(cloud="slurm", zone="high"))
    assert task.slurm.partition == "high"


def test_cluster_flags_are_ignored_with_why_each_and_the_script_is_unchanged() -> None:
    plain = CliRunner().invoke(main, ["launch", "--dryrun", "sp.yaml"])
    result = CliRunner().invoke(
        main,
        ["launch", "--dryrun", "-c", "mycluster", "-r", "--fast", "--async", "--detach-setup",
         "--clone-disk-from", "old", "sp.yaml"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for flag, why in [
        ("-c/--cluster", "-n names it"),
        ("-r/--retry-until-up", "waits in the queue"),
        ("--fast", "no cluster"),
        ("--async", "-d/--detach-run"),
        ("--detach-setup", "before run"),
        ("--clone-disk-from", "disks"),
    ]:
        line = f"Warning: command line: {flag} is ignored on Slurm: "
        assert line in result.output and why in result.output.split(line)[1].splitlines()[0]

    def script(output: str) -> list[str]:  # the rendered script, lines naming the job aside
        return [
            line
            for line in output.splitlines()
            if not line.startswith("Warning:") and "sp-" not in line
        ]

    assert script(result.output) == script(plain.output)


def test_no_setup_on_the_command_line_leaves_setup_out_of_the_script() -> None:
    shown = CliRunner().invoke(main, ["launch", "--dryrun", "sp.yaml"]).output
    skipped = CliRunner().invoke(main, ["launch", "--dryrun", "--no-setup", "sp.yaml"]).output
    assert "SETUP-RAN" in shown and "SETUP-RAN" not in skipped


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--git-url", "https://github.com/x/y"], "clone it in setup"),
        (["--git-ref", "main"], "clone it in setup"),
        (["-i", "ten"], "'ten' is not a valid integer"),
        (["--wait-for", "never"], "'never' is not one of"),
    ],
)
def test_refused_skypilot_flags_say_why(argv: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["launch", "--dryrun", *argv, "sp.yaml"])
    assert result.exit_code == 2 and message in result.output, result.output
