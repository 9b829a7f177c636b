"""Prune: finished jobs' staged snapshots (and node workdirs) go once the retention passed.

A job's directory holds its snapshot (``workdir/``, ``mounts/``), ``secrets.env``, the
rendered scripts, its output (``job.log``, ``logs/``, ``output/``) and per-rank exit files.
Only the snapshot and the secrets are removed: the store's record and history, the logs,
``result.json`` and the scripts stay, so ``status``, ``logs``, ``result`` and ``store
rebuild`` keep working for a pruned job. Its record says when (``extra["pruned_at"]``), so a
job is considered once and ``status JOB`` can say so.

Never removed:

- an unfinished job's snapshot (it may still run, or run again);
- the snapshot ``<jobs_dir>/.latest/<task>`` names: the next launch of the task hard-links
  its unchanged files from it (rsync ``--link-dest``), which keeps a re-launch fast. It goes
  once a newer launch of the task took its place;
- a grid sweep's shared snapshot (``<jobs_dir>/<sweep>/workdir``) while any variant of the
  sweep is unfinished or younger than the retention.

Node workdirs (``<node_workdir>/<job>``, possibly node-local scratch the login node cannot
see) are pruned by the nodes themselves when they start a job (``templates/node.sh.j2``).
Where the login node sees them too (a shared home, the default ``~/konduktor_workdir``), a
prune here also removes those of the jobs it prunes, if they hold konduktor's marker: that
covers jobs that were cancelled or killed, whose nodes never marked them finished.

The candidates come from indexes (``Store.prune_candidates``), never from loading every
job; the removal is one transport command per batch (a bash script reading the paths on
stdin, so no command line grows with the number of jobs) that checks each task's ``.latest``
pointer right before it removes anything, and reports per job what it did.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from konduktor_slurm.service.errors import ActionError, UnreachableError

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.store import PruneCandidate

# An automatic prune (after a launch, during a report) handles at most this many snapshots,
# within AUTO_TIMEOUT; the rest wait for the next one.
AUTO_LIMIT = 100
AUTO_TIMEOUT = 120.0
# ... and runs at most this often (or every `retention`, if that is shorter); a run that
# left work behind lets the next one run at once.
AUTO_INTERVAL = 3600.0
NEXT_AUTO_RUN = "prune.next_auto_run"  # store meta: epoch seconds
# `konduktor prune`: snapshots per transport command, and that command's timeout.
BATCH_SIZE = 1000
BATCH_TIMEOUT = 900.0

SNAPSHOT_PARTS = ("workdir", "mounts", "secrets.env")
LATEST_DIR = ".latest"  # staging.LATEST_DIR (staging imports rsync machinery; not needed here)

# Runs on the login node (through the transport). stdin: NUL-terminated fields, records of
# kind + value: U <unit name>, then P <its task's .latest pointer>, then S <snapshot path>
# and N <node workdir> records of that unit. $1: 1 for a dry run; $2: 1 to measure the bytes
# freed (files whose every hard link is among the removed paths). Prints one line per unit
# (kept / pruned / would / failed, tab-separated) and, when measuring, "bytes <n>".
_REMOVE_SCRIPT = r"""
set -u
dry=$1 measure=$2
kinds=() values=()
while IFS= read -r -d '' kind && IFS= read -r -d '' value; do
  kinds+=("$kind") values+=("$value")
