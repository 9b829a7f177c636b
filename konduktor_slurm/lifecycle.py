"""The lifecycle mapping: what Slurm says about a job -> the Konduktor lifecycle state.

Pure and table-driven: no I/O here. The Slurm adapter gathers ``SlurmFacts``; the store
supplies what only konduktor knows (whether the job was staged, whether ``konduktor stop``
stopped it). ``classify`` turns them into a ``Lifecycle`` (state + short human detail).

How it works, in order:

1. Before Slurm: a staging error is FAILED, an unsubmitted job is CREATED.
2. ``_pick_state`` chooses one Slurm state: squeue's while the job is live there (squeue is
   live, sacct lags by about a second), else sacct's once the job has ended (sacct knows
   more, e.g. ``CANCELLED by 0``), else whatever is left.
3. ``STATE_RULES[state]`` is an ordered list of ``Rule`` rows; the first whose predicate
   holds gives the lifecycle state and a detail template. PENDING's rows come from the
   reason tables (``REASON_EXACT`` / ``REASON_PATTERNS`` -> class -> ``REASON_OUTCOMES``).
4. A ``konduktor stop`` record turns any waiting/held outcome into SUSPENDED (by user);
   a running or finished job is shown as Slurm says.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeVar

# humanize_ago lives with the other time formats (pure too); re-exported for compatibility.
from konduktor_slurm.durations import humanize_ago

__all__ = [
    "ORDINARY_WAITS",
    "REASON_EXACT",
    "REASON_OUTCOMES",
    "REASON_PATTERNS",
    "SHORT_TO_LONG",
    "STATE_RULES",
    "TERMINAL_SLURM_STATES",
    "Lifecycle",
    "LocalFacts",
    "Rule",
    "SlurmFacts",
    "State",
    "UserStop",
    "classify",
    "humanize_ago",
    "is_terminal_slurm_state",
    "normalise_state",
    "reason_class",
]


class State(enum.StrEnum):
    """The lifecycle states. A StrEnum: a member is its text ("ACTIVE"), so it is stored,
    printed and compared as the documented word."""

    CREATED = "CREATED"
    PENDING = "PENDING"
    SUSPENDED_SYSTEM = "SUSPENDED (by system)"
    SUSPENDED_USER = "SUSPENDED (by user)"
    ACTIVE = "ACTIVE"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (State.COMPLETED, State.FAILED)


class UserStop(NamedTuple):
    """Recorded by ``konduktor stop``: who stopped the job, when (epoch seconds), and how.

    ``mode`` is what was done, so ``start`` can undo exactly that: "suspend", "requeue",
    "hold" (a pending job), "signal" or "checkpoint". A checkpoint stop gives the ranks
    until ``until`` (epoch seconds: the signal's time plus the task's grace period) to save
    and exit before the job is requeued and held; until then status says "checkpointing".
    """

    user: str
    at: float
    mode: str
    until: float | None = None

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"user": self.user, "at": self.at, "mode": self.mode}
        if self.until is not None:
            data["until"] = self.until
        return data

    @classmethod
    def from_json(cls, data: object) -> UserStop | None:
        """The stored form back; None for anything that is not one (a damaged column)."""
        if not isinstance(data, dict):
            return None
        user, at, mode = data.get("user"), data.get("at"), data.get("mode")
        if not isinstance(user, str) or not isinstance(mode, str):
            return None
        if not _is_time(at):
            return None
        until = data.get("until")
        return cls(user, float(at), mode, float(until) if _is_time(until) else None)

    def checkpointing(self, now: float) -> bool:
        """A checkpoint stop whose grace period still runs at ``now``."""
        return self.mode == "checkpoint" and self.until is not None and now < self.until


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SlurmFacts:
    """Everything Slurm told us about one job, already parsed (see slurm.py).

    squeue_* fields are None when the job is no longer (or not yet) in squeue's view;
    sacct_* fields are None when accounting has no row (yet).
    """

    job_id: str | None = None
    # squeue: %T (long state, e.g. "PENDING"), %r (reason), %Q (priority), restart count
    squeue_state: str | None = None
    reason: str | None = None
    priority: int | None = None
    restarts: int = 0
    requeueable: bool = True
    node_list: str | None = None
    # sacct -X: State (e.g. "COMPLETED", "CANCELLED by 0"), ExitCode ("3:0"), elapsed/limit
    sacct_state: str | None = None
    exit_code: str | None = None
    time_limit: str | None = None
    # Per-rank exit codes written by the job script itself (rank -> code), since sacct only
    # keeps the highest code of a multi-node step.
    rank_exit_codes: dict[int, int] = field(default_factory=dict)
    # Ranks srun could not launch (rank -> its node), written by the job script: the node's
    # slurmd died or did not answer as the run started.
    ranks_not_started: dict[int, str] = field(default_factory=dict)
    # Nodes that failed (from sacct NodeList on NODE_FAIL, or squeue).
    failed_nodes: str | None = None


@dataclass(frozen=True)
class LocalFacts:
    """What only konduktor's store knows about the job."""

    submitted: bool = True  # False while staging/submitting (CREATED)
    created_detail: str = "staging workdir"
    staging_error: str | None = None  # "staging failed: ..." -> FAILED before Slurm saw it
    user_stop: UserStop | None = None
    now: float = 0.0  # epoch seconds, for "3 mins ago" details
    # uid -> user name, filled by the caller (a resolver would be I/O): "CANCELLED by 1001"
    # then reads "cancelled by alice". uid 0 is "root" unless this says otherwise.
    uid_names: Mapping[int, str] = field(default_factory=dict)
    # Why konduktor itself requeued/resubmitted the job (max_restarts), e.g. "retrying after
    # failure (attempt 2 of 3)"; replaces "preempted, awaiting reschedule" when set.
    restart_reason: str | None = None


