"""The dashboard's one refresh loop, the session it runs in, and the snapshot pages read.

Every open page (each browser tab, each log being followed) registers as a watcher; there is
one loop per process, whatever the number of watchers. While anyone watches, the loop
refreshes through ``service.status`` every ``interval`` seconds: one ``squeue`` for all
unfinished jobs (plus at most one ``sacct`` for the ones that just left the queue, as for
``konduktor status``), and publishes an immutable :class:`Snapshot` that every page renders.
That look is shared through the store with the user's followers and waits in other
processes, as theirs are with each other: when one of them asked Slurm within half an
interval, the refresh shows what the store holds from it instead (not for "every user's jobs", which
only the dashboard asks about).
Nobody watching: no Slurm call at all. Slurm not answering: the polling backs off as every
wait of the CLI does (``service.waiting.poll_intervals``, up to 30 s), never retries in a loop.
GPU-hours come from one ``sacct`` every ``usage_every`` seconds at most, not per refresh.

The session (settings, SQLite store, transport) lives on one worker thread, the "lane":
SQLite connections belong to the thread that opened them, and workflows (refresh, stop,
start, down) then never overlap, as two CLI commands in a row would not. Log tails run on a
second thread so a 20-second ``start`` does not freeze a log; both go through one
:class:`SerialTransport`, so over SSH the process keeps to its one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from konduktor_slurm.service.session import Session
    from konduktor_slurm.service.usage import JobUsage
    from konduktor_slurm.store import JobRecord, Transition

T = TypeVar("T")

DEFAULT_INTERVAL = 5.0
USAGE_EVERY = 120.0  # seconds between two sacct calls for GPU-hours
_SQL_CHUNK = 500  # job names per `IN (...)` query (SQLite's variable limit)


class SerialTransport:
    """The session's transport, one call at a time from any thread.

    The refresh lane and the log lane share it: over SSH that is one connection (paramiko
    multiplexes channels, but the transport's lazy connect and its SFTP client are not meant
    for two threads at once). A call is short (one command, one file read): a log read waits
    at most for one squeue.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        with self._lock:
            value = getattr(self.inner, name)  # properties (``user``) are read under the lock
        if not callable(value):
            return value

        def serialised(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return serialised


@dataclass(frozen=True)
class Snapshot:
    """What one refresh found: every page renders from this, never from Slurm."""

    version: int
    at: float  # epoch seconds of the refresh
    user: str
    jobs: tuple[JobRecord, ...]  # newest first; jobs taken down included; others' if all_users
    own: frozenset[str]  # names of the jobs in our store (the rest are other users')
    all_users: bool  # whether the squeue asked about every user's jobs
    stale_reason: str | None = None
    stale_jobs: frozenset[str] | None = None  # None with a stale_reason: every job is stale
    history: Mapping[str, tuple[Transition, ...]] = field(default_factory=dict)
    usage: Mapping[str, JobUsage] = field(default_factory=dict)
    accounting_error: str | None = None  # why GPU-hours could not be measured

    def is_stale(self, job: JobRecord) -> bool:
        """As ``StatusView.is_stale``: the state shown is only the last known one."""
        if job.terminal or self.stale_reason is None:
            return False
        return self.stale_jobs is None or job.name in self.stale_jobs

    def find(self, name: str) -> JobRecord | None:
        """A job by konduktor name or Slurm job id."""
        for job in self.jobs:
            if job.name == name:
                return job
        return next((job for job in self.jobs if job.slurm_job_id == name), None)


def newest_first(jobs: list[JobRecord]) -> list[JobRecord]:
    """The order of ``service.status``: by submission (creation before it), newest first."""
    return sorted(jobs, key=lambda job: job.submitted_at or job.created_at)[::-1]


class Hub:
    """One per dashboard process: the refresh loop, the lanes, the latest snapshot."""

    def __init__(
        self,
        open_session: Callable[[], Session],
        *,
        interval: float = DEFAULT_INTERVAL,
        usage_every: float = USAGE_EVERY,
    ) -> None:
        self._open_session = open_session
        self.interval = interval
        self.usage_every = usage_every
        self.snapshot: Snapshot | None = None
        self.version = 0
        self.refreshes = 0  # refresh rounds so far (not the ones after actions)
        self._lane = ThreadPoolExecutor(max_workers=1, thread_name_prefix="konduktor-session")
        self._files = ThreadPoolExecutor(max_workers=1, thread_name_prefix="konduktor-logs")
        self._session: Session | None = None
        self._transport: SerialTransport | None = None
        self._history: dict[str, tuple[Transition, ...]] = {}
        self._usage: dict[str, JobUsage] = {}
        self._usage_due = 0.0  # monotonic time of the next sacct for GPU-hours
        self._accounting_error: str | None = None
        self._watchers: dict[object, bool] = {}  # watcher -> wants every user's jobs
        self._wake: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None

    # ---- life ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task = asyncio.create_task(self._run(), name="konduktor-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.in_lane(self._close)
        self._files.shutdown(wait=False, cancel_futures=True)
        self._lane.shutdown(wait=False, cancel_futures=True)

    def _close(self) -> None:
        if self._session is not None:
            session, self._session, self._transport = self._session, None, None
            session.close()

    async def in_lane(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(*args)`` on the session's thread (the session is ``self.session``)."""
        return await asyncio.wrap_future(self._lane.submit(work, *args))

    async def in_files(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(*args)`` on the log thread (file reads through ``self.transport``)."""
        return await asyncio.wrap_future(self._files.submit(work, *args))

    @property
    def session(self) -> Session:
        """The session, opened on first use. Only on the lane's thread."""
        if self._session is None:
            session = self._open_session()
            self._transport = SerialTransport(session.slurm.transport)
            session.slurm.transport = self._transport  # type: ignore[assignment]
            self._session = session
        return self._session

    @property
    def transport(self) -> SerialTransport | None:
        """The session's transport (None until the first refresh opened it)."""
        return self._transport

    # ---- watchers -------------------------------------------------------------------------

    @contextlib.contextmanager
    def watching(self, all_users: bool = False) -> Iterator[None]:
        """While entered, someone looks: the loop keeps refreshing (every user's jobs too if
        ``all_users``). Every page's event stream and every followed log is one watcher."""
        key = object()
        self._watchers[key] = all_users
        self._poke()
        try:
            yield
        finally:
            del self._watchers[key]

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def _poke(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def next_snapshot(self, after_version: int, timeout: float) -> Snapshot | None:
        """The first snapshot newer than ``after_version``, or None after ``timeout`` seconds."""
        assert self._changed is not None
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self.version > after_version), timeout
                )
        snapshot = self.snapshot
        return snapshot if snapshot is not None and snapshot.version > after_version else None

    async def publish(self, snapshot: Snapshot) -> Snapshot:
        assert self._changed is not None
        async with self._changed:
            self.version += 1
            self.snapshot = dataclasses.replace(snapshot, version=self.version)
            self._changed.notify_all()
        return self.snapshot

    # ---- the loop -------------------------------------------------------------------------

    async def _run(self) -> None:
        from konduktor_slurm.service.waiting import POLL_FACTOR, POLL_MAX, poll_intervals

        assert self._wake is not None
        due = 0.0  # monotonic time of the next refresh
        backoff: Iterator[float] | None = None
        while True:
            if not self._watchers:
                # Nobody looks: no Slurm call until a page opens.
                self._wake.clear()
                await self._wake.wait()
                continue
            wants_all = any(self._watchers.values())
            snapshot = self.snapshot
            now = time.monotonic()
            if snapshot is None or (wants_all and not snapshot.all_users) or now >= due:
                started = now
                fresh = await self.in_lane(self._refresh, wants_all)
                self.refreshes += 1
                await self.publish(fresh)
                if fresh.stale_reason is None:
                    backoff, pause = None, self.interval
                else:  # Slurm does not answer: ask less and less often, as the CLI's waits do
                    if backoff is None:
                        backoff = poll_intervals(self.interval, POLL_FACTOR, POLL_MAX)
                    pause = next(backoff)
                # One refresh per interval, and a slow Slurm still gets a breather.
                due = max(started + pause, time.monotonic() + pause / 2)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), due - now)

    # ---- on the lane ------------------------------------------------------------------------

    def _refresh(self, all_users: bool) -> Snapshot:
        """One refresh through ``service.status``; never raises (a failure is a stale view)."""
        from konduktor_slurm.service.errors import KonduktorError
        from konduktor_slurm.service.status import StatusQuery, status

        try:
            session = self.session
            # Within half an interval: the loop's own last look (an interval ago, give or
            # take the lane's delays) never stands in for this one.
            query = StatusQuery(
                all_users=all_users, include_hidden=True, shared_within=self.interval / 2
            )
            view = status(session, query)
            snapshot = self._assemble(
                session,
                view.user,
                view.jobs,
                all_users,
                view.stale_reason,
                view.stale_jobs,
                measure_usage=not view.stale,
            )
        except KonduktorError as exc:
            return self._stale(str(exc))
        except Exception as exc:  # a dashboard outlives one bad refresh; the page says why
            return self._stale(f"unexpected {type(exc).__name__}: {exc}")
        if view.stale:
            self._reopen_if_connection_lost()
        return snapshot

    def after_action(self) -> Snapshot:
        """A snapshot from the store alone, right after stop/start/down: the action refreshed
        the jobs it touched, so this costs no Slurm call."""
        session = self.session
        previous = self.snapshot
        others = [job for job in previous.jobs if job.name not in previous.own] if previous else []
        jobs = newest_first([*session.store.jobs(include_hidden=True), *others])
        user = previous.user if previous else (session.store.last_user() or "")
        return self._assemble(
            session,
            user,
            jobs,
            previous.all_users if previous else False,
            previous.stale_reason if previous else None,
            previous.stale_jobs if previous else None,
            measure_usage=False,
        )

    def _stale(self, reason: str) -> Snapshot:
        previous = self.snapshot
        if previous is None:
            return Snapshot(0, time.time(), "", (), frozenset(), False, reason)
        return dataclasses.replace(previous, stale_reason=reason, stale_jobs=None)

    def _reopen_if_connection_lost(self) -> None:
        """Over SSH a lost connection stays lost for that transport (each CLI command fails
        once and exits); a dashboard runs for days, so it opens a new session for the next
        refresh. The page showed why in the meantime (stale, with the reason)."""
        inner = self._transport.inner if self._transport is not None else None
        if getattr(inner, "_lost", None):
            self._close()

    def _assemble(
        self,
        session: Session,
        user: str,
        jobs: list[JobRecord],
        all_users: bool,
        stale_reason: str | None,
        stale_jobs: frozenset[str] | None,
        *,
        measure_usage: bool,
    ) -> Snapshot:
        own = frozenset(session.store.names())
        mine = [job for job in jobs if job.name in own]
        self._update_history(session, mine)
        if measure_usage:
            self._update_usage(session, mine)
        return Snapshot(
            version=0,
            at=time.time(),
            user=user,
            jobs=tuple(jobs),
            own=own,
            all_users=all_users,
            stale_reason=stale_reason,
            stale_jobs=stale_jobs,
            history={job.name: self._history.get(job.name, ()) for job in mine},
            usage=dict(self._usage),
            accounting_error=self._accounting_error,
        )

    def _update_history(self, session: Session, jobs: list[JobRecord]) -> None:
        """Transitions of the jobs whose history may have grown (a finished job's never does)."""
        wanted = [
            job.name
            for job in jobs
            if not job.terminal
            or not self._history.get(job.name)
            or self._history[job.name][-1].state != job.state
        ]
        for start in range(0, len(wanted), _SQL_CHUNK):
            chunk = wanted[start : start + _SQL_CHUNK]
            grouped: dict[str, list[Transition]] = {name: [] for name in chunk}
            for transition in session.store.transitions(chunk):
                grouped[transition.job_name].append(transition)
            self._history.update((name, tuple(items)) for name, items in grouped.items())

    def _update_usage(self, session: Session, jobs: list[JobRecord]) -> None:
        """One sacct every ``usage_every`` seconds at most, for the jobs whose GPU-hours may
        still change (a job measured after it ended is never asked about again)."""
        from konduktor_slurm.service.usage import measure
        from konduktor_slurm.slurm import SlurmError
        from konduktor_slurm.transport import TransportError

        if time.monotonic() < self._usage_due:
            return
        unsettled = [
            job
            for job in jobs
            if job.slurm_job_id and not (job.name in self._usage and self._usage[job.name].final)
        ]
        if not unsettled:
            return
        self._usage_due = time.monotonic() + self.usage_every
        try:
            self._usage.update(measure(session, unsettled))
            self._accounting_error = None
        except (SlurmError, TransportError) as exc:
            self._accounting_error = str(exc)
