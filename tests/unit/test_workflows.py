"""The service layer's workflows on a fake transport that replays recorded Slurm output.

Everything above the process boundary is real: the service, the Slurm adapter, the parsers,
the lifecycle table, the store (SQLite in a temp dir), rsync staging into a temp dir. Only
Slurm's answers are replayed (tests/unit/fake_slurm.py), so these tests say which commands a
workflow runs, how many, and what it makes of each answer. The live tests run the same
workflows against the real cluster.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from konduktor_slurm.config import Settings
from konduktor_slurm.control import Action
from konduktor_slurm.lifecycle import State
from konduktor_slurm.service import control, launch
from konduktor_slurm.service.check import run_checks
from konduktor_slurm.service.errors import (
    ActionError,
    JobFailedError,
    ResultTimeoutError,
    UnreachableError,
)
from konduktor_slurm.service.report import ReportOptions, report_run
from konduktor_slurm.service.results import read_result
from konduktor_slurm.service.session import Session
from konduktor_slurm.service.status import StatusQuery, status
from konduktor_slurm.service.waiting import wait_until_terminal
from konduktor_slurm.slurm import AuthenticationFailed, Slurm
from konduktor_slurm.staging import SilentReporter
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.task import TaskOverrides, parse_task
from tests.unit.fake_slurm import FakeJob, FakeSlurm


def make_session(tmp_path: Path, fake: FakeSlurm) -> Session:
    config = Settings(
        home=tmp_path / "home",
        config_path=tmp_path / "config.yaml",
        jobs_dir=str(tmp_path / "jobs"),
    )
    (tmp_path / "home").mkdir(exist_ok=True)
    return Session(config, Store(config.store_path), Slurm(fake))


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture
def session(tmp_path: Path, fake: FakeSlurm) -> Session:
    return make_session(tmp_path, fake)


def submit(session: Session, text: str = "name: t\nrun: echo hi\n", **overrides) -> str:
    task = parse_task(text, overrides=TaskOverrides(**overrides) if overrides else None)
    job = launch.submit(session, launch.prepare(session, task), SilentReporter())
    return job.name


# ---- launch ----------------------------------------------------------------------------


def test_launch_stages_writes_secrets_apart_and_submits_once(
    session: Session, fake: FakeSlurm, tmp_path: Path
) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print(1)\n")
    text = f"name: t\nworkdir: {tmp_path / 'code'}\nsecrets:\n  TOKEN: null\nrun: python train.py\n"
    name = submit(session, text, secrets=["TOKEN=s3cr3t"])
    job = session.store.get(name)
    assert job is not None and job.state == State.PENDING and job.slurm_job_id == "100"
    job_dir = Path(job.job_dir)
    assert (job_dir / "workdir" / "train.py").read_text() == "print(1)\n"
    assert (job_dir / "secrets.env").stat().st_mode & 0o777 == 0o600
    assert "s3cr3t" in (job_dir / "secrets.env").read_text()
    assert "s3cr3t" not in (job_dir / "sbatch.sh").read_text()
    assert [argv[0] for argv in fake.calls] == ["sbatch"]
    assert [t.state for t in session.store.transitions([name])] == ["CREATED", "PENDING"]


def test_a_refused_submission_is_recorded_failed(session: Session, fake: FakeSlurm) -> None:
    def refuse(argv: list[str]) -> tuple[int, str, str]:
        return 1, "", "sbatch: error: Batch job submission failed: Invalid account\n"

    fake._sbatch = refuse  # type: ignore[method-assign]
    with pytest.raises(ActionError, match=r"Slurm refused the job: .*Invalid account"):
        submit(session)
    (job,) = session.store.jobs()
    assert job.state == State.FAILED and job.detail.startswith("submission failed")


def test_the_script_is_rendered_while_staging_and_a_bad_directive_stops_before_it(
    session: Session, fake: FakeSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from konduktor_slurm import render, staging
    from konduktor_slurm.service.errors import InputError

    rendered_on: list[str] = []
    real_render = render.render_sbatch

    def spy(task, plan) -> str:
        rendered_on.append(threading.current_thread().name)
        return real_render(task, plan)

    monkeypatch.setattr(render, "render_sbatch", spy)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print(1)\n")
    name = submit(session, f"name: t\nworkdir: {tmp_path / 'code'}\nrun: python train.py\n")
    job = session.store.get(name)
    assert job is not None and job.state == State.PENDING
    assert f"#SBATCH --job-name={name}" in (Path(job.job_dir) / "sbatch.sh").read_text()
    assert rendered_on == ["konduktor-render"]  # once, beside rsync, not before it

    # What would make the script unrenderable (here a jobs_dir with a space, which
    # config.yaml may hold) is found by prepare: nothing claimed or staged.
    staged: list[object] = []
    monkeypatch.setattr(staging, "stage", lambda *args, **kwargs: staged.append(args))
    spaced = Session(
        session.config._replace(jobs_dir=str(tmp_path / "a b")),
        session.store,
        session.slurm,
    )
    with pytest.raises(InputError, match="cannot be passed to sbatch"):
        launch.prepare(spaced, parse_task("name: u\nrun: x\n"))
    assert staged == [] and [job.name for job in session.store.jobs()] == [name]


def test_a_script_that_fails_to_render_after_staging_leaves_a_failed_record_and_no_snapshot(
    session: Session, fake: FakeSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from konduktor_slurm import render

    def broken(task, plan) -> str:
        raise KeyError("a template bug")

    monkeypatch.setattr(render, "render_sbatch", broken)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print(1)\n")
    with pytest.raises(ActionError, match="rendering the sbatch script failed"):
        submit(session, f"name: t\nworkdir: {tmp_path / 'code'}\nrun: python train.py\n")
    (job,) = session.store.jobs()
    assert job.state == State.FAILED and "a template bug" in job.detail
    assert not Path(job.job_dir).exists()
    assert fake.calls == []  # nothing submitted


def test_ctrl_c_while_staging_fails_the_job_and_stays_a_keyboard_interrupt(
    session: Session, fake: FakeSlurm, tmp_path: Path
) -> None:
    """The SDK's caller sees the KeyboardInterrupt it expects (a program that catches
    Exception around a launch is still stopped by Ctrl-C), after the cleanup."""
    from konduktor_slurm.staging import SilentReporter

    class CtrlC(SilentReporter):
        def start(self, label: str, source: Path, destination: str, left_out=None) -> None:
            raise KeyboardInterrupt

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text("print(1)\n")
    task = parse_task(f"name: t\nworkdir: {tmp_path / 'code'}\nrun: python train.py\n")
    try:
        launch.submit(session, launch.prepare(session, task), CtrlC())
    except Exception as exc:  # what a careless caller writes
        raise AssertionError(f"Ctrl-C became {exc!r}") from exc
    except KeyboardInterrupt as exc:
        assert str(exc) == "interrupted while staging; nothing was submitted"
    else:
        raise AssertionError("the launch went on after Ctrl-C")
    (job,) = session.store.jobs()
    assert job.state == State.FAILED and job.terminal
    assert job.detail == "launch interrupted while staging; nothing was submitted"
    assert not Path(job.job_dir).exists()
    assert fake.calls == []  # nothing submitted


@pytest.mark.parametrize("step", ["claim", "sbatch"])
def test_ctrl_c_before_staging_or_in_sbatch_says_what_was_done(
    session: Session, fake: FakeSlurm, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """The job's record stays with this process as its launcher: the next status settles it
    once this process has ended (the live fault tests kill real launches)."""
    from konduktor_slurm.tracker import LAUNCHER_KEY

    real_run = fake.run

    def ctrl_c(argv: list[str], **kwargs):
        if (step == "claim" and argv[:1] == ["mkdir"]) or (
            step == "sbatch" and argv[0] == "sbatch"
        ):
            raise KeyboardInterrupt
        return real_run(argv, **kwargs)

    monkeypatch.setattr(fake, "run", ctrl_c)
    with pytest.raises(KeyboardInterrupt) as raised:
        submit(session)
    said = {
        "claim": "interrupted before staging; nothing was submitted",
        "sbatch": "interrupted while submitting; Slurm may have taken the job: `konduktor "
        "status` says what became of it",
    }
    assert str(raised.value) == said[step]
    (job,) = session.store.jobs()
    assert job.state == State.CREATED and LAUNCHER_KEY in job.extra
    assert job.detail == ("staging workdir" if step == "claim" else "submitting")


# ---- status ----------------------------------------------------------------------------


def test_status_of_many_jobs_is_one_squeue_and_finished_jobs_are_not_asked_again(
    session: Session, fake: FakeSlurm
) -> None:
    names = [submit(session) for _ in range(3)]
    ids = [session.store.get(name).slurm_job_id for name in names]
    fake.jobs[ids[0]].queue = "RUNNING"
    fake.jobs[ids[1]].queue, fake.jobs[ids[1]].acct = None, "COMPLETED"
    fake.calls.clear()
    view = status(session)
    assert [job.state for job in view.jobs] == [State.PENDING, State.COMPLETED, State.ACTIVE]
    assert len(fake.slurm_calls("squeue")) == 1
    assert fake.slurm_calls("sacct")[0][-1] == f"--jobs={ids[1]}"  # only the one that left
    fake.calls.clear()
    status(session)
    (squeue,) = fake.slurm_calls("squeue")
    assert squeue[-1] == f"--jobs={ids[2]},{ids[0]}" and not fake.slurm_calls("sacct")


def running_job(session: Session, fake: FakeSlurm) -> str:
    """A submitted job (Slurm job 100) that status has seen ACTIVE."""
    name = submit(session)
    fake.jobs["100"].queue = "RUNNING"
    assert status(session).jobs[0].state == State.ACTIVE
    return name


def test_status_when_slurm_is_unreachable_keeps_the_last_states(
    session: Session, fake: FakeSlurm
) -> None:
    name = running_job(session, fake)
    fake.unreachable = True
    view = status(session, StatusQuery(name=name))
    assert view.stale and "Unable to contact slurm controller" in (view.stale_reason or "")
    assert view.jobs[0].state == State.ACTIVE
    assert [t.state for t in view.history] == ["CREATED", "PENDING", "ACTIVE"]


# ---- this machine's munge: stopped, or another key than the cluster's -----------------------

MUNGE_DOWN = (
    "this machine cannot authenticate to Slurm: munge failed (Failed to access "
    '"/run/munge/munge.socket.2": No such file or directory). Is munged running here?'
)


def test_with_munged_stopped_status_and_launch_say_so_and_nothing_is_submitted(
    session: Session, fake: FakeSlurm
) -> None:
    name = running_job(session, fake)
    fake.munge = "down"
    view = status(session, StatusQuery(name=name))
    # Not "the controller is DOWN", which is what `scontrol ping` says then.
    assert view.stale and MUNGE_DOWN in (view.stale_reason or ""), view.stale_reason
    assert "is DOWN" not in (view.stale_reason or "")
    assert view.jobs[0].state == State.ACTIVE

    with pytest.raises(UnreachableError) as raised:
        submit(session)
    message = str(raised.value)
    assert message.startswith("could not submit to Slurm: sbatch: " + MUNGE_DOWN), message
    assert message.endswith("Nothing was submitted")
    failed = [job for job in session.store.jobs() if job.name != name]
    assert [job.state for job in failed] == [State.FAILED]
    assert failed[0].detail.startswith("submission failed: sbatch: this machine cannot")
    assert len(fake.slurm_calls("sbatch")) == 2  # asked once: never submitted again
    with pytest.raises(AuthenticationFailed, match="Is munged running here"):
        session.slurm.ping()  # which on its own would have said "DOWN"
    # From a workstation the commands run on the login host: that is the machine named.
    fake.description = "ssh kdtest@login1:22"
    with pytest.raises(AuthenticationFailed) as over_ssh:
        session.slurm.ping()
    assert str(over_ssh.value).startswith(
        "scontrol ping: the login host kdtest@login1:22 cannot authenticate to Slurm: munge "
        'failed (Failed to access "/run/munge/munge.socket.2": No such file or directory). '
        "Is munged running there?"
    ), over_ssh.value


def test_with_another_munge_key_slurm_errors_say_what_to_check(
    session: Session, fake: FakeSlurm
) -> None:
    name = submit(session)
    fake.munge = "other key"
    view = status(session, StatusQuery(name=name))
    assert view.stale and (view.stale_reason or "").endswith(
        "Zero Bytes were transmitted or received (slurmctld closed the connection without an "
        "answer, as it does when it cannot verify this machine's munge credential: another "
        "munge key here, or a clock far off)"
    ), view.stale_reason
    with pytest.raises(ActionError) as raised:
        submit(session)
    # sbatch's own name once, not "sbatch: sbatch: error: ...".
    assert str(raised.value).startswith(
        "Slurm refused the job: sbatch: error: Batch job submission failed: Zero Bytes"
    ), raised.value


# ---- waiting and results -----------------------------------------------------------------


def squeue_times(
    fake: FakeSlurm, clock: Callable[[], float], before: Callable[[], None] = lambda: None
) -> list[float]:
    """The ``clock()`` of each squeue the fake Slurm answers from now on (looks at Slurm);
    ``before`` runs before each is answered."""
    looks: list[float] = []
    answer = fake.run

    def counting_run(argv, *args, **kwargs):
        if argv[0] == "squeue":
            looks.append(clock())
            before()
        return answer(argv, *args, **kwargs)

    fake.run = counting_run  # type: ignore[method-assign]
    return looks


def job_running_with_log(session: Session, fake: FakeSlurm, text: str = "") -> JobRecord:
    """A submitted job that Slurm (job 100) runs, with ``text`` in its log so far."""
    job = session.store.get(submit(session))
    fake.jobs["100"].queue = "RUNNING"
    log = Path(job.log_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(text)
    return job


def end_the_run(fake: FakeSlurm, log: Path) -> None:
    """The run ends: its script prints the end line, and Slurm reports job 100 COMPLETED."""
    with log.open("a") as handle:
        handle.write("konduktor: attempt 1 finished with exit code 0\n")
    fake.jobs["100"].queue, fake.jobs["100"].acct = None, "COMPLETED"


def test_waiting_backs_off_and_restarts_the_backoff_on_a_change(
    session: Session, fake: FakeSlurm
) -> None:
    name = submit(session)
    job = session.store.get(name)
    script = iter(["PENDING", "PENDING", "PENDING", "RUNNING", "RUNNING", "RUNNING", None])
    now = [time.time()]

    def next_state() -> None:  # each look finds the next state
        state = next(script)
        fake.jobs["100"].queue = state
        if state is None:
            fake.jobs["100"].acct = "COMPLETED"

    def sleep(seconds: float) -> None:
        now[0] += seconds

    looks = squeue_times(fake, lambda: now[0], next_state)
    done = wait_until_terminal(session, job, sleep=sleep, clock=lambda: 0.0, wall=lambda: now[0])
    assert done.state == State.COMPLETED
    pauses = [round(b - a, 2) for a, b in itertools.pairwise(looks)]
    assert pauses == [2.0, 3.0, 4.5, 2.0, 3.0, 4.5]  # back to 2 s once it started running


def test_a_wait_looks_a_quarter_second_after_the_end_line_in_the_log(
    session: Session, fake: FakeSlurm
) -> None:
    """As a follower does: a 10 s job's wait returns at about 10 s, not at 16 s."""
    job = job_running_with_log(session, fake, "0: working\n")
    now = [0.0]
    looks = squeue_times(fake, lambda: now[0])

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 10 and fake.jobs["100"].queue == "RUNNING":
            end_the_run(fake, Path(job.log_path))

    done = wait_until_terminal(session, job, sleep=sleep, clock=lambda: now[0], wall=lambda: now[0])
    assert done.state == State.COMPLETED
    # Looks at 0, 2, 5 and 9.5 s (the backoff; the next would be at 16.25), then a quarter
    # second after the line, written at 10 s, is read (the log is read once a second).
    assert looks == [0.0, 2.0, 5.0, 9.5, 10.75], looks