class Lifecycle(NamedTuple):
    """A job's lifecycle state and the detail shown beside it (the mapping's answer)."""

    state: State
    detail: str = ""


# --------------------------------------------------------------------------------------
# Slurm state codes
# --------------------------------------------------------------------------------------

# squeue %t (short) -> %T (long). The one normalisation table: every Slurm job state we
# know, and so the set of keys STATE_RULES must cover (a test iterates it).
SHORT_TO_LONG: Final[Mapping[str, str]] = MappingProxyType(
    {
        "PD": "PENDING",
        "R": "RUNNING",
        "S": "SUSPENDED",
        "CG": "COMPLETING",
        "CF": "CONFIGURING",
        "ST": "STOPPED",
        "SI": "SIGNALING",
        "SO": "STAGE_OUT",
        "RS": "RESIZING",
        "RQ": "REQUEUED",
        "RH": "REQUEUE_HOLD",
        "RF": "REQUEUE_FED",
        "RD": "RESV_DEL_HOLD",  # not in the brief's list, but a real 22.05 state
        "SE": "SPECIAL_EXIT",
        "PR": "PREEMPTED",
        "CD": "COMPLETED",
        "F": "FAILED",
        "NF": "NODE_FAIL",
        "BF": "BOOT_FAIL",
        "TO": "TIMEOUT",
        "OOM": "OUT_OF_MEMORY",
        "DL": "DEADLINE",
        "CA": "CANCELLED",
        "RV": "REVOKED",
    }
)

# States after which this run of the job will not continue. PREEMPTED is special: Slurm
# ends the run, but a requeueable job comes back (sacct shows PREEMPTED, then PENDING).
TERMINAL_SLURM_STATES: Final[frozenset[str]] = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "NODE_FAIL",
        "BOOT_FAIL",
        "TIMEOUT",
        "OUT_OF_MEMORY",
        "DEADLINE",
        "CANCELLED",
        "REVOKED",
        "SPECIAL_EXIT",
        "PREEMPTED",
    }
)

# sacct decorates states ("CANCELLED by 1001", "CANCELLED+"); JSON-ish sources may list
# flags ("PENDING,REQUEUED"). The base state is always the first word.
_STATE_SPLIT: Final = re.compile(r"[\s,+()]+")


def normalise_state(code: str | None) -> str:
    """Short or long squeue/sacct state -> long name ("CA", "CANCELLED by 0" -> "CANCELLED").

    Unknown codes come back upper-cased as they are (a newer Slurm may add states); empty
    or None gives "".
    """
    if not code:
        return ""
    words = [w for w in _STATE_SPLIT.split(code.strip().upper()) if w]
    if not words:
        return ""
    return SHORT_TO_LONG.get(words[0], words[0])


def is_terminal_slurm_state(long_state: str, *, requeueable: bool = False) -> bool:
    """True when Slurm has ended this run of the job (accepts short codes and sacct forms).

    PREEMPTED counts as ended unless ``requeueable=True`` (then Slurm puts the job back in
    the queue). Whether the *konduktor* job is over is ``classify(...).state.terminal``.
    """
    state = normalise_state(long_state)
    if state == "PREEMPTED" and requeueable:
        return False
    return state in TERMINAL_SLURM_STATES


