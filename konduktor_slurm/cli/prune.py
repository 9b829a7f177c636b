"""`konduktor prune`: remove finished jobs' staged snapshots, keeping their logs and records."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from konduktor_slurm.cli import EXIT_FAILED, EXIT_USAGE, fail, main, service_errors

if TYPE_CHECKING:
    from konduktor_slurm.service.prune import PruneResult, PruneUnit


@main.command()
@click.option(
    "--older-than",
    metavar="AGE",
    help="Prune jobs that ended more than AGE ago (90m, 12h, 30d, 0s); default: the "
    "`retention` in config.yaml.",
)
@click.option("--dry-run", is_flag=True, help="Only show what would be removed.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def prune(older_than: str | None, dry_run: bool, yes: bool, as_json: bool) -> None:
    """Remove the staged snapshots of jobs that finished long ago.

    A finished job's snapshot (its copy of the workdir and file_mounts, and its
    secrets.env) is removed once it ended more than the retention ago: `retention` in
    config.yaml (default 30d; `never` turns pruning off), or --older-than. Its record,
    state history, logs, result.json and scripts stay: `status`, `logs` and `result` keep
    working, and `status JOB` says when its snapshot was pruned.

    \b
    Never removed: unfinished jobs; the latest snapshot of each task (the next launch
    hard-links unchanged files from it, keeping a re-launch fast) until a newer launch of
    the task replaces it; a grid sweep's shared snapshot until every variant qualifies.

    \b
    The same pruning runs by itself, quietly and a bounded amount at a time, after
    `konduktor launch` and during `konduktor report`. Node workdirs
    (<node_workdir>/<job>) are removed by the nodes when they start a later job, once the
    job's mark of being finished is older than the retention; where this machine sees
    them too (a shared home), `prune` removes those of the jobs it prunes.

    \b
    Exit codes: 0 done (or nothing to do); 1 some snapshots could not be removed;
    2 bad input, or no terminal to ask on (use -y); 3 the cluster could not be reached.

    \b
    Examples:
      konduktor prune --dry-run           what the retention would remove now
      konduktor prune -y --older-than 7d  remove snapshots of jobs that ended a week ago
    """
    from konduktor_slurm.durations import DurationError, parse_age
    from konduktor_slurm.service import prune as pruning
    from konduktor_slurm.service.session import open_session

    age = None
    if older_than is not None:
        try:
            age = parse_age(older_than)
        except DurationError as exc:
            raise click.BadParameter(str(exc), param_hint="--older-than") from None
    if not (yes or dry_run) and not sys.stdin.isatty():
        fail(
            "not on a terminal, so cannot ask: add -y to prune without a prompt (or --dry-run "
            "to see what would go); nothing was removed",
            EXIT_USAGE,
        )
    with service_errors(), open_session() as session:
        if age is None and session.config.retention is None:
            _nothing(as_json, session.config.config_path)
            return
        if dry_run or not yes:
            planned = pruning.prune(session, age, dry_run=True)
            if dry_run:
                _show(planned, as_json)
                return
            _show(planned, as_json=False)
            if not planned.pruned:
                return
            click.confirm(f"Remove these {_count(planned)}?", default=False, abort=True)
        result = pruning.prune(session, age)
    _show(result, as_json)
    if result.failed:
        sys.exit(EXIT_FAILED)


def _nothing(as_json: bool, config_path) -> None:
    if as_json:
        click.echo(json.dumps({"older_than_seconds": None, "dry_run": False, "pruned": []}))
        return
    click.echo(
        f"retention is `never` in {config_path}: nothing is pruned. Give --older-than AGE to "
        "prune anyway."
    )


def _count(result: PruneResult) -> str:
    snapshots = len(result.pruned)
    jobs = result.jobs_pruned
    text = f"{snapshots} snapshot{'s' if snapshots != 1 else ''}"
    return text + (f" ({jobs} jobs)" if jobs != snapshots else "")


def _size(count: int) -> str:
    from konduktor_slurm.staging import human_bytes

    return human_bytes(count)


def _unit_json(unit: PruneUnit) -> dict:
    from konduktor_slurm.durations import iso

    return {
        "name": unit.name,
        "task_name": unit.task_name,
        "jobs": list(unit.jobs),
        "ended": iso(unit.ended),
        "paths": list(unit.snapshot_paths),
    }


def _show(result: PruneResult, as_json: bool) -> None:
    from konduktor_slurm.durations import clock, format_age

    if as_json:
        payload = {
            "older_than_seconds": result.older_than,
            "dry_run": result.dry_run,
            "pruned": [_unit_json(unit) for unit in result.pruned],
            "kept": [
                {**_unit_json(unit), "reason": "the latest snapshot of its task"}
                for unit in result.kept
            ],
            "failed": [{**_unit_json(unit), "error": error} for unit, error in result.failed],
            "skipped": [{"name": name, "reason": why} for name, why in result.skipped],
            "bytes_freed": result.bytes_freed,
        }
        click.echo(json.dumps(payload, indent=2))
        return
    assert result.older_than is not None
    age = format_age(result.older_than)
    verb = "Would remove" if result.dry_run else "Removed"
    if not (result.pruned or result.kept or result.failed or result.skipped):
        click.echo(f"No finished job's snapshot is older than {age}; nothing to prune.")
        return
    if result.pruned:
        click.echo(f"{verb} {_count(result)} of jobs that ended over {age} ago:")
        width = max(len(unit.name) for unit in result.pruned)
        for unit in result.pruned:
            variants = f"  ({len(unit.jobs)} variants)" if len(unit.jobs) > 1 else ""
            click.echo(f"  {unit.name:<{width}}  ended {clock(unit.ended)}{variants}")
    for unit in result.kept:
        click.echo(
            f"Kept {unit.name}: the latest snapshot of task {unit.task_name} (its next launch "
            "hard-links unchanged files from it)"
        )
    for name, why in result.skipped:
        click.echo(f"Skipped {name}: {why}", err=True)
    for unit, error in result.failed:
        click.echo(f"Error: could not remove the snapshot of {unit.name}: {error}", err=True)
    if result.bytes_freed is not None and result.pruned:
        freed = "would free" if result.dry_run else "freed"
        click.echo(f"That {freed} about {_size(result.bytes_freed)}.")
    if result.pruned and not result.dry_run:
        click.echo("Their records, logs and results are kept.")
