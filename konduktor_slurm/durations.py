"""Every time grammar konduktor reads or prints, in one place.

Read: ages (``90s``, ``30m``, ``2h``, ``1.5d``, ``1w``), "WHEN" (an age ago, or an ISO
date/time), Slurm's ``--time`` formats, sacct's ``[D-]HH:MM:SS`` durations and Slurm's
timestamps. Printed: Konduktor's clock style, ISO 8601, short durations and "22 mins".

Pure and light (standard library only): ``konduktor status`` and the pure lifecycle module
import it. Every parse error is a ``DurationError`` whose message says what was expected and
what was given; callers turn it into their own error style (``click.BadParameter``,
``fail(...)``, a task validation issue).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from typing import Final

__all__ = [
    "AGE_UNITS",
    "MAX_AGE_SECONDS",
    "RETENTION_EXPECTED",
    "SLURM_MAX_TIME_MINUTES",
    "SLURM_TIME_EXPECTED",
    "DurationError",
    "clock",
    "format_age",
    "format_duration",
    "humanize_ago",
    "iso",
    "parse_age",
    "parse_elapsed",
    "parse_retention",
    "parse_when",
    "slurm_time_parts",
    "slurm_time_seconds",
    "slurm_timestamp",
    "slurm_timestamp_text",
]


class DurationError(ValueError):
    """A duration, age, time or date that cannot be read; the message is for the user."""


# --------------------------------------------------------------------------------------
# Ages: "90s", "30m", "2h", "1.5d", "1w"
# --------------------------------------------------------------------------------------

AGE_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# ASCII digits only: str.isdigit() also accepts "²" and "٣", which int()/float() then refuse
# or Slurm does not understand. No exponent, sign, "inf" or "nan".
_AGE = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?)([smhdw])", re.IGNORECASE)
# Far beyond any job's history, and small enough that "that long ago" is still a date every
# datetime function can print (100000000d used to crash `report --since` with OverflowError).
MAX_AGE_SECONDS: Final = 100 * 365 * 86400
_AGE_EXAMPLES = "90s, 30m, 2h, 1d or 1w"


def parse_age(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1.5d``, ``1w`` (case and spaces ignored) -> seconds."""
    stripped = text.strip()
    match = _AGE.fullmatch(stripped)
    if match is None:
        raise DurationError(f"expected an age like {_AGE_EXAMPLES}, got {text!r}")
    seconds = float(match.group(1)) * AGE_UNITS[match.group(2).lower()]
    if seconds > MAX_AGE_SECONDS:
        raise DurationError(f"{stripped!r} is more than 100 years; give a shorter age or a date")
    return seconds


RETENTION_EXPECTED: Final = "a duration like 30d, 12h or 0s, or never"


def parse_retention(text: str) -> float | None:
    """How long finished jobs' snapshots are kept (config.yaml ``retention``, ``konduktor
    prune --older-than``): an age (``30d``, ``12h``, ``0s``) -> seconds; ``never`` -> None."""
    if text.strip().lower() == "never":
        return None
    try:
        return parse_age(text)
    except DurationError:
        if _AGE.fullmatch(text.strip()):  # an age, but too long
            raise DurationError(
                f"{text.strip()!r} is more than 100 years; give a shorter duration, or never"
            ) from None
        raise DurationError(f"expected {RETENTION_EXPECTED}, got {text!r}") from None


def parse_when(text: str, now: float) -> float:
    """WHEN: an age meaning that long before ``now`` (``2h``), or an ISO date/time
    (``2026-11-28``, ``2026-11-28T14:00``, ``2026-11-28T14:00Z``; local time unless a zone
    is given) -> epoch seconds."""
    stripped = text.strip()
    if _AGE.fullmatch(stripped):
        return now - parse_age(stripped)
    expected = (
        f"expected an age like {_AGE_EXAMPLES} or a date/time like 2026-11-28 or "
        f"2026-11-28T14:00, got {text!r}"
    )
    try:
        when = dt.datetime.fromisoformat(stripped)
    except ValueError:
        raise DurationError(expected) from None
    try:
        epoch = when.timestamp()
        dt.datetime.fromtimestamp(epoch)  # printable again (reports show the window start)
    except (OverflowError, OSError, ValueError):
        raise DurationError(f"{stripped!r} is out of range for a date") from None
    return epoch


