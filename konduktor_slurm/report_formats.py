"""Render a :class:`~konduktor_slurm.report.Report` as text, markdown, json, html or
prometheus. Pure functions from a report to a string; the CLI writes it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict

from konduktor_slurm.lifecycle import humanize_ago
from konduktor_slurm.report import STATES, Report, Usage
from konduktor_slurm.views import clock, iso

FORMATS = ("text", "markdown", "json", "html", "prometheus")

# Colours of the lifecycle states in the HTML timeline (and its legend).
STATE_COLOURS = {
    "CREATED": "#7fb3d5",
    "PENDING": "#f4d03f",
    "SUSPENDED (by system)": "#c39bd3",
    "SUSPENDED (by user)": "#8e44ad",
    "ACTIVE": "#27ae60",
    "COMPLETED": "#1e8449",
    "FAILED": "#c0392b",
}


def _clock_time(seconds: float) -> str:
    """Seconds as H:MM:SS (how sacct shows elapsed time)."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _usage_rows(usages: tuple[Usage, ...], per_user: bool = False) -> list[list[str]]:
    return [
        [
            *([usage.user] if per_user else [usage.name, usage.user]),
            _clock_time(usage.active_seconds),
            f"{usage.node_hours:.3f}",
            f"{usage.gpu_hours:.3f}",
            _clock_time(usage.suspended_seconds),
            _clock_time(usage.pending_seconds),
            f"{_clock_time(usage.lost_seconds)} ({usage.lost_gpu_hours:.3f} GPU-h)",
            "yes" if usage.running else "",
        ]
        for usage in usages
    ]


_USAGE_HEADER = [
    "JOB",
    "USER",
    "ACTIVE",
    "NODE-H",
    "GPU-H",
    "SUSPENDED",
    "PENDING",
    "LOST (requeued runs)",
    "RUN GOING ON",
]


def _title(report: Report) -> str:
    who = ", ".join(report.users) if report.users else "all users"
    return (
        f"konduktor report for {who}: {clock(report.window_start)} -> {clock(report.generated_at)}"
    )