def test_an_old_end_line_under_a_restarted_runs_output_brings_no_quick_look(
    session: Session, fake: FakeSlurm
) -> None:
    from konduktor_slurm.service import waiting

    job = job_running_with_log(session, fake)
    log, tails = Path(job.log_path), {}
    lines = [
        "konduktor: attempt 1 finished with exit code 3\n",
        "konduktor: restarting from the beginning (attempt 2 of 2)\n",
        "konduktor: job t attempt 2 of 2 on node1\n",
        "0: step 1\n",
    ]
    seen = []
    for count in range(1, len(lines) + 1):
        log.write_text("".join(lines[:count]))
        seen.append(waiting._sleep_until_an_end_line(session, [job], tails, 1.0, lambda _: None))
    assert seen == [True, True, False, False]


def test_a_sweeps_wait_does_not_read_its_many_logs(session: Session, fake: FakeSlurm) -> None:
    from konduktor_slurm.service import waiting

    jobs = [session.store.get(submit(session)) for _ in range(waiting.LOG_WATCH_MAX_JOBS + 1)]
    read: list[str] = []
    session.slurm.transport.read_tail = lambda path, size: read.append(path) or b""  # type: ignore[method-assign]
    slept: list[float] = []
    assert not waiting._sleep_until_an_end_line(session, jobs, {}, 4.5, slept.append)
    assert (read, slept) == ([], [4.5])
    assert not waiting._sleep_until_an_end_line(session, jobs[:2], {}, 2.5, slept.append)
    assert slept[1:] == [1.0, 1.0, 0.5] and len(read) == 6  # two logs, once a second


