"""`konduktor report`'s rules (pure): billing, failures, waiting jobs, timelines, formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from konduktor_slurm.report import Segment, bill, build_report, failing_rank, per_user, timeline
from konduktor_slurm.report_formats import RENDERERS, render_html, render_json, render_prometheus
from konduktor_slurm.slurm import AcctRun, parse_runs, parse_time
from konduktor_slurm.store import JobRecord, Transition

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"
RUNS = parse_runs((FIXTURES / "sacct-runs-22.05.txt").read_text())
EARLY, LATE = parse_time("2026-11-28T20:00:00"), parse_time("2026-11-28T22:00:00")
assert EARLY and LATE


def job(name: str, state: str, **extra: object) -> JobRecord:
    return JobRecord(
        name=name,
        task_name=name.rsplit("-", 1)[0],
        user=str(extra.pop("user", "alice")),
        resources="1x(H100:8)",
        num_nodes=1,
        job_dir=f"/jobs/{name}",
        log_path=f"/jobs/{name}/job.log",
        state=state,
        created_at=float(extra.pop("created_at", EARLY)),  # type: ignore[arg-type]
        slurm_job_id=str(extra.pop("slurm_job_id", "1")),
        detail=str(extra.pop("detail", "")),
        extra=dict(extra),
    )


def test_runs_parse_from_real_sacct_output() -> None:
    suspended = next(run for run in RUNS if run.job_id == "2264")
    assert (suspended.active_seconds, suspended.suspended_seconds) == (8, 6)  # 14 s wall
    assert suspended.end_time - suspended.start_time == 14  # type: ignore[operator]
    requeued = [run for run in RUNS if run.job_id == "2716"]
    assert [run.state for run in requeued] == ["REQUEUED", "CANCELLED by 1001"]
    assert requeued[0].gpus == 16 and requeued[0].nodes == 2


def test_only_active_time_of_runs_that_were_not_requeued_is_billed() -> None:
    usage = {u.name: u for u in bill(RUNS, EARLY, LATE, {"2716": "full-d4a2"})}
    suspended = usage["susp2e115d-e75f"]
    assert suspended.active_seconds == 8 and suspended.suspended_seconds == 6
    full = usage["full-d4a2"]  # named by the store, not by Slurm
    # The first run (7 s on 16 GPUs) was requeued: lost, reported apart, never billed.
    assert full.lost_seconds == 7 and full.lost_gpu_hours == pytest.approx(7 * 16 / 3600)
    assert full.active_seconds == 2 and full.gpu_hours == pytest.approx(2 * 16 / 3600)
    assert full.node_hours == pytest.approx(2 * 2 / 3600)
    assert full.runs_billed == 1
    assert full.pending_seconds == (1 + 3)  # submit -> start of each run


def test_a_run_is_billed_in_the_window_it_ended_in_and_only_there() -> None:
    cut = parse_time("2026-11-28T21:22:40")
    assert cut
    before = {u.name: u for u in bill(RUNS, EARLY, cut, {})}
    after = {u.name: u for u in bill(RUNS, cut, LATE, {})}
    # 2716's requeued run ended 21:22:34, its last run 21:22:43: one in each window.
    assert (
        before["full949786-d4a2"].lost_seconds == 7 and before["full949786-d4a2"].runs_billed == 0
    )
    assert after["full949786-d4a2"].lost_seconds == 0 and after["full949786-d4a2"].runs_billed == 1
    total = sum(u.active_seconds for u in [*before.values(), *after.values()])
    assert total == sum(u.active_seconds for u in bill(RUNS, EARLY, LATE, {}))


def test_a_run_still_going_is_shown_but_not_billed() -> None:
    running = AcctRun("9", "train-1", "bob", "RUNNING", EARLY, EARLY + 10, None, 500, 0, 2, 16)
    [usage] = bill([running], EARLY, LATE, {})
    assert usage.running and usage.gpu_hours == 0 and usage.runs_billed == 0


def test_usage_adds_up_per_user() -> None:
    users = {u.user: u for u in per_user(bill(RUNS, EARLY, LATE, {}))}
    assert set(users) == {"root", "kdtest"}
    jobs = [u for u in bill(RUNS, EARLY, LATE, {}) if u.user == "kdtest"]
    assert users["kdtest"].gpu_hours == pytest.approx(sum(u.gpu_hours for u in jobs))


@pytest.mark.parametrize(
    ("extra", "detail", "expected"),
    [
        ({"rank_exit_codes": {"0": 0, "1": 3}}, "rank 1 exited 3", (1, 3)),
        ({"rank_exit_codes": {"0": 137, "1": 0}}, "", (0, 137)),
        ({"exit_code": "3:0"}, "rank 2 exited 3", (2, 3)),
        ({}, "cancelled by root", (None, None)),
    ],
)
def test_failing_rank(extra: dict, detail: str, expected: tuple) -> None:
    assert failing_rank(job("a-1", "FAILED", detail=detail, **extra)) == expected


def test_timeline_is_clipped_to_the_window_and_ends_are_points() -> None:
    history = [
        Transition("a", "PENDING", "", 100.0),
        Transition("a", "ACTIVE", "", 150.0),
        Transition("a", "SUSPENDED (by user)", "", 200.0),
        Transition("a", "ACTIVE", "", 260.0),
        Transition("a", "COMPLETED", "", 300.0),
    ]
    assert timeline(history, 120.0, 400.0) == (
        Segment("PENDING", 120.0, 150.0),
        Segment("ACTIVE", 150.0, 200.0),
        Segment("SUSPENDED (by user)", 200.0, 260.0),
        Segment("ACTIVE", 260.0, 300.0),
        Segment("COMPLETED", 300.0, 300.0),
    )
    assert timeline(history, 350.0, 400.0) == (Segment("COMPLETED", 350.0, 350.0),)


def sample_report():
    now = EARLY + 4 * 3600
    jobs = [
        job(
            "train-1a2b",
            "FAILED",
            slurm_job_id="2769",
            detail="rank 1 exited 3",
            rank_exit_codes={"0": 0, "1": 3},
        ),
        job("wait-3c4d", "PENDING", slurm_job_id="77", reason="Resources", created_at=EARLY),
        job("new-5e6f", "PENDING", slurm_job_id="78", created_at=now - 60),
        job('odd<b>"name', "COMPLETED", slurm_job_id="2264"),
    ]
    history = [
        Transition("wait-3c4d", "PENDING", "submitted", EARLY),
        Transition("new-5e6f", "PENDING", "submitted", now - 60),
        Transition("train-1a2b", "ACTIVE", "running", now - 120),
        Transition("train-1a2b", "FAILED", "rank 1 exited 3", now - 30),
    ]
    return build_report(
        now=now,
        window_start=EARLY,
        jobs=jobs,
        new_transitions=history[1:],
        history=history,
        runs=RUNS,
        log_tails={"train-1a2b": ["1: step 9", "1: Traceback: boom"]},
        stuck_after=2 * 3600,
        users=("alice",),
    )


def test_report_lists_new_failures_with_rank_and_log_and_jobs_waiting_too_long() -> None:
    report = sample_report()
    [failure] = report.failures
    assert (failure.job, failure.rank, failure.exit_code) == ("train-1a2b", 1, 3)
    assert failure.log_tail == ("1: step 9", "1: Traceback: boom")
    assert [(s.job, s.reason) for s in report.stuck] == [("wait-3c4d", "Resources")]
    assert report.counts["PENDING"] == 2 and report.counts["FAILED"] == 1
    assert [t.job_name for t in report.transitions] == ["train-1a2b", "new-5e6f", "train-1a2b"]


def test_jobs_taken_down_are_neither_counted_nor_waiting() -> None:
    gone = job("gone-1", "PENDING", slurm_job_id="80", created_at=EARLY)
    gone.hidden = True
    report = build_report(
        now=LATE,
        window_start=EARLY,
        jobs=[gone],
        new_transitions=[],
        history=[],
        runs=[],
        log_tails={},
        stuck_after=60,
    )
    assert report.counts["PENDING"] == 0 and report.stuck == ()


def test_prometheus_output_parses_with_the_reference_parser() -> None:
    families = {
        f.name: f for f in text_string_to_metric_families(render_prometheus(sample_report()))
    }
    jobs = {s.labels["state"]: s.value for s in families["konduktor_jobs"].samples}
    assert jobs["PENDING"] == 2 and jobs["FAILED"] == 1
    assert families["konduktor_new_failed_jobs"].samples[0].value == 1
    gpu = {s.labels["user"]: s.value for s in families["konduktor_gpu_hours"].samples}
    assert gpu["kdtest"] == pytest.approx(2 * 16 / 3600 + 0 + 1 * 16 / 3600 + 0)
    assert families["konduktor_report_stale"].samples[0].value == 0


def test_json_has_the_documented_fields() -> None:
    data = json.loads(render_json(sample_report()))
    assert set(data) == {
        "generated_at",
        "window_start",
        "users",
        "stale",
        "stale_reason",
        "accounting_error",
        "counts",
        "transitions",
        "failures",
        "stuck",
        "usage",
    }
    assert data["failures"][0]["log_tail"] == ["1: step 9", "1: Traceback: boom"]
    assert set(data["usage"]) == {"jobs", "users"}
    assert {
        "gpu_hours",
        "node_hours",
        "active_seconds",
        "suspended_seconds",
        "lost_seconds",
    } <= set(data["usage"]["users"][0])


def test_html_is_self_contained_escaped_and_draws_the_timeline() -> None:
    html = render_html(sample_report())
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html and "<script" not in html
    assert 'id="timeline"' in html and 'class="segment"' in html
    assert "odd&lt;b&gt;" in html and "odd<b>" not in html


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_every_format_says_when_slurm_was_unreachable(fmt: str) -> None:
    report = build_report(
        now=LATE,
        window_start=EARLY,
        jobs=[],
        new_transitions=[],
        history=[],
        runs=[],
        log_tails={},
        stuck_after=7200,
        stale_reason="squeue did not answer within 5s",
    )
    text = RENDERERS[fmt](report)
    assert ("squeue did not answer" in text) or ("konduktor_report_stale 1" in text)


def old_render_text(report) -> str:
    """render_text as it was before it formatted a table with one format string (the
    reference: a month's report has 30,000 rows, the text must not change)."""
    from konduktor_slurm.report_formats import _sections, _title, _warnings

    lines = [_title(report), *_warnings(report)]
    for heading, header, rows in _sections(report):
        lines += ["", f"{heading}:"]
        if not rows:
            lines.append("  (none)")
            continue
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append(
                "  "
                + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            )
    for failure in report.failures:
        if failure.log_tail:
            rank = "" if failure.rank is None else f" (rank {failure.rank})"
            lines += ["", f"Last lines of {failure.job}{rank}:"]
            lines += [f"  {line}" for line in failure.log_tail]
    return "\n".join(lines) + "\n"


def test_the_text_tables_are_laid_out_as_before() -> None:
    import dataclasses

    report = sample_report()
    odd = (
        Transition("x-{0}", "FAILED", "exit {1} %s   ", EARLY + 1),  # braces, trailing spaces
        Transition("a-very-long-job-name-0000", "ACTIVE", "", EARLY + 2),
    )
    for shown in (report, dataclasses.replace(report, transitions=report.transitions + odd)):
        assert RENDERERS["text"](shown) == old_render_text(shown)
