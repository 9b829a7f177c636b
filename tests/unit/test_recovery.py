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
from konduktor_slurm.render import ArrayPlan, JobPlan, render_sbatch
from konduktor_slurm.service.recovery import (
    RECORDED_DETAIL,
    ScriptFacts,
    found_job,
    found_jobs,
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

    paths = [f"{directory}/sbatch.sh" for directory in (first, second, missing)]
    facts = read_job_scripts(Slurm(Counting()), paths)
    assert len(calls) == 1
    assert set(facts) == {paths[0], paths[1]}
    assert facts[paths[1]].task_name == "train.llm" and facts[paths[1]].max_restarts == 2


def test_the_scripts_of_a_large_sweep_are_read_with_bounded_greps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `store rebuild` after a sweep of 20,000 jobs gave one grep every script path (1.4 MB:
    # "Argument list too long" over SSH) and matched each output line against every path.
    from konduktor_slurm import transport

    odd = tmp_path / "odd:dir"
    odd.mkdir()
    directories = [rendered(tmp_path / f"s{index}", f"train.llm-{index:04x}")[0]
                   for index in range(12)] + [rendered(odd, "train.llm-9f9f")[0]]  # fmt: skip
    paths = [f"{directory}/sbatch.sh" for directory in directories]
    calls: list[list[str]] = []

    class Counting(LocalTransport):
        def run(self, argv, **kwargs):  # type: ignore[override]
            calls.append(argv)
            return super().run(argv, **kwargs)

    monkeypatch.setattr(transport, "PATHS_PER_CALL_CHARS", len(paths[0]) * 3)
    facts = read_job_scripts(Slurm(Counting()), paths)
    assert set(facts) == set(paths)
    assert all(facts[path].task_name == "train.llm" for path in paths)
    assert len(calls) >= 4 and all(len(argv) - 6 <= 3 for argv in calls)


# ---- grid sweeps: one job array (or several) per sweep, a record per variant ------------------

SWEEP_TASK = "name: sweep.lr\nnum_nodes: 1\nresources:\n  accelerators: H100:2\nrun: x\n"


def sweep_scripts(jobs_dir: Path, sweep: str, sizes: list[int]) -> Path:
    """A sweep's directory with the scripts launch writes: sbatch.sh for one array, else
    sbatch-<n>.sh per array (``sizes``: elements per array, in order)."""
    task = parse_task(SWEEP_TASK, source="task.yaml")
    job_dir = jobs_dir / sweep
    job_dir.mkdir(parents=True)
    offset = 0
    for number, size in enumerate(sizes):
        variants = tuple((("LR", str(offset + index)),) for index in range(size))
        logs_dir = f"{job_dir}/logs/{number}"
        plan = JobPlan(
            job_name=sweep,
            job_dir=str(job_dir),
            log_path=f"{job_dir}/job.log",
            array=ArrayPlan(variants, offset, logs_dir),
        )
        name = "sbatch.sh" if len(sizes) == 1 else f"sbatch-{number}.sh"
        (job_dir / name).write_text(render_sbatch(task, plan))
        offset += size
    return job_dir


def history_rows(*rows: tuple[str, str, str, Path, bool]):
    """sacct's history rows (HISTORY_FIELDS) for (JobID, JobName, State, WorkDir, ran), as
    22.05 prints them: a job cancelled while it waited has a Start (the cancel) but no
    AllocTRES."""
    lines = []
    for job_id, name, state, work_dir, ran in rows:
        start = "Unknown" if state == "PENDING" else "2026-11-30T09:15:23"
        tres = "billing=1,cpu=1,gres/gpu:h100=2,gres/gpu=2,mem=1G,node=1" if ran else ""
        fields = [job_id, name, "root", state, "2026-11-30T09:15:21", start, "Unknown"]
        lines.append("\x1f".join([*fields, str(work_dir), "1", tres, ""]) + "\x1f\n")
    return parse_history("".join(lines))


def found_in(tmp_path: Path, history, array_size: list[int] | None = None) -> dict:
    """found_jobs over ``history`` with the real scripts in tmp_path; {name: FoundJob}.
    ``array_size``: what MaxArraySize answers (the list records each time it is asked)."""

    def max_array_size() -> int:
        assert array_size is not None, "MaxArraySize was asked while the scripts say it"
        array_size.append(array_size[0])
        return array_size[0]

    found, notes = found_jobs(
        [],
        history,
        str(tmp_path / "jobs"),
        "root",
        read_scripts=lambda paths: read_job_scripts(Slurm(LocalTransport()), paths),
        max_array_size=max_array_size,
    )
    result = {job.record.name: job for job in found}
    result["notes"] = notes
    return result


def test_each_element_of_a_sweeps_array_is_recorded_as_the_variant_launch_made(
    tmp_path: Path,
) -> None:
    jobs = tmp_path / "jobs"
    sweep = sweep_scripts(jobs, "sweep.lr-ab12", [3])
    single = sweep_scripts(jobs, "solo-0001", [1])  # a sweep of one variant
    (jobs / "plain-cd34").mkdir()
    history = history_rows(
        ("900_0", "sweep.lr-ab12", "COMPLETED", sweep, True),
        ("900_1", "sweep.lr-ab12", "FAILED", sweep, True),
        ("900_[2]", "sweep.lr-ab12", "PENDING", sweep, False),  # as sacct prints a waiting one
        ("901_0", "solo-0001", "COMPLETED", single, True),
        ("902", "plain-cd34", "COMPLETED", jobs / "plain-cd34", True),
    )
    found = found_in(tmp_path, history)
    assert found.pop("notes") == []
    assert sorted(found) == [
        "plain-cd34",
        "solo-0001-0",
        "sweep.lr-ab12-0",
        "sweep.lr-ab12-1",
        "sweep.lr-ab12-2",
    ]
    failed = found["sweep.lr-ab12-1"]
    job = failed.record
    assert (job.slurm_job_id, failed.slurm_state) == ("900_1", "FAILED")
    assert job.job_dir == f"{sweep}/elements/1"
    assert job.log_path == f"{sweep}/logs/0/1.log"
    assert job.extra == {"sweep": "sweep.lr-ab12", "array_batch": 0, "array_index": 1}
    assert (job.task_name, job.resources, job.gpus_per_node) == ("sweep.lr", "1x(H100:2)", 2)
    assert found["sweep.lr-ab12-2"].record.slurm_job_id == "900_2"
    plain = found["plain-cd34"].record
    assert plain.extra == {} and plain.job_dir == str(jobs / "plain-cd34")
    assert plain.log_path == f"{jobs}/plain-cd34/job.log"


def test_a_sweep_of_several_arrays_numbers_each_variant_by_its_arrays_offset(
    tmp_path: Path,
) -> None:
    """MaxArraySize 2: five variants are arrays 910 (0-1), 911 (2-3) and 912 (4)."""
    sweep = sweep_scripts(tmp_path / "jobs", "big-ef56", [2, 2, 1])
    history = history_rows(
        ("912_0", "big-ef56", "PENDING", sweep, False),  # listed first: order is by id
        ("910_[0-1]", "big-ef56", "COMPLETED", sweep, True),
        ("911_0", "big-ef56", "RUNNING", sweep, True),
        ("911_1", "big-ef56", "FAILED", sweep, True),
    )
    found = found_in(tmp_path, history)
    assert found.pop("notes") == []
    by_id = {job.record.slurm_job_id: job.record for job in found.values()}
    assert {job_id: job.name for job_id, job in by_id.items()} == {
        "910_0": "big-ef56-0",
        "910_1": "big-ef56-1",
        "911_0": "big-ef56-2",
        "911_1": "big-ef56-3",
        "912_0": "big-ef56-4",
    }
    assert by_id["911_1"].log_path == f"{sweep}/logs/1/1.log"
    assert by_id["911_1"].job_dir == f"{sweep}/elements/3"
    assert by_id["912_0"].extra == {"sweep": "big-ef56", "array_batch": 2, "array_index": 0}

    # The scripts pruned: each array but the last held MaxArraySize variants.
    for script in sweep.glob("sbatch-*.sh"):
        script.unlink()
    asked = [2]
    again = found_in(tmp_path, history, asked)
    again.pop("notes")
    assert {job.record.slurm_job_id: name for name, job in again.items()} == {
        job_id: job.name for job_id, job in by_id.items()
    }
    assert again["big-ef56-4"].record.task_name == "big"  # the script said "sweep.lr"
    assert len(asked) > 1  # MaxArraySize was asked, as the scripts were gone


def test_arrays_without_all_their_scripts_are_numbered_in_order_with_a_note(
    tmp_path: Path,
) -> None:
    sweep = sweep_scripts(tmp_path / "jobs", "big-ef56", [2, 2, 1])
    (sweep / "sbatch-1.sh").unlink()
    history = history_rows(
        ("910_1", "big-ef56", "COMPLETED", sweep, True),
        ("911_1", "big-ef56", "COMPLETED", sweep, True),
    )
    found = found_in(tmp_path, history, [2])
    assert found.pop("notes") == [
        f"{sweep}: 2 job arrays in Slurm but 1 of their scripts; "
        "their variants are numbered in the order of the arrays' ids"
    ]
    assert sorted(found) == ["big-ef56-1", "big-ef56-3"]


def test_an_array_cancelled_while_it_waited_is_one_plain_row_standing_for_each_element(
    tmp_path: Path,
) -> None:
    """Slurm 22.05 prints an array whose elements were all cancelled while they waited as
    a plain "920" (`konduktor down 'gone-*'` of a waiting sweep, observed): each variant is
    recorded from it. A plain row beside element rows stands for the elements without one
    (an element's run printed without its index, see slurm.with_array_records)."""
    jobs = tmp_path / "jobs"
    waited = sweep_scripts(jobs, "gone-1111", [3])
    ran = sweep_scripts(jobs, "ran-2222", [3])
    history = history_rows(
        ("920", "gone-1111", "CANCELLED by 0", waited, False),
        ("921", "ran-2222", "FAILED", ran, True),
        ("921_0", "ran-2222", "COMPLETED", ran, True),
        ("921_2", "ran-2222", "COMPLETED", ran, True),
    )
    found = found_in(tmp_path, history)
    assert found.pop("notes") == []
    assert sorted(found) == [
        *(f"gone-1111-{index}" for index in range(3)),
        *(f"ran-2222-{index}" for index in range(3)),
    ]
    assert found["gone-1111-2"].record.slurm_job_id == "920_2"
    assert found["gone-1111-2"].slurm_state == "CANCELLED by 0"
    assert found["gone-1111-2"].record.extra["array_index"] == 2
    assert [found[f"ran-2222-{index}"].slurm_state for index in range(3)] == [
        "COMPLETED",
        "FAILED",
        "COMPLETED",
    ]

    # Its script pruned, nothing says it was a sweep: it is recorded as the one job Slurm
    # shows, so that it is not lost track of.
    (waited / "sbatch.sh").unlink()
    again = found_in(tmp_path, history)
    assert again.pop("notes") == []
    assert again["gone-1111"].record.slurm_job_id == "920"


def test_a_plain_array_whose_script_is_gone_is_named_in_a_note(tmp_path: Path) -> None:
    sweep = sweep_scripts(tmp_path / "jobs", "big-ef56", [2, 1])
    (sweep / "sbatch-0.sh").unlink()
    history = history_rows(
        ("940", "big-ef56", "CANCELLED by 0", sweep, False),
        ("941_0", "big-ef56", "COMPLETED", sweep, True),
    )
    found = found_in(tmp_path, history)
    assert found.pop("notes") == [
        f"{sweep}: 2 job arrays in Slurm but 1 of their scripts; their variants are numbered "
        "in the order of the arrays' ids",
        f"big-ef56: Slurm lists its job array 940 without its elements and "
        f"{sweep}/sbatch-0.sh is gone: those variants were not re-recorded",
    ]
    assert sorted(found) == ["big-ef56-2"]

    # Beside rows of its own elements, a plain row whose script is gone stands for nothing
    # that can be placed: the elements with rows are recorded, without a note.
    history = history_rows(
        ("941", "big-ef56", "COMPLETED", sweep, True),
        ("941_0", "big-ef56", "COMPLETED", sweep, True),
    )
    (sweep / "sbatch-1.sh").unlink()
    again = found_in(tmp_path, history, [2])
    assert again.pop("notes") == []
    # Every script gone, one array left in Slurm: it counts as the first (README: "in the
    # order of their ids"), variant 0, though it was the second array.
    assert sorted(again) == ["big-ef56-0"]


def test_a_sweep_script_submitted_again_by_hand_keeps_the_newer_array(tmp_path: Path) -> None:
    sweep = sweep_scripts(tmp_path / "jobs", "again-3333", [1])
    history = history_rows(
        ("930_0", "again-3333", "FAILED", sweep, True),
        ("931_0", "again-3333", "COMPLETED", sweep, True),
    )
    found = found_in(tmp_path, history)
    assert found.pop("notes") == [
        "again-3333-0: Slurm jobs 931_0 and 930_0 share the name; the newer (931_0) is recorded"
    ]
    assert found["again-3333-0"].record.slurm_job_id == "931_0"


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
