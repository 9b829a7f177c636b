"""The cron plumbing of `konduktor report`: ages, --since, the lock and atomic writes.

These helpers decide whether a cron run reports twice, waits forever or leaves a
half-written file for node_exporter, so they are tested apart from the live scenario.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import time
from pathlib import Path

import pytest

from konduktor_slurm.cli import EXIT_USAGE
from konduktor_slurm.cli.report import parse_age, parse_since, write_atomically
from konduktor_slurm.service.report import report_lock


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5h", 5400),
        (" 2H ", 7200),
        ("2w", 14 * 86400),  # the same ages as `status --after` (durations.py)
    ],
)
def test_parse_age(text: str, seconds: float) -> None:
    assert parse_age(text, "--stuck-after") == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "2", "2y", "-2h", "two hours", "2h30m", "1e400d", "100000000d", "infd"]
)
def test_parse_age_rejects_what_it_cannot_read(text: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_age(text, "--stuck-after")
    assert exc.value.code == EXIT_USAGE
    assert "--stuck-after" in capsys.readouterr().err


def test_since_takes_an_age_relative_to_now() -> None:
    assert parse_since("2h", 10_000.0) == 10_000.0 - 7200


def test_since_takes_an_iso_time_local_or_with_a_zone() -> None:
    local = dt.datetime(2026, 11, 28, 14, 0)
    assert parse_since("2026-11-28T14:00", 0.0) == local.timestamp()
    utc = dt.datetime(2026, 11, 28, 14, 0, tzinfo=dt.UTC).timestamp()
    assert parse_since("2026-11-28T14:00Z", 0.0) == utc
    assert parse_since("2026-11-28T15:00+01:00", 0.0) == utc


@pytest.mark.parametrize("text", ["yesterday", "100000000d", "1e400d", "0001-01-01"])
def test_since_rejects_garbage_and_ages_beyond_any_date(text: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_since(text, time.time())
    assert exc.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("Error: --since: ") and text in err and len(err.splitlines()) == 1


def test_lock_is_taken_when_free_and_released_after(tmp_path: Path) -> None:
    path = tmp_path / "home" / "report.lock"  # the home may not exist yet on a first run
    with report_lock(path, timeout=1) as locked:
        assert locked
    with report_lock(path, timeout=0) as locked:
        assert locked  # released by the first run


def test_an_overlapping_run_gives_up_after_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "report.lock"
    with open(path, "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another run, e.g. a slow previous cron tick
        started = time.monotonic()
        with report_lock(path, timeout=0.5) as locked:
            assert not locked
        waited = time.monotonic() - started
    assert 0.5 <= waited < 2  # bounded: waits its timeout, not forever


def test_write_atomically_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "textfile" / "konduktor.prom"  # directory created if missing
    write_atomically(target, "old\n")
    write_atomically(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["konduktor.prom"]
    assert target.stat().st_mode & 0o777 == 0o644  # node_exporter / the web server can read it


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "konduktor.html"
    write_atomically(target, "previous report")

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        write_atomically(target, "half a report")
    assert target.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["konduktor.html"]


def test_a_notify_value_that_is_no_webhook_url_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    import os
    import subprocess

    from tests.conftest import KONDUKTOR

    env = {**os.environ, "KONDUKTOR_HOME": str(tmp_path / "home")}
    env.pop("KONDUKTOR_CONFIG", None)
    done = subprocess.run(
        [KONDUKTOR, "report", "--notify", "hooks.slack.com/services/T/B/x"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == EXIT_USAGE
    assert done.stderr == (
        "Error: --notify: expected an http:// or https:// webhook URL, got "
        "'hooks.slack.com/services/T/B/x'\n"
    )
    assert done.stdout == "" and not (tmp_path / "home" / "state.db").exists()