# --------------------------------------------------------------------------------------
# Small formatting helpers (pure)
# --------------------------------------------------------------------------------------

# Linux numbering (the cluster's), not the local machine's: signal.Signals differs on macOS.
_SIGNAL_NAMES: Final[Mapping[int, str]] = MappingProxyType(
    {
        1: "SIGHUP",
        2: "SIGINT",
        3: "SIGQUIT",
        4: "SIGILL",
        6: "SIGABRT",
        7: "SIGBUS",
        8: "SIGFPE",
        9: "SIGKILL",
        10: "SIGUSR1",
        11: "SIGSEGV",
        12: "SIGUSR2",
        13: "SIGPIPE",
        14: "SIGALRM",
        15: "SIGTERM",
    }
)


def _signal_text(sig: int) -> str:
    name = _SIGNAL_NAMES.get(sig)
    return f"killed by signal {sig} ({name})" if name else f"killed by signal {sig}"


def _code_text(code: int) -> str:
    """A rank's exit status as the job script recorded it (shell ``$?`` conventions)."""
    if code < 0:  # Python-style returncode: -N means killed by signal N
        return _signal_text(-code)
    if 128 < code <= 128 + 64:  # shell: 128+N means the command died of signal N
        return f"exited {code} (signal {code - 128})"
    return f"exited {code}"


def _parse_exit_code(raw: str | None) -> tuple[int, int] | None:
    """sacct ExitCode "exit:signal" -> (exit, signal); None when absent or unparsable."""
    if not raw:
        return None
    parts = raw.strip().split(":")
    try:
        code = int(parts[0]) if parts[0].strip() else 0
        sig = int(parts[1]) if len(parts) > 1 and parts[1].strip() else 0
    except ValueError:
        return None
    return code, sig


V = TypeVar("V")


def _by_rank(raw: Mapping[Any, Any] | None, value: Callable[[Any], V | None]) -> dict[int, V]:
    """``raw`` (rank -> what a job script wrote) with int ranks and the values ``value``
    reads, and without anything it cannot read (None, "")."""
    out: dict[int, V] = {}
    for rank, text in (raw or {}).items():
        r, v = _as_int(rank, None), value(text)
        if r is not None and v is not None and v != "":
            out[r] = v
    return out


def _compress_ranks(ranks: list[int]) -> str:
    """Sorted ranks -> "1,2" / "0-3,7": a 64-rank failure must still fit on a status line.

    Only runs of three or more become ranges; "1,2" reads better than "1-2".
    """
    runs: list[list[int]] = []
    for r in ranks:
        if runs and r == runs[-1][-1] + 1:
            runs[-1].append(r)
        else:
            runs.append([r])
    spans = [f"{run[0]}-{run[-1]}" if len(run) >= 3 else ",".join(map(str, run)) for run in runs]
    return ",".join(spans)


# Values Slurm prints for "no nodes" / "no limit"; they must not end up in a detail.
_NO_NODES: Final = frozenset({"", "(null)", "none", "none assigned", "n/a"})
_NO_LIMIT: Final = frozenset({"", "unlimited", "partition_limit", "invalid", "none", "(null)"})
_CANCELLED_BY: Final = re.compile(r"\bby\s+(\S+)", re.IGNORECASE)


# --------------------------------------------------------------------------------------
# Pending reasons -> reason class -> outcome
# --------------------------------------------------------------------------------------


def _reason_key(reason: str) -> str:
    """Matching key: case-insensitive, and scontrol's "job_requeued_in_held_state" equals
    squeue's "job requeued in held state" (squeue -l also wraps reasons in parentheses)."""
    return " ".join(reason.replace("_", " ").split()).lower()


def _clean_reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return "" if _reason_key(text) in ("none", "(null)") else text


