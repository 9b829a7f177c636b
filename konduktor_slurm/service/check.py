"""Check: can this machine reach the cluster, and what will it be able to do there?

Each probe is one ``Check`` (name, ok, detail, required); ``run_checks`` never raises for a
cluster problem: an unreachable transport or a failing Slurm command is a failed check,
and the probes that depend on it are marked skipped.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.slurm import Slurm

# sacctmgr admin levels that may act on any job (suspend, resume, others' jobs).
PRIVILEGED_LEVELS = frozenset({"operator", "administrator"})


@dataclass(frozen=True)
class Check:
    """One line of `konduktor check`: what was checked and whether it passed."""

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


@dataclass(frozen=True)
class CheckReport:
    """Every line of `konduktor check`, and what --json adds beside them."""

    checks: list[Check]
    info: dict[str, Any] = field(default_factory=dict)  # what --json adds beside the checks

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks if check.required)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            **self.info,
            "checks": [{**asdict(check), "result": check.result} for check in self.checks],
        }


@dataclass(frozen=True)
class Privileges:
    """What Slurm lets this account do beyond its own jobs' basics."""

    user: str
    slurm_user: str  # "" when scontrol could not say
    admin_level: str  # "None", "Operator", "Administrator"
    owners_may_suspend: bool  # the release lets job owners suspend (26.05+)

    @property
    def privileged(self) -> bool:
        """Root, the SlurmUser, operators and administrators may act on any user's jobs."""
        return (
            self.user in ("root", self.slurm_user) or self.admin_level.lower() in PRIVILEGED_LEVELS
        )

    @property
    def may_suspend(self) -> bool:
        return self.privileged or self.owners_may_suspend

    def why(self) -> str:
        if self.user == "root":
            return "root"
        if self.user == self.slurm_user:
            return "the SlurmUser"
        if self.admin_level.lower() in PRIVILEGED_LEVELS:
            return f"a Slurm {self.admin_level.lower()}"
        return f"admin level {self.admin_level}"


def privileges(slurm: Slurm, user: str, release: tuple[int, int] | None = None) -> Privileges:
    """Asked of the cluster (sacctmgr, scontrol). Unknown answers count as unprivileged: Slurm
    itself still has the last word on every action."""
    from konduktor_slurm.slurm import SlurmError, owners_may_suspend

    try:
        level = slurm.admin_level(user)
    except SlurmError:
        level = "None"
    try:
        slurm_user = slurm.slurm_user() or ""
    except SlurmError:
        slurm_user = ""
    return Privileges(user, slurm_user, level, owners_may_suspend(release))


def run_checks(session: Session) -> CheckReport:
    from konduktor_slurm.transport import TransportError

    config, slurm = session.config, session.slurm
    transport = slurm.transport
    checks: list[Check] = []
    info: dict[str, Any] = {"transport": transport.description, "stop_mode": config.stop_mode}
    try:
        home = transport.home()
        user = transport.run(["id", "-un"], timeout=slurm.timeout).stdout.strip() or "?"
        checks.append(Check("transport", True, f"{transport.description} (user {user})"))
    except TransportError as exc:
        checks.append(Check("transport", False, str(exc)))
        user = None
    names = ("slurm", "partitions", "accounting", "stop mode", "checkpoints", "jobs dir")
    if user is None:
        checks += [Check(name, False, "transport unreachable", skipped=True) for name in names]
        return CheckReport(checks, info)
    try:
        checks += _cluster_checks(session, user, info)
    except TransportError as exc:
        done = {c.name for c in checks}
        checks.append(Check("transport", False, str(exc)))
        checks += [Check(n, False, "connection lost", skipped=True) for n in names if n not in done]
    info["home"] = home
    return CheckReport(checks, info)


def _first_line(text: str, fallback: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else fallback


def _cluster_checks(session: Session, user: str, info: dict[str, Any]) -> list[Check]:
    from konduktor_slurm.slurm import SlurmError

    config, slurm = session.config, session.slurm
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
    info["partitions"] = [partition._asdict() for partition in partitions]
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

    rights = privileges(slurm, user, version.release if version else None)
    auto_mode = "suspend" if rights.may_suspend else "requeue"
    info["may_suspend"] = rights.may_suspend
    info["auto_stop_mode"] = auto_mode
    info["may_act_on_others"] = rights.privileged
    if rights.privileged:
        why = f"{user} is {rights.why()}"
    elif rights.owners_may_suspend:
        why = f"Slurm {info['slurm_version']} lets job owners suspend their jobs"
    else:
        why = f"{user}'s admin level: {rights.admin_level}"
    mode = config.stop_mode if config.stop_mode != "auto" else f"auto -> {auto_mode}"
    allowed = "allowed" if rights.may_suspend else "not allowed"
    checks.append(
        Check("stop mode", True, f"{mode} ({why}; scontrol suspend {allowed})", required=False)
    )

    try:
        support = slurm.checkpoint_support()
    except SlurmError as exc:
        checks.append(Check("checkpoints", False, exc.slurm_message, required=False))
    else:
        info["proctrack"] = support.proctrack
        info["preemption_sends_user_signal"] = support.user_signal_at_preemption
        checks.append(Check("checkpoints", True, support.describe(), required=False))

    jobs_dir = config.resolve_jobs_dir(transport)
    info["jobs_dir"] = jobs_dir
    quoted = shlex.quote(jobs_dir)
    probe = transport.run(
        ["sh", "-c", f"mkdir -p -m 700 -- {quoted} && test -w {quoted} && df -Ph {quoted}"],
        timeout=slurm.timeout,
    )
    free = ""
    rows = probe.stdout.strip().splitlines()
    if probe.ok and len(rows) >= 2 and len(rows[-1].split()) >= 4:
        free = f", {rows[-1].split()[3]} free"
    detail = (
        f"{jobs_dir} writable{free}"
        if probe.ok
        else f"{jobs_dir}: {_first_line(probe.stderr, 'not writable')}"
    )
    checks.append(Check("jobs dir", probe.ok, detail))
    return checks