# --------------------------------------------------------------------------------------
# Slurm's --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS
# --------------------------------------------------------------------------------------

SLURM_TIME_EXPECTED: Final = (
    "a Slurm time limit: minutes (30), 'MM:SS', 'HH:MM:SS', 'D-HH', 'D-HH:MM' or 'D-HH:MM:SS'"
)
_N = r"([0-9]{1,12})"  # ASCII digits, as Slurm reads them; longer is no time limit at all
_SLURM_TIME_FORMATS: Final[tuple[tuple[re.Pattern[str], tuple[str, ...]], ...]] = (
    (re.compile(_N), ("m",)),
    (re.compile(rf"{_N}:{_N}"), ("m", "s")),
    (re.compile(rf"{_N}:{_N}:{_N}"), ("h", "m", "s")),
    (re.compile(rf"{_N}-{_N}"), ("d", "h")),
    (re.compile(rf"{_N}-{_N}:{_N}"), ("d", "h", "m")),
    (re.compile(rf"{_N}-{_N}:{_N}:{_N}"), ("d", "h", "m", "s")),
)
_UNIT_SECONDS: Final = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Observed on 22.05: one minute more and Slurm's own arithmetic wraps (scontrol shows a
# limit of millions of days); squeue prints INVALID well before. About 68 years.
SLURM_MAX_TIME_MINUTES: Final = 35_791_393


def slurm_time_parts(text: str) -> dict[str, int] | None:
    """``"1-12:30"`` -> ``{"d": 1, "h": 12, "m": 30}``; None when not a Slurm time format."""
    for pattern, units in _SLURM_TIME_FORMATS:
        match = pattern.fullmatch(text.strip())
        if match is not None:
            return dict(zip(units, (int(group) for group in match.groups()), strict=True))
    return None


def slurm_time_seconds(text: str) -> int:
    """A Slurm ``--time`` value -> seconds, checked the way Slurm would read it.

    A field below the largest one must be in range (``1:99`` and ``1-24`` are errors, not
    silently carried over as Slurm does), the limit must be longer than zero and short enough
    for Slurm to keep it.
    """
    parts = slurm_time_parts(text)
    stripped = text.strip()
    if parts is None:
        raise DurationError(f"expected {SLURM_TIME_EXPECTED}, got {text!r}")
    if (
        parts.get("s", 0) >= 60
        or ("h" in parts and parts.get("m", 0) >= 60)
        or ("d" in parts and parts["h"] >= 24)
    ):
        raise DurationError(
            f"expected {SLURM_TIME_EXPECTED}; {stripped!r} has a field out of range"
        )
    seconds = sum(_UNIT_SECONDS[unit] * count for unit, count in parts.items())
    if seconds <= 0:
        raise DurationError(f"time limit must be longer than zero, got {stripped!r}")
    if math.ceil(seconds / 60) > SLURM_MAX_TIME_MINUTES:  # Slurm rounds seconds up
        raise DurationError(
            f"time limit {stripped!r} is longer than Slurm can keep "
            f"({SLURM_MAX_TIME_MINUTES} minutes, about 68 years)"
        )
    return seconds


# --------------------------------------------------------------------------------------
# What sacct and squeue print: durations and timestamps
# --------------------------------------------------------------------------------------

_ELAPSED = re.compile(r"(?:([0-9]{1,9})-)?(?:([0-9]{1,9}):)?([0-9]{1,9}):([0-9]{1,2})(?:\.[0-9]+)?")


def parse_elapsed(text: str) -> int:
    """sacct's ``[D-][HH:]MM:SS[.mmm]`` (Elapsed, Suspended, TotalCPU) -> whole seconds."""
    match = _ELAPSED.fullmatch(text.strip())
    if match is None:
        raise DurationError(f"expected a duration like [D-]HH:MM:SS, got {text!r}")
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