def test_waiting_gives_up_at_the_timeout(session: Session, fake: FakeSlurm) -> None:
    job = session.store.get(submit(session))
    now = [time.time()]
    start = now[0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ResultTimeoutError, match="did not finish within 10s; it is PENDING"):
        wait_until_terminal(
            session, job, 10, sleep=sleep, clock=lambda: now[0], wall=lambda: now[0]
        )
    assert now[0] - start == 10.0  # the last pause is cut to the deadline


def test_result_of_a_completed_and_of_a_failed_job(session: Session, fake: FakeSlurm) -> None:
    job = session.store.get(submit(session))
    output = Path(job.job_dir) / "output" / "rank-0"
    output.mkdir(parents=True)
    (output / "result.json").write_text(json.dumps({"loss": 0.5}))
    fake.jobs["100"].queue, fake.jobs["100"].acct = None, "COMPLETED"
    done = wait_until_terminal(session, job)
    assert read_result(session.slurm.transport, done) == {"loss": 0.5}
    other = session.store.get(submit(session))
    fake.jobs["101"].queue, fake.jobs["101"].acct, fake.jobs["101"].exit_code = (
        None,
        "FAILED",
        "3:0",
    )
    with pytest.raises(JobFailedError, match="FAILED \\(exited 3\\)"):
        read_result(session.slurm.transport, wait_until_terminal(session, other))


def test_waiters_of_one_store_share_one_squeue_per_interval(
    session: Session, fake: FakeSlurm
) -> None:
    from konduktor_slurm.tracker import refresh_shared

    first = session.store.get(submit(session))
    second_name = submit(session)
    fake.jobs["100"].queue = "RUNNING"
    fake.calls.clear()
    at = time.time()
    refresh_shared(session.store, session.slurm, [first], max_age=5, now=at)
    # Another process following the second job: its own connection to the same store.
    other_store = Store(session.store.path)
    second = other_store.get(second_name)
    fake.jobs["101"].queue = "RUNNING"  # Slurm moved on, but the shared look is 1 s old
    result = refresh_shared(other_store, session.slurm, [second], max_age=5, now=at + 1)
    (squeue,) = fake.slurm_calls("squeue")
    assert sorted(squeue[-1].removeprefix("--jobs=").split(",")) == ["100", "101"]
    assert first.state == State.ACTIVE and second.state == State.PENDING and not result.stale
    refresh_shared(other_store, session.slurm, [second], max_age=5, now=at + 6)
    assert len(fake.slurm_calls("squeue")) == 2 and second.state == State.ACTIVE


def test_a_shared_look_that_failed_is_stale_for_every_waiter_and_not_repeated(
    session: Session, fake: FakeSlurm
) -> None:
    from konduktor_slurm.tracker import refresh_shared

    job = session.store.get(submit(session))
    fake.unreachable = True
    fake.calls.clear()
    at = time.time()
    assert refresh_shared(session.store, session.slurm, [job], max_age=5, now=at).stale
    other_store = Store(session.store.path)
    copy = other_store.get(job.name)
    shared = refresh_shared(other_store, session.slurm, [copy], max_age=5, now=at + 2)
    assert shared.stale and "Unable to contact slurm controller" in (shared.stale_reason or "")
    assert len(fake.slurm_calls("squeue")) == 1


def test_a_slow_or_failing_controller_lengthens_the_pause() -> None:
    from konduktor_slurm.polling import Backoff

    backoff = Backoff()
    assert [backoff.next_pause() for _ in range(3)] == [2.0, 3.0, 4.5]
    assert backoff.next_pause(changed=True) == 2.0  # a state change: look again soon
    assert backoff.next_pause(took=1.5) == 15.0  # a poll of 1.5 s: not again within 15 s
    assert backoff.next_pause(changed=True, failed=True) == 4.5  # a failure never resets
    assert max(backoff.next_pause(took=100) for _ in range(3)) == 30.0  # capped


def test_a_follower_backs_off_and_sees_the_end_soon_after_the_log_says_so(
    session: Session, fake: FakeSlurm
) -> None:
    from konduktor_slurm import logs

    job = job_running_with_log(session, fake, "0: step 1\n")
    log = Path(job.log_path)
    now = [time.time()]
    start = now[0]
    looks = squeue_times(fake, lambda: now[0] - start)

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] - start >= 100 and fake.jobs["100"].queue == "RUNNING":
            with log.open("a") as handle:  # the run's last line; then the script says so
                handle.write("0: done\n")
            end_the_run(fake, log)

    written: list[str] = []
    done = logs.follow(
        session.store,
        session.slurm,
        job,
        written.append,
        sleep=sleep,
        clock=lambda: now[0],
        wall=lambda: now[0],
    )
    assert done.state == State.COMPLETED
    assert "0: done\n" in "".join(written)
    # A look at 0, then 2, 5, 9.5, 16, 26, 42, 64, 94 s; and one a quarter second after the
    # end line (read within a second of it being written).
    assert len(looks) == 10, looks
    assert 100 <= looks[-1] <= 101.3, looks


