"""`konduktor launch 'nvidia-smi'`: a command instead of a task file, as SkyPilot takes it.

SkyPilot users run one-off commands with `sky launch --gpus H100:1 nvidia-smi`; before, this
said "nvidia-smi: task file not found". The words that name a task file still do, and a
mistyped task file is still "not found" rather than a command failing on the nodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from konduktor_slurm.cli import main
from konduktor_slurm.service import launch
from konduktor_slurm.service.errors import InputError
from konduktor_slurm.staging import SilentReporter
from konduktor_slurm.task import TaskOverrides
from tests.unit.fake_slurm import FakeSlurm
from tests.unit.test_workflows import make_session


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KONDUKTOR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KONDUKTOR_CONFIG", raising=False)


@pytest.mark.parametrize(
    ("words", "existing", "is_file"),
    [
        (("task.yaml",), (), True),  # missing: "not found", never run as a command
        (("sub/Task.YML",), (), True),
        (("train.yaml",), ("train.yaml",), True),
        (("mytask",), ("mytask",), True),  # an existing file, whatever its name
        (("code",), ("code/",), True),  # a directory: refused as a task file
        (("nvidia-smi",), (), False),
        (("echo hello",), (), False),
        (("echo", "task.yaml"), ("task.yaml",), False),  # several words: always a command
        (("python", "train.py"), ("train.py",), False),
    ],
)
def test_which_words_name_a_task_file(
    words: tuple[str, ...], existing: tuple[str, ...], is_file: bool, tmp_path: Path
) -> None:
    for name in existing:
        if name.endswith("/"):
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_text("run: echo hi\n")
    assert launch.names_task_file(words) is is_file


def test_a_command_is_the_run_of_a_task_named_cmd_and_takes_every_override(
    tmp_path: Path,
) -> None:
    (tmp_path / "code").mkdir()
    task = launch.load_entrypoint(("python", "train.py", "--lr", "3e-4"))
    assert (task.name, task.run, task.workdir, task.num_nodes) == (
        "cmd",
        "python train.py --lr 3e-4",  # joined with spaces, as SkyPilot joins them
        None,
        1,
    )
    overrides = TaskOverrides(
        name="probe", gpus="H100:2", num_nodes="2", envs=["LR=1"], workdir="code"
    )
    task = launch.load_entrypoint(("nvidia-smi -L",), overrides)
    assert (task.name, task.run, task.num_nodes, task.envs) == (
        "probe",
        "nvidia-smi -L",
        2,
        {"LR": "1"},
    )
    assert task.resources.accelerator is not None
    assert str(task.resources.accelerator) == "H100:2"
    assert task.workdir == tmp_path / "code"


@pytest.mark.parametrize("words", [("",), ("  ",), ("", "")])
def test_a_blank_command_is_refused(words: tuple[str, ...]) -> None:
    with pytest.raises(InputError, match="give a task file or a command"):
        launch.load_entrypoint(words)


@pytest.mark.parametrize("words", [("task.yaml", "extra"), ("t.YML", "--lr", "3")])
def test_words_after_a_task_file_are_refused_not_run(words: tuple[str, ...]) -> None:
    with pytest.raises(InputError, match="is a task file, and a launch takes one task"):
        launch.load_entrypoint(words)


def test_a_bad_override_of_a_command_names_the_flag() -> None:
    with pytest.raises(InputError, match="command line: --gpus: expected") as caught:
        launch.load_entrypoint(("echo",), TaskOverrides(gpus="H100:x"))
    assert "nothing was submitted" in str(caught.value)


def test_a_script_given_alone_is_refused_with_how_to_run_it(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("import os\nprint(os.getcwd())\n")
    (tmp_path / "run.sh").write_text("#!/bin/bash\nset -e\necho 'a: b' | tr : =\n")
    with pytest.raises(InputError) as caught:
        launch.load_entrypoint(("train.py",))
    assert "konduktor launch --workdir . 'python train.py'" in str(caught.value)
    with pytest.raises(InputError) as caught:
        launch.load_entrypoint(("run.sh",))
    assert "konduktor launch --workdir . 'bash run.sh'" in str(caught.value)
    # The hint's command is a command: it runs the script from the workdir.
    task = launch.load_entrypoint(("python train.py",), TaskOverrides(workdir="."))
    assert (task.run, task.workdir) == ("python train.py", tmp_path)


@pytest.mark.parametrize(
    ("filename", "text", "message"),
    [
        ("mytask", "name: x\nrun: 3\n", "run: expected a string"),  # a task with a mistake
        ("task.yaml", "- a\n- b\n", "expected a mapping"),  # YAML-named: no script hint
        ("tain.yaml", None, "task file not found"),
    ],
)
def test_task_files_with_mistakes_get_no_script_hint(
    filename: str, text: str | None, message: str, tmp_path: Path
) -> None:
    if text is not None:
        (tmp_path / filename).write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        launch.load_entrypoint((filename,))
    assert "to run" not in str(caught.value)


def test_a_command_is_submitted_like_a_task(tmp_path: Path) -> None:
    fake = FakeSlurm()
    session = make_session(tmp_path, fake)
    task = launch.load_entrypoint(("echo", "'it works'"), TaskOverrides(gpus="H100:1"))
    job = launch.submit(session, launch.prepare(session, task), SilentReporter())
    assert job.name.startswith("cmd-") and job.slurm_job_id == "100"
    (script,) = fake.scripts
    assert "--gres=gpu:h100:1" in script
    # The command reaches the node quoted, whole, as a task's run does.
    assert "konduktor_user_shell '\"'\"'echo '\"'\"'\"'\"'\"'\"'\"'\"'it works" in script


def test_cli_dryrun_renders_a_command_and_says_it_is_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["launch", "--dryrun", "--gpus", "H100:8", "--", "nvidia-smi", "-L"]
    )
    assert result.exit_code == 0, result.output
    assert "#SBATCH --job-name=cmd-" in result.output
    assert "#SBATCH --gres=gpu:h100:8" in result.output
    assert "nvidia-smi -L" in result.output
    missing = CliRunner().invoke(main, ["launch", "--dryrun", "tain.yaml"])
    assert missing.exit_code == 2 and "tain.yaml: task file not found" in missing.output
    none = CliRunner().invoke(main, ["launch", "--dryrun"])
    assert none.exit_code == 2 and "Missing argument 'TASK_YAML | COMMAND...'" in none.output


def test_cli_launch_prints_the_command_before_asking(tmp_path: Path) -> None:
    # No terminal and no -y: refused after the summary, nothing submitted.
    result = CliRunner().invoke(main, ["launch", "echo", "hi"])
    assert result.exit_code == 2, result.output
    assert "Command (no task file): echo hi" in result.output
    assert "Task 'cmd':" in result.output
    assert "pass -y" in result.output
