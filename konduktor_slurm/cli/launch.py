"""`konduktor launch`: validate, stage, submit, then follow, wait or detach."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from konduktor_slurm.cli import (
    EXIT_FAILED,
    EXIT_USAGE,
    fail,
    follow_and_exit,
    main,
    service_errors,
)


@main.command()
@click.argument("entrypoint", nargs=-1, required=True, metavar="TASK_YAML | COMMAND...")
@click.option(
    "-d",
    "--detach-run",
    "--detach",
    "detach",
    is_flag=True,
    help="Return after submitting; do not follow the output.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dryrun", is_flag=True, help="Print the rendered sbatch script; submit nothing.")
@click.option("-n", "--name", help="Override the task name.")
@click.option("--num-nodes", help="Override num_nodes.")
@click.option("--cpus", help="Override resources.cpus (per node).")
@click.option("--memory", help="Override resources.memory (per node; GiB, or with a unit: 64GB).")
@click.option("--gpus", help="Override resources.accelerators, e.g. H100:8.")
@click.option(
    "--env",
    "envs",
    multiple=True,
    metavar="K[=V]",
    help="Set an env var; K alone takes it from your environment. Repeatable.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read env vars from a dotenv file.",
)
@click.option(
    "--secret",
    "secrets",
    multiple=True,
    metavar="K[=V]",
    help="Set a secret (never shown or logged); K alone takes it from your environment.",
)
@click.option("--workdir", help="Override the workdir (relative to the current directory).")
@click.option("--max-restarts", help="Override resources.job_config.max_restarts.")
@click.option(
    "--completions",
    help="Konduktor's completions: 1 (a launch runs the task once on Slurm); more is refused.",
)
@click.option("--image-id", help="Accepted for Konduktor; ignored on Slurm, with a warning.")
@click.option("--disk-size", help="Accepted for Konduktor; ignored on Slurm, with a warning.")
@click.option("--cloud", help="Accepted for Konduktor; ignored on Slurm, with a warning.")
@click.option(
    "--infra",
    metavar="slurm[/CLUSTER[/PARTITION]]",
    help="SkyPilot's --infra: slurm/CLUSTER/PARTITION submits to PARTITION (the cluster is "
    "the one konduktor is set up for); other infra is ignored, with a warning.",
)
@click.option("--no-setup", is_flag=True, help="Do not run the task's setup (SkyPilot's flag).")
# SkyPilot's `sky launch` flags for its resources fields: applied like those fields (the
# same warning, or, with `--infra slurm`, --zone as the partition). Hidden: see the README.
@click.option("--region", hidden=True)
@click.option("--zone", hidden=True)
@click.option("--use-spot/--no-use-spot", default=None, hidden=True)
@click.option("-t", "--instance-type", hidden=True)
@click.option("--disk-tier", hidden=True)
@click.option("--network-tier", hidden=True)
@click.option("--ports", multiple=True, hidden=True)
@click.option("-i", "--idle-minutes-to-autostop", "idle_minutes", type=int, hidden=True)
@click.option("--down", is_flag=True, hidden=True)
@click.option(
    "--wait-for",
    type=click.Choice(["jobs_and_ssh", "jobs", "none"], case_sensitive=False),
    hidden=True,
)
# SkyPilot's flags about its clusters, which a Slurm job has none of (SKYPILOT_CLUSTER_FLAGS).
@click.option("-c", "--cluster", hidden=True)
@click.option("-r", "--retry-until-up", is_flag=True, hidden=True)
@click.option("--fast", is_flag=True, hidden=True)
@click.option("--async/--no-async", "async_call", default=False, hidden=True)
@click.option("--detach-setup", is_flag=True, hidden=True)
@click.option("--clone-disk-from", "--clone", hidden=True)
@click.option("--git-url", hidden=True)
@click.option("--git-ref", hidden=True)
@click.option(
    "-s",
    "--skip-image-check",
    is_flag=True,
    help="Accepted for Konduktor; there is no image to check on Slurm.",
)
@click.option(
    "--grid",
    "grid_specs",
    multiple=True,
    metavar="NAME=V1,V2,...",
    help="Launch every combination of these env values as one sweep (a Slurm job array, one "
    "staging): variant N runs as <job>-N. Repeatable.",
)
@click.option(
    "--num-jobs",
    type=int,
    metavar="N",
    help="SkyPilot's --num-jobs: N copies of the task as one sweep, copy i with "
    "SKYPILOT_JOB_RANK=i and SKYPILOT_NUM_JOBS=N.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Block until the job is COMPLETED or FAILED, without streaming its output.",
)
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --wait: give up waiting after SECONDS (exit 5; the job keeps running).",
)
def launch(
    entrypoint: tuple[str, ...],
    detach: bool,
    yes: bool,
    dryrun: bool,
    name: str | None,
    num_nodes: str | None,
    cpus: str | None,
    memory: str | None,
    gpus: str | None,
    envs: tuple[str, ...],
    env_file: Path | None,
    secrets: tuple[str, ...],
    workdir: str | None,
    max_restarts: str | None,
    completions: str | None,
    image_id: str | None,
    disk_size: str | None,
    cloud: str | None,
    infra: str | None,
    skip_image_check: bool,
    no_setup: bool,
    region: str | None,
    zone: str | None,
    use_spot: bool | None,
    instance_type: str | None,
    disk_tier: str | None,
    network_tier: str | None,
    ports: tuple[str, ...],
    idle_minutes: int | None,
    down: bool,
    wait_for: str | None,
    cluster: str | None,
    retry_until_up: bool,
    fast: bool,
    async_call: bool,
    detach_setup: bool,
    clone_disk_from: str | None,
    git_url: str | None,
    git_ref: str | None,
    grid_specs: tuple[str, ...],
    num_jobs: int | None,
    wait: bool,
    wait_timeout: float | None,
) -> None:
    """Validate TASK_YAML, stage its files, submit it to Slurm and follow its output.

    Given a COMMAND instead (as with SkyPilot's `sky launch 'nvidia-smi'`), the task is
    that command as its run, named cmd (see -n), with no workdir unless --workdir gives
    one. Words are joined with spaces, as SkyPilot joins them: quote a command that has
    quotes of its own, and put options for the command after --. One word is a task file
    when it names a file or ends in .yaml/.yml.

    The job is named <task name>-<4 hex>. Ctrl-C while staging submits nothing (the job is
    recorded FAILED, the partial snapshot removed); Ctrl-C while following detaches: the
    job keeps running. With --wait nothing is streamed: the command returns when the job
    ends.

    SkyPilot's launch flags work as its users expect: --no-setup, --region, --zone,
    --use-spot, -t, --disk-tier, --network-tier and --ports as their task fields do (mostly
    ignored with a warning); -i/--down/--wait-for as resources.autostop (with --wait-for
    none, a time limit); -c, -r, --fast, --async, --detach-setup and --clone-disk-from are
    ignored with a warning each; --git-url is refused.

    \b
    Exit codes: 0 the job COMPLETED (or, with -d/--dryrun, it was submitted/rendered);
    1 it FAILED or could not be submitted; 2 invalid input (nothing submitted); 3 the
    cluster could not be reached; 5 --wait-timeout passed first; 130 interrupted.
    """
    from konduktor_slurm.service import launch as launching
    from konduktor_slurm.service.session import open_session
    from konduktor_slurm.task import TaskOverrides

    wait = wait or wait_timeout is not None
    if detach and wait:
        fail("--detach-run and --wait contradict each other; give one", EXIT_USAGE)
    overrides = TaskOverrides(
        name=name,
        num_nodes=num_nodes,
        cpus=cpus,
        memory=memory,
        gpus=gpus,
        envs=list(envs),
        secrets=list(secrets),
        env_file=env_file,
        workdir=workdir,
        max_restarts=max_restarts,
        completions=completions,
        image_id=image_id,
        disk_size=disk_size,
        cloud=cloud,
        infra=infra,
        region=region,
        zone=zone,
        use_spot=use_spot,
        instance_type=instance_type,
        disk_tier=disk_tier,
        network_tier=network_tier,
        ports=list(ports),
        idle_minutes=idle_minutes,
        down=down,
        wait_for=wait_for,
        no_setup=no_setup,
    )
    if git_url is not None or git_ref is not None:
        fail(
            "--git-url/--git-ref: a workdir from a git repository is not supported on Slurm; "
            "clone it in setup (git clone URL) or launch from your checkout (--workdir .)",
            EXIT_USAGE,
        )
    with service_errors():
        grid = launching.parse_grid(list(grid_specs)) if grid_specs else None
        if num_jobs is not None:
            if grid is not None:
                fail("--num-jobs and --grid each make a sweep; give one", EXIT_USAGE)
            grid = launching.num_jobs_grid(num_jobs)
        task = launching.load_entrypoint(entrypoint, overrides)
        for warning in task.warnings:
            click.echo(f"Warning: {warning}", err=True)
        given = click.get_current_context().params
        for name, (flag, why) in SKYPILOT_CLUSTER_FLAGS.items():
            if given[name] not in (None, False):
                click.echo(f"Warning: command line: {flag} is ignored on Slurm: {why}", err=True)
        session = open_session()
        prepared = launching.prepare(session, task, grid=grid)
        if dryrun:
            for batch in prepared.batches:
                click.echo(batch.script, nl=False)
            return
        if task.source is None:  # no file behind the task: the words were its command
            click.echo(f"Command (no task file): {task.run}")
        click.echo(f"Task {task.name!r}: {task.resources_summary()}" + _slurm_target(task))
        what = prepared.job_name
        if grid is not None:
            what = f"{prepared.job_name}: {len(grid.variants)} variants of {', '.join(grid.names)}"
        if not yes:
            if not sys.stdin.isatty():
                fail("refusing to ask for confirmation without a terminal; pass -y", EXIT_USAGE)
            if not click.confirm(f"Launch {what}?", default=True):
                click.echo("Aborted; nothing was submitted.")
                return
        from konduktor_slurm.staging import default_reporter

        if grid is not None:
            with _hangup_as_interrupt():
                jobs = launching.submit_all(session, prepared, default_reporter())
            _prune_old_snapshots(session)
            _sweep_submitted(jobs, wait, wait_timeout, session)
            return
        with _hangup_as_interrupt():
            job = launching.submit(session, prepared, default_reporter())
        _prune_old_snapshots(session)
        click.echo(f"Submitted {job.name} (Slurm job {job.slurm_job_id}).")
        click.echo("Useful commands:")
        click.echo(f"  konduktor status {job.name}     # state and details")
        click.echo(f"  konduktor logs {job.name}       # output (add --follow to stream)")
        click.echo(f"  konduktor down {job.name}       # cancel")
        if detach:
            return
        if wait:
            _wait_and_exit(session, job, wait_timeout)
        follow_and_exit(session, job)


# SkyPilot's `sky launch` flags about its clusters (by launch's parameter name): taken from
# habit, each ignored with why.
SKYPILOT_CLUSTER_FLAGS: dict[str, tuple[str, str]] = {
    "cluster": (
        "-c/--cluster",
        "each launch is a Slurm job of its own, named after the task (-n names it); there "
        "is no cluster to create or reuse",
    ),
    "retry_until_up": (
        "-r/--retry-until-up",
        "a Slurm job waits in the queue until its nodes are free; there is nothing to retry",
    ),
    "fast": ("--fast", "there is no cluster to provision again or skip"),
    "async_call": ("--async", "-d/--detach-run returns as soon as the job is submitted"),
    "detach_setup": ("--detach-setup", "setup runs in the job, on every node, before run"),
    "clone_disk_from": ("--clone-disk-from", "nodes have the disks the cluster gives them"),
}


@contextlib.contextmanager
def _hangup_as_interrupt() -> Iterator[None]:
    """While staging and submitting, a closed terminal or SSH session (SIGHUP) or a kill
    (SIGTERM) ends the launch as Ctrl-C does: the job recorded FAILED with why and the partial
    snapshot removed, rather than the process dying on the spot; then one ``Error:`` line
    and exit 130. Interrupted while sbatch answers, the job is left to the next status
    (tracker.settle_orphans), which asks Slurm for it once this process has ended."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    from konduktor_slurm.service.errors import EXIT_INTERRUPTED, InterruptedByUser

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGHUP, signal.SIGTERM)}
    try:
        yield
    except InterruptedByUser as exc:
        fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:  # between the steps the service names (recording, callbacks)
        fail("interrupted: `konduktor status` says what became of the job", EXIT_INTERRUPTED)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _prune_old_snapshots(session) -> None:
    """Finished jobs' snapshots past the retention go now, a bounded amount, quietly: a
    failure is one warning line, never a failed launch (`konduktor prune` retries)."""
    from konduktor_slurm.service.prune import auto_prune

    auto_prune(session, lambda line: click.echo(line, err=True))


