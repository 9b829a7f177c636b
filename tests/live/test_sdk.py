"""The Python SDK (`import konduktor_slurm as konduktor`) driven from Python, on the login
node, against the real cluster: Konduktor's names, its return values and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import konduktor_slurm as konduktor
from tests.conftest import KONDUKTOR
from tests.live.test_launch import unique

pytestmark = [pytest.mark.live, pytest.mark.usefixtures("cluster")]

WORLD = Path(__file__).resolve().parent.parent / "fixtures" / "tasks" / "world"


@pytest.fixture(autouse=True)
def own_store(kd_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KONDUKTOR_HOME", str(kd_home))
    monkeypatch.delenv("KONDUKTOR_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)


def test_launch_status_wait_result_and_logs_with_konduktors_names() -> None:
    task = konduktor.Task(
        unique("sdk"),
        run='echo "hello from $RANK"\n'
        'if [ "$RANK" = 0 ]; then python3 -c "import json,os; '
        "json.dump({'rank0': True, 'nodes': int(os.environ['NUM_NODES'])}, "
        "open(os.environ['KONDUKTOR_OUTPUT_DIR'] + '/result.json', 'w'))\"; fi\n",
        num_nodes=2,
    )
    task.set_resources(konduktor.Resources(accelerators="H100:1", cpus=1, cloud="kubernetes"))
    assert any("resources.cloud is ignored on Slurm" in w for w in task.warnings)
    job = konduktor.launch(task, detach_run=True)
    assert isinstance(job, konduktor.Job) and isinstance(job, str)
    assert job.startswith(task.name + "-")
    assert job.status() in {"PENDING", "ACTIVE", "COMPLETED"}
    assert job.wait(timeout=120) == "succeeded"
    assert job.result() == {"rank0": True, "nodes": 2}
    assert job.logs(node_rank=1) == "1: hello from 1\n"
    assert job.status() == "COMPLETED"


def test_failures_raise_konduktors_errors() -> None:
    failing = konduktor.launch(konduktor.Task(unique("sdkfail"), run="exit 3"), detach_run=True)
    assert failing.wait(timeout=120) == "failed"
    with pytest.raises(konduktor.JobFailedError, match=r"FAILED \(rank 0 exited 3\)"):
        failing.result()
    silent = konduktor.launch(konduktor.Task(unique("sdknone"), run="true"), detach_run=True)
    with pytest.raises(konduktor.NoResultReportedError):
        silent.result(timeout=120)
    slow = konduktor.launch(konduktor.Task(unique("sdkslow"), run="sleep 60"), detach_run=True)
    try:
        with pytest.raises(konduktor.ResultTimeoutError) as info:
            slow.result(timeout=2)
        assert isinstance(info.value, TimeoutError)
        assert isinstance(info.value, konduktor.KonduktorReturnError)
    finally:
        slow.down()
    assert slow.status() == "FAILED"


def test_stop_and_start_from_python() -> None:
    job = konduktor.launch(konduktor.Task(unique("sdkstop"), run="sleep 90"), detach_run=True)
    try:
        assert job.stop() == "SUSPENDED (by user)"
        assert job.start() in {"ACTIVE", "PENDING"}
    finally:
        job.down()


def test_from_yaml_and_invalid_tasks(tmp_path: Path) -> None:
    task = konduktor.Task.from_yaml(WORLD / "konduktor-setup-only.yaml")
    assert task.name == "warm-cache"
    job = konduktor.launch(task, detach_run=True)
    assert job.wait(timeout=120) == "succeeded"
    bad = konduktor.Task("bad name", run=["a", "list"], num_nodes=0)
    with pytest.raises(konduktor.TaskError) as info:
        konduktor.launch(bad)
    assert [issue.field for issue in info.value.issues] == ["name", "run", "num_nodes"]
    with pytest.raises(konduktor.TaskError, match="pipelines are not supported"):
        konduktor.Task.from_yaml(WORLD / "sky-pipeline.yaml")


def test_dryrun_submits_nothing() -> None:
    name = unique("sdkdry")
    assert konduktor.launch(konduktor.Task(name, run="true"), dryrun=True) is None
    queued = subprocess.run(
        ["squeue", "-h", "-t", "all", "-o", "%j"], capture_output=True, text=True, check=True
    ).stdout
    assert name not in queued


def test_an_sdk_launch_prunes_old_snapshots_as_the_cli_does(kd_home: Path, tmp_path: Path) -> None:
    (kd_home / "config.yaml").write_text("retention: 0s\n")
    code = tmp_path / "code"
    code.mkdir()
    (code / "weights.bin").write_bytes(b"w" * 4096)
    task = konduktor.Task(unique("sdkprune"), run="ls", workdir=str(code))
    first = konduktor.launch(task, detach_run=True)
    assert first.wait(timeout=120) == "succeeded"
    first_dir = kd_home / "jobs" / first
    assert (first_dir / "workdir" / "weights.bin").is_file()  # its task's latest snapshot
    # A newer launch of the task takes its place as the base of the next one: the first
    # job's snapshot is past the 0s retention and goes with this launch, quietly.
    second = konduktor.launch(task, detach_run=True)
    assert not (first_dir / "workdir").exists()
    assert (first_dir / "job.log").is_file()  # logs stay
    assert (kd_home / "jobs" / second / "workdir" / "weights.bin").is_file()
    shown = subprocess.run(
        [KONDUKTOR, "status", "--json", first], capture_output=True, text=True, check=True
    )
    assert json.loads(shown.stdout)["jobs"][0]["snapshot_pruned_at"] is not None
    assert second.wait(timeout=120) == "succeeded"


def test_report_from_inside_a_job_is_the_result(tmp_path: Path) -> None:
    script = (
        "import konduktor_slurm as konduktor\n"
        "konduktor.report({'accuracy': 0.93, 'steps': [1, 2, 3]})\n"
    )
    task = konduktor.Task(
        unique("sdkreport"), run=f"{sys.executable} -c {subprocess.list2cmdline([script])}"
    )
    job = konduktor.launch(task, detach_run=True)
    assert job.result(timeout=120) == {"accuracy": 0.93, "steps": [1, 2, 3]}


def test_importing_the_sdk_stays_light() -> None:
    code = (
        "import sys, time\n"
        "import konduktor_slurm as konduktor\n"
        "konduktor.Task, konduktor.Job, konduktor.launch, konduktor.JobFailedError\n"
        "heavy = ('pydantic', 'yaml', 'jinja2', 'paramiko', 'fabric', 'rich', 'click')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_event_callback_runs_in_the_sdks_wait_once_per_change(tmp_path: Path) -> None:
    events = tmp_path / "events.log"
    task = konduktor.Task(
        unique("sdkcb"),
        run="sleep 2",
        event_callback=f'echo "$KONDUKTOR_OLD_STATE>$KONDUKTOR_NEW_STATE" >> {events}',
    )
    assert task.warnings == ()
    job = konduktor.launch(task, detach_run=True)
    assert job.wait(timeout=120) == "succeeded"
    lines = events.read_text().splitlines()
    assert lines[:2] == [">CREATED", "CREATED>PENDING"]  # launch saw these
    assert lines[-1].endswith(">COMPLETED") and len(lines) == len(set(lines))
