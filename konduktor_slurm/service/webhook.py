"""``konduktor report --notify URL``: a report's news (new failures and state changes) posted
as JSON that Slack-compatible incoming webhooks accept (``{"text": ...}``, which Slack,
Mattermost, Rocket.Chat and Microsoft Teams' Slack-compatible hooks show), with the same
news as structured fields beside it (``konduktor``) for any other receiver.

A notification never holds up the report: it is sent after the report is out, each attempt
has a timeout, a few attempts are made with a backoff (for a server that is restarting or
rate-limits), and the whole notification has a time budget. A failure is said in one line
that names the host, never the URL's path (a Slack webhook's path is its secret).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from konduktor_slurm.report import Report

ATTEMPT_TIMEOUT_SECONDS = 4.0
ATTEMPTS = 3
BUDGET_SECONDS = 10.0  # every attempt and pause together
FIRST_PAUSE_SECONDS = 0.5  # then doubled
MAX_LINES = 20  # changes listed in the text; the structured fields carry them all


class NotifyError(ValueError):
    """A --notify value that is not a URL konduktor can post to."""


def check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise NotifyError(f"--notify: expected an http:// or https:// webhook URL, got {url!r}")
    return url


def where(url: str) -> str:
    """The part of the URL that may be shown: scheme and host."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def payload(report: Report) -> dict[str, Any] | None:
    """The message for ``report``'s news; None when there is nothing new to say."""
    from konduktor_slurm.durations import clock, iso

    if not report.transitions and not report.failures:
        return None
    who = ", ".join(report.users) if report.users else "all users"
    changes = len(report.transitions)
    head = (
        f"konduktor: {changes} state change{'s' * (changes != 1)}"
        + (f", {len(report.failures)} new failure{'s' * (len(report.failures) != 1)}"
           if report.failures else "")
        + f" ({who}, {clock(report.window_start)} -> {clock(report.generated_at)})"
    )  # fmt: skip
    lines = [head]
    if report.stale:
        lines.append(f"(Slurm could not be reached: {report.stale_reason})")
    for failure in report.failures:
        where_ = "" if failure.rank is None else f" on rank {failure.rank}"
        lines.append(f"FAILED {failure.job}{where_}: {failure.detail}")
        lines += [f"    {line}" for line in failure.log_tail[-3:]]
    for transition in report.transitions[:MAX_LINES]:
        detail = f" ({transition.detail})" if transition.detail else ""
        lines.append(f"{transition.job_name} -> {transition.state}{detail}")
    if changes > MAX_LINES:
        lines.append(f"... and {changes - MAX_LINES} more (`konduktor report` lists them)")
    return {
        "text": "\n".join(lines),
        "konduktor": {
            "generated_at": iso(report.generated_at),
            "window_start": iso(report.window_start),
            "users": list(report.users),
            "stale": report.stale,
            "transitions": [
                {"job": t.job_name, "status": t.state, "detail": t.detail, "at": iso(t.at)}
                for t in report.transitions
            ],
            "failures": [
                {
                    "job": f.job,
                    "user": f.user,
                    "at": iso(f.at),
                    "detail": f.detail,
                    "rank": f.rank,
                    "exit_code": f.exit_code,
                    "log_tail": list(f.log_tail),
                }
                for f in report.failures
            ],
        },
    }


def post(
    url: str,
    message: dict[str, Any],
    *,
    attempt_timeout: float = ATTEMPT_TIMEOUT_SECONDS,
    attempts: int = ATTEMPTS,
    budget: float = BUDGET_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str | None:
    """POST ``message`` as JSON; None when the receiver took it, else why not (one line).

    Retried: no connection, a timeout, 5xx and 429 (the receiver may be restarting or
    throttling). Not retried: any other answer (a wrong or revoked URL stays wrong).
    """
    body = json.dumps(message).encode()
    deadline = clock() + budget
    pause = FIRST_PAUSE_SECONDS
    why = "not sent"
    attempt = 0
    for attempt in range(1, attempts + 1):
        left = deadline - clock()
        if left <= 0:
            break
        request = urllib.request.Request(
            url,
            data=body,
            headers={"Content-Type": "application/json", "User-Agent": "konduktor-slurm"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=min(attempt_timeout, left)) as answer:
                answer.read(1024)
            return None
        except urllib.error.HTTPError as exc:
            why = f"HTTP {exc.code} {exc.reason}"
            if exc.code != 429 and exc.code < 500:
                return why
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            why = "timed out" if isinstance(reason, TimeoutError) else str(reason)
        if attempt < attempts:
            wait = min(pause, deadline - clock())
            if wait <= 0:
                break
            sleep(wait)
            pause *= 2
    return f"{why} (after {attempt} attempt{'s' * (attempt != 1)})"


def notify(urls: list[str], report: Report, warn: Callable[[str], None]) -> None:
    """Post ``report``'s news to every URL; a failure is one ``warn`` line per URL."""
    message = payload(report)
    if message is None:
        return
    for url in urls:
        problem = post(url, message)
        if problem is not None:
            warn(f"Warning: could not notify {where(url)}: {problem}")