@pytest.mark.parametrize("finishing", [0.6, 20.0])
def test_a_job_still_finishing_after_its_end_line_is_looked_at_quickly_then_by_backoff(
    session: Session, fake: FakeSlurm, finishing: float
) -> None:
    from konduktor_slurm import logs

    job = job_running_with_log(session, fake)
    log = Path(job.log_path)
    now = [0.0]
    looks = squeue_times(fake, lambda: round(now[0] - 3, 2))

    def sleep(seconds: float) -> None:
        now[0] += seconds
        if now[0] >= 3 and not log.read_text():
            log.write_text("konduktor: attempt 1 finished with exit code 0\n")
        if now[0] >= 3 + finishing:  # Slurm reports the end this long after the line
            fake.jobs["100"].queue, fake.jobs["100"].acct = None, "COMPLETED"

    done = logs.follow(
        session.store, session.slurm, job, lambda _: None,
        sleep=sleep, clock=lambda: now[0], wall=lambda: now[0],
    )  # fmt: skip
    assert done.state == State.COMPLETED
    after = [at for at in looks if at > 0]
    if finishing < 1:  # quick looks: a quarter second after the line, then half a second on
        assert after == [0.25, 0.75], looks
    else:  # 0.25, 0.5 and 1 s apart, then the usual backoff (2, 3, 4.5, ...): few looks
        assert after[:4] == [0.25, 0.75, 1.75, 3.75], looks
        assert len(after) <= 9 and after[-1] >= finishing, looks


def test_a_follower_says_each_state_and_reason_the_job_passes_through_once(
    session: Session, fake: FakeSlurm
) -> None:
    """A launch following a job that waits said nothing for as long as it waited: a job
    asking more nodes than its partition has sat silent (PartitionNodeLimit) for hours."""
    from konduktor_slurm import logs

    name = submit(session)
    job = session.store.get(name)
    assert job is not None
    now = [0.0]
    # (from, squeue's state and reason): each holds until the next one's time.
    story = [
        (0, "PENDING", "Priority"),
        (10, "PENDING", "PartitionNodeLimit"),
        (40, "PENDING", "Resources"),
        (60, "RUNNING", "None"),
        (90, None, None),  # gone from the queue: sacct says how it ended
    ]

    def sleep(seconds: float) -> None:
        now[0] += seconds
        for since, queue, reason in story:
            if now[0] >= since:
                fake.jobs["100"].queue = queue
                if reason is not None:
                    fake.jobs["100"].reason = reason
        if fake.jobs["100"].queue is None:
            fake.jobs["100"].acct = "COMPLETED"

    fake.jobs["100"].reason = "Priority"
    said: list[str] = []
    done = logs.follow(
        session.store, session.slurm, job, lambda _: None,
        on_change=lambda changed: said.append(f"{changed.state} ({changed.detail})"),
        sleep=sleep, clock=lambda: now[0], wall=lambda: now[0],
    )  # fmt: skip
    assert done.state == State.COMPLETED
    # Not the first wait: "Submitted" says it is queued.
    assert said == [
        "SUSPENDED (by system) (blocked: PartitionNodeLimit: beyond what its partition allows "
        "or has up, so it waits until that changes)",
        "PENDING (waiting for resources)",
        "ACTIVE (running on node1)",
    ], said