# Exact reasons (keys as _reason_key gives them) -> class. Checked before the patterns so
# e.g. QOSNotAllowed is "blocked", not caught by the QOS* limit pattern, and TimeLimit (a
# previous run's failure) is not taken for a quota.
REASON_EXACT: Final[Mapping[str, str]] = MappingProxyType(
    {
        "": "none",
        "none": "none",
        "scheddefer": "none",
        "resources": "resources",
        "priority": "priority",
        "begintime": "begin_time",
        "dependency": "dependency",
        "dependencyneversatisfied": "dependency_never",
        "reservation": "reservation",
        "licenses": "licenses",
        "nodedown": "nodes",
        "frontenddown": "nodes",
        "partitiondown": "partition",
        "partitioninactive": "partition",
        "prolog": "prolog",
        "cleaning": "cleaning",
        "fedjoblock": "federation",
        # Reasons a previous run ended with; a requeued job may still carry them.
        "timelimit": "last_failure",
        "inactivelimit": "last_failure",
        "nonzeroexitcode": "last_failure",
        "raisedsignal": "last_failure",
        "joblaunchfailure": "last_failure",
        "systemfailure": "last_failure",
        "outofmemory": "last_failure",
        "deadline": "last_failure",
        "burstbufferoperation": "last_failure",
        # Cannot run as submitted until someone changes something.
        "invalidaccount": "blocked",
        "invalidqos": "blocked",
        "qosnotallowed": "blocked",
        "accountnotallowed": "blocked",
        "badconstraints": "blocked",
        "constraints": "blocked",
        "partitionconfig": "blocked",
        "reservationdeleted": "blocked",
        "reservationinvalid": "blocked",
        "accountingpolicy": "limit",
        # Over the partition's limits (squeue(1): or its required nodes are down): no quota
        # frees up as other jobs end, it waits until someone changes the partition or the job.
        "partitionnodelimit": "partition_limit",
        "partitiontimelimit": "partition_limit",
        # Holds.
        "jobheldadmin": "admin_hold",
        "jobhelduser": "user_hold",
        "job requeued in held state": "requeue_hold",
        "launch failed requeued held": "launch_failed_hold",
        "jobholdmaxrequeue": "max_requeue",
    }
)

# Ordered patterns for reason families too large to list (Slurm has ~200 limit reasons).
REASON_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # "ReqNodeNotAvail, UnavailableNodes:node2", "Nodes required for job are DOWN, ..."
    (re.compile(r"^reqnodenotavail", re.IGNORECASE), "nodes"),
    (re.compile(r"^nodes required for job", re.IGNORECASE), "nodes"),
    (re.compile(r"^power(notavail|reserved)", re.IGNORECASE), "nodes"),
    (re.compile(r"^burstbuffer", re.IGNORECASE), "burst_buffer"),
    # QOSMaxGRESPerUser, AssocGrpGRES, QOSGrpCpuLimit, MaxGRESPerAccount, ...
    (re.compile(r"^(qos|assoc|max)", re.IGNORECASE), "limit"),
    # JobArrayTaskLimit, MaxMemPerLimit, ...
    (re.compile(r"limit", re.IGNORECASE), "limit"),
)


def reason_class(reason: str | None) -> str:
    """squeue %r -> one of REASON_OUTCOMES' keys ("other" when unrecognised)."""
    text = _clean_reason(reason)
    exact = REASON_EXACT.get(_reason_key(text))
    if exact is not None:
        return exact
    for pattern, cls in REASON_PATTERNS:
        if pattern.search(text):
            return cls
    return "other"


# Reason class -> (lifecycle state, detail template). Templates are str.format()ed with
# ``c`` = the _Ctx below, so they can use any of its fields ({c.reason}, {c.on_nodes}, ...).
REASON_OUTCOMES: Final[Mapping[str, tuple[State, str]]] = MappingProxyType(
    {
        "none": (State.PENDING, "waiting to be scheduled"),
        "resources": (State.PENDING, "waiting for resources"),
        "priority": (State.PENDING, "waiting for priority"),
        "begin_time": (State.PENDING, "waiting for start time"),
        "dependency": (State.PENDING, "waiting for dependency"),
        "dependency_never": (State.PENDING, "dependency can never be satisfied"),
        "reservation": (State.PENDING, "waiting for reservation"),
        "licenses": (State.PENDING, "waiting for licenses"),
        "nodes": (State.PENDING, "waiting for nodes: {c.reason}"),
        "partition": (State.PENDING, "partition unavailable: {c.reason}"),
        "prolog": (State.PENDING, "running prolog"),
        "cleaning": (State.PENDING, "cleaning up previous run"),
        "burst_buffer": (State.PENDING, "waiting for burst buffer: {c.reason}"),
        "federation": (State.PENDING, "waiting for federation lock"),
        "last_failure": (State.PENDING, "waiting (last run: {c.reason})"),
        "limit": (State.SUSPENDED_SYSTEM, "awaiting quota: {c.reason}"),
        "blocked": (State.SUSPENDED_SYSTEM, "blocked: {c.reason}"),
        "partition_limit": (
            State.SUSPENDED_SYSTEM,
            "blocked: {c.reason}: beyond what its partition allows or has up, so it waits "
            "until that changes",
        ),
        "admin_hold": (State.SUSPENDED_SYSTEM, "held by an administrator"),
        "launch_failed_hold": (
            State.SUSPENDED_SYSTEM,
            "its launch failed (a node or slurmctld fault); Slurm requeued and held it: "
            "`konduktor start` releases it",
        ),
        "max_requeue": (State.SUSPENDED_SYSTEM, "held: requeued too many times"),
        "user_hold": (State.SUSPENDED_USER, "held by user"),
        "requeue_hold": (State.SUSPENDED_USER, "requeued and held"),
        "other": (State.PENDING, "waiting: {c.reason}"),
    }
)

