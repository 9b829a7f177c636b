"""event_callback: run where konduktor runs, once per state change, by whichever follower
sees it first; a failing or hanging callback is one line on stderr and stops nothing."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from konduktor_slurm.service import launch
from konduktor_slurm.service.logs import follow
from konduktor_slurm.service.notify import run_callback, run_due
from konduktor_slurm.service.report import ReportOptions, report_run
from konduktor_slurm.service.session import Session
from konduktor_slurm.service.waiting import wait_until_terminal
from konduktor_slurm.staging import SilentReporter
from konduktor_slurm.store import DueEvent, JobRecord, Store
from konduktor_slurm.task import parse_task
from tests.unit.fake_slurm import FakeSlurm
from tests.unit.test_workflows import make_session

# Writes what it was told, one JSON line per call.
RECORDER = (
    sys.executable + " -c 'import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
    'if k.startswith(("KONDUKTOR_", "JOB_STATUS", "TASK_NAME", "SKYPILOT_TASK_ID"))}))\' '
    ">> {log}"
)


@pytest.fixture
def fake() -> FakeSlurm:
    return FakeSlurm()


@pytest.fixture
def session(tmp_path: Path, fake: FakeSlurm) -> Session:
    return make_session(tmp_path, fake)


def submit(session: Session, callback: str) -> JobRecord:
    text = f"name: cb\nevent_callback: {json.dumps(callback)}\nrun: train\n"
    return launch.submit(session, launch.prepare(session, parse_task(text)), SilentReporter())


def calls(log: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_launch_then_a_waiter_run_each_change_once_with_what_changed(
    session: Session, fake: FakeSlurm, tmp_path: Path
) -> None:
    log = tmp_path / "events.jsonl"
    job = submit(session, RECORDER.replace("{log}", str(log)))
    # launch itself saw CREATED and PENDING.
    assert [(c["KONDUKTOR_OLD_STATE"], c["KONDUKTOR_NEW_STATE"]) for c in calls(log)] == [
        ("", "CREATED"),
        ("CREATED", "PENDING"),
    ]
    fake.jobs["100"].queue = "RUNNING"
    seen = []
    now = [time.time()]

    def sleep(seconds: float) -> None:
        # The waiter's clocks move with its sleeps: a wait that finds the last shared look
        # at Slurm still fresh sleeps again rather than asking (it would spin on real time).
        now[0] += seconds
        seen.append(job.state)
        fake.jobs["100"].queue, fake.jobs["100"].acct = None, "COMPLETED"

    wait_until_terminal(session, job, sleep=sleep, clock=lambda: now[0], wall=lambda: now[0])
    got = calls(log)
    assert [(c["KONDUKTOR_OLD_STATE"], c["KONDUKTOR_NEW_STATE"]) for c in got] == [
        ("", "CREATED"),
        ("CREATED", "PENDING"),
        ("PENDING", "ACTIVE"),
        ("ACTIVE", "COMPLETED"),
    ]
    active = got[2]
    assert active["KONDUKTOR_JOB_NAME"] == job.name and active["KONDUKTOR_TASK_NAME"] == "cb"
    assert active["KONDUKTOR_SLURM_JOB_ID"] == "100"
    assert active["KONDUKTOR_STATE_DETAIL"] == "running on node1"
    assert active["KONDUKTOR_RESTART_ATTEMPT"] == "0"
    assert active["JOB_STATUS"] == "ACTIVE" and active["TASK_NAME"] == "cb"
    assert active["SKYPILOT_TASK_ID"] == f"konduktor-{job.name}-100"
    assert active["KONDUKTOR_EVENT_TIME"].startswith(time.strftime("%Y-"))
    # Nothing left: a report afterwards runs none again.
    with report_run(session, ReportOptions(lock_timeout=1)) as run:
        assert run is not None
    assert len(calls(log)) == 4


def test_a_follower_runs_the_callbacks_of_the_changes_it_sees(
    session: Session, fake: FakeSlurm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import konduktor_slurm.logs as logs_module

    monkeypatch.setattr(logs_module, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(logs_module, "SETTLE_SECONDS", 0.0)
    log = tmp_path / "events.jsonl"
    job = submit(session, RECORDER.replace("{log}", str(log)))
    Path(job.log_path).write_text("0: hello\n")
    fake.jobs["100"].queue, fake.jobs["100"].acct = None, "FAILED"
    fake.jobs["100"].exit_code = "3:0"
    follow(session, job, lambda text: None)
    assert [c["KONDUKTOR_NEW_STATE"] for c in calls(log)] == ["CREATED", "PENDING", "FAILED"]
    assert calls(log)[-1]["KONDUKTOR_STATE_DETAIL"] == "exited 3"


def test_a_report_runs_the_callbacks_nobody_ran(
    session: Session, fake: FakeSlurm, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "events.jsonl"
    job = submit(session, RECORDER.replace("{log}", str(log)) + "; echo noise; echo more noise >&2")
    fake.jobs["100"].queue = "RUNNING"
    # `status` records the change but runs no callback.
    from konduktor_slurm.service.status import StatusQuery, status

    status(session, StatusQuery())
    assert [c["KONDUKTOR_NEW_STATE"] for c in calls(log)] == ["CREATED", "PENDING"]
    with report_run(session, ReportOptions(lock_timeout=1)) as run:
        assert run is not None
    assert [c["KONDUKTOR_NEW_STATE"] for c in calls(log)] == ["CREATED", "PENDING", "ACTIVE"]
    out, err = capsys.readouterr()
    assert "noise" not in out and "noise" not in err  # a callback's output is its own
    assert {c["KONDUKTOR_JOB_NAME"] for c in calls(log)} == {job.name}


def event(command: str, state: str = "FAILED") -> DueEvent:
    return DueEvent(7, "cb-1a2b", "ACTIVE", state, "exited 3", time.time(), command)


def test_a_failing_callback_is_one_warning_and_nothing_more() -> None:
    warned: list[str] = []
    ok = run_callback(
        event("echo first; echo 'no such webhook' >&2; exit 4"), None, warn=warned.append
    )
    assert not ok
    assert warned == [
        "Warning: event_callback of cb-1a2b (ACTIVE -> FAILED) exited 4 after "
        + warned[0].split(" after ")[1]
    ]
    assert warned[0].endswith(": no such webhook")


def test_a_hanging_callback_is_stopped_at_its_timeout_with_what_it_started(tmp_path: Path) -> None:
    warned: list[str] = []
    marker = tmp_path / "child-still-running"
    command = f"(sleep 3; touch {marker}) & sleep 30"
    started = time.monotonic()
    assert not run_callback(event(command), None, warn=warned.append, timeout=0.5)
    assert time.monotonic() - started < 3
    assert warned == ["Warning: event_callback of cb-1a2b (ACTIVE -> FAILED) did not finish "
                      "within 0.5s; it was stopped"]  # fmt: skip
    time.sleep(3.5)
    assert not marker.exists()  # its children were stopped with it


def test_jobs_without_a_callback_cost_no_claim(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    job = JobRecord("x-1a2b", "x", "u", "-", 1, "/j", "/j/log", "CREATED", 1.0)
    store.add(job)
    assert run_due(store, [job]) == 0