done
units=() keep=() first=() count=() paths=()
unit=-1
for i in "${!kinds[@]}"; do
  value=${values[$i]}
  case ${kinds[$i]} in
    U) unit=$i units+=("$i") first[$i]=${#paths[@]} count[$i]=0 ;;
    P) latest=
       [ -f "$value" ] && IFS= read -r latest < "$value"
       [ "$latest" = "${values[$unit]}" ] && keep[$unit]=1 ;;
    S) if [ -z "${keep[$unit]:-}" ] && { [ -e "$value" ] || [ -L "$value" ]; }; then
         paths+=("$value") count[$unit]=$((count[$unit] + 1))
       fi ;;
    N) case $value in "~") value=$HOME ;; "~/"*) value=$HOME/${value#"~/"} ;; esac
       [ -z "${keep[$unit]:-}" ] && [ -d "$value" ] && [ ! -L "$value" ] || continue
       ours=
       [ -e "$value/.konduktor-finished" ] && ours=1
       for running in "$value"/.konduktor-running-*; do
         [ -e "$running" ] && ours=1
         break
       done
       if [ -n "$ours" ]; then paths+=("$value") count[$unit]=$((count[$unit] + 1)); fi ;;
  esac
done
if [ "$measure" = 1 ] && [ "${#paths[@]}" -gt 0 ]; then
  find "${paths[@]}" ! -type d -printf '%D:%i %n %s\n' 2>/dev/null | awk '
    $2 == 1 { total += $3; next }
    { seen[$1]++; links[$1] = $2; size[$1] = $3 }
    END { for (k in seen) if (seen[k] >= links[k]) total += size[k]
          printf "bytes\t%.0f\n", total }'
fi
for u in "${units[@]}"; do
  name=${values[$u]}
  if [ -n "${keep[$u]:-}" ]; then printf 'kept\t%s\n' "$name"; continue; fi
  n=${count[$u]}
  if [ "$dry" = 1 ]; then printf 'would\t%s\t%s\n' "$name" "$n"; continue; fi
  if [ "$n" -eq 0 ] || out=$(rm -rf -- "${paths[@]:${first[$u]}:$n}" 2>&1); then
    printf 'pruned\t%s\t%s\n' "$name" "$n"
  else
    out=${out%%$'\n'*}
    printf 'failed\t%s\t%s\n' "$name" "${out//$'\t'/ }"
  fi
done
"""


@dataclass(frozen=True)
class PruneUnit:
    """What one removal decides about: a job, or a grid sweep (its variants share one
    snapshot and are pruned together)."""

    name: str  # the job's name, or the sweep's
    task_name: str
    jobs: tuple[str, ...]  # the store records it covers
    ended: float  # when the last of them ended
    job_dir: str  # the directory holding the snapshot
    snapshot_paths: tuple[str, ...]
    node_workdirs: tuple[str, ...]  # as configured: a leading ~ is the cluster home

    @property
    def pointer(self) -> str:
        """The task's ``.latest`` pointer: names the job whose snapshot the next launch uses."""
        jobs_dir = self.job_dir.rsplit("/", 1)[0]
        return f"{jobs_dir}/{LATEST_DIR}/{self.task_name}"


@dataclass
class PruneResult:
    """What a prune removed (or would remove), kept, failed on and left alone."""

    older_than: float | None  # seconds; None: retention is `never` and none was given
    dry_run: bool = False
    pruned: list[PruneUnit] = field(default_factory=list)  # removed (dry run: would be)
    kept: list[PruneUnit] = field(default_factory=list)  # its task's latest snapshot
    failed: list[tuple[PruneUnit, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (job, why not touched)
    bytes_freed: int | None = None  # when measured
    left: int = 0  # units beyond the limit, for the next run
    at: float = 0.0  # when it ran (what pruned jobs record)

    @property
    def jobs_pruned(self) -> int:
        return sum(len(unit.jobs) for unit in self.pruned)


def prune(
    session: Session,
    older_than: float | None = None,
    *,
    dry_run: bool = False,
    measure: bool = True,
    limit: int | None = None,
    timeout: float = BATCH_TIMEOUT,
    now: float | None = None,
) -> PruneResult:
    """Remove the snapshots of jobs that ended more than ``older_than`` seconds ago (default:
    the configured retention), and record it in their rows. ``dry_run``: only say what would
    go. Raises UnreachableError when the cluster does not answer (nothing is recorded)."""
    now = time.time() if now is None else now
    age = session.config.retention if older_than is None else older_than
    result = PruneResult(older_than=age, dry_run=dry_run, at=now)
    if age is None:
        return result
    store = session.store
    # A bounded prune plans only the units it may do, not every candidate: a store of
    # 100,000 finished jobs made each report spend seconds planning them all.
    candidates, total = store.prune_candidates(now - age, limit)
    units, result.skipped = plan_units(candidates, session.config.node_workdir)
    units = latest_last(units, store.newest_of_tasks(unit.task_name for unit in units))
    if limit is not None:
        units, result.left = units[:limit], max(0, total - limit)
    measured = 0
    for start in range(0, len(units), BATCH_SIZE):
        batch = units[start : start + BATCH_SIZE]
        outcome = _remove(session, batch, dry_run, measure, timeout)
        result.pruned += outcome.pruned
        result.kept += outcome.kept
        result.failed += outcome.failed
        measured += outcome.bytes_freed or 0
        if not dry_run and outcome.pruned:
            session.store.mark_pruned([job for unit in outcome.pruned for job in unit.jobs], now)
    if measure and units:
        result.bytes_freed = measured
    return result


def latest_last(units: list[PruneUnit], newest: dict[str, str]) -> list[PruneUnit]:
    """The units holding their task's newest job go last: their snapshot is most likely the
    one ``.latest`` names, which the removal keeps. A bounded prune then spends its turn on
    snapshots that can go, rather than on the same kept ones every time."""
    return sorted(units, key=lambda unit: newest.get(unit.task_name) in unit.jobs)


def plan_units(
    candidates: list[PruneCandidate], node_workdir: str
) -> tuple[list[PruneUnit], list[tuple[str, str]]]:
    """Group the candidates into units (a sweep's variants into one), oldest first, with the
    paths to remove; a record whose directory does not look like konduktor's (a damaged row)
    is skipped with why: nothing is removed on its word."""
    singles: list[PruneUnit] = []
    sweeps: dict[str, list[PruneCandidate]] = {}
    skipped: list[tuple[str, str]] = []
    for candidate in candidates:
        if candidate.sweep is not None:
            sweeps.setdefault(candidate.sweep, []).append(candidate)
            continue
        why = _unsafe_name(candidate.name) or _unsafe_dir(candidate.job_dir, candidate.name)
        why = why or _unsafe_name(candidate.task_name, "task name")
        if why:
            skipped.append((candidate.name, why))
            continue
        singles.append(
            PruneUnit(
                name=candidate.name,
                task_name=candidate.task_name,
                jobs=(candidate.name,),
                ended=candidate.ended,
                job_dir=candidate.job_dir,
                snapshot_paths=tuple(f"{candidate.job_dir}/{part}" for part in SNAPSHOT_PARTS),
                node_workdirs=(f"{node_workdir}/{candidate.name}",),
            )
        )
    units = singles
    for sweep, variants in sweeps.items():
        unit, why = _sweep_unit(sweep, variants, node_workdir)
        if unit is None:
            skipped += [(variant.name, why) for variant in variants]
        else:
            units.append(unit)
    units.sort(key=lambda unit: (unit.ended, unit.name))
    return units, skipped


def _sweep_unit(
    sweep: str, variants: list[PruneCandidate], node_workdir: str
) -> tuple[PruneUnit | None, str]:
    why = _unsafe_name(sweep, "sweep name")
    sweep_dirs = {variant.job_dir.rsplit("/elements/", 1)[0] for variant in variants}
    if not why and len(sweep_dirs) != 1:
        why = f"its variants' directories are not under one sweep directory: {sorted(sweep_dirs)}"
    sweep_dir = sweep_dirs.pop() if len(sweep_dirs) == 1 else ""
    why = why or _unsafe_dir(sweep_dir, sweep)
    for variant in variants:
        if why:
            break
        element = variant.job_dir.removeprefix(f"{sweep_dir}/elements/")
        why = _unsafe_name(variant.name) or _unsafe_name(variant.task_name, "task name")
        if not why and not element.isdigit():
            why = f"job_dir {variant.job_dir!r} is not <sweep dir>/elements/<number>"
    if why:
        return None, why
    names = tuple(sorted(variant.name for variant in variants))
    return (
        PruneUnit(
            name=sweep,
            task_name=variants[0].task_name,
            jobs=names,
            ended=max(variant.ended for variant in variants),
            job_dir=sweep_dir,
            snapshot_paths=(
                *(f"{sweep_dir}/{part}" for part in SNAPSHOT_PARTS),
                *(f"{variant.job_dir}/secrets.env" for variant in variants),
            ),
            node_workdirs=tuple(f"{node_workdir}/{name}" for name in names),
        ),
        "",
    )


def _unsafe_name(name: str, what: str = "name") -> str:
    """Why ``name`` cannot be one path component (a damaged row), or ""."""
    if not name or name in (".", "..") or any(c in name for c in "/\0\t\n\r"):
        return f"its {what} {name!r} is not a file name"
    return ""


def _unsafe_dir(job_dir: str, name: str) -> str:
    """Why ``job_dir`` is not where konduktor puts the job ``name`` (<jobs_dir>/<name>)."""
    parts = job_dir.split("/")
    if not job_dir.startswith("/") or any(part in ("", ".", "..") for part in parts[1:]):
        return f"its job_dir {job_dir!r} is not a plain absolute path"
    if len(parts) < 3 or parts[-1] != name or any(c in job_dir for c in "\0\t\n\r"):
        return f"its job_dir {job_dir!r} is not <jobs_dir>/{name}"
    return ""


@dataclass
class _Outcome:
    """What removing one batch of snapshots and node workdirs did."""

    pruned: list[PruneUnit]
    kept: list[PruneUnit]
    failed: list[tuple[PruneUnit, str]]
    bytes_freed: int | None


def _remove(
    session: Session, units: list[PruneUnit], dry_run: bool, measure: bool, timeout: float
) -> _Outcome:
    """One transport command for ``units``: the pointer checks, the measurement, the rm."""
    from konduktor_slurm.transport import TransportError

    fields: list[str] = []
    for unit in units:
        fields += ["U", unit.name, "P", unit.pointer]
        for path in unit.snapshot_paths:
            fields += ["S", path]
        for path in unit.node_workdirs:
            fields += ["N", path]
    stdin = "".join(f"{value}\0" for value in fields)
    argv = ["bash", "-c", _REMOVE_SCRIPT, "konduktor-prune", str(int(dry_run)), str(int(measure))]
    try:
        answer = session.slurm.transport.run(argv, timeout=timeout, input_text=stdin)
    except TransportError as exc:
        raise UnreachableError(f"could not prune on the cluster: {exc}") from None
    by_name = {unit.name: unit for unit in units}
    outcome = _Outcome([], [], [], None)
    for line in answer.stdout.splitlines():
        verdict, _, rest = line.partition("\t")
        name, _, detail = rest.partition("\t")
        if verdict == "bytes":
            outcome.bytes_freed = int(name) if name.isdigit() else None
            continue
        unit = by_name.pop(name, None)
        if unit is None:
            continue
        if verdict in ("pruned", "would"):
            outcome.pruned.append(unit)
        elif verdict == "kept":
            outcome.kept.append(unit)
        else:
            outcome.failed.append((unit, detail or "rm failed"))
    if by_name:  # the script stopped early (bash missing, killed): what it did not report
        problem = answer.stderr.strip().splitlines()
        reason = problem[0] if problem else f"exit code {answer.returncode}"
        if not (outcome.pruned or outcome.kept or outcome.failed):
            raise ActionError(f"could not prune on the cluster: {reason}")
        outcome.failed += [(unit, reason) for unit in by_name.values()]
    return outcome


def auto_prune(
    session: Session, warn: Callable[[str], None], now: float | None = None
) -> PruneResult | None:
    """The quiet prune after a launch or a report: at most AUTO_LIMIT snapshots, at most
    every AUTO_INTERVAL (or retention) seconds; a failure is one warning, never an error.
    None when it did not run (retention `never`, or not due yet)."""
    retention = session.config.retention
    if retention is None:
        return None
    now = time.time() if now is None else now
    store = session.store
    try:
        due = _meta_time(store.get_meta(NEXT_AUTO_RUN))
        if due is not None and now < due and due - now <= AUTO_INTERVAL:
            return None
        result = prune(
            session, retention, measure=False, limit=AUTO_LIMIT, timeout=AUTO_TIMEOUT, now=now
        )
        pause = 0.0 if result.left else min(AUTO_INTERVAL, retention)
        store.set_meta(NEXT_AUTO_RUN, repr(now + pause))
    except Exception as exc:  # never fail a launch or a report for this (store, SSH, ...)
        warn(
            f"Warning: could not prune old job snapshots ({_one_line(exc)}); "
            "`konduktor prune` retries"
        )
        return None
    if result.failed:
        unit, reason = result.failed[0]
        more = f" and {len(result.failed) - 1} more" if len(result.failed) > 1 else ""
        warn(
            f"Warning: could not prune the snapshot of {unit.name}{more}: {reason}; "
            "`konduktor prune` retries"
        )
    return result


def _meta_time(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
