"""`konduktor check`: can this machine reach the cluster, and what will it be able to do?"""

from __future__ import annotations

import json
import sys

import click

from konduktor_slurm.cli import console, main, service_errors


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check(as_json: bool) -> None:
    """Check the connection to the cluster and what Slurm offers there.

    \b
    Checks: the transport (local or SSH) is reachable, the Slurm version, the partitions and
    their GPUs, accounting (sacct), whether you may `scontrol suspend` (so which mode
    `stop_mode: auto` uses), and that the jobs directory is writable. Exit code 0 when every
    required check passes, 1 otherwise.
    """
    from konduktor_slurm.service.check import run_checks
    from konduktor_slurm.service.session import open_session

    with service_errors(), open_session() as session:
        report = run_checks(session)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        from rich.table import Table
        from rich.text import Text

        out = console()
        table = Table(box=None, pad_edge=False, header_style="bold", highlight=False)
        for column in ("CHECK", "RESULT", "DETAIL"):
            table.add_column(column)
        styles = {"ok": "green", "FAIL": "bold red", "warning": "yellow", "skipped": "dim"}
        for c in report.checks:
            # Text cells: details quote Slurm and SSH messages, never markup.
            table.add_row(c.name, Text(c.result, style=styles[c.result]), Text(c.detail))
        out.print(table)
        out.print("All required checks passed." if report.ok else "Some required checks FAILED.")
    sys.exit(0 if report.ok else 1)
