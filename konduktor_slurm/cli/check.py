"""`konduktor check`: can this machine reach the cluster, and what will it be able to do?"""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict, dataclass

import click

from konduktor_slurm.cli import console, main, open_slurm, settings

PRIVILEGED_LEVELS = {"operator", "administrator"}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    skipped: bool = False

    @property
    def result(self) -> str:
        if self.skipped:
            return "skipped"
        if self.ok:
            return "ok"
        return "FAIL" if self.required else "warning"


def _first_line(text: str, fallback: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else fallback


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
    from konduktor_slurm.transport import TransportError

    config = settings()
    slurm = open_slurm(config)
    transport = slurm.transport
    timeout = config.slurm_timeout
    checks: list[Check] = []
    info: dict = {"transport": transport.description, "stop_mode": config.stop_mode}

    def run(*argv: str):
        return transport.run(list(argv), timeout=timeout)

    try:
        home = transport.home()
        user = run("id", "-un").stdout.strip() or "?"
        checks.append(Check("transport", True, f"{transport.description} (user {user})"))
    except TransportError as exc:
        checks.append(Check("transport", False, str(exc)))
        user = None
    names = ("slurm", "partitions", "accounting", "stop mode", "jobs dir")
    if user is None:
        checks += [Check(name, False, "transport unreachable", skipped=True) for name in names]
    else:
        try:
            checks += _cluster_checks(config, slurm, run, user, home, info)
        except TransportError as exc:
            done = {c.name for c in checks}
            checks.append(Check("transport", False, str(exc)))
            checks += [
                Check(n, False, "connection lost", skipped=True) for n in names if n not in done
            ]

    ok = all(c.ok for c in checks if c.required)
    if as_json:
        payload = {"ok": ok, **info, "checks": [{**asdict(c), "result": c.result} for c in checks]}
        click.echo(json.dumps(payload, indent=2))
    else:
        from rich.table import Table

        out = console()
        table = Table(box=None, pad_edge=False, header_style="bold", highlight=False)
        for column in ("CHECK", "RESULT", "DETAIL"):
            table.add_column(column)
        styles = {"ok": "green", "FAIL": "bold red", "warning": "yellow", "skipped": "dim"}
        for c in checks:
            table.add_row(c.name, f"[{styles[c.result]}]{c.result}[/]", c.detail)
        out.print(table)
        out.print("All required checks passed." if ok else "Some required checks FAILED.")
    transport.close()
    sys.exit(0 if ok else 1)


def _cluster_checks(config, slurm, run, user: str, home: str, info: dict) -> list[Check]:
    from konduktor_slurm.slurm import SlurmError, owners_may_suspend

    transport = slurm.transport
    checks: list[Check] = []
    try:
        version = slurm.version()
    except SlurmError as exc:
        version = None
        checks.append(Check("slurm", False, exc.slurm_message))
    else:
        checks.append(Check("slurm", True, version.text))
    info["slurm_version"] = version.version if version else None

    try:
        partitions = slurm.partitions()
        problem = "sinfo shows no partitions"
    except SlurmError as exc:
        partitions, problem = [], exc.slurm_message
    info["partitions"] = [asdict(partition) for partition in partitions]
    summary = ", ".join(
        f"{p.name}{'*' if p.default else ''} ({p.available}, {p.nodes} nodes"
        f"{', ' + p.gres if p.gres else ''})"
        for p in partitions
    )
    checks.append(Check("partitions", bool(partitions), summary or problem))

    try:
        slurm.check_accounting()
        checks.append(Check("accounting", True, "sacct works"))
    except SlurmError as exc:
        checks.append(Check("accounting", False, exc.slurm_message))

    # Unknown when sacctmgr or scontrol fail: then only Slurm's own answer to a suspend
    # would tell, so "auto" is reported as requeue (what stop falls back to).
    try:
        level = slurm.admin_level(user)
    except SlurmError:
        level = "None"
    try:
        slurm_user = slurm.slurm_user() or ""
    except SlurmError:
        slurm_user = ""
    owner_may = owners_may_suspend(version.release) if version else False
    may_suspend = user in ("root", slurm_user) or level.lower() in PRIVILEGED_LEVELS or owner_may
    auto_mode = "suspend" if may_suspend else "requeue"
    info["may_suspend"] = may_suspend
    info["auto_stop_mode"] = auto_mode
    if user in ("root", slurm_user):
        why = f"{user} is {'root' if user == 'root' else 'the SlurmUser'}"
    elif owner_may:
        why = f"Slurm {info['slurm_version']} lets job owners suspend their jobs"
    else:
        why = f"{user}'s admin level: {level}"
    mode = config.stop_mode if config.stop_mode != "auto" else f"auto -> {auto_mode}"
    checks.append(
        Check(
            "stop mode",
            True,
            f"{mode} ({why}; scontrol suspend {'allowed' if may_suspend else 'not allowed'})",
            required=False,
        )
    )

    jobs_dir = config.resolve_jobs_dir(transport)
    info["jobs_dir"] = jobs_dir
    quoted = shlex.quote(jobs_dir)
    probe = run("sh", "-c", f"mkdir -p -m 700 -- {quoted} && test -w {quoted} && df -Ph {quoted}")
    free = ""
    rows = probe.stdout.strip().splitlines()
    if probe.ok and len(rows) >= 2 and len(rows[-1].split()) >= 4:
        free = f", {rows[-1].split()[3]} free"
    checks.append(
        Check(
            "jobs dir",
            probe.ok,
            f"{jobs_dir} writable{free}"
            if probe.ok
            else f"{jobs_dir}: {_first_line(probe.stderr, 'not writable')}",
        )
    )
    info["home"] = home
    return checks
