"""`konduktor store rebuild`, piece by piece: which of a user's Slurm jobs are this store's
(recorded squeue and sacct output of 22.05, 24.11 and 26.05, see tests/fixtures/slurm/
record.py), what is recorded for each, what a job's sbatch.sh gives back, and how the old
store is kept aside. The whole command runs against the real cluster in
tests/live/test_store_live.py."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from konduktor_slurm.checkpoint import Checkpoint
from konduktor_slurm.lifecycle import State
from konduktor_slurm.render import JobPlan, render_sbatch
from konduktor_slurm.service.recovery import (
    RECORDED_DETAIL,
    ScriptFacts,
    found_job,
    keep_aside,
    one_per_name,
    parse_job_script,
    read_job_scripts,
    select_jobs,
)
from konduktor_slurm.slurm import (
    RECOVERY_QUEUE_FIELDS,
    Slurm,
    history_command,
    parse_history,
    parse_squeue,
    queue_of_user_command,
    squeue_command,
)
from konduktor_slurm.task import parse_task
from konduktor_slurm.transport import LocalTransport
from tests.conftest import KONDUKTOR, ROOT, TEST_USER

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")
JOBS_DIR = "/tmp/konduktor-record/jobs"  # record.py's RECOVERY_JOBS_DIR


def queue(release: str):
    text = (FIXTURES / f"squeue-user-{release}.txt").read_text()
    return parse_squeue(text, fields=RECOVERY_QUEUE_FIELDS)


def history(release: str):
    return parse_history((FIXTURES / f"sacct-history-{release}.txt").read_text())


# ---- what Slurm says ------------------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_squeue_of_a_user_gives_each_jobs_work_dir_and_comment(release: str) -> None:
    rows = queue(release)
    assert set(rows) == {"REC1", "REC2", "REC3", "REC4", "REC5"}
    running = rows["REC1"]
    assert (running.name, running.state, running.user) == ("recrun-1a2b", "RUNNING", "root")
    assert running.work_dir == f"{JOBS_DIR}/recrun-1a2b"
    assert running.resources_summary == "2x(2CPU, 1GiMEM, H100:8)"
    assert (running.num_nodes, running.gpu_gres) == (2, ("h100", 8))
    old = rows["REC3"]
    assert (old.comment, old.state, old.work_dir) == (None, "FAILED", f"{JOBS_DIR}/recold-5e6f")
    assert rows["REC4"].work_dir == "/tmp/konduktor-record/other/recelse-7a8b"


@pytest.mark.parametrize("release", RELEASES)
def test_sacct_history_gives_work_dirs_and_gpus_but_no_comment(release: str) -> None:
    rows = {row.job_id: row for row in history(release)}
    assert set(rows) == {"REC1", "REC2", "REC3", "REC4", "REC5"}
    running = rows["REC1"]
    assert (running.name, running.state, running.nodes) == ("recrun-1a2b", "RUNNING", 2)
    assert (running.gpus, running.gpu_type) == (16, "h100")
    assert running.work_dir == f"{JOBS_DIR}/recrun-1a2b"
    assert running.submit_time and running.start_time and running.end_time is None
    # This cluster does not store job comments (AccountingStoreFlags): the work dir must do.
    assert all(row.comment is None and not row.launched_by_konduktor for row in rows.values())
    assert (rows["REC3"].state, rows["REC2"].gpus, rows["REC2"].gpu_type) == ("FAILED", 0, None)


def test_the_commands_ask_for_one_user_and_status_keeps_its_fields() -> None:
    argv = queue_of_user_command("alice")
    assert "--user=alice" in argv and "--states=all" in argv
    assert any(arg.startswith("--Format=") and "WorkDir:\x1f" in arg for arg in argv)
    assert "WorkDir" not in " ".join(squeue_command(["1"]))  # status's squeue is unchanged
    sacct = history_command("alice", 0.0)
    assert "--user=alice" in sacct and "--allocations" in sacct and "--endtime=now" in sacct
    assert any(arg.startswith("--starttime=1970-01-01T") for arg in sacct)


# ---- which jobs are this store's ---------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_running_and_finished_jobs_in_jobs_dir_are_chosen_from_squeue(release: str) -> None:
    chosen, elsewhere = select_jobs(queue(release).values(), history(release), JOBS_DIR)
    # REC3 has no comment (the first release's): its work dir says whose it is. REC4 is a
    # finished konduktor job of another jobs_dir; REC5 is not konduktor's at all.
    assert sorted(chosen) == ["REC1", "REC2", "REC3"]
    assert all(type(row).__name__ == "QueueRow" for row in chosen.values())
    assert elsewhere == 1


@pytest.mark.parametrize("release", RELEASES)
def test_jobs_slurmctld_forgot_are_chosen_from_accounting_by_work_dir(release: str) -> None:
    chosen, elsewhere = select_jobs([], history(release), JOBS_DIR)
    assert sorted(chosen) == ["REC1", "REC2", "REC3"]
    assert all(type(row).__name__ == "HistoryRow" for row in chosen.values())
    assert elsewhere == 0  # without comments, another store's jobs are not even seen


@pytest.mark.parametrize("release", RELEASES)
def test_an_unfinished_konduktor_job_of_another_jobs_dir_is_kept(release: str) -> None:
    # jobs_dir changed in config.yaml while REC1 ran: it must not be lost track of.
    chosen, elsewhere = select_jobs(queue(release).values(), history(release), "/elsewhere")
    assert sorted(chosen) == ["REC1"]
    assert elsewhere == 2  # REC2 and REC4: konduktor's, finished, not this store's


@pytest.mark.parametrize("jobs_dir", [JOBS_DIR + "/", "/tmp/konduktor-record/./jobs"])
def test_jobs_dir_is_compared_as_a_path(jobs_dir: str) -> None:
    chosen, _ = select_jobs([], history("22.05"), jobs_dir)
    assert sorted(chosen) == ["REC1", "REC2", "REC3"]


# ---- what is recorded -------------------------------------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_a_job_from_squeue_is_recorded_as_launch_recorded_it(release: str) -> None:
    row = queue(release)["REC1"]
    found = found_job(row, "root", row.work_dir, None, now=5.0)
    job = found.record
    assert (found.source, found.slurm_state) == ("squeue", "RUNNING")
    assert (job.name, job.task_name, job.user) == ("recrun-1a2b", "recrun", "root")
    assert (job.resources, job.num_nodes, job.gpus_per_node) == ("2x(2CPU, 1GiMEM, H100:8)", 2, 8)
    assert job.job_dir == f"{JOBS_DIR}/recrun-1a2b"
    assert job.log_path == f"{JOBS_DIR}/recrun-1a2b/job.log"
    assert (job.slurm_job_id, job.created_at, job.submitted_at) == (
        "REC1",
        row.submit_time,
        row.submit_time,
    )
    # Not terminal: the refresh right after asks Slurm, as for any job.
    assert (job.state, job.terminal, job.detail) == (State.PENDING, False, RECORDED_DETAIL)


@pytest.mark.parametrize("release", RELEASES)
def test_a_job_from_accounting_gets_its_gpus_from_alloc_tres(release: str) -> None:
    row = next(row for row in history(release) if row.job_id == "REC1")
    job = found_job(row, "root", row.work_dir, None, now=5.0).record
    assert (job.resources, job.num_nodes, job.gpus_per_node) == ("2x(H100:8)", 2, 8)
    plain = next(row for row in history(release) if row.job_id == "REC3")
    job = found_job(plain, "root", plain.work_dir, None, now=5.0).record
    assert (job.name, job.task_name, job.resources, job.gpus_per_node) == (
        "recold-5e6f",
        "recold",
        "1x(-)",
        0,
    )


def test_the_job_script_wins_over_what_slurm_shows() -> None:
    row = next(row for row in history("22.05") if row.job_id == "REC1")
    script = ScriptFacts("rec.run", "2x(2CPU, 1GiMEM, H100:8)", 2, 8, 3)
    job = found_job(row, "root", row.work_dir, script, now=5.0).record
    assert (job.task_name, job.resources, job.max_restarts) == (
        "rec.run",
        "2x(2CPU, 1GiMEM, H100:8)",
        3,
    )


def test_two_slurm_jobs_of_one_name_record_the_newer() -> None:
    rows = queue("22.05")
    first = found_job(rows["REC2"], "root", "/j/recdone-3c4d", None, now=5.0)
    again = dataclasses.replace(
        first,
        record=dataclasses.replace(first.record, slurm_job_id="99", created_at=9e9),
    )
    other = found_job(rows["REC1"], "root", "/j/recrun-1a2b", None, now=5.0)
    unique, notes = one_per_name([first, other, again])
    assert [job.record.slurm_job_id for job in unique] == ["99", "REC1"]  # newest first
    assert notes == [
        "recdone-3c4d: Slurm jobs 99 and REC2 share the name; the newer (99) is recorded"
    ]


TASK = """
name: train.llm
num_nodes: 2
resources:
  cpus: 8
  memory: 32
  accelerators: H100:8
  job_config:
    max_restarts: 2
