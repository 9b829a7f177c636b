"""Job names are unique in the store and in jobs_dir, whatever the random draw."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from konduktor_slurm.config import Settings
from konduktor_slurm.service import launch
from konduktor_slurm.service.session import Session
from konduktor_slurm.slurm import Slurm
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.task import parse_task
from konduktor_slurm.transport import LocalTransport


@pytest.fixture
def session(tmp_path: Path) -> Session:
    config = Settings(
        home=tmp_path, config_path=tmp_path / "config.yaml", jobs_dir=str(tmp_path / "jobs")
    )
    return Session(config, Store(tmp_path / "state.db"), Slurm(LocalTransport()))


def force_draws(monkeypatch: pytest.MonkeyPatch, *draws: str) -> None:
    sequence = itertools.chain(draws, itertools.repeat("ffff"))
    monkeypatch.setattr(launch.random_tokens, "token_hex", lambda _n: next(sequence))


def record(name: str, job_dir: str) -> JobRecord:
    return JobRecord(
        name, "t", "me", "1x(-)", 1, job_dir, f"{job_dir}/job.log", "FAILED", time.time()
    )


def test_a_name_in_the_store_is_drawn_again(session: Session, monkeypatch) -> None:
    session.store.add(record("t-aaaa", "/nowhere/t-aaaa"))
    force_draws(monkeypatch, "aaaa", "aaaa", "bbbb")
    prepared = launch.prepare(session, parse_task("name: t\nrun: x\n"))
    assert prepared.job_name == "t-bbbb"
    assert "#SBATCH --job-name=t-bbbb" in prepared.script


def test_a_name_taken_between_prepare_and_claim_is_given_back(
    session: Session, monkeypatch
) -> None:
    force_draws(monkeypatch, "aaaa", "cccc")
    prepared = launch.prepare(session, parse_task("name: t\nrun: x\n"))
    assert prepared.job_name == "t-aaaa"
    session.store.add(record("t-aaaa", "/elsewhere"))  # another launch, same store
    claimed, (job,) = launch.claim(session, prepared)
    assert job.name == claimed.job_name == "t-cccc"
    assert "#SBATCH --job-name=t-cccc" in claimed.script
    assert Path(claimed.plan.job_dir).is_dir()


def test_a_directory_left_by_another_store_is_drawn_again(session: Session, monkeypatch) -> None:
    jobs = Path(session.config.jobs_dir)
    (jobs / "t-dddd").mkdir(parents=True)  # a laptop and the login node share jobs_dir
    (jobs / "t-dddd" / "job.log").write_text("someone else's job\n")
    force_draws(monkeypatch, "dddd", "eeee")
    prepared = launch.prepare(session, parse_task("name: t\nrun: x\n"))
    claimed, (job,) = launch.claim(session, prepared)
    assert job.name == claimed.job_name == "t-eeee"
    assert session.store.get("t-dddd") is None  # the name was given back
    assert (jobs / "t-dddd" / "job.log").read_text() == "someone else's job\n"
