"""Bring the store up to date with Slurm, in a bounded number of Slurm calls.

One ``squeue`` for every job that is not known to be finished, at most one ``sacct`` for the
jobs that have left the queue (or finished in it), and at most one file read for the
per-rank exit codes of the jobs that just finished. Jobs the store already knows to be
terminal are never queried again: that is what keeps ``konduktor status`` cheap at 200 jobs.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable
from typing import NamedTuple

from konduktor_slurm.lifecycle import (
    LocalFacts,
    SlurmFacts,
    State,
    classify,
    is_terminal_slurm_state,
    normalise_state,
)
from konduktor_slurm.slurm import AcctRow, QueueRow, Slurm, SlurmError
from konduktor_slurm.store import JobRecord, Store
from konduktor_slurm.transport import TransportError, in_bounded_runs

RANK_EXIT_GLOB = "rank-*.exit"
# Written by the batch script: "RANK NODE" for every rank srun could not launch.
UNSTARTED_RANKS_FILE = "ranks-not-started"


class RefreshResult(NamedTuple):
    """What a refresh could not do: why Slurm was not asked, and which jobs are stale."""

    stale_reason: str | None = None  # why Slurm could not be asked; states are last known
    # With all_users: other users' konduktor jobs, seen in the same squeue call.
    others: tuple[JobRecord, ...] = ()
    # The jobs whose state is the last known one; None: all of them (squeue failed).
    stale_jobs: frozenset[str] | None = None

    def is_stale(self, job: JobRecord) -> bool:
        return self.stale and (self.stale_jobs is None or job.name in self.stale_jobs)

    @property
    def stale(self) -> bool:
        return self.stale_reason is not None


class RankReport(NamedTuple):
    """What a finished job's ranks left in its directory."""

    exit_codes: dict[int, int]  # rank -> the exit code its node script recorded
    not_started: dict[int, str]  # rank -> node: srun could not launch it there


def read_rank_reports(slurm: Slurm, job_dirs: list[str]) -> dict[str, RankReport]:
    """``{job_dir: RankReport}`` for all ``job_dirs``: one grep per 64 KiB of paths."""
    # grep prints "path:line" for every line of every matching file; '' matches any line
    # (an empty rank-N.exit, a rank still running or killed, prints nothing).
    output = "".join(
        slurm.transport.run(
            ["grep", "-rHs", f"--include={RANK_EXIT_GLOB}", f"--include={UNSTARTED_RANKS_FILE}",
             "", *chunk],
            timeout=slurm.timeout,
        ).stdout
        for chunk in in_bounded_runs(job_dirs)
    )  # fmt: skip
    reports: dict[str, RankReport] = {}
    for line in output.splitlines():
        path, _, value = line.rpartition(":")
        directory, _, filename = path.rpartition("/")
        if filename == UNSTARTED_RANKS_FILE:
            rank_text, _, node = value.strip().partition(" ")
            if rank_text.isdigit() and node:
                report = reports.setdefault(directory, RankReport({}, {}))
                report.not_started[int(rank_text)] = node
            continue
        rank_text = filename.removeprefix("rank-").removesuffix(".exit")
        if rank_text.isdigit() and value.strip().lstrip("-").isdigit():
            report = reports.setdefault(directory, RankReport({}, {}))
            report.exit_codes[int(rank_text)] = int(value.strip())
    return reports


# job.extra's record of the process launching a CREATED job (launcher.this_launcher()).
LAUNCHER_KEY = "launcher"


