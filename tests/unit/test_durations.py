"""durations.py: every time grammar konduktor reads (ages, WHEN, Slurm --time, sacct durations,
Slurm timestamps) and every time format it prints."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import time

import pytest

from konduktor_slurm.durations import (
    MAX_AGE_SECONDS,
    SLURM_MAX_TIME_MINUTES,
    DurationError,
    clock,
    format_age,
    format_duration,
    humanize_ago,
    iso,
    parse_age,
    parse_elapsed,
    parse_retention,
    parse_when,
    slurm_time_parts,
    slurm_time_seconds,
    slurm_timestamp,
    slurm_timestamp_text,
)

NOW = dt.datetime(2026, 11, 28, 14, 0).timestamp()

# ---- ages


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("0s", 0),
        ("1.5h", 5400),
        ("0.5d", 43200),
        (" 2H ", 7200),
        ("3D", 3 * 86400),
        ("36500d", 36500 * 86400),  # the largest whole-day age: 100 years
        ("5214w", 5214 * 604800),
    ],
)
def test_ages(text: str, seconds: float) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "h",
        "2",  # no unit
        "2y",  # no such unit
        "2 h",
        "-2h",
        "+2h",
        "two hours",
        "2h30m",
        ".5h",
        "5.h",
        "1e3s",
        "1e400d",  # a user's crash: float("1e400") is inf
        "infd",
        "nand",
        "²h",  # str.isdigit() says yes, int() says no
        "٣h",  # an Arabic-Indic digit: not what a user types for Slurm
        "1_000s",
    ],
)
def test_ages_that_are_not_ages(text: str) -> None:
    with pytest.raises(DurationError, match="expected an age like 90s, 30m, 2h, 1d or 1w, got"):
        parse_age(text)


@pytest.mark.parametrize("text", ["100000000d", "36501d", "5215w", "999999999999h"])
def test_ages_are_bounded(text: str) -> None:
    """A user found `report --since 100000000d` crash with OverflowError: now a clean error."""
    with pytest.raises(DurationError, match="more than 100 years") as error:
        parse_age(text)
    assert text in str(error.value)


def test_the_bound_is_100_years() -> None:
    assert parse_age(f"{MAX_AGE_SECONDS}s") == MAX_AGE_SECONDS
    with pytest.raises(DurationError):
        parse_age(f"{MAX_AGE_SECONDS + 1}s")


def test_a_duration_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


# ---- WHEN: an age ago, or an ISO date/time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400.0), ("0s", 0.0), ("12H", 43200.0), (" never ", None), ("NEVER", None)],
)
def test_retentions(text: str, seconds: float | None) -> None:
    assert parse_retention(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30", "expected a duration like 30d, 12h or 0s, or never, got '30'"),
        ("forever", "expected a duration like 30d, 12h or 0s, or never, got 'forever'"),
        (
            "99999999999d",
            "'99999999999d' is more than 100 years; give a shorter duration, or never",
        ),
    ],
)
def test_not_a_retention(text: str, message: str) -> None:
    with pytest.raises(DurationError) as excinfo:
        parse_retention(text)
    assert str(excinfo.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (1.5, "1.5s"), (45, "45s"), (5400, "90m"), (43200, "12h"), (30 * 86400, "30d"),
     (14 * 86400, "2w"), (100, "100s")],
)  # fmt: skip
def test_format_age_reads_back_as_the_same_age(seconds: float, text: str) -> None:
    assert format_age(seconds) == text
    assert parse_age(text) == seconds


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - 7200),
        ("1.5d", NOW - 1.5 * 86400),
        ("1w", NOW - 604800),
        ("0s", NOW),
        ("2026-11-28", dt.datetime(2026, 11, 28).timestamp()),
        ("2026-11-28T14:00", dt.datetime(2026, 11, 28, 14).timestamp()),
        ("2026-11-28 14:00:30", dt.datetime(2026, 11, 28, 14, 0, 30).timestamp()),
        ("2026-11-28T14:00Z", dt.datetime(2026, 11, 28, 14, tzinfo=dt.UTC).timestamp()),
        ("2026-11-28T15:00+01:00", dt.datetime(2026, 11, 28, 14, tzinfo=dt.UTC).timestamp()),
        (" 2026-11-28 ", dt.datetime(2026, 11, 28).timestamp()),
        ("1900-01-01", dt.datetime(1900, 1, 1).timestamp()),
    ],
)
def test_when(text: str, expected: float) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "2h ago", "28/11/2026", "1e400d", "2026-13-01"])
def test_when_that_is_neither(text: str) -> None:
    with pytest.raises(DurationError, match="or a date/time like 2026-11-28 or 2026-11-28T14:00"):
        parse_when(text, NOW)


@pytest.mark.parametrize("text", ["0001-01-01", "9999-12-31T23:59:59-12:00"])
def test_when_beyond_what_a_date_can_print(text: str) -> None:
    with pytest.raises(DurationError, match="out of range"):
        parse_when(text, NOW)


def test_when_is_bounded_like_an_age() -> None:
    with pytest.raises(DurationError, match="more than 100 years"):
        parse_when("100000000d", NOW)


# ---- Slurm --time


@pytest.mark.parametrize(
    ("text", "parts", "seconds"),
    [
        ("30", {"m": 30}, 1800),
        ("45:00", {"m": 45, "s": 0}, 2700),
        ("99:30", {"m": 99, "s": 30}, 99 * 60 + 30),  # minutes may exceed 59 here
        ("4:00:00", {"h": 4, "m": 0, "s": 0}, 14400),
        ("04:00:00", {"h": 4, "m": 0, "s": 0}, 14400),
        ("100:00:00", {"h": 100, "m": 0, "s": 0}, 360000),  # and hours exceed 23
        ("1-12", {"d": 1, "h": 12}, 129600),
        ("1-12:30", {"d": 1, "h": 12, "m": 30}, 131400),
        ("2-00:00:00", {"d": 2, "h": 0, "m": 0, "s": 0}, 172800),
        ("0:30", {"m": 0, "s": 30}, 30),
        (" 30 ", {"m": 30}, 1800),
        (str(SLURM_MAX_TIME_MINUTES), {"m": SLURM_MAX_TIME_MINUTES}, SLURM_MAX_TIME_MINUTES * 60),
    ],
)
def test_slurm_time_formats(text: str, parts: dict[str, int], seconds: int) -> None:
    assert slurm_time_parts(text) == parts
    assert slurm_time_seconds(text) == seconds


@pytest.mark.parametrize(
    "text", ["2h", "25 hours", "1.5", "-5", "1:2:3:4", "1-2-3", "", "UNLIMITED", "٣٠", "1e3"]
)
def test_not_a_slurm_time(text: str) -> None:
    assert slurm_time_parts(text) is None
    with pytest.raises(DurationError, match=r"expected a Slurm time limit: minutes \(30\)"):
        slurm_time_seconds(text)


@pytest.mark.parametrize("text", ["1:99", "1:60", "1:60:00", "1:00:60", "1-24", "1-23:60"])
def test_slurm_time_fields_out_of_range(text: str) -> None:
    """Slurm itself carries ``1:99`` over to 2:39 without a word; konduktor says so instead."""
    with pytest.raises(DurationError, match=f"'{text}' has a field out of range"):
        slurm_time_seconds(text)


@pytest.mark.parametrize("text", ["0", "00:00", "0:00:00", "0-0", "0-00:00:00"])
def test_slurm_time_must_be_longer_than_zero(text: str) -> None:
    with pytest.raises(DurationError, match="time limit must be longer than zero"):
        slurm_time_seconds(text)


@pytest.mark.parametrize(
    "text", [str(SLURM_MAX_TIME_MINUTES + 1), "99999999999", "49711-00:00:00", "596524:00:00"]
)
def test_slurm_time_beyond_what_slurm_keeps(text: str) -> None:
    """Observed on 22.05: --time=35791394 gives a garbage limit, 99999999999 one of INVALID."""
    with pytest.raises(DurationError, match="longer than Slurm can keep"):
        slurm_time_seconds(text)


def test_seconds_round_up_to_a_minute_as_slurm_does() -> None:
    last = SLURM_MAX_TIME_MINUTES - 1
    assert slurm_time_seconds(f"{last}:59") == last * 60 + 59  # rounds up to the maximum
    with pytest.raises(DurationError, match="longer than Slurm can keep"):
        slurm_time_seconds(f"{SLURM_MAX_TIME_MINUTES}:01")


def test_a_huge_number_of_digits_is_no_time_limit_not_a_crash() -> None:
    text = "9" * 5000  # int() refuses more than 4300 digits
    assert slurm_time_parts(text) is None
    with pytest.raises(DurationError, match="expected a Slurm time limit"):
        slurm_time_seconds(text)
    with pytest.raises(DurationError):
        parse_age(text + "s")


# ---- sacct durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00:00", 0),
        ("00:00:06", 6),
        ("01:02:03", 3723),
        ("2-01:02:03", 2 * 86400 + 3723),
        ("12:34", 754),  # MM:SS
        ("00:01.500", 1),  # TotalCPU's MM:SS.mmm
        ("123-00:00:00", 123 * 86400),
        (" 00:10:00 ", 600),
    ],
)
def test_sacct_durations(text: str, seconds: int) -> None:
    assert parse_elapsed(text) == seconds


@pytest.mark.parametrize("text", ["", "INVALID", "Unknown", "1:2:3:4", "5", "00:00:99x"])
def test_not_a_sacct_duration(text: str) -> None:
    with pytest.raises(DurationError, match=r"expected a duration like \[D-\]HH:MM:SS"):
        parse_elapsed(text)


# ---- Slurm timestamps


def test_slurm_timestamps_are_local_time() -> None:
    assert slurm_timestamp("2026-11-28T14:00:00") == NOW
    assert slurm_timestamp(" 2026-11-28T14:00:00 ") == NOW
    assert slurm_timestamp_text(NOW) == "2026-11-28T14:00:00"
    assert slurm_timestamp(slurm_timestamp_text(NOW + 59.9)) == NOW + 59  # whole seconds


@pytest.mark.parametrize("text", ["Unknown", "None", "NONE", "N/A", "n/a", "(null)", ""])
def test_slurm_has_words_for_no_time_yet(text: str) -> None:
    assert slurm_timestamp(text) is None


@pytest.mark.parametrize("text", ["UNLIMITED", "tomorrow", "0000-00-00T00:00:00"])
def test_not_a_slurm_timestamp(text: str) -> None:
    with pytest.raises(DurationError, match="expected a Slurm time like 2026-11-28T17:40:16"):
        slurm_timestamp(text)


# ---- printing


def test_clock_is_konduktors_style() -> None:
    assert clock(NOW) == "11/28/26 02:00PM"
    assert clock(NOW + 5 * 3600 + 7 * 60) == "11/28/26 07:07PM"
    assert clock(None) == "-"


def test_iso_carries_this_machines_offset() -> None:
    text = iso(NOW)
    assert text is not None and text.startswith("2026-11-28T14:00:00")
    assert dt.datetime.fromisoformat(text).timestamp() == NOW
    assert iso(None) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m 0s"),
        (200, "3m 20s"),
        (3600, "1h 0m"),
        (26 * 3600 + 5 * 60 + 59, "26h 5m"),
    ],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "just now"),
        (9.9, "just now"),
        (-30, "just now"),  # clock skew
        (float("inf"), "just now"),
        (float("nan"), "just now"),
        (10, "10 secs"),
        (60, "1 min"),
        (179, "2 mins"),
        (3600, "1 hr"),
        (7200, "2 hrs"),
        (86400, "1 day"),
        (4 * 86400, "4 days"),
    ],
)
def test_humanize_ago(seconds: float, text: str) -> None:
    assert humanize_ago(seconds) == text


def test_humanize_ago_is_still_importable_from_lifecycle() -> None:
    from konduktor_slurm.lifecycle import humanize_ago as from_lifecycle

    assert from_lifecycle is humanize_ago


def test_durations_and_lifecycle_stay_light() -> None:
    """`konduktor status` and the pure lifecycle import this: no click, rich, pydantic..."""
    code = (
        "import sys, konduktor_slurm.durations, konduktor_slurm.lifecycle; "
        "print(sorted(m for m in ('click', 'rich', 'pydantic', 'jinja2', 'paramiko', "
        "'konduktor_slurm.slurm', 'konduktor_slurm.store') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


# Offsets of whole hours, half hours (St John's, Kolkata) and 45 minutes (Chatham, +12:45 and
# +13:45); summer time that moves by 30 minutes (Lord Howe); an offset with seconds
# (Amsterdam before 1937); leap seconds (right/UTC, where tzdata ships it); and a POSIX rule
# whose summer time starts and ends inside a quarter hour, at 02:07:13 and 03:07:13.
ISO_ZONES = [
    "UTC",
    "XST-1XDT,M3.5.0/2:07:13,M10.5.0/3:07:13",
    "Europe/Berlin",
    "America/St_Johns",
    "Asia/Kolkata",
    "Europe/Amsterdam",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
] + (["right/UTC"] if os.path.exists("/usr/share/zoneinfo/right/UTC") else [])


@pytest.mark.parametrize("zone", ISO_ZONES)
def test_iso_writes_what_datetime_writes(zone: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # iso() takes a faster way than datetime's; it must write the same text, offsets with
    # seconds (Amsterdam before 1937: +00:19:32) and rounding at the microsecond included.
    import datetime as dt
    import random
    import time

    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        rng = random.Random(zone)
        epochs = [rng.uniform(-2.2e9, 4e9) for _ in range(3000)]
        epochs += [k + 0.9999995 for k in range(0, 10**6, 997)]  # rounds up to the next second
        epochs += [k + 0.9999994999 for k in range(0, 10**6, 991)]  # does not
        epochs += [0.0, -0.5, -1.0000006, -1e-7, 1_764_500_000.0]
        # Every 7 s (and a fraction) for two hours around each change of offset in 2025-2026:
        # the quarter hours iso() reuses must never straddle one.
        hours = range(1_735_689_600, 1_798_761_600, 3600)
        for before, after in itertools.pairwise(hours):
            if time.localtime(before).tm_gmtoff != time.localtime(after).tm_gmtoff:
                epochs += [before - 3600 + k * 7.25 for k in range(7200 // 7)]
        epochs += [1_764_500_000 + k * 61.5 for k in range(2000)]  # jobs of one sweep
        for epoch in epochs:
            want = dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
            assert iso(epoch) == want, epoch
    finally:
        monkeypatch.undo()
        time.tzset()


def test_iso_follows_a_change_of_zone_in_a_long_lived_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK or the dashboard may outlive a change of TZ (followed by time.tzset()): the
    # quarter hours iso() remembered under the old zone must not answer for the new one.
    epochs = [1_764_500_000 + k * 97 for k in range(100)]
    written = {}
    try:
        for zone, offset in (("UTC", "+00:00"), ("Asia/Kolkata", "+05:30"), ("UTC", "+00:00")):
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            written[zone] = [iso(epoch) for epoch in epochs]
            assert all(text.endswith(offset) for text in written[zone]), zone
        utc = [dt.datetime.fromtimestamp(e, dt.UTC).isoformat(timespec="seconds") for e in epochs]
        assert written["UTC"] == utc
    finally:
        monkeypatch.undo()
        time.tzset()


def test_iso_remembers_a_bounded_number_of_quarter_hours_and_minutes() -> None:
    # A report over years of jobs meets tens of thousands of quarter hours and minutes.
    from konduktor_slurm import durations

    for quarter in range(20_000):
        iso(quarter * 900.0 + 450)
    for minute in range(40_000):
        iso(minute * 60.0 + 30)
    assert len(durations._QUARTERS) <= 4096
    assert len(durations._MINUTES) <= 16384