# Slurm's spellings of "no time" in timestamp columns (squeue prints N/A and NONE too).
_NO_TIMESTAMP: Final = frozenset({"", "unknown", "none", "n/a", "(null)"})


def slurm_timestamp(text: str) -> float | None:
    """Slurm's local wall-clock time ``2026-11-28T17:40:16`` -> epoch seconds; None for the
    words Slurm prints when there is no time yet ("Unknown", "None", "N/A")."""
    stripped = text.strip()
    if stripped.lower() in _NO_TIMESTAMP:
        return None
    try:
        return dt.datetime.fromisoformat(stripped).timestamp()
    except (ValueError, OverflowError, OSError):
        raise DurationError(
            f"expected a Slurm time like 2026-11-28T17:40:16, got {text!r}"
        ) from None


def slurm_timestamp_text(epoch: float) -> str:
    """Epoch seconds -> what Slurm options take (``--starttime=2026-11-28T17:40:16``)."""
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%S")


# --------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------


def clock(epoch: float | None) -> str:
    """Konduktor's timestamp style: ``08/08/25 04:11PM``; ``-`` for no time."""
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).strftime("%m/%d/%y %I:%M%p")


def iso(epoch: float | None) -> str | None:
    """ISO 8601 with this machine's UTC offset: ``2026-11-28T17:40:16+01:00``.

    What ``datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")`` writes,
    at a fraction of its cost (``status --json`` writes two or three a job, a report
    thousands): the same rounding to the microsecond first, the same offset. A time within
    a minute met before is that minute's text, its seconds and its offset; a minute takes
    its date, hour and offset from its quarter hour's one ``time.localtime``; the others
    are one ``time.localtime`` each. Years outside 1000-9999 (strftime would not pad them)
    take datetime's way.
    """
    if epoch is None:
        return None
    seconds = int(epoch)
    # datetime's ROUND_HALF_EVEN to the microsecond: a fraction of 0.9999995 or more is the
    # next second. Past 1970 and below that (nearly always) the whole seconds are the time.
    if epoch < 0 or (epoch - seconds) * 1e6 >= 999_999.5:
        fraction, whole = math.modf(epoch)
        micro = round(fraction * 1e6)
        seconds = int(whole) + (1 if micro >= 1_000_000 else -1 if micro < 0 else 0)
    if time.tzname is not _CACHES_ZONE[0]:  # time.tzset() makes a new tuple: a new zone
        _QUARTERS.clear()
        _MINUTES.clear()
        _CACHES_ZONE[0] = time.tzname
    minute, secs = divmod(seconds, 60)
    known = _MINUTES.get(minute)
    if known is None:
        known = _local_minute(minute)
    if known:
        head, zone = known
        return f"{head}{_TWO_DIGITS[secs]}{zone}"
    local = time.localtime(seconds)
    if not 1000 <= local.tm_year <= 9999:
        return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
    offset = local.tm_gmtoff
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + (_ZONES.get(offset) or _zone(offset))


_QUARTER: Final = 900
# Quarter hour (epoch seconds // 900) -> ("2026-11-28T17:", its first minute, "+01:00"), or
# False when its local time is not 15 plain minutes of one offset; a few thousand at most.
_QUARTERS: dict[int, tuple[str, int, str] | bool] = {}
_QUARTERS_KEPT: Final = 4096
# Minute (epoch seconds // 60) -> ("2026-11-28T17:40:", "+01:00"), or False: taken from its
# quarter hour's. A status writes a job's time as the minute's text, two digits and the
# zone: a third of the work of formatting it (status --json of 200 jobs writes 200).
_MINUTES: dict[int, tuple[str, str] | bool] = {}
_MINUTES_KEPT: Final = 16384
_CACHES_ZONE: list[object] = [None]  # the time.tzname both were made under
_TWO_DIGITS: Final = tuple(f"{number:02}" for number in range(60))