# What a freshly submitted job's wait is called when there is nothing to tell: "Submitted"
# already says it is queued (a follower stays quiet about it; see logs.follow).
ORDINARY_WAITS: Final[frozenset[str]] = frozenset(
    REASON_OUTCOMES[cls][1] for cls in ("none", "resources", "priority")
)

# Classes that only say "not yet": for a job that already ran (restarts > 0) they mean it
# was preempted / node-failed / retried and awaits rescheduling, which is the system's doing.
# Holds, quotas and blocks keep their own, more specific outcome.
WAITING_CLASSES: Final[frozenset[str]] = frozenset(
    {
        "none",
        "resources",
        "priority",
        "begin_time",  # the observed one: REQUEUE preemption gives PD BeginTime, Restarts=1
        "dependency",
        "reservation",
        "licenses",
        "nodes",
        "partition",
        "prolog",
        "cleaning",
        "burst_buffer",
        "federation",
        "last_failure",
        "other",
    }
)


# --------------------------------------------------------------------------------------
# Per-job context: derived facts the rule predicates and templates read
# --------------------------------------------------------------------------------------


def _as_int(value: object, default: int | None) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


class _Ctx:
    """Lazily derived, never-raising views of the facts (cached: each is computed once)."""

    def __init__(self, state: str, slurm: SlurmFacts, local: LocalFacts) -> None:
        self.state = state
        self.slurm = slurm
        self.local = local

    # ---- scheduling facts
    @cached_property
    def reason(self) -> str:
        return _clean_reason(self.slurm.reason)

    @cached_property
    def reason_class(self) -> str:
        return reason_class(self.slurm.reason)

    @cached_property
    def priority(self) -> int | None:
        return _as_int(self.slurm.priority, None)

    @cached_property
    def restarts(self) -> int:
        return max(_as_int(self.slurm.restarts, 0) or 0, 0)

    @cached_property
    def requeued(self) -> bool:
        # konduktor's own retry counts even if it resubmitted rather than requeued.
        return self.restarts > 0 or bool(self.local.restart_reason)

    @cached_property
    def restart_suffix(self) -> str:
        return f" (restart {self.restarts})" if self.restarts > 0 else ""

    @cached_property
    def reschedule(self) -> str:
        return self.local.restart_reason or f"preempted, awaiting reschedule{self.restart_suffix}"

    @cached_property
    def requeued_detail(self) -> str:
        return self.local.restart_reason or f"requeued, awaiting reschedule{self.restart_suffix}"

    # ---- nodes
    @cached_property
    def nodes(self) -> str:
        text = (self.slurm.node_list or "").strip()
        return "" if text.lower() in _NO_NODES else text

    @cached_property
    def on_nodes(self) -> str:
        return f" on {self.nodes}" if self.nodes else ""

    @cached_property
    def nodes_paren(self) -> str:
        return f" ({self.nodes})" if self.nodes else ""

    @cached_property
    def failed_nodes_paren(self) -> str:
        text = (self.slurm.failed_nodes or "").strip()
        text = "" if text.lower() in _NO_NODES else text
        return f" ({text or self.nodes})" if (text or self.nodes) else ""

    # ---- exit codes
    @cached_property
    def rank_codes(self) -> dict[int, int]:
        """rank_exit_codes with anything unparsable dropped (written by job scripts)."""
        return _by_rank(self.slurm.rank_exit_codes, lambda code: _as_int(code, None))

    @cached_property
    def failing_ranks(self) -> list[int]:
        return sorted(r for r, c in self.rank_codes.items() if c != 0)

    @cached_property
    def ranks_failed(self) -> bool:
        return bool(self.failing_ranks)

    @cached_property
    def rank_failure(self) -> str:
        ranks = self.failing_ranks
        if not ranks:
            return ""
        first = f"rank {ranks[0]} {_code_text(self.rank_codes[ranks[0]])}"
        if len(ranks) == 1:
            return first
        return f"ranks {_compress_ranks(ranks)} failed ({first})"

    @cached_property
    def unstarted_ranks(self) -> dict[int, str]:
        """ranks_not_started with anything unparsable dropped (written by job scripts)."""
        return _by_rank(
            self.slurm.ranks_not_started, lambda node: node if isinstance(node, str) else None
        )

    @cached_property
    def ranks_not_started(self) -> bool:
        return bool(self.unstarted_ranks)

    @cached_property
    def not_started(self) -> str:
        ranks = self.unstarted_ranks
        if not ranks:
            return ""
        if len(ranks) == 1:
            ((rank, node),) = ranks.items()
            return f"rank {rank} never started on {node}"
        nodes = list(dict.fromkeys(ranks[r] for r in sorted(ranks)))
        shown = ", ".join(nodes[:3]) + (f" and {len(nodes) - 3} more" if len(nodes) > 3 else "")
        return f"ranks {_compress_ranks(sorted(ranks))} never started ({shown})"

    @cached_property
    def on_failed_rank(self) -> str:
        return f" on rank {self.failing_ranks[0]}" if self.failing_ranks else ""

    @cached_property
    def exit_failure(self) -> str:
        parsed = _parse_exit_code(self.slurm.exit_code)
        if parsed is None:
            return ""
        code, sig = parsed
        if sig > 0:  # "0:9": the batch shell died of SIGKILL
            return _signal_text(sig)
        return _code_text(code) if code != 0 else ""

    @cached_property
    def exit_failed(self) -> bool:
        return bool(self.exit_failure)

    @cached_property
    def failure(self) -> str:
        """Best single explanation of a FAILED job: ranks, then ExitCode, then reason."""
        if self.rank_failure or self.exit_failure:
            return self.rank_failure or self.exit_failure
        return f"failed ({self.reason})" if self.reason else "failed"

    @cached_property
    def failure_suffix(self) -> str:
        text = self.rank_failure or self.exit_failure
        return f": {text}" if text else ""

    @cached_property
    def all_ok(self) -> str:
        n = len(self.rank_codes)
        if n == 0:
            return ""
        return "exited 0" if n == 1 else f"all {n} nodes exited 0"

    # ---- other terminal details
    @cached_property
    def after_time_limit(self) -> str:
        text = (self.slurm.time_limit or "").strip()
        return "" if text.lower() in _NO_LIMIT else f" after {text}"

    @cached_property
    def by_whom(self) -> str:
        match = _CANCELLED_BY.search(self.slurm.sacct_state or "")
        if not match:
            return ""
        who = match.group(1)
        uid = _as_int(who, None)
        if uid is None:  # already a name
            return f" by {who}"
        names = self.local.uid_names or {}
        name = names.get(uid) or ("root" if uid == 0 else f"uid {uid}")
        return f" by {name}"