def settle_orphans(store: Store, slurm: Slurm, jobs: list[JobRecord]) -> None:
    """Settle those of ``jobs`` (CREATED, with a launcher recorded) whose launch process
    ended before it recorded how the launch went: one it ended while submitting is looked
    up in Slurm by its unique name (squeue, then accounting) and followed from there if
    Slurm has it; any other is FAILED, with nothing submitted. A job Slurm cannot be asked
    about now is left for the next refresh."""
    from konduktor_slurm.launcher import launcher_gone

    orphans = [job for job in jobs if launcher_gone(job.extra.get(LAUNCHER_KEY))]
    arrays_by_name: dict[str, list[str]] = {}  # one lookup per name: a sweep's elements share it
    for job in orphans:
        launcher = job.extra[LAUNCHER_KEY]
        slurm_id = None
        if job.detail == "submitting":
            # A sweep's elements are job arrays named after the sweep, submitted in order.
            slurm_name = job.extra.get("sweep") or job.name
            try:
                if slurm_name not in arrays_by_name:
                    arrays_by_name[slurm_name] = _ids_by_name(
                        slurm, slurm_name, job.user, job.created_at, every="sweep" in job.extra
                    )
            except (SlurmError, TransportError):
                continue
            slurm_id = _orphan_id(job, arrays_by_name[slurm_name])
        del job.extra[LAUNCHER_KEY]
        gone = f"its launch (process {launcher.get('pid')}) ended"
        with store.transaction():
            if slurm_id is None:
                job.terminal = True
                what = "while submitting; Slurm has no job by its name"
                if job.detail != "submitting":
                    what = "before submitting; nothing was submitted"
                store.set_state(job, State.FAILED.value, f"{gone} {what}")
            else:
                job.slurm_job_id, job.submitted_at = slurm_id, job.created_at
                store.save(job, ("slurm_job_id", "submitted_at"))
                store.set_state(
                    job, State.PENDING.value, f"{gone} while submitting; found in Slurm"
                )


def _ids_by_name(slurm: Slurm, name: str, user: str, since: float, every: bool) -> list[str]:
    """The ids of the user's jobs (job arrays: their array ids) called ``name`` submitted
    after ``since``, oldest first. Accounting is asked too when squeue has none, or for
    ``every`` one (a sweep's first array may have left the queue while its second waits)."""
    ids = slurm.ids_by_name(name, user)
    if every or not ids:
        ids += [row.job_id for row in slurm.history(user, since - 60) if row.name == name]
    base_ids = {job_id.partition("_")[0] for job_id in ids}  # "889_0" -> "889"
    return sorted(base_ids, key=lambda job_id: (len(job_id), job_id))


def _orphan_id(job: JobRecord, ids: list[str]) -> str | None:
    """The Slurm id of ``job`` among ``ids`` (its name's, oldest first), if it was submitted."""
    if "sweep" not in job.extra:
        return ids[0] if ids else None
    batch, index = job.extra.get("array_batch"), job.extra.get("array_index")
    if not isinstance(batch, int) or not isinstance(index, int) or batch >= len(ids):
        return None
    return f"{ids[batch]}_{index}"


def slurm_facts(
    job: JobRecord, queue: QueueRow | None, acct: AcctRow | None, ranks: RankReport
) -> SlurmFacts:
    return SlurmFacts(
        job_id=job.slurm_job_id,
        squeue_state=normalise_state(queue.state) if queue else None,
        reason=queue.reason if queue else None,
        priority=queue.priority if queue else None,
        restarts=queue.restarts if queue else 0,
        requeueable=queue.requeueable if queue else True,
        node_list=(queue.node_list if queue else None) or (acct.node_list if acct else None),
        sacct_state=_sacct_state(acct),
        exit_code=acct.exit_code if acct else None,
        time_limit=(queue.time_limit if queue else None) or (acct.time_limit if acct else None),
        rank_exit_codes=ranks.exit_codes,
        ranks_not_started=ranks.not_started,
    )


def _sacct_state(acct: AcctRow | None) -> str | None:
    if acct is None:
        return None
    # The cgroup OOM killer ends the step OUT_OF_MEMORY but the allocation just FAILED.
    if acct.out_of_memory and normalise_state(acct.state) == "FAILED":
        return "OUT_OF_MEMORY"
    return acct.state


def local_facts(job: JobRecord, now: float) -> LocalFacts:
    return LocalFacts(
        submitted=job.slurm_job_id is not None,
        created_detail=job.detail or "staging workdir",
        user_stop=job.user_stop,
        now=now,
    )