def _local_minute(minute: int) -> tuple[str, str] | bool:
    quarter, into = divmod(minute, 15)
    known = _QUARTERS.get(quarter)
    if known is None:
        known = _local_quarter(quarter)
    text: tuple[str, str] | bool = False
    if known:
        head, first_minute, zone = known
        text = (f"{head}{first_minute + into:02}:", zone)
    if len(_MINUTES) >= _MINUTES_KEPT:  # a report over years of jobs: bounded, not grown
        _MINUTES.clear()
    _MINUTES[minute] = text
    return text


def _local_quarter(quarter: int) -> tuple[str, int, str] | bool:
    """What iso() reuses for the times of one quarter hour: taken only when local time runs
    from mm:00 to mm+14:59 of one hour with one offset. A change of offset inside it (summer
    time), an offset that is not whole quarter hours (Amsterdam before 1937: +00:19:32),
    a leap second (TZ=right/...) or a year strftime would not pad all fail that."""
    start = quarter * _QUARTER
    first, last = time.localtime(start), time.localtime(start + _QUARTER - 1)
    plain = (
        first.tm_sec == 0
        and first.tm_min % 15 == 0
        and last.tm_sec == 59
        and last.tm_min == first.tm_min + 14
        and last.tm_hour == first.tm_hour
        and last.tm_mday == first.tm_mday
        and last.tm_gmtoff == first.tm_gmtoff
        and 1000 <= first.tm_year <= 9999
    )
    offset = first.tm_gmtoff
    known: tuple[str, int, str] | bool = (
        (
            time.strftime("%Y-%m-%dT%H:", first),
            first.tm_min,
            _ZONES.get(offset) or _zone(offset),
        )
        if plain
        else False
    )
    if len(_QUARTERS) >= _QUARTERS_KEPT:  # a report over years of jobs: bounded, not grown
        _QUARTERS.clear()
    _QUARTERS[quarter] = known
    return known


# UTC offset in seconds -> its ISO text ("+01:00"): a machine meets one or two (summer time).
_ZONES: dict[int, str] = {}


def _zone(offset: int) -> str:
    sign = "-" if offset < 0 else "+"
    hours, rest = divmod(abs(offset), 3600)
    minutes, secs = divmod(rest, 60)
    text = _ZONES[offset] = f"{sign}{hours:02}:{minutes:02}" + (f":{secs:02}" if secs else "")
    return text


def format_duration(seconds: float | None) -> str:
    """The DURATION column: ``45s``, ``3m 20s``, ``26h 5m``; ``-`` for none."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def format_age(seconds: float) -> str:
    """An age as ``parse_age`` reads it, in its largest whole unit: ``30d``, ``12h``,
    ``90m``, ``45s``, ``1.5s``; ``0s``."""
    for unit in ("w", "d", "h", "m"):
        count = seconds / AGE_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{seconds:g}s"


# Konduktor's status column style ("22 mins"): one unit, floored, plural with "s".
_AGO_UNITS: Final[tuple[tuple[float, float, str], ...]] = (
    # (below this many seconds, divide by, unit)
    (60, 1, "sec"),
    (3600, 60, "min"),
    (86400, 3600, "hr"),
    (math.inf, 86400, "day"),
)
_JUST_NOW_SECS: Final = 10  # below this a count is noise


def humanize_ago(seconds: float) -> str:
    """Elapsed seconds -> "just now", "45 secs", "1 min", "3 mins", "2 hrs", "4 days".

    No "ago" suffix (the status table shows bare "22 mins"); negative (clock skew) or
    non-finite input is "just now" rather than an error.
    """
    if not isinstance(seconds, int | float) or not math.isfinite(seconds):
        return "just now"
    if seconds < _JUST_NOW_SECS:
        return "just now"
    for below, per, unit in _AGO_UNITS:
        if seconds < below:
            n = int(seconds // per)
            return f"{n} {unit}" if n == 1 else f"{n} {unit}s"
    return "just now"  # unreachable: the last unit has no upper bound