# --------------------------------------------------------------------------------------
# The state rules
# --------------------------------------------------------------------------------------


class Rule(NamedTuple):
    """One row: when ``when(ctx)`` holds, the job is ``state`` with ``detail`` (a template)."""

    when: Callable[[_Ctx], bool]
    state: State
    detail: str

    def render(self, ctx: _Ctx) -> Lifecycle:
        return Lifecycle(self.state, self.detail.format(c=ctx))


def _always(_: _Ctx) -> bool:
    return True


def _priority_positive(c: _Ctx) -> bool:
    # Gang scheduling suspends a preempted job but leaves its priority; see SLURM_FACTS.
    return c.priority is not None and c.priority > 0


def _priority_zero(c: _Ctx) -> bool:
    # `scontrol suspend` (operators only) zeroes the priority.
    return c.priority == 0


def _requeueable(c: _Ctx) -> bool:
    return bool(c.slurm.requeueable)


def _ranks_failed(c: _Ctx) -> bool:
    return c.ranks_failed


def _exit_failed(c: _Ctx) -> bool:
    return c.exit_failed


def _ranks_not_started(c: _Ctx) -> bool:
    return c.ranks_not_started


def _requeued_and_waiting(c: _Ctx) -> bool:
    return c.requeued and c.reason_class in WAITING_CLASSES