def refresh(
    store: Store, slurm: Slurm, jobs: list[JobRecord], all_users: bool = False
) -> RefreshResult:
    """Ask Slurm about every unfinished job in ``jobs`` and record what changed.

    With ``all_users`` the one squeue call asks for every user's jobs instead of ours only,
    and other users' konduktor jobs come back in ``RefreshResult.others``.

    squeue is the source of truth while a job is in it. Only if squeue cannot be asked is
    everything stale. When accounting (sacct) fails, jobs squeue still shows are classified
    from squeue; only jobs that left the queue keep their last known state (stale): nothing
    is declared finished on a guess.
    """
    launching = [
        job
        for job in jobs
        if not job.terminal and not job.slurm_job_id and LAUNCHER_KEY in job.extra
    ]
    if launching:
        settle_orphans(store, slurm, launching)
    live = [job for job in jobs if not job.terminal and job.slurm_job_id]
    if not live and not all_users:
        return RefreshResult()
    ids = [job.slurm_job_id for job in live if job.slurm_job_id]
    try:
        queue = slurm.queue_all_users() if all_users else slurm.queue(ids)
    except (SlurmError, TransportError) as exc:
        return RefreshResult(stale_reason=str(exc))
    # A job whose id now names another job is gone: nothing Slurm says of that id is ours.
    lost = [job for job in live if _id_taken(job, queue)]
    if lost:
        gone = {job.name for job in lost}
        live = [job for job in live if job.name not in gone]
        ids = [job.slurm_job_id for job in live if job.slurm_job_id]
    left_queue = [
        job_id
        for job_id in ids
        if job_id not in queue or is_terminal_slurm_state(normalise_state(queue[job_id].state))
    ]
    accounting_error = None
    try:
        acct = slurm.accounting(left_queue) if left_queue else {}
    except (SlurmError, TransportError) as exc:
        acct, accounting_error = {}, str(exc)
    finished_dirs = [job.job_dir for job in live if job.slurm_job_id in left_queue]
    try:
        ranks = read_rank_reports(slurm, finished_dirs)
        failed_nodes = _failed_nodes(slurm, live, queue, acct)
        requeue_causes = _requeue_causes(slurm, live, queue)
        # Only when some job was cancelled by a uid: one lookup for all of them.
        uid_names = slurm.user_names(_cancelling_uids(acct.values()))
    except (SlurmError, TransportError) as exc:
        return RefreshResult(stale_reason=str(exc))

    now = time.time()
    with store.transaction():
        if lost:
            _record_lost(store, lost, queue, now)
        unconfirmed = _record(
            store,
            live,
            queue,
            acct,
            ranks,
            failed_nodes,
            requeue_causes,
            now,
            uid_names,
            accounting_error is not None,
        )
    others: tuple[JobRecord, ...] = ()
    if all_users:
        known = {job.slurm_job_id for job in jobs}
        candidates = [
            row.job_id
            for row in queue.values()
            if row.launched_by_konduktor and row.job_id not in known
        ]
        # ``jobs`` may be only the unfinished ones (a report): a finished job of ours that
        # squeue still lists is ours all the same, not another user's.
        known |= store.known_slurm_ids(candidates)
        others = tuple(
            foreign_job(row, now)
            for row in queue.values()
            if row.launched_by_konduktor and row.job_id not in known
        )
    if unconfirmed:
        reason = (
            f"accounting (sacct) did not answer: {accounting_error}"
            if accounting_error
            else "neither squeue nor sacct reports it right now"
        )
        return RefreshResult(
            stale_reason=f"{reason}; {', '.join(sorted(unconfirmed))} keep their last known state",
            others=others,
            stale_jobs=frozenset(unconfirmed),
        )
    return RefreshResult(others=others)


# For how long (seconds) later looks ask the accounting database again which node failed
# under a requeued job, when it did not know yet.
NODE_EVENT_WAIT = 120.0

# The store's record of the last shared poll: {"at": epoch seconds, "error": str | None}.
SHARED_POLL_KEY = "shared_poll"


def refresh_shared(
    store: Store, slurm: Slurm, jobs: list[JobRecord], max_age: float, now: float | None = None
) -> RefreshResult:
    """``refresh`` for waiters and followers, who may be many at once: ask Slurm only when no
    konduktor process of this store has within ``max_age`` seconds, and then about every
    unfinished job in the store, so that one squeue serves them all. Otherwise ``jobs`` are
    brought up to what the store holds (what the other process found).

    Five ``logs --follow`` of one user thus cost one squeue per interval, not five. ``now``
    (epoch seconds) dates the poll.
    """
    now = time.time() if now is None else now
    claimed, shared_error = store.claim_poll(SHARED_POLL_KEY, max_age, now)
    if not claimed:
        store.reload(jobs)
        return RefreshResult(stale_reason=shared_error)
    by_name = {job.name: job for job in store.unfinished_jobs()}
    by_name.update({job.name: job for job in jobs})  # the caller's objects get the news
    result = refresh(store, slurm, list(by_name.values()))
    if result.stale_reason is not None and result.stale_jobs is None:
        store.record_poll_error(SHARED_POLL_KEY, now, result.stale_reason)
    if result.stale_jobs is not None:
        # Only some jobs are stale: say so for the caller's, not for everyone else's.
        mine = frozenset(job.name for job in jobs) & result.stale_jobs
        return RefreshResult(result.stale_reason if mine else None, stale_jobs=mine or None)
    return result