run: echo hi
"""


def rendered(tmp_path: Path, name: str = "train.llm-1a2b") -> tuple[str, str]:
    task = parse_task(TASK, source="task.yaml", base_dir=tmp_path)
    job_dir = tmp_path / "jobs" / name
    job_dir.mkdir(parents=True)
    plan = JobPlan(job_name=name, job_dir=str(job_dir), log_path=str(job_dir / "job.log"))
    script = render_sbatch(task, plan)
    (job_dir / "sbatch.sh").write_text(script)
    return str(job_dir), script


def test_a_rendered_sbatch_script_gives_back_what_launch_recorded(tmp_path: Path) -> None:
    _job_dir, script = rendered(tmp_path)
    facts = parse_job_script(script.splitlines())
    assert facts == ScriptFacts(
        task_name="train.llm",
        resources="2x(8CPU, 32GiMEM, H100:8)",
        num_nodes=2,
        gpus_per_node=8,
        max_restarts=2,
    )


def test_how_a_task_checkpoints_comes_back_from_its_script(tmp_path: Path) -> None:
    task = parse_task(
        "name: ck\nresources:\n  job_config:\n    checkpoint_signal: usr2\n"
        "    checkpoint_grace: 45\n    checkpoint_dir: ~/ck\nrun: x\n",
        source="task.yaml",
    )
    plan = JobPlan(job_name="ck-1a2b", job_dir=str(tmp_path), log_path=str(tmp_path / "log"))
    facts = parse_job_script(render_sbatch(task, plan).splitlines())
    # Enough for `stop --mode checkpoint`; the directory stays in the script, for the job.
    assert facts.checkpoint == Checkpoint(signal="USR2", grace=45)
    assert parse_job_script(rendered(tmp_path)[1].splitlines()).checkpoint is None


def test_job_scripts_are_read_with_one_command_and_missing_ones_left_out(tmp_path: Path) -> None:
    odd = tmp_path / "odd:dir"
    odd.mkdir()
    first, _ = rendered(tmp_path)
    second, _ = rendered(odd, "train.llm-9f9f")
    missing = str(tmp_path / "jobs" / "gone-0000")
    calls: list[list[str]] = []

    class Counting(LocalTransport):
        def run(self, argv, **kwargs):  # type: ignore[override]
            calls.append(argv)
            return super().run(argv, **kwargs)

    facts = read_job_scripts(Slurm(Counting()), [first, second, missing])
    assert len(calls) == 1
    assert set(facts) == {first, second}
    assert facts[second].task_name == "train.llm" and facts[second].max_restarts == 2


# ---- keeping the old store -------------------------------------------------------------------


def test_the_old_store_and_its_wal_are_kept_aside_never_deleted(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    contents = {"": b"damaged", "-wal": b"wal frames", "-shm": b"index"}
    for suffix, data in contents.items():
        Path(f"{path}{suffix}").write_bytes(data)
    aside = keep_aside(path)
    assert aside.name.startswith("state.db.damaged-")
    assert not any(Path(f"{path}{suffix}").exists() for suffix in contents)
    for suffix, data in contents.items():
        assert Path(f"{aside}{suffix}").read_bytes() == data

    path.write_bytes(b"damaged again")  # the same second: a name of its own
    again = keep_aside(path)
    assert again != aside and again.read_bytes() == b"damaged again"
    assert aside.read_bytes() == b"damaged"
    assert keep_aside(_write(path, b"sound"), "replaced").name.startswith("state.db.replaced-")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


KEEP_ASIDE = """
import sys
from pathlib import Path
from konduktor_slurm.service.recovery import keep_aside
from konduktor_slurm.store import StoreError
try:
    keep_aside(Path(sys.argv[1]))