def _reason_is(cls: str) -> Callable[[_Ctx], bool]:
    def when(c: _Ctx) -> bool:
        return c.reason_class == cls

    when.__name__ = f"reason_is_{cls}"
    return when


# PENDING: a requeued job that is only waiting awaits rescheduling; otherwise the reason
# class decides. The final "other" row always matches (reason_class never returns a class
# that REASON_OUTCOMES lacks), and the trailing _always row makes that explicit.
_PENDING_RULES: Final[tuple[Rule, ...]] = (
    Rule(_requeued_and_waiting, State.SUSPENDED_SYSTEM, "{c.reschedule}"),
    *(Rule(_reason_is(cls), st, detail) for cls, (st, detail) in REASON_OUTCOMES.items()),
    Rule(_always, State.PENDING, "waiting: {c.reason}"),
)

STATE_RULES: Final[Mapping[str, tuple[Rule, ...]]] = MappingProxyType(
    {
        # ---- waiting
        "PENDING": _PENDING_RULES,
        "CONFIGURING": (Rule(_always, State.PENDING, "configuring nodes{c.nodes_paren}"),),
        # ---- held or suspended by the system
        "REQUEUED": (Rule(_always, State.SUSPENDED_SYSTEM, "{c.requeued_detail}"),),
        "REQUEUE_FED": (
            Rule(_always, State.SUSPENDED_SYSTEM, "requeued by federation, awaiting reschedule"),
        ),
        "RESV_DEL_HOLD": (
            Rule(_always, State.SUSPENDED_SYSTEM, "held: its reservation was deleted"),
        ),
        "SUSPENDED": (
            Rule(_priority_positive, State.SUSPENDED_SYSTEM, "preempted (suspended)"),
            # An operator, or on 26.05+ the job's owner (see slurm.OWNER_SUSPEND_SINCE).
            Rule(_priority_zero, State.SUSPENDED_USER, "suspended with scontrol suspend"),
            # Priority unknown (e.g. only sacct saw it): nobody on our side asked for it.
            Rule(_always, State.SUSPENDED_SYSTEM, "suspended"),
        ),
        # ---- held or stopped by a user
        "REQUEUE_HOLD": (Rule(_always, State.SUSPENDED_USER, "requeued and held"),),
        "STOPPED": (Rule(_always, State.SUSPENDED_USER, "stopped (SIGSTOP)"),),
        # ---- running
        "RUNNING": (Rule(_always, State.ACTIVE, "running{c.on_nodes}"),),
        "COMPLETING": (Rule(_always, State.ACTIVE, "completing{c.on_nodes}"),),
        "SIGNALING": (Rule(_always, State.ACTIVE, "signaling{c.on_nodes}"),),
        "STAGE_OUT": (Rule(_always, State.ACTIVE, "staging out{c.on_nodes}"),),
        "RESIZING": (Rule(_always, State.ACTIVE, "resizing{c.on_nodes}"),),
        # ---- ended (PREEMPTED only when the job cannot come back)
        "PREEMPTED": (
            Rule(_requeueable, State.SUSPENDED_SYSTEM, "{c.reschedule}"),
            Rule(_always, State.FAILED, "preempted (not requeueable)"),
        ),
        # sacct keeps only the highest code of a multi-node step, so a rank that failed
        # while the batch step exited 0 still fails the job.
        "COMPLETED": (
            Rule(_ranks_not_started, State.FAILED, "{c.not_started}"),
            Rule(_ranks_failed, State.FAILED, "{c.rank_failure}"),
            Rule(_exit_failed, State.FAILED, "{c.exit_failure}"),
            Rule(_always, State.COMPLETED, "{c.all_ok}"),
        ),
        # A rank that never started explains the job's end better than srun's exit code.
        "FAILED": (
            Rule(_ranks_not_started, State.FAILED, "{c.not_started}"),
            Rule(_always, State.FAILED, "{c.failure}"),
        ),
        "NODE_FAIL": (Rule(_always, State.FAILED, "node failure{c.failed_nodes_paren}"),),
        "BOOT_FAIL": (Rule(_always, State.FAILED, "node boot failure{c.failed_nodes_paren}"),),
        "TIMEOUT": (Rule(_always, State.FAILED, "timeout{c.after_time_limit}"),),
        "OUT_OF_MEMORY": (Rule(_always, State.FAILED, "out of memory{c.on_failed_rank}"),),
        "DEADLINE": (Rule(_always, State.FAILED, "deadline reached"),),
        "CANCELLED": (Rule(_always, State.FAILED, "cancelled{c.by_whom}"),),
        "REVOKED": (Rule(_always, State.FAILED, "revoked by the federation"),),
        # Slurm requeues-and-holds on a special exit value; the run itself failed.
        "SPECIAL_EXIT": (Rule(_always, State.FAILED, "special exit{c.failure_suffix}"),),
    }
)