def _record(
    store: Store,
    live: list[JobRecord],
    queue: dict[str, QueueRow],
    acct: dict[str, AcctRow],
    ranks: dict[str, RankReport],
    failed_nodes: dict[str, str],
    requeue_causes: dict[str, str],
    now: float,
    uid_names: dict[int, str],
    accounting_failed: bool,
) -> set[str]:
    """Classify each job from what Slurm said and store the result; the names of the jobs
    whose state could not be confirmed (left as they were)."""
    store.reload_user_fields(live)  # a `stop` in another process since these were read
    unconfirmed: set[str] = set()
    found: list[tuple[JobRecord, str, str]] = []
    for job in live:
        job_id = job.slurm_job_id or ""
        row, acct_row = queue.get(job_id), acct.get(job_id)
        if row is None and acct_row is None and (accounting_failed or _seen_by_slurm(job)):
            # Gone from squeue, and sacct cannot say (or does not say, yet) how it ended.
            unconfirmed.add(job.name)
            continue
        facts = slurm_facts(job, row, acct_row, ranks.get(job.job_dir) or RankReport({}, {}))
        if job_id in failed_nodes:
            facts = dataclasses.replace(facts, failed_nodes=failed_nodes[job_id])
        local = dataclasses.replace(
            local_facts(job, now),
            uid_names=uid_names,
            restart_reason=requeue_causes.get(job_id),
        )
        outcome = classify(facts, local)
        _update_times(job, row, acct_row)
        _remember_slurm_details(job, facts, row)
        job.terminal = outcome.state.terminal
        if not job.terminal:
            job.end_time = None  # a requeued run has no end yet
        detail = _with_attempt(outcome.detail, job.extra.get("attempt"))
        found.append((job, outcome.state.value, detail))
    store.set_states(found, now)  # one read of what is stored, writes for what changed
    return unconfirmed


def _id_taken(job: JobRecord, queue: dict[str, QueueRow]) -> bool:
    """Whether squeue lists the job's id under another job: another name, submitted after
    ours. Slurm hands out ids again when slurmctld restarts without its saved state (killed
    before it saved it, or the state directory lost); the job we submitted then no longer
    exists, and the one that has its id must not be taken for it."""
    row = queue.get(job.slurm_job_id or "")
    if row is None or row.submit_time is None or job.submitted_at is None:
        return False
    # The name Slurm knows the job by: a sweep's variants are elements of one array, named
    # after the sweep.
    slurm_name = job.extra.get("sweep") or job.name
    return row.name != slurm_name and row.submit_time > job.submitted_at


def _record_lost(
    store: Store, jobs: list[JobRecord], queue: dict[str, QueueRow], now: float
) -> None:
    """Record ``jobs`` FAILED, naming the job that now has each one's id in ``queue``."""
    found = []
    for job in jobs:
        row = queue[job.slurm_job_id or ""]
        submitted = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.submit_time or 0))
        detail = (
            f"lost by Slurm: job id {job.slurm_job_id} now names another job ({row.name!r}, "
            f"submitted {submitted}); slurmctld probably restarted without its saved state"
        )
        job.terminal = True
        found.append((job, State.FAILED.value, detail))
    store.set_states(found, now)


def _seen_by_slurm(job: JobRecord) -> bool:
    """Whether squeue or sacct ever reported the job (a just-submitted one may not be, yet:
    sacct lags squeue, and squeue may answer before the submission is visible)."""
    return bool(job.extra.get("slurm_state"))