def _sections(report: Report) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, column names, rows) of every table a report shows, in order."""
    counts = [[state, str(report.counts.get(state, 0))] for state in STATES]
    failures = [
        [
            failure.job,
            failure.user,
            clock(failure.at),
            failure.detail,
            "-" if failure.rank is None else str(failure.rank),
            "-" if failure.exit_code is None else str(failure.exit_code),
        ]
        for failure in report.failures
    ]
    stuck = [
        [
            s.job,
            s.user,
            s.state,
            clock(s.since),
            humanize_ago(report.generated_at - s.since),
            s.reason or "-",
        ]
        for s in report.stuck
    ]
    transitions = [[clock(t.at), t.job_name, t.state, t.detail or ""] for t in report.transitions]
    return [
        ("Jobs per state", ["STATE", "JOBS"], counts),
        (
            f"New failures ({len(failures)})",
            ["JOB", "USER", "AT", "REASON", "RANK", "EXIT CODE"],
            failures,
        ),
        (
            f"Waiting longer than the threshold ({len(stuck)})",
            ["JOB", "USER", "STATE", "SINCE", "FOR", "SLURM REASON"],
            stuck,
        ),
        (f"State changes ({len(transitions)})", ["AT", "JOB", "STATE", "DETAIL"], transitions),
        (
            "Usage per job (billed: ACTIVE time of runs that ended in this window)",
            _USAGE_HEADER,
            _usage_rows(report.jobs_usage),
        ),
        ("Usage per user", _USAGE_HEADER[1:], _usage_rows(report.users_usage, per_user=True)),
    ]


def _warnings(report: Report) -> list[str]:
    notes = []
    if report.stale_reason:
        notes.append(
            f"STALE: Slurm could not be reached ({report.stale_reason}); states are the last known."
        )
    if report.accounting_error:
        notes.append(f"No usage: Slurm accounting failed ({report.accounting_error}).")
    return notes


def render_text(report: Report) -> str:
    lines = [_title(report), *_warnings(report)]
    for heading, header, rows in _sections(report):
        lines += ["", f"{heading}:"]
        if not rows:
            lines.append("  (none)")
            continue
        table = [header, *rows]
        widths = [max(map(len, column)) for column in zip(*table, strict=True)]
        # One format string per table, not a ljust per cell: a month's report has 30,000
        # state changes. "{:<w}" pads exactly as str.ljust(w) does.
        row_format = "  " + "  ".join(f"{{:<{width}}}" for width in widths)
        lines += [row_format.format(*row).rstrip() for row in table]
    for failure in report.failures:
        if failure.log_tail:
            rank = "" if failure.rank is None else f" (rank {failure.rank})"
            lines += ["", f"Last lines of {failure.job}{rank}:"]
            lines += [f"  {line}" for line in failure.log_tail]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    lines = [f"# {_title(report)}"]
    lines += [f"> **{note}**" for note in _warnings(report)]
    for heading, header, rows in _sections(report):
        lines += ["", f"## {heading}", ""]
        if not rows:
            lines.append("_none_")
            continue
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    for failure in report.failures:
        if failure.log_tail:
            lines += ["", f"### Last lines of {failure.job}", "", "```"]
            lines += list(failure.log_tail)
            lines.append("```")
    return "\n".join(lines) + "\n"


def report_json(report: Report) -> dict:
    """The documented JSON shape (README: "konduktor report")."""
    return {
        "generated_at": iso(report.generated_at),
        "window_start": iso(report.window_start),
        "users": list(report.users),
        "stale": report.stale,
        "stale_reason": report.stale_reason,
        "accounting_error": report.accounting_error,
        "counts": dict(report.counts),
        "transitions": [
            {"job": t.job_name, "status": t.state, "detail": t.detail, "at": iso(t.at)}
            for t in report.transitions
        ],
        "failures": [
            {**asdict(f), "at": iso(f.at), "log_tail": list(f.log_tail)} for f in report.failures
        ],
        "stuck": [{**asdict(s), "since": iso(s.since)} for s in report.stuck],
        "usage": {
            "jobs": [asdict(u) for u in report.jobs_usage],
            "users": [asdict(u) for u in report.users_usage],
        },
    }


def render_json(report: Report) -> str:
    return json.dumps(report_json(report), indent=2) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_prometheus(report: Report) -> str:
    """node_exporter textfile-collector format."""
    out: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        # Full precision: a node_exporter scrape sums these, rounding would drift.
        out.extend(
            f"{name}{labels} {value if isinstance(value, int) else repr(float(value))}"
            for labels, value in samples
        )

    metric(
        "konduktor_jobs",
        "gauge",
        "Jobs by lifecycle state at the time of the report.",
        [(f'{{state="{_label(state)}"}}', report.counts.get(state, 0)) for state in STATES],
    )
    metric(
        "konduktor_new_failed_jobs",
        "gauge",
        "Jobs that became FAILED since the previous report.",
        [("", len(report.failures))],
    )
    for name, attr, help_text in (
        (
            "konduktor_gpu_hours",
            "gpu_hours",
            "GPU-hours billed in the report window (ACTIVE only).",
        ),
        ("konduktor_node_hours", "node_hours", "Node-hours billed in the report window."),
        ("konduktor_active_seconds", "active_seconds", "Seconds ACTIVE billed in the window."),
        ("konduktor_suspended_seconds", "suspended_seconds", "Seconds suspended (not billed)."),
        ("konduktor_lost_gpu_hours", "lost_gpu_hours", "GPU-hours of requeued runs (not billed)."),
    ):
        metric(
            name,
            "gauge",
            help_text,
            [(f'{{user="{_label(u.user)}"}}', getattr(u, attr)) for u in report.users_usage],
        )
    metric(
        "konduktor_report_timestamp_seconds",
        "gauge",
        "When the report was made.",
        [("", report.generated_at)],
    )
    metric(
        "konduktor_report_window_start_seconds",
        "gauge",
        "Start of the report window.",
        [("", report.window_start)],
    )
    metric(
        "konduktor_report_stale",
        "gauge",
        "1 when Slurm could not be reached.",
        [("", 1 if report.stale else 0)],
    )
    return "\n".join(out) + "\n"


def render_html(report: Report) -> str:
    import jinja2  # ~45 ms: only an HTML report pays for it

    width, label_width, row_height = 900, 220, 26
    # Zoom to when something happened: an hourly window with a 2-minute job is a sliver.
    starts = [seg.start for segments in report.timelines.values() for seg in segments]
    origin = max(report.window_start, min(starts, default=report.window_start))
    span = max(report.generated_at - origin, 1.0)

    def x(at: float) -> float:
        return label_width + (width - label_width - 80) * (at - origin) / span

    rows = []
    for index, (job, segments) in enumerate(report.timelines.items()):
        bars = [
            {
                "x": round(x(segment.start), 1),
                "width": round(max(x(segment.end) - x(segment.start), 3.0), 1),
                "colour": STATE_COLOURS.get(segment.state, "#999"),
                "title": f"{segment.state}: {clock(segment.start)} - {clock(segment.end)}",
            }
            for segment in segments
        ]
        rows.append({"job": job, "y": 30 + index * row_height, "bars": bars})
    most = max((u.gpu_hours for u in report.users_usage), default=0.0) or 1.0
    users = [
        {
            "user": usage.user,
            "gpu_hours": usage.gpu_hours,
            "width": round(500 * usage.gpu_hours / most, 1),
            "y": 10 + index * row_height,
        }
        for index, usage in enumerate(report.users_usage)
    ]
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("konduktor_slurm", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=True,  # job names, details and log lines are user text
    )
    template = environment.get_template("report.html.j2")
    return template.render(
        title=_title(report),
        warnings=_warnings(report),
        sections=_sections(report),
        failures=report.failures,
        timeline_rows=rows,
        timeline_height=40 + len(rows) * row_height,
        width=width,
        label_width=label_width,
        axis=[
            {"x": round(x(origin + span * i / 4), 1), "label": _axis_label(origin + span * i / 4)}
            for i in range(5)
        ],
        users=users,
        users_height=20 + len(users) * row_height,
        colours=STATE_COLOURS,
    )


def _axis_label(at: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(at).strftime("%H:%M:%S")


RENDERERS: dict[str, Callable[[Report], str]] = {
    "text": render_text,
    "markdown": render_markdown,
    "json": render_json,
    "html": render_html,
    "prometheus": render_prometheus,
}