# A newer Slurm's state we do not know: keep the caller going, and say what Slurm said.
_UNKNOWN_STATE_RULE: Final = Rule(_always, State.PENDING, "unrecognised Slurm state {c.state}")

# Not yet in squeue or sacct although submitted: sacct lags squeue by about a second.
_NOT_SEEN: Final = Lifecycle(State.PENDING, "submitted; waiting for Slurm to report it")

# Outcomes a `konduktor stop` record overrides: the job is not running and not over, and
# the user asked for it to stop. ACTIVE (running again) and finished jobs keep Slurm's word.
_USER_STOP_OVERRIDES: Final[frozenset[State]] = frozenset(
    {State.PENDING, State.SUSPENDED_SYSTEM, State.SUSPENDED_USER}
)


def _pick_state(slurm: SlurmFacts) -> str:
    """The one Slurm state to classify ("" when Slurm has not reported the job)."""
    live = normalise_state(slurm.squeue_state)
    acct = normalise_state(slurm.sacct_state)
    # An unrecognised code is the last resort: any state we know says more.
    if live not in STATE_RULES and acct in STATE_RULES:
        live = ""
    if acct not in STATE_RULES and live in STATE_RULES:
        acct = ""
    requeueable = bool(slurm.requeueable)
    if live and not is_terminal_slurm_state(live, requeueable=requeueable):
        return live  # squeue is live; sacct may still say RUNNING/PENDING for a second
    if acct and is_terminal_slurm_state(acct, requeueable=requeueable):
        return acct  # once ended, sacct is more precise ("CANCELLED by 0", ExitCode)
    return live or acct


def _stop_detail(stop: UserStop, now: float) -> str:
    who = f"stopped by {stop.user}" if stop.user else "stopped"
    if stop.mode == "checkpoint":
        who = f"checkpointed and {who}"
    # now/at default to 0 when the caller has no clock; an age from 1970 would mislead.
    if not now or not stop.at or not math.isfinite(now) or not math.isfinite(stop.at):
        return who
    ago = humanize_ago(now - stop.at)
    return f"{who} just now" if ago == "just now" else f"{who} {ago} ago"


def classify(slurm: SlurmFacts, local: LocalFacts) -> Lifecycle:
    """Map Slurm's view of a job (plus konduktor's own facts) to the lifecycle."""
    if local.staging_error:
        return Lifecycle(State.FAILED, local.staging_error)
    if not local.submitted:
        return Lifecycle(State.CREATED, local.created_detail)

    state = _pick_state(slurm)
    if not state:
        outcome = _NOT_SEEN
    else:
        ctx = _Ctx(state, slurm, local)
        rules = STATE_RULES.get(state, (_UNKNOWN_STATE_RULE,))
        rule = next((r for r in rules if r.when(ctx)), _UNKNOWN_STATE_RULE)
        outcome = rule.render(ctx)

    stop = local.user_stop
    if stop is not None and outcome.state in _USER_STOP_OVERRIDES:
        return Lifecycle(State.SUSPENDED_USER, _stop_detail(stop, local.now))
    if stop is not None and stop.mode in ("requeue", "checkpoint") and state == "COMPLETING":
        # `stop` by requeue kills the run; Slurm shows CG for a few seconds before PD.
        detail = f"{_stop_detail(stop, local.now)}; releasing its nodes"
        return Lifecycle(State.SUSPENDED_USER, detail)
    if stop is not None and outcome.state is State.ACTIVE and stop.checkpointing(local.now):
        # It still runs: the ranks have the checkpoint signal and are saving.
        return Lifecycle(State.ACTIVE, _checkpointing_detail(stop, local.now))
    return outcome


def _checkpointing_detail(stop: UserStop, now: float) -> str:
    who = f" by {stop.user}" if stop.user else ""
    left = max(0, math.ceil((stop.until or now) - now))
    return (
        f"checkpointing: stop asked{who}; requeued and held when its ranks exit, "
        f"at the latest in {left}s"
    )