def _requeue_causes(
    slurm: Slurm, live: list[JobRecord], queue: dict[str, QueueRow]
) -> dict[str, str]:
    """Why each requeued job waits again, as its detail: a node failure names the node; a
    preemption says so. One sacct (every run of those jobs) when a job was requeued since
    the last look; the answer is kept in the job's record until it is requeued again."""
    from konduktor_slurm.lifecycle import WAITING_CLASSES, reason_class

    asked: list[JobRecord] = []
    causes: dict[str, str] = {}
    for job in live:
        row = queue.get(job.slurm_job_id or "")
        if row is None or row.restarts <= 0 or normalise_state(row.state) != "PENDING":
            continue
        if reason_class(row.reason) not in WAITING_CLASSES:
            continue  # held or limited: that reason is the news, not why it was requeued
        known = job.extra.get("requeue_cause")
        if isinstance(known, dict) and known.get("restarts") == row.restarts:
            if known.get("detail"):
                causes[job.slurm_job_id or ""] = str(known["detail"])
            first = known.get("first_asked_at")
            recent = isinstance(first, int | float) and time.time() - first < NODE_EVENT_WAIT
            if not (known.get("node_unknown") and recent):
                continue
        asked.append(job)
    if not asked:
        return causes
    try:
        runs = slurm.runs([job.slurm_job_id for job in asked if job.slurm_job_id])
    except (SlurmError, TransportError):
        return causes  # the generic "awaiting reschedule" stays; asked again next time
    for job in asked:
        ended = [run for run in runs if run.job_id == job.slurm_job_id and run.end_time]
        last = normalise_state(ended[-1].state) if ended else ""
        row = queue[job.slurm_job_id or ""]
        known = job.extra.get("requeue_cause")
        same_requeue = isinstance(known, dict) and known.get("restarts") == row.restarts
        run_nodes = job.extra.get("run_nodes") or job.extra.get("node_list")
        # The failed run's start, from accounting: the record's start_time is by now
        # Slurm's expected start of the next run.
        since = ended[-1].start_time if ended else None
        detail, nodes = None, ""
        if last == "NODE_FAIL":
            nodes = _down_nodes(slurm, run_nodes, since)
            on = f" ({nodes})" if nodes else ""
            detail = f"node failure{on}; requeued, awaiting reschedule (restart {row.restarts})"
        elif last == "REQUEUED":
            detail = f"requeued, awaiting reschedule (restart {row.restarts})"
        job.extra["requeue_cause"] = {
            "restarts": row.restarts,
            "detail": detail,
            # slurmctld hands the node's DOWN event to slurmdbd a little after it requeues
            # the job: the first looks may not find it yet, so later looks ask again, for a
            # while (NODE_EVENT_WAIT), not forever.
            "node_unknown": last == "NODE_FAIL" and not nodes,
            "first_asked_at": known.get("first_asked_at") if same_requeue else time.time(),
        }
        if detail:
            causes[job.slurm_job_id or ""] = detail
    return causes


def _down_nodes(slurm: Slurm, node_list: object, since: object) -> str:
    """The nodes of ``node_list`` (a run's) that went down since ``since`` (its start)."""
    if not isinstance(node_list, str) or not node_list or not isinstance(since, int | float):
        return ""
    try:
        names = slurm.expand_hostlists([node_list]).get(node_list, [])
        down = slurm.nodes_that_went_down(names, since)
    except (SlurmError, TransportError):
        return ""
    return ",".join(name for name in names if name in down)


def _cancelling_uids(rows: Iterable[AcctRow]) -> set[int]:
    uids = set()
    for row in rows:
        match = re.match(r"CANCELLED by (\d+)", row.state)
        if match and match.group(1) != "0":  # uid 0 is root everywhere
            uids.add(int(match.group(1)))
    return uids


def _failed_nodes(
    slurm: Slurm, live: list[JobRecord], queue: dict[str, QueueRow], acct: dict[str, AcctRow]
) -> dict[str, str]:
    """For jobs that ended NODE_FAIL: ``{job id: "node2"}``, with one Slurm call for all
    (two when their node lists must be expanded: see Slurm.expand_hostlists)."""
    node_list_of: dict[str, str] = {}
    since = time.time()
    for job in live:
        job_id = job.slurm_job_id or ""
        rows = [row for row in (queue.get(job_id), acct.get(job_id)) if row is not None]
        if any(normalise_state(row.state) == "NODE_FAIL" for row in rows):
            node_list = next((row.node_list for row in rows if row.node_list), None)
            if node_list:
                node_list_of[job_id] = node_list
            since = min(since, job.start_time or job.submitted_at or job.created_at)
    if not node_list_of:
        return {}
    try:
        expanded = slurm.expand_hostlists(node_list_of.values())
    except SlurmError:
        return {}  # the failure is still shown, with the job's node list instead
    nodes_of = {job_id: expanded[node_list] for job_id, node_list in node_list_of.items()}
    down = slurm.nodes_that_went_down([n for names in nodes_of.values() for n in names], since)
    return {
        job_id: ",".join(node for node in names if node in down)
        for job_id, names in nodes_of.items()
        if any(node in down for node in names)
    }