except StoreError as exc:
    print(exc)
"""


def test_a_store_that_cannot_be_moved_whole_is_put_back_as_it_was(tmp_path: Path) -> None:
    """In a sticky directory the user may move their own files, not root's -shm: the store
    and its -wal, already moved, go back (a store must never be parted from its -wal)."""
    sticky = Path(tempfile.mkdtemp(prefix="kd-sticky-", dir="/tmp"))
    try:
        os.chmod(sticky, 0o1777)
        path = sticky / "state.db"
        for suffix, data in (("", b"store"), ("-wal", b"frames"), ("-shm", b"index")):
            Path(f"{path}{suffix}").write_bytes(data)
            if suffix != "-shm":
                shutil.chown(f"{path}{suffix}", TEST_USER, TEST_USER)
        moved = subprocess.run(
            ["runuser", "-u", TEST_USER, "--", sys.executable, "-c", KEEP_ASIDE, str(path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert moved.returncode == 0, moved.stderr
        assert moved.stdout.startswith(f"cannot move the job store {path} aside: ")
        assert "nothing was changed" in moved.stdout
        assert sorted(p.name for p in sticky.iterdir()) == [
            "state.db",
            "state.db-shm",
            "state.db-wal",
        ]
        assert path.read_bytes() == b"store" and Path(f"{path}-wal").read_bytes() == b"frames"
    finally:
        shutil.rmtree(sticky, ignore_errors=True)


def test_rebuild_changes_nothing_when_slurm_cannot_say_what_runs(tmp_path: Path) -> None:
    """No Slurm commands on this machine (PATH without them): a rebuild would lose track of
    every running job, so it refuses and leaves the damaged store where it is."""
    home = tmp_path / "kdhome"
    home.mkdir()
    store = home / "state.db"
    store.write_bytes(b"not a store")
    env = {"KONDUKTOR_HOME": str(home), "PATH": str(tmp_path / "no-slurm-here")}
    result = subprocess.run(
        [KONDUKTOR, "store", "rebuild", "-y"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 3, result
    assert result.stderr.startswith("Error: cannot ask Slurm which of your jobs are running")
    assert "squeue: command not found" in result.stderr
    assert result.stderr.rstrip().endswith("nothing was changed")
    assert "Traceback" not in result.stderr
    assert store.read_bytes() == b"not a store"
    assert sorted(p.name for p in home.iterdir()) == ["state.db"]