def _sweep_submitted(jobs, wait: bool, timeout: float | None, session) -> None:
    """A grid launch: say what was submitted; with --wait, wait for every variant."""
    sweep = jobs[0].extra.get("sweep", jobs[0].name)
    arrays = sorted({job.slurm_job_id.partition("_")[0] for job in jobs if job.slurm_job_id})
    click.echo(
        f"Submitted sweep {sweep}: {len(jobs)} variants as {sweep}-0 .. {sweep}-{len(jobs) - 1} "
        f"(Slurm job array{'s' if len(arrays) > 1 else ''} {', '.join(arrays)})."
    )
    click.echo("Useful commands:")
    click.echo("  konduktor status                     # every variant, one row each")
    click.echo(f"  konduktor logs {sweep}-0            # one variant's output")
    click.echo(f"  konduktor result {sweep}-0          # one variant's reported value")
    click.echo(f"  konduktor stop '{sweep}-*'          # the whole sweep (or one variant)")
    if not wait:
        return
    from konduktor_slurm.service.waiting import wait_all_terminal

    click.echo(f"Waiting for the {len(jobs)} variants to finish...", err=True)
    with service_errors():
        wait_all_terminal(session, jobs, timeout)
    failed = sum(job.state != "COMPLETED" for job in jobs)
    click.echo(f"{sweep}: {len(jobs) - failed} COMPLETED, {failed} FAILED", err=True)
    sys.exit(0 if not failed else EXIT_FAILED)


def _wait_and_exit(session, job, timeout: float | None) -> None:
    from konduktor_slurm.service.waiting import wait_until_terminal

    warned = False

    def on_stale(reason: str) -> None:
        nonlocal warned
        if not warned:
            click.echo(f"Warning: cannot reach Slurm ({reason}); still waiting.", err=True)
            warned = True

    click.echo(f"Waiting for {job.name} to finish (no output is streamed)...", err=True)
    with service_errors():
        try:
            wait_until_terminal(session, job, timeout, on_stale=on_stale)
        except KeyboardInterrupt:
            click.echo(f"\nStopped waiting; {job.name} keeps running.", err=True)
            sys.exit(130)
    detail = f" ({job.detail})" if job.detail else ""
    click.echo(f"{job.name}: {job.state}{detail}", err=True)
    sys.exit(0 if job.state == "COMPLETED" else EXIT_FAILED)


def _slurm_target(task) -> str:
    parts = [f"partition {task.slurm.partition}"] if task.slurm.partition else []
    if task.slurm.time_limit:
        parts.append(f"time limit {task.slurm.time_limit}")
    return f" ({', '.join(parts)})" if parts else ""