def _remember_slurm_details(job: JobRecord, facts: SlurmFacts, row: QueueRow | None) -> None:
    """Keep what `status JOB` shows; it stays readable after Slurm forgets the job."""
    job.extra.update(
        {
            "slurm_state": facts.squeue_state or facts.sacct_state,
            "reason": facts.reason,
            "priority": facts.priority,
            "node_list": facts.node_list,
            "exit_code": facts.exit_code,
            # Ints, in rank order; the store's JSON makes the keys strings, so read them back
            # with views.rank_exit_codes (ints again, 2 before 10).
            "rank_exit_codes": dict(sorted(facts.rank_exit_codes.items())),
        }
    )
    if facts.node_list and facts.squeue_state in ("RUNNING", "SUSPENDED"):
        # The nodes of the run in progress, kept when a requeue empties node_list: a node
        # failure names one of them (see _requeue_causes). Not COMPLETING's: after a node
        # failure that lists only the nodes still cleaning up, without the failed one.
        job.extra["run_nodes"] = facts.node_list
    if row is not None:
        job.extra["restarts"] = row.restarts
        if row.attempt:
            job.extra["attempt"] = list(row.attempt)


def _with_attempt(detail: str, attempt: list[int] | None) -> str:
    if not attempt or attempt[0] <= 1:
        return detail
    note = f"attempt {attempt[0]} of {attempt[1]}"
    return f"{detail} ({note})" if detail else note


def resources_of(row: QueueRow) -> str:
    """Konduktor's RESOURCES column for a job not in our store."""
    if row.resources_summary:
        return row.resources_summary
    # Submitted by an older konduktor: rebuild what squeue can say unambiguously (its
    # MinMemory may be per CPU or per node, so memory is left out).
    parts = [f"{row.cpus_per_task}CPU"] if row.cpus_per_task else []
    if row.gpu_gres:
        gpu_type, count = row.gpu_gres
        parts.append(f"{gpu_type.upper()}:{count}")
    return f"{row.num_nodes or 1}x({', '.join(parts) or '-'})"


def foreign_job(row: QueueRow, now: float) -> JobRecord:
    """A read-only record for another user's konduktor job, from its squeue row alone."""
    facts = SlurmFacts(
        job_id=row.job_id,
        squeue_state=normalise_state(row.state),
        reason=row.reason,
        priority=row.priority,
        restarts=row.restarts,
        requeueable=row.requeueable,
        node_list=row.node_list,
        time_limit=row.time_limit,
    )
    outcome = classify(facts, LocalFacts(now=now))
    job = JobRecord(
        name=row.name,
        task_name=row.name.rsplit("-", 1)[0],
        user=row.user,
        resources=resources_of(row),
        num_nodes=row.num_nodes or 1,
        job_dir="",
        log_path="",
        state=outcome.state.value,
        detail=_with_attempt(outcome.detail, list(row.attempt) if row.attempt else None),
        created_at=row.submit_time or now,
        slurm_job_id=row.job_id,
        submitted_at=row.submit_time,
        start_time=row.start_time if row.start_time and row.start_time <= now else None,
        end_time=row.end_time if row.end_time and row.end_time <= now else None,
        terminal=outcome.state.terminal,
    )
    _remember_slurm_details(job, facts, row)  # what stop/start --all-users decide from
    return job


def _update_times(job: JobRecord, row: QueueRow | None, acct: AcctRow | None) -> None:
    for source in (row, acct):
        if source is None:
            continue
        if source.start_time and source.start_time <= time.time():
            job.start_time = source.start_time
        if source.end_time and source.end_time <= time.time():
            job.end_time = source.end_time


def is_active(state: str) -> bool:
    return state == State.ACTIVE.value
