"""`konduktor dashboard`: a live web page of your jobs (konduktor_slurm/dashboard/).

Starlette and uvicorn (the optional extra ``konduktor-slurm[dashboard]``) are imported only
when this command runs: `konduktor --help` and every other command start without them.
"""

from __future__ import annotations

import contextlib

import click

from konduktor_slurm.cli import EXIT_FAILED, fail, main, service_errors

INSTALL_HINT = "pip install 'konduktor-slurm[dashboard]'"


@main.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: any free port, printed).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but a loopback address shows the page to the "
    "network (plain HTTP); the token still guards it.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=1.0),
    default=5.0,
    show_default=True,
    help="Seconds between refreshes while a page is open: one squeue each, shared by "
    "every open page.",
)
def dashboard(port: int, host: str, interval: float) -> None:
    """Serve a live page of your jobs: the status table, timelines, details, logs, GPU-hours,
    and stop / start / down buttons (the same checks as the commands).

    \b
    It prints the URL to open, with a token that is new for every run: actions and data
    need it, so another user of this machine or another web page cannot use the
    dashboard. From a laptop: run it on the login node and forward the port
    (ssh -L 8765:127.0.0.1:8765 login, then open the printed URL), or run it on the
    laptop with `ssh:` in config.yaml. Ctrl-C stops it.
    """
    import secrets

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        fail(
            f"the dashboard needs Starlette and uvicorn ({exc.name} is not installed): "
            f"{INSTALL_HINT}",
            EXIT_FAILED,
        )
    from konduktor_slurm.dashboard.app import create_app
    from konduktor_slurm.dashboard.hub import Hub
    from konduktor_slurm.dashboard.server import BindError, bind, is_loopback, serve, url
    from konduktor_slurm.service.session import load_config, open_session
    from konduktor_slurm.stop_modes import STOP_MODES

    with service_errors():
        config = load_config()
    try:
        sock = bind(host, port)
    except BindError as exc:
        fail(str(exc), EXIT_FAILED)
    loopback = is_loopback(sock)
    token = secrets.token_urlsafe(24)
    hub = Hub(lambda: open_session(config), interval=interval)
    app = create_app(
        hub,
        token,
        loopback_only=loopback,
        stop_modes=STOP_MODES,
        default_stop_mode=str(config.stop_mode),
    )
    if not loopback:
        click.echo(
            f"Warning: listening on {host}, not only on this machine: anyone who can reach it "
            "can load the page (plain HTTP, no TLS); the token guards data and actions, so "
            "keep the URL to yourself. Prefer the default and `ssh -L`.",
            err=True,
        )
    where = f"over SSH to {config.ssh.display}" if config.ssh is not None else "on this machine"
    click.echo(f"konduktor dashboard for the jobs {where}, refreshed every {interval:g}s:")
    click.echo(f"  {url(sock, token)}")
    click.echo("Open that URL (the token in it is new for every run); Ctrl-C stops the dashboard.")
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn re-raises the Ctrl-C it handled
        serve(app, sock)
    click.echo("Dashboard stopped.")