def test_a_job_no_node_can_fit_is_refused_with_what_it_asks_and_what_is_there(
    session: Session, fake: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sbatch's "Requested node configuration is not available" names nothing: 16 GPUs a
    node, a GPU type the cluster lacks and too many nodes all read the same."""
    task = parse_task("name: big\nresources:\n  accelerators: H100:16\n  cpus: 4\nrun: x\n")
    prepared = launch.prepare(session, task)
    with pytest.raises(ActionError) as caught:
        launch.submit(session, prepared, SilentReporter())
    message = str(caught.value)
    assert message.startswith("Slurm refused the job: sbatch: error: Batch job submission failed: "
                              "Requested node configuration is not available\n")  # fmt: skip
    assert "The job asks --nodes=1 --gres=gpu:h100:16 --cpus-per-task=4 (GPUs, CPUs and " in message
    assert "The partitions here: gpu (default): 2 nodes with gpu:h100:8; low: 2 nodes" in message
    assert len(fake.slurm_calls("sinfo")) == 1  # asked only now, once
    job = session.store.get(prepared.job_name)
    assert job is not None and job.state == State.FAILED
    assert job.detail.startswith("submission failed: "), job.detail
    # When sinfo fails too, Slurm's own words stay, with nothing made up.
    from konduktor_slurm.slurm import SlurmError

    def sinfo_fails() -> list:
        raise SlurmError("sinfo", "slurm_load_partitions: Socket timed out")

    monkeypatch.setattr(session.slurm, "partitions", sinfo_fails)
    with pytest.raises(ActionError) as caught:
        launch.submit(session, launch.prepare(session, task), SilentReporter())
    assert str(caught.value).endswith("Requested node configuration is not available")


@pytest.mark.parametrize("release", ["22.05", "24.11", "26.05"])
def test_every_release_words_a_job_that_cannot_fit_alike(release: str) -> None:
    from konduktor_slurm.slurm import NodesCannotFit, slurm_error
    from konduktor_slurm.transport import CommandResult
    from tests.unit.fake_slurm import FIXTURES

    code, _, stderr = (FIXTURES / f"sbatch-cannot-fit-{release}.txt").read_text().partition("\n")
    error = slurm_error("sbatch", CommandResult(("sbatch",), int(code.split()[1]), "", stderr))
    assert isinstance(error, NodesCannotFit), error


# ---- stop / start / down -----------------------------------------------------------------


def test_auto_stop_as_an_ordinary_user_falls_back_to_requeue_and_start_undoes_it(
    session: Session, fake: FakeSlurm
) -> None:
    name = submit(session)
    fake.jobs["100"].queue = "RUNNING"
    told: list[str] = []
    plan = control.plan_stop(session, (name,))
    assert [step.action for step in plan.steps] == [Action.SUSPEND]
    fake.calls.clear()
    result = control.apply_stop(session, plan, notify=told.append)
    assert [done.action for done in result.done] == [Action.REQUEUE_HOLD]
    assert [argv[:2] for argv in fake.slurm_calls("scontrol")] == [
        ["scontrol", "suspend"],  # refused: "Access/permission denied" (recorded)
        ["scontrol", "requeuehold"],
    ]
    assert told == [
        "Slurm lets only operators suspend jobs, so stopping by requeue instead "
        "(--mode signal keeps the GPUs instead)."
    ]
    job = session.store.get(name)
    assert job.user_stop is not None and job.user_stop.mode == "requeue"
    assert job.state == State.SUSPENDED_USER
    fake.calls.clear()
    started = control.apply_start(session, control.plan_start(session, (name,)))
    assert [done.action for done in started.done] == [Action.RELEASE_REQUEUED]
    assert [argv[1:] for argv in fake.slurm_calls("scontrol")] == [
        ["release", "100"],
        ["update", "jobid=100", "starttime=now"],
    ]
    assert session.store.get(name).user_stop is None


@pytest.mark.parametrize("slurm_answers", [True, False])
def test_after_a_stop_a_state_slurm_did_not_confirm_is_shown_as_the_last_known(
    session: Session, fake: FakeSlurm, capsys: pytest.CaptureFixture[str], slurm_answers: bool
) -> None:
    from konduktor_slurm.cli.control import _report
    from konduktor_slurm.dashboard.actions import _outcome

    name = submit(session)
    fake.jobs["100"].queue = "RUNNING"
    plan = control.plan_stop(session, (name,))
    fake.unreachable = not slurm_answers  # scontrol acts; the squeue after it fails
    result = control.apply_stop(session, plan)
    assert [done.job.name for done in result.done] == [name]
    assert result.is_stale(result.done[0].job) == (not slurm_answers)
    _report(result, "Stopped")
    shown = capsys.readouterr()
    now_line = next(line for line in shown.out.splitlines() if ": now " in line)
    page = _outcome(result, "Stopped", []).messages
    if slurm_answers:
        assert "(stale)" not in now_line and shown.err == ""
        assert not any("stale" in message for message in page)
        return
    assert now_line.startswith(f"  {name}: now ") and "(stale)" in now_line
    assert "Unable to contact slurm controller" in (result.stale_reason or "")
    assert shown.err.startswith("Warning: Slurm could not be reached after that (")
    assert any("(stale)" in message for message in page)
    assert any(message.startswith("Warning: Slurm could not") for message in page)


def test_one_bad_name_changes_nothing(session: Session, fake: FakeSlurm) -> None:
    name = submit(session)
    fake.jobs["100"].queue = "RUNNING"
    fake.calls.clear()
    with pytest.raises(control.PlanError) as info:
        control.plan_stop(session, (name, "nosuch"))
    assert info.value.problems[0].startswith("no job named 'nosuch'")
    assert str(info.value).endswith("Nothing was changed.")
    assert not fake.slurm_calls("scontrol")


@pytest.mark.parametrize(
    "names",
    [["exp3609ef-ece1", "exp3609ef-c148"], ["exp3609ef-c148", "exp3609ef-ece1"]],
)
def test_a_name_cut_short_suggests_the_name_it_starts_first(names: list[str]) -> None:
    """difflib scores "exp3609ef-ece1" as close to "exp3609ef-c1" as "exp3609ef-c148"
    (found by a live test whose random suffixes made that tie)."""
    from konduktor_slurm.service.session import did_you_mean

    hint = did_you_mean("exp3609ef-c1", names)
    assert hint == " Did you mean 'exp3609ef-c148', 'exp3609ef-ece1'?"
    assert did_you_mean("zzz", names) == ""


def test_all_users_is_refused_to_an_ordinary_user_before_anything_is_done(
    session: Session, fake: FakeSlurm
) -> None:
    with pytest.raises(ActionError, match=r"act on other users' jobs.*nothing was changed"):
        control.plan_stop(session, (), all_users=True)
    assert [argv[0] for argv in fake.calls] == ["sacctmgr", "scontrol"]


def test_down_cancels_every_running_job_with_one_scancel(session: Session, fake: FakeSlurm) -> None:
    names = [submit(session) for _ in range(3)]
    fake.jobs["102"].queue, fake.jobs["102"].acct = None, "COMPLETED"
    fake.calls.clear()
    result = control.apply_down(session, control.plan_down(session, tuple(names)))
    assert fake.slurm_calls("scancel") == [["scancel", "100", "101"]]
    assert {done.job.name: done.acted for done in result.done} == {
        names[0]: True,
        names[1]: True,
        names[2]: False,
    }
    assert session.store.jobs() == []  # hidden
    assert session.store.get(names[0]).detail == "cancelled by kdtest"


# ---- the report run ----------------------------------------------------------------------


def test_report_reports_each_change_once_and_commits_only_when_told(
    session: Session, fake: FakeSlurm
) -> None:
    name = submit(session)
    fake.jobs["100"].queue, fake.jobs["100"].acct = None, "FAILED"
    options = ReportOptions(lock_timeout=1)
    with report_run(session, options) as run:
        assert run is not None
        assert [(t.job_name, t.state) for t in run.report.transitions][-1] == (name, "FAILED")
        # not committed: a crash here reports the same again
    with report_run(session, options) as run:
        assert run is not None and run.report.transitions
        run.commit()
    with report_run(session, options) as run:
        assert run is not None and run.report.transitions == ()


def test_report_when_slurm_is_unreachable_is_stale(session: Session, fake: FakeSlurm) -> None:
    submit(session)
    fake.unreachable = True
    with report_run(session, ReportOptions(lock_timeout=1)) as run:
        assert run is not None and run.report.stale
        assert run.billed_until is None  # accounting was not read: bill next time


def test_report_of_finished_jobs_is_not_stale_when_slurm_only_throttles(
    session: Session, fake: FakeSlurm
) -> None:
    # Nothing open to ask about, so a cron report pings the controller: throttled, ping says
    # DOWN, and the report said the cluster could not be reached.
    name = submit(session)
    fake.jobs["100"].queue, fake.jobs["100"].acct = None, "COMPLETED"
    status(session)
    assert session.store.get(name).terminal
    fake.controller = "throttled"
    with report_run(session, ReportOptions(lock_timeout=1)) as run:
        assert run is not None and not run.report.stale
    fake.controller = "down"
    with report_run(session, ReportOptions(lock_timeout=1)) as run:
        assert run is not None and run.report.stale


# ---- check -------------------------------------------------------------------------------


def test_check_of_an_ordinary_user_says_auto_stop_requeues(
    session: Session, fake: FakeSlurm
) -> None:
    report = run_checks(session)
    by_name = {check.name: check for check in report.checks}
    assert report.ok
    assert by_name["slurm"].detail == "slurm-wlm 22.05.8"
    assert by_name["partitions"].detail.startswith("gpu* (up, 2 nodes, gpu:h100:8)")
    assert "auto -> requeue" in by_name["stop mode"].detail
    assert report.info["may_act_on_others"] is False
    # The recorded 22.05 config: proctrack/cgroup, no user signal at preemption.
    assert by_name["checkpoints"].detail.startswith("proctrack/cgroup: konduktor passes")
    assert by_name["checkpoints"].detail.endswith("save on SIGTERM too")
    assert report.info["preemption_sends_user_signal"] is False


def test_check_of_root_says_auto_stop_suspends(tmp_path: Path) -> None:
    fake = FakeSlurm(user="root", operator=True)
    report = run_checks(make_session(tmp_path, fake))
    assert report.info["auto_stop_mode"] == "suspend" and report.info["may_act_on_others"]


# ---- a controller that is gone, hung or slow ---------------------------------------------


@pytest.mark.parametrize(
    ("controller", "stale", "timeouts"),
    [
        # squeue's short try runs out; ping says DOWN at once, and a 2 s squeue -v does not
        # say the user is throttled.
        ("down", "is DOWN", [4.0, 2.0]),
        ("hung", "did not answer", [4.0, 3.0]),  # ping runs out too
        ("slow", None, [4.0]),  # ping says UP: squeue gets its whole timeout and answers
        # Slurm's rate limit: ping says DOWN, the squeue -v says "RPC rate limited": the
        # controller is up, so squeue gets its whole timeout (it was stale before).
        ("throttled", None, [4.0]),
    ],
)
def test_status_says_stale_within_seconds_when_slurmctld_is_gone(
    session: Session, fake: FakeSlurm, controller: str, stale: str | None, timeouts: list[float]
) -> None:
    name = submit(session)
    fake.jobs["100"].queue = "RUNNING"
    fake.controller = controller
    view = status(session, StatusQuery(name=name))
    assert fake.timeouts == timeouts  # at most 7 s before "stale", not squeue's 10-20 s
    if stale is None:
        assert not view.stale and view.jobs[0].state == State.ACTIVE
    else:
        assert view.stale and stale in (view.stale_reason or ""), view.stale_reason


# ---- accounting down, answers missing, nodes failing -------------------------------------


def test_slurmdbd_down_keeps_squeue_answers_and_guesses_nothing(
    session: Session, fake: FakeSlurm
) -> None:
    running, done, gone = (submit(session) for _ in range(3))
    for job_id in ("100", "101", "102"):
        fake.jobs[job_id].queue = "RUNNING"
    status(session)
    fake.accounting_down = True
    fake.jobs["101"].queue = "COMPLETED"  # still in squeue (MinJobAge): its word counts
    fake.jobs["102"].queue = None  # left the queue; only sacct could say how it ended
    view = status(session)
    states = {job.name: job.state for job in view.jobs}
    assert states == {running: State.ACTIVE, done: State.COMPLETED, gone: State.ACTIVE}
    assert view.stale and view.stale_jobs == frozenset({gone})
    assert "accounting (sacct) did not answer" in (view.stale_reason or "")
    assert [job.name for job in view.jobs if view.is_stale(job)] == [gone]
    fake.accounting_down = False
    fake.jobs["102"].acct = "COMPLETED"
    view = status(session)
    assert not view.stale and {job.state for job in view.jobs} == {State.ACTIVE, State.COMPLETED}


def test_a_job_missing_from_squeue_and_sacct_is_not_read_as_finished(
    session: Session, fake: FakeSlurm
) -> None:
    name = submit(session)
    fake.jobs["100"].queue = "RUNNING"
    status(session)
    fake.jobs["100"].queue = None  # one answer without it, and sacct has no row yet
    view = status(session)
    assert view.jobs[0].state == State.ACTIVE and not view.jobs[0].terminal
    assert view.is_stale(view.jobs[0])
    fake.jobs["100"].acct = "COMPLETED"
    assert status(session, StatusQuery(name=name)).jobs[0].state == State.COMPLETED


def test_the_failed_node_is_named_once_accounting_has_recorded_it(
    session: Session, fake: FakeSlurm
) -> None:
    """slurmctld requeues the job a moment before slurmdbd has the node's DOWN event: a
    later look names the node; once named, nobody asks again."""
    submit(session, "name: t\nnum_nodes: 2\nrun: sleep 60\n")
    job = fake.jobs["100"]
    job.queue, job.node_list = "RUNNING", "node[1-2]"
    status(session)
    # The failed node is gone from the list while the others clean up (CG) ...
    job.queue, job.node_list = "COMPLETING", "node1"
    status(session)
    # ... and a look while the requeued job is briefly held: the node list empties.
    job.queue, job.reason, job.runs = "PENDING", "JobHeldAdmin", ("NODE_FAIL",)
    job.node_list = ""
    status(session)
    job.reason = "BeginTime"
    fake.node_events = False
    assert status(session).jobs[0].detail.startswith("node failure; requeued")
    fake.node_events = True
    assert status(session).jobs[0].detail.startswith("node failure (node2); requeued")
    fake.calls.clear()
    status(session)
    assert not any(argv[0] == "sacctmgr" for argv in fake.calls)


def test_a_job_requeued_after_a_node_failure_names_the_node_not_a_preemption(
    session: Session, fake: FakeSlurm
) -> None:
    submit(session, "name: t\nnum_nodes: 2\nrun: sleep 60\n")
    job = fake.jobs["100"]
    job.queue, job.node_list = "RUNNING", "node[1-2]"
    status(session)
    job.queue, job.reason, job.runs = "PENDING", "BeginTime", ("NODE_FAIL",)
    view = status(session)
    assert view.jobs[0].state == State.SUSPENDED_SYSTEM
    assert view.jobs[0].detail == "node failure (node2); requeued, awaiting reschedule (restart 1)"
    fake.calls.clear()
    status(session)  # known now: no second sacct --duplicates for the same requeue
    assert not any("--duplicates" in argv for argv in fake.calls)
    job.queue = "RUNNING"
    assert status(session).jobs[0].state == State.ACTIVE


def test_a_preempted_requeue_still_says_preempted(session: Session, fake: FakeSlurm) -> None:
    submit(session)
    job = fake.jobs["100"]
    job.queue = "RUNNING"
    status(session)
    job.queue, job.reason, job.runs = "PENDING", "BeginTime", ("PREEMPTED",)
    view = status(session)
    assert view.jobs[0].detail == "preempted, awaiting reschedule (restart 1)"


@pytest.mark.parametrize(
    ("other_name", "later", "lost"),
    [
        ("someone-elses-job", True, True),  # the id was handed out again
        ("someone-elses-job", False, False),  # renamed by hand (scontrol update): still ours
        (None, True, False),  # its own name: ours, whatever the time
    ],
)
def test_a_job_whose_id_now_names_another_job_is_lost_not_taken_for_it(
    session: Session, fake: FakeSlurm, other_name: str | None, later: bool, lost: bool
) -> None:
    name = submit(session)
    mine = fake.jobs["100"]
    mine.queue = "RUNNING"
    assert status(session, StatusQuery(name=name)).jobs[0].state == "ACTIVE"
    # slurmctld restarted without its saved state; the id went to the next submission.
    submitted = session.store.get(name).submitted_at  # type: ignore[union-attr]
    when = submitted + 60 if later else submitted - 3600
    mine.submit_time = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))
    mine.name = other_name or mine.name
    mine.queue, mine.acct = "RUNNING", "COMPLETED"
    fake.calls.clear()
    job = status(session, StatusQuery(name=name)).jobs[0]
    if not lost:
        assert job.state == "ACTIVE"
        return
    assert job.state == "FAILED" and job.terminal
    assert job.detail.startswith("lost by Slurm: job id 100 now names another job")
    assert "'someone-elses-job'" in job.detail
    assert fake.slurm_calls("sacct") == []  # nothing Slurm keeps of that id is ours
    fake.calls.clear()
    status(session, StatusQuery())
    assert fake.slurm_calls("squeue") == []  # finished: never asked about again


def test_an_sbatch_whose_answer_is_lost_is_found_not_submitted_twice(
    session: Session, fake: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    from konduktor_slurm.transport import CommandTimeout

    accept = fake._sbatch

    def accept_then_time_out(argv: list[str]) -> tuple[int, str, str]:
        accept(argv)  # slurmctld took the job...
        raise CommandTimeout("sbatch did not answer within 30s")  # ...the answer was lost

    fake._sbatch = accept_then_time_out  # type: ignore[method-assign]
    name = submit(session)
    job = session.store.get(name)
    assert job.slurm_job_id == "100" and job.state == State.PENDING
    assert len(fake.slurm_calls("sbatch")) == 1
    assert fake.slurm_calls("squeue")[-1][-1] == f"--name={name}"

    def lost_before_acceptance(argv: list[str]) -> tuple[int, str, str]:
        raise CommandTimeout("sbatch did not answer within 30s")

    fake._sbatch = lost_before_acceptance  # type: ignore[method-assign]
    monkeypatch.setattr(launch, "FIND_SUBMISSION_PAUSE", 0.01)
    with pytest.raises(ActionError, match=r"no job named .* is in its queue; launch again"):
        submit(session)


def test_no_slurm_command_line_grows_with_the_number_of_jobs(
    session: Session, fake: FakeSlurm
) -> None:
    from konduktor_slurm.slurm import IDS_PER_CALL

    ids = [str(1000 + index) for index in range(3 * IDS_PER_CALL + 7)]
    queued = session.slurm.queue(ids)  # none known to the fake: every one left the queue
    assert queued == {}
    (squeue,) = fake.slurm_calls("squeue")
    assert "--user=kdtest" in squeue and not any(arg.startswith("--jobs=") for arg in squeue)
    session.slurm.accounting(ids)
    sacct = fake.slurm_calls("sacct")
    assert len(sacct) == 4
    assert all(len(argv[-1].split(",")) <= IDS_PER_CALL for argv in sacct)
    assert sorted(
        i for argv in sacct for i in argv[-1].removeprefix("--jobs=").split(",")
    ) == sorted(ids)
    assert max(len(" ".join(argv)) for argv in fake.calls) < 8 * IDS_PER_CALL


# ---- grid launches (job arrays) ----------------------------------------------------------


def test_a_grid_is_one_staging_and_one_array_with_a_row_per_variant(
    session: Session, fake: FakeSlurm, tmp_path: Path
) -> None:
    grid = launch.parse_grid(["LR=1e-3,3e-4", "SEED=0,1,2"])
    assert grid.names == ("LR", "SEED") and len(grid.variants) == 6
    task = parse_task("name: sweep\nenvs: {LR: '0.1'}\nrun: python train.py\n")
    jobs = launch.submit_all(session, launch.prepare(session, task, grid=grid), SilentReporter())
    base = jobs[0].extra["sweep"]
    assert [job.name for job in jobs] == [f"{base}-{index}" for index in range(6)]
    assert [job.slurm_job_id for job in jobs] == [f"100_{index}" for index in range(6)]
    assert [job.extra["grid"] for job in jobs][4] == {"LR": "3e-4", "SEED": "1"}
    assert len(fake.slurm_calls("sbatch")) == 1
    (script,) = fake.scripts
    assert (
        "#SBATCH --array=0-5" in script
        and f"#SBATCH --output={jobs[0].log_path.rsplit('/', 1)[0]}/%a.log" in script
    )
    assert "4) export LR=3e-4; export SEED=1; ;;" in script
    assert jobs[4].job_dir.endswith(f"/{base}/elements/4")
    view = status(session)
    assert len(view.jobs) == 6 and {job.state for job in view.jobs} == {State.PENDING}
    (squeue,) = fake.slurm_calls("squeue")
    # One id for the whole sweep: squeue answers for each element of the array asked for.
    assert squeue[-1] == "--jobs=100"


def test_a_grid_larger_than_max_array_size_is_split_into_arrays(
    session: Session, fake: FakeSlurm
) -> None:
    fake.max_array_size = 4
    grid = launch.parse_grid([f"SEED={','.join(str(n) for n in range(10))}"])
    prepared = launch.prepare(session, parse_task("name: s\nrun: x\n"), grid=grid)
    assert [len(batch.names) for batch in prepared.batches] == [4, 4, 2]
    jobs = launch.submit_all(session, prepared, SilentReporter())
    assert [job.slurm_job_id for job in jobs] == [
        "100_0", "100_1", "100_2", "100_3", "101_0", "101_1", "101_2", "101_3", "102_0", "102_1"
    ]  # fmt: skip
    assert "KONDUKTOR_ELEMENT=$(( SLURM_ARRAY_TASK_ID + 8 ))" in fake.scripts[2]
    assert [job.name.rsplit("-", 1)[1] for job in jobs] == [str(n) for n in range(10)]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (["LR"], "expected NAME=VALUE"),
        (["1LR=1"], "not a valid environment variable name"),
        (["BASH_ENV=x"], "BASH_ENV is reserved"),
        (["LR=1", "LR=2"], "given twice"),
        (["LR=a\nb"], "control characters"),
        (["LR=1e-3,,3e-4"], r"'LR=1e-3,,3e-4': value number 2 of 3 is empty \(a stray comma\?\)"),
        (["LR=1e-3,3e-4,"], "value last of 3 is empty"),
        ([",LR=1"], "not a valid environment variable name"),
        (["SEED=0,1,0"], r"SEED: '0' is given twice; every variant must differ"),
    ],
)
def test_bad_grids_are_refused(specs: list[str], message: str) -> None:
    from konduktor_slurm.service.errors import InputError

    with pytest.raises(InputError, match=message):
        launch.parse_grid(specs)


def test_num_jobs_is_a_sweep_of_copies_with_skypilots_rank_and_count(
    session: Session, fake: FakeSlurm
) -> None:
    from konduktor_slurm.service.errors import InputError

    grid = launch.num_jobs_grid(3)
    jobs = launch.submit_all(
        session, launch.prepare(session, parse_task("name: s\nrun: x\n"), grid=grid),
        SilentReporter(),
    )  # fmt: skip
    assert len(jobs) == 3 and len(fake.slurm_calls("sbatch")) == 1
    (script,) = fake.scripts
    assert "2) export SKYPILOT_JOB_RANK=2; export SKYPILOT_NUM_JOBS=3; ;;" in script
    for bad in (0, -1, launch.MAX_GRID + 1):
        with pytest.raises(InputError, match="--num-jobs"):
            launch.num_jobs_grid(bad)


def test_one_variant_can_be_stopped_or_the_whole_sweep(session: Session, fake: FakeSlurm) -> None:
    grid = launch.parse_grid(["SEED=0,1,2"])
    jobs = launch.submit_all(
        session,
        launch.prepare(session, parse_task("name: s\nrun: x\n"), grid=grid),
        SilentReporter(),
    )
    base = jobs[0].extra["sweep"]
    fake.calls.clear()
    control.apply_stop(session, control.plan_stop(session, (f"{base}-1",)))
    assert [argv[1:] for argv in fake.slurm_calls("scontrol")] == [["hold", "100_1"]]
    result = control.apply_down(session, control.plan_down(session, (f"{base}-*",)))
    assert len(result.done) == 3
    # The sweep's elements are one array expression: one word, one request to slurmctld.
    assert fake.slurm_calls("scancel") == [["scancel", "100_[0-2]"]]


def _sweep(session: Session, fake: FakeSlurm, variants: int) -> str:
    grid = launch.parse_grid([f"SEED={','.join(map(str, range(variants)))}"])
    prepared = launch.prepare(session, parse_task("name: s\nrun: x\n"), grid=grid)
    jobs = launch.submit_all(session, prepared, SilentReporter())
    fake.calls.clear()
    return jobs[0].extra["sweep"]


def _slurm_call_counts(fake: FakeSlurm) -> dict[str, int]:
    counts: dict[str, int] = {}
    for argv in fake.calls:
        counts[argv[0]] = counts.get(argv[0], 0) + 1
    return counts


@pytest.mark.parametrize("variants", [3, 40])
def test_a_whole_sweep_is_stopped_and_started_with_calls_that_do_not_grow_with_it(
    session: Session, fake: FakeSlurm, variants: int
) -> None:
    # A stop of a 300-variant sweep was 300 scontrol holds and 300 squeues (4 s here, and
    # 600 requests to slurmctld); now one `scontrol hold` list and one squeue look.
    base = _sweep(session, fake, variants)
    ids = sorted(f"100_{index}" for index in range(variants))
    stopped = control.apply_stop(session, control.plan_stop(session, (f"{base}-*",)))
    assert len(stopped.done) == variants and not stopped.failures
    ((verb, listed),) = [argv[1:] for argv in fake.slurm_calls("scontrol")]
    assert verb == "hold" and sorted(listed.split(",")) == ids
    assert _slurm_call_counts(fake) == {"squeue": 3, "scontrol": 1}
    states = {session.store.get(f"{base}-{index}").state for index in range(variants)}
    assert states == {"SUSPENDED (by user)"}
    fake.calls.clear()
    started = control.apply_start(session, control.plan_start(session, (f"{base}-*",)))
    assert len(started.done) == variants and not started.failures
    ((verb, listed),) = [argv[1:] for argv in fake.slurm_calls("scontrol")]
    assert verb == "release" and sorted(listed.split(",")) == ids
    states = {session.store.get(f"{base}-{index}").state for index in range(variants)}
    assert states == {"PENDING"}


def test_a_variant_gone_before_the_batched_hold_is_said_and_the_rest_are_stopped(
    session: Session, fake: FakeSlurm
) -> None:
    base = _sweep(session, fake, 3)
    plan = control.plan_stop(session, (f"{base}-*",))
    del fake.jobs["100_1"]  # ended and forgotten between the plan and the hold
    result = control.apply_stop(session, plan)
    assert result.notes == [f"{base}-1 finished meanwhile; nothing to do."]
    assert sorted(done.job.name for done in result.done) == [f"{base}-0", f"{base}-2"]
    # The list Slurm took in part is done again one job at a time, to name the one it lost.
    holds = [argv[2] for argv in fake.slurm_calls("scontrol")]
    assert sorted(holds[0].split(",")) == ["100_0", "100_1", "100_2"]
    assert sorted(holds[1:]) == ["100_0", "100_1", "100_2"]
    assert fake.jobs["100_0"].reason == fake.jobs["100_2"].reason == "JobHeldUser"


def test_a_variant_that_started_before_the_batched_hold_is_stopped_as_a_running_job(
    session: Session, fake: FakeSlurm
) -> None:
    base = _sweep(session, fake, 3)
    plan = control.plan_stop(session, (f"{base}-*",))
    fake.jobs["100_2"].queue = "RUNNING"  # slurmctld started it as the hold went out
    result = control.apply_stop(session, plan)
    actions = {done.job.name: done.action for done in result.done}
    assert actions[f"{base}-2"] is not Action.HOLD and actions[f"{base}-0"] is Action.HOLD
    assert ["requeuehold", "100_2"] in [argv[1:] for argv in fake.slurm_calls("scontrol")]


# ---- stop --mode checkpoint --------------------------------------------------------------

CHECKPOINTING = "name: t\nresources:\n  job_config:\n    checkpoint_grace: {grace}\nrun: train\n"


def _ranks_save_and_the_batch_script_requeues(job: FakeJob, signal: str) -> None:
    # What the job scripts do: the ranks exit; the batch script sees the stop request and
    # runs `scontrol requeuehold` on itself.
    job.signals = [*getattr(job, "signals", []), signal]
    job.queue, job.reason = "PENDING", "job requeued in held state"


@pytest.fixture
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "CHECKPOINT_POLL_SECONDS", (0.05,))


def test_checkpoint_stop_signals_the_ranks_and_start_releases_the_job(
    session: Session, fake: FakeSlurm, fast_polls: None
) -> None:
    name = submit(session, CHECKPOINTING.format(grace=60))
    fake.jobs["100"].queue = "RUNNING"
    fake.on_rank_signal = _ranks_save_and_the_batch_script_requeues
    told: list[str] = []
    plan = control.plan_stop(session, (name,), mode="checkpoint")
    assert [step.action for step in plan.steps] == [Action.CHECKPOINT]
    fake.calls.clear()
    result = control.apply_stop(session, plan, "checkpoint", notify=told.append)
    assert [done.action for done in result.done] == [Action.CHECKPOINT] and not result.failures
    # The steps only (not --full: srun would end the step), with the task's signal.
    assert fake.slurm_calls("scancel") == [["scancel", "--signal=HUP", "100"]]
    assert not [argv for argv in fake.slurm_calls("scontrol") if argv[1] == "requeuehold"]
    assert told == [f"{name}: every rank got SIGHUP; waiting up to 60s for them to save their "
                    "work and exit..."]  # fmt: skip
    job = session.store.get(name)
    request = Path(job.job_dir) / "stop-request"
    assert request.read_text().startswith("stopped by kdtest at ")
    assert job.user_stop is not None and job.user_stop.mode == "checkpoint"
    assert job.user_stop.until == pytest.approx(job.user_stop.at + 60)
    assert (job.state, job.detail) == (
        State.SUSPENDED_USER,
        "checkpointed and stopped by kdtest just now",
    )
    fake.calls.clear()
    started = control.apply_start(session, control.plan_start(session, (name,)))
    assert [done.action for done in started.done] == [Action.RELEASE_CHECKPOINTED]
    assert [argv[1:] for argv in fake.slurm_calls("scontrol")] == [
        ["release", "100"],
        ["update", "jobid=100", "starttime=now"],
    ]


def test_ranks_that_do_not_exit_within_the_grace_period_are_requeued_anyway(
    session: Session, fake: FakeSlurm, fast_polls: None
) -> None:
    name = submit(session, CHECKPOINTING.format(grace=1))
    fake.jobs["100"].queue = "RUNNING"  # and it stays running: the signal is ignored
    told: list[str] = []
    result = control.apply_stop(
        session, control.plan_stop(session, (name,), mode="checkpoint"), "checkpoint", told.append
    )
    assert [done.action for done in result.done] == [Action.CHECKPOINT]
    assert [argv[1] for argv in fake.slurm_calls("scontrol")][-1:] == ["requeuehold"]
    assert told[-1] == (
        f"{name}: its ranks did not all exit within the grace period; requeued and held now."
    )
    assert session.store.get(name).state == State.SUSPENDED_USER


def test_a_status_during_the_grace_period_says_checkpointing(
    session: Session, fake: FakeSlurm, fast_polls: None
) -> None:
    name = submit(session, CHECKPOINTING.format(grace=1))
    fake.jobs["100"].queue = "RUNNING"
    seen: list[tuple[str, str]] = []

    def look_meanwhile(job: FakeJob, signal: str) -> None:
        # Another terminal's `konduktor status` while the ranks save (the job still runs).
        other = Session(session.config, Store(session.config.store_path), session.slurm)
        record = other.store.get(name)
        assert record is not None
        status(other, StatusQuery())
        record = other.store.get(name)
        seen.append((record.state, record.detail))

    fake.on_rank_signal = look_meanwhile
    control.apply_stop(session, control.plan_stop(session, (name,), mode="checkpoint"))
    assert seen[0][0] == State.ACTIVE
    assert seen[0][1].startswith("checkpointing: stop asked by kdtest; requeued and held when")


def test_auto_checkpoints_a_task_that_declares_it_when_suspend_is_refused(
    session: Session, fake: FakeSlurm, fast_polls: None
) -> None:
    saving = submit(session, CHECKPOINTING.format(grace=30))
    plain = submit(session)
    for job_id in ("100", "101"):
        fake.jobs[job_id].queue = "RUNNING"
    fake.on_rank_signal = _ranks_save_and_the_batch_script_requeues
    told: list[str] = []
    result = control.apply_stop(
        session, control.plan_stop(session, (saving, plain)), notify=told.append
    )
    assert {done.job.name: done.action for done in result.done} == {
        saving: Action.CHECKPOINT,
        plain: Action.REQUEUE_HOLD,
    }
    assert fake.slurm_calls("scancel") == [["scancel", "--signal=HUP", "100"]]
    assert told[0].startswith("Slurm lets only operators suspend jobs, so a job whose task")


def test_checkpoint_mode_for_a_task_without_a_checkpoint_changes_nothing(
    session: Session, fake: FakeSlurm
) -> None:
    name = submit(session)
    fake.jobs["100"].queue = "RUNNING"
    fake.calls.clear()
    with pytest.raises(control.PlanError) as info:
        control.plan_stop(session, (name,), mode="checkpoint")
    assert "declares no checkpoint" in info.value.problems[0]
    assert not fake.slurm_calls("scancel") and not fake.slurm_calls("scontrol")


def test_a_refused_signal_leaves_no_stop_record(
    session: Session, fake: FakeSlurm, fast_polls: None
) -> None:
    name = submit(session, CHECKPOINTING.format(grace=30))
    fake.jobs["100"].queue = "RUNNING"
    plan = control.plan_stop(session, (name,), mode="checkpoint")
    del fake.jobs["100"]  # gone by the time scancel runs: Slurm says invalid job id
    result = control.apply_stop(session, plan, "checkpoint")
    assert result.done == [] and result.notes == [f"{name} finished meanwhile; nothing to do."]
    job = session.store.get(name)
    assert job.user_stop is None
    assert not (Path(job.job_dir) / "stop-request").exists()
