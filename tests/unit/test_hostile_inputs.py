"""A generated corpus of malformed and hostile input, table-driven.

Each case feeds one bad or hostile value where a user (or Slurm) could put it: a task field,
a command-line override, an env file line, a config.yaml key, a command-line option, a line
of squeue/sacct output. What must hold for every one of them:

* no traceback: a bad value is a TaskError/ConfigError/usage error naming where it is
  (file and line or field, or the option), and Slurm output that cannot be read is skipped
  or a SlurmError, never another exception;
* no execution: a value that is accepted reaches the sbatch script quoted, the script passes
  ``bash -n``, and nothing in it runs the value (checked by rendering and syntax-checking).

The corpus size is asserted, so it cannot shrink unnoticed. Damaged stores are in
test_store_damage.py; faults of the live cluster in tests/live/test_faults.py.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from konduktor_slurm.cli import main
from konduktor_slurm.config import ConfigError, load_settings
from konduktor_slurm.render import JobPlan, render_sbatch
from konduktor_slurm.slurm import (
    SlurmError,
    parse_partitions,
    parse_runs,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
)
from konduktor_slurm.task import COMMAND_LINE, TaskError, TaskOverrides, parse_task

# Values no field should take, and values that are text but hostile.
WRONG = [
    "[]",
    "{}",
    "[1, [2, [3]]]",
    "{a: {b: {c: 1}}}",
    "true",
    "null",
    "-1",
    "0",
    "1e308",
    "-1e308",
    ".nan",
    ".inf",
    "-.inf",
    "99999999999999999999999",
    "'  '",
    "''",
    "!!binary aGVsbG8=",
    "2024-01-01",
    "12:30:45",
    "0x1F",
    "0o777",
    "'\\u202e evil'",
    '"a\\nb"',
    '"\\t"',
    "'$(touch /tmp/pwned)'",
    "'`id`'",
    "'; rm -rf / #'",
    "'../../etc/passwd'",
    "'x' ",
]
FIELDS = [
    "name",
    "num_nodes",
    "workdir",
    "resources.cpus",
    "resources.memory",
    "resources.accelerators",
    "resources.job_config.max_restarts",
    "resources.job_config.completions",
    "resources.job_config.checkpoint_signal",
    "resources.job_config.checkpoint_grace",
    "resources.job_config.checkpoint_dir",
    "slurm.partition",
    "slurm.account",
    "slurm.qos",
    "slurm.time_limit",
    "slurm.constraint",
    "slurm.sbatch_options",
    "envs",
    "secrets",
    "file_mounts",
    "resources.infra",  # SkyPilot's: slurm/<cluster>/<partition> is read
    "config",  # SkyPilot's per-task settings
    "config.slurm",
    "config.slurm.sbatch_options",
    "config.slurm.sbatch_options.exclusive",
    "autostop.idle_minutes",  # with wait_for: none, SkyPilot's hard stop: a time limit
    "autostop.wait_for",
]
HOSTILE_TEXT = [
    '"; touch /tmp/pwned; echo "',
    "$(touch /tmp/pwned)",
    "`touch /tmp/pwned`",
    "a\nb",
    "a\x00b",
    "\x1b[31mred",
    "'",
    '"',
    "\\",
    "${HOME}",
    "!!",
    "é" * 50,
    "\u202e",
    "x" * 5000,
]


def nest(field: str, value: str) -> str:
    """``a.b.c`` and a YAML value -> the lines of a task that sets it."""
    parts = field.split(".")
    lines = []
    for depth, part in enumerate(parts[:-1]):
        lines.append("  " * depth + f"{part}:")
    lines.append("  " * (len(parts) - 1) + f"{parts[-1]}: {value}")
    return "\n".join(lines) + "\n"


TASK_CASES = [
    pytest.param(f"run: echo hi\n{nest(field, value)}", id=f"{field}={value[:20]}")
    for field, value in itertools.product(FIELDS, WRONG)
    if not (field == "name" and value in ("null",))
]
TEXT_CASES = [
    pytest.param(field, text, id=f"{field}:{index}")
    for field, (index, text) in itertools.product(
        ["name", "run", "setup", "envs.V", "secrets.S", "slurm.partition", "slurm.constraint",
         "event_callback", "file_mounts./data/x", "slurm.sbatch_options.mail-user",
         "resources.job_config.checkpoint_dir", "resources.infra",
         "config.slurm.sbatch_options.mail_user", "config.slurm.sbatch_options.time",
         "config.slurm.sbatch_options.account", "config.slurm.sbatch_options.constraint"],
        enumerate(HOSTILE_TEXT),
    )
]  # fmt: skip
OVERRIDE_CASES = [
    pytest.param(attribute, value, id=f"{attribute}={value[:15]!r}")
    for attribute, value in itertools.product(
        ["name", "num_nodes", "cpus", "memory", "gpus", "max_restarts", "completions",
         "image_id", "disk_size", "cloud", "infra", "region", "zone", "instance_type",
         "disk_tier", "network_tier", "idle_minutes", "wait_for"],
        ["", "-1", "nan", "1e400", "H100:0", "tpu-v3-8", "a b", "$(id)", "\x00", "9" * 30],
    )
]  # fmt: skip


def checked(task_text: str, tmp_path: Path, overrides: TaskOverrides | None = None) -> None:
    """The task is refused with located issues, or accepted and renders a safe script."""
    try:
        task = parse_task(task_text, "task.yaml", base_dir=tmp_path, overrides=overrides)
    except TaskError as exc:
        assert exc.issues, task_text
        for issue in exc.issues:
            assert issue.file in ("task.yaml", COMMAND_LINE) or issue.file.endswith(".env")
            assert issue.line is not None or issue.field or issue.file == COMMAND_LINE, issue
            assert issue.message and "Traceback" not in issue.message
        return
    job_dir = tmp_path / "job"
    plan = JobPlan("t-1a2b", str(job_dir), str(job_dir / "job.log"), workdir=None)
    try:
        script = render_sbatch(task, plan)
    except ValueError as exc:  # RenderError: only for values the task layer lets through
        pytest.fail(f"accepted but not renderable: {exc}")
    syntax = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    assert not Path("/tmp/pwned").exists()


@pytest.mark.parametrize("task_text", TASK_CASES)
def test_wrong_values_in_every_field(task_text: str, tmp_path: Path) -> None:
    checked(task_text, tmp_path)


@pytest.mark.parametrize(("field", "text"), TEXT_CASES)
def test_hostile_text_in_text_fields(field: str, text: str, tmp_path: Path) -> None:
    checked(f"run: echo hi\n{nest(field, json.dumps(text))}", tmp_path)


@pytest.mark.parametrize(("attribute", "value"), OVERRIDE_CASES)
def test_hostile_command_line_overrides(attribute: str, value: str, tmp_path: Path) -> None:
    checked("run: echo hi\n", tmp_path, TaskOverrides(**{attribute: value}))


# A Slurm target given SkyPilot's ways on the command line: the partition and cluster named.
TARGET_CASES = [
    pytest.param(overrides, id=f"{how}={value[:15]!r}")
    for value in ["", "a b", "$(id)", "\x00", "x\x1b[2J", "-p", "9" * 300, "high;rm -rf ~"]
    for how, overrides in [
        ("zone", TaskOverrides(cloud="slurm", zone=value)),
        ("region", TaskOverrides(cloud="slurm", region=value, zone="high")),
        ("infra", TaskOverrides(infra=f"slurm/{value}/{value}")),
    ]
]


@pytest.mark.parametrize("overrides", TARGET_CASES)
def test_hostile_slurm_targets_on_the_command_line(
    overrides: TaskOverrides, tmp_path: Path
) -> None:
    checked("run: echo hi\n", tmp_path, overrides)


ENV_LINES = [
    "NOEQUALS",
    "=value",
    "1BAD=x",
    "BASH_ENV=/tmp/x",
    "KONDUKTOR_JOB_DIR=/etc",
    "A=$(touch /tmp/pwned)",
    "export",
    "A='unclosed",
    "A=\x00",
    "A=" + "x" * 10000,
    "HOME=/etc",
    "  =  ",
]


@pytest.mark.parametrize("line", ENV_LINES)
def test_hostile_env_file_lines(line: str, tmp_path: Path) -> None:
    env_file = tmp_path / "vars.env"
    env_file.write_text(f"OK=1\n{line}\n")
    checked("run: echo hi\n", tmp_path, TaskOverrides(env_file=env_file))


CONFIGS = [
    "ssh: {host: 'x', identity_file: \"\\0\"}",
    "ssh: {host: ''}",
    "ssh: {host: 'a b'}",
    "ssh: {host: 'x', port: 0}",
    "ssh: {host: 'x', port: 70000}",
    "ssh: {host: 'x', port: 'ssh'}",
    "ssh: {host: 'x', connect_timeout: .nan}",
    "ssh: {host: 'x', jump_host: '[::1'}",
    "ssh: {host: 'x', proxy_command: \"a\\nb\"}",
    "ssh: {host: 'x', unknown: 1}",
    "slurm_timeout: .nan",
    "slurm_timeout: -5",
    "slurm_timeout: 1e400",
    "slurm_timeout: []",
    "jobs_dir: 'relative/dir'",
    "jobs_dir: '/tmp/a b'",
    "jobs_dir: '/tmp/../etc'",
    "node_workdir: '$(id)'",
    "gres_map: {H100: 'h100 extra'}",
    "gres_map: [1, 2]",
    "gres_map: {H100: null}",
    "stop_mode: nap",
    "stop_mode: [auto]",
    "partition: 'a b'",
    "account: '$(id)'",
    "gres_map: {'$(id)': h100}",
    "slurm_bin_dir: relative",
    "unknown_key: 1",
    "[1, 2]",
    "just text",
    "a: 1\na: 2",
    "{{{",
]


@pytest.mark.parametrize("text", CONFIGS)
def test_hostile_config_values(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(text + "\n")
    monkeypatch.setenv("KONDUKTOR_HOME", str(tmp_path))
    monkeypatch.setenv("KONDUKTOR_CONFIG", str(config))
    with pytest.raises(ConfigError) as info:
        load_settings()
    for line in str(info.value).splitlines():
        assert line.startswith(str(config)), line


OPTIONS = [
    ["status", "--after", "1e400d"],
    ["status", "--before", "100000000d"],
    ["status", "--after", "yesterday"],
    ["status", "-l", "0"],
    ["status", "-l", "-5"],
    ["status", "-s", "sleeping"],
    ["report", "--since", "100000000d"],
    ["report", "--since", "1e400d"],
    ["report", "--stuck-after", "-1h"],
    ["report", "--stuck-after", "nan"],
    ["report", "--format", "pdf"],
    ["report", "--log-lines", "many"],
    ["logs", "x", "-n", "-1"],
    ["logs", "x", "-N", "-1"],
    ["logs", "x", "-n", "1e9"],
    ["logs", "x", "--start-offset", "5"],
    ["result", "x", "--timeout", "-1"],
    ["result", "x", "--timeout", "nan"],
    ["launch", "t.yaml", "--wait-timeout", "0"],
    ["launch", "t.yaml", "--wait-timeout", "inf"],
    ["launch", "t.yaml", "-d", "--wait"],
    ["launch", "-y", ""],
    ["launch", "-y", " ", "\t"],
    ["launch", "-y", "--gpus", "H100:x", "echo", "hi"],
    ["launch", "-y", "--num-nodes", "0", "nvidia-smi"],
    ["launch", "-y", "t.yaml", "--grid", "LR=1e-3,3e-4,"],
    ["launch", "-y", "t.yaml", "--grid", "LR=1e-3,,3e-4"],
    ["launch", "-y", "t.yaml", "--grid", "SEED=0,1,0"],
    ["launch", "-y", "t.yaml", "--grid", ","],
    ["stop", "--mode", "nap", "x"],
    ["stop"],
    ["stop", "-a", "x"],
    ["start"],
    ["down"],
    ["secret", "create", "x"],
    ["serve", "up"],
]


@pytest.mark.parametrize("argv", OPTIONS, ids=lambda argv: " ".join(argv))
def test_bad_command_line_options_are_one_usage_line(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KONDUKTOR_HOME", str(tmp_path))
    monkeypatch.delenv("KONDUKTOR_CONFIG", raising=False)
    (tmp_path / "t.yaml").write_text("run: echo hi\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 2, (argv, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


SQUEUE_GARBAGE = [
    "",
    "\n\n\n",
    "garbage",
    "\x1f" * 40,
    "1\x1f" * 18,
    "1\x1fRUNNING\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\n",
    "abc\x1fPENDING\x1fReason\x1f99999999999999999999999999\x1f-1\x1fx\x1f\x1f"
    "not-a-date\x1f\x1f\x1f\x1fu\x1fn\x1fc\x1fNaN\x1fgres:gpu:x:y\x1fx\x1fzz\x1f\n",
    "\xff\xfe\x00binary",
    "1|RUNNING|None",
    "JOB\x1fRUNNING\x1f" + "x" * 100000 + "\x1f\n",
]
SACCT_GARBAGE = [
    "",
    "garbage\n",
    "1\x1fCOMPLETED\x1fa:b:c\x1fnot-a-date\x1f\x1f\x1f\x1f\x1f\n",
    "1.batch\x1fOUT_OF_MEMORY\x1f\n",
    "1\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\n",
    "\x1f\x1f\x1f\x1f\x1f\x1f\x1f\x1f\n" * 3,
    "1\x1fCANCELLED by notanumber\x1f0:0\x1f\x1f\x1f\x1f\x1f\x1f\n",
    "1\x1fRUNNING\x1f999999999999999999999:1\x1f\x1f\x1f\x1f\x1f\x1f\n",
]
RUNS_GARBAGE = [
    "",
    "1\x1fname\x1fuser\x1fCOMPLETED\x1f\x1f\x1f\x1fNaN\x1fINVALID\x1f-3\x1fgres/gpu=x\x1f\n",
    "1\x1fa\x1fb\x1fc\n",
    "\x1f" * 11 + "\n",
]
PARTITION_GARBAGE = ["", "gpu*\x1f\n", "\x1f\x1f\x1f\x1f\n", "x\x1fup\x1fmany\x1f(null)\x1f\n"]
SBATCH_GARBAGE = ["", "   ", "abc", "12;", ";cluster", "Submitted batch job 12", "-1"]


@pytest.mark.parametrize(
    ("parse", "output"),
    [*((parse_squeue, text) for text in SQUEUE_GARBAGE),
     *((parse_sacct, text) for text in SACCT_GARBAGE),
     *((parse_runs, text) for text in RUNS_GARBAGE),
     *((parse_partitions, text) for text in PARTITION_GARBAGE),
     *((parse_sbatch, text) for text in SBATCH_GARBAGE)],
)  # fmt: skip
def test_hostile_slurm_output_never_crashes_a_parser(parse: Any, output: str) -> None:
    with contextlib.suppress(SlurmError):  # a clear "unexpected output" is fine; nothing else
        parse(output)


def test_the_corpus_is_large() -> None:
    cases = (
        len(TASK_CASES)
        + len(TEXT_CASES)
        + len(OVERRIDE_CASES)
        + len(TARGET_CASES)
        + len(ENV_LINES)
        + len(CONFIGS)
        + len(OPTIONS)
        + len(SQUEUE_GARBAGE)
        + len(SACCT_GARBAGE)
        + len(RUNS_GARBAGE)
        + len(PARTITION_GARBAGE)
        + len(SBATCH_GARBAGE)
    )
    assert cases >= 700, cases


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--after", "1e400d"],
        ["report", "--since", "100000000d"],
        ["launch", "/dev/zero"],
        ["launch", "--env-file", "/dev/zero", "t.yaml"],
        ["launch", "t.yaml", "--env", "A=\udcff"],
        ["logs", "nosuchjob"],
        ["result", "nosuchjob"],
    ],
    ids=lambda argv: " ".join(argv)[:40],
)
def test_the_real_command_prints_one_line_for_hostile_arguments(
    argv: list[str], tmp_path: Path
) -> None:
    """The installed console script (the `run()` entry point), as cron or a user runs it."""
    (tmp_path / "t.yaml").write_text("run: echo hi\n")
    env = {"KONDUKTOR_HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    konduktor = str(Path(sys.executable).parent / "konduktor")
    proc = subprocess.run(
        [konduktor, *argv],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, (argv, stderr)
    assert "Traceback" not in stderr
    assert stderr.count("Error") == 1, stderr
