"""The Slurm -> Konduktor lifecycle mapping (konduktor_slurm.lifecycle), exhaustively.

Rows marked "observed" come from real Slurm 22.05 output (squeue ``%T|%t|%r|%Q``, sacct
``State|ExitCode``) recorded on a live cluster; the rest cover every state code, every
reason class and the precedence rules.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from konduktor_slurm.lifecycle import (
    REASON_EXACT,
    REASON_OUTCOMES,
    REASON_PATTERNS,
    SHORT_TO_LONG,
    STATE_RULES,
    TERMINAL_SLURM_STATES,
    Lifecycle,
    LocalFacts,
    SlurmFacts,
    State,
    UserStop,
    classify,
    humanize_ago,
    is_terminal_slurm_state,
    normalise_state,
    reason_class,
)

NOW = 1_700_000_000.0
ALICE_STOP = UserStop(user="alice", at=NOW - 200, mode="hold")  # 3 mins 20 s ago
LONG_STATES = sorted(set(SHORT_TO_LONG.values()))
ALL_CODES = sorted({*SHORT_TO_LONG, *SHORT_TO_LONG.values()})
NON_TERMINAL = {State.CREATED, State.PENDING, State.SUSPENDED_SYSTEM, State.SUSPENDED_USER}


def run(slurm: SlurmFacts, **local: object) -> Lifecycle:
    local.setdefault("now", NOW)
    return classify(slurm, LocalFacts(**local))  # type: ignore[arg-type]


def squeue_line(line: str, **extra: object) -> SlurmFacts:
    """Build facts from a real `squeue -h -o '%T|%t|%r|%Q'` line (the short code must agree)."""
    long, short, reason, priority = line.split("|")
    assert normalise_state(short) == long
    return SlurmFacts(squeue_state=long, reason=reason, priority=int(priority), **extra)  # type: ignore[arg-type]


# ======================================================================================
# Normalisation table
# ======================================================================================


@pytest.mark.parametrize(("short", "long"), sorted(SHORT_TO_LONG.items()))
def test_short_code_normalises_to_long(short: str, long: str) -> None:
    assert normalise_state(short) == long
    assert normalise_state(short.lower()) == long
    assert normalise_state(f"  {short}\n") == long


@pytest.mark.parametrize("long", LONG_STATES)
def test_long_name_normalises_to_itself_with_sacct_decorations(long: str) -> None:
    assert normalise_state(long) == long
    assert normalise_state(long.lower()) == long
    assert normalise_state(f"{long}+") == long
    assert normalise_state(f"{long} by 0") == long


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CANCELLED by 0", "CANCELLED"),
        ("CANCELLED by 1001", "CANCELLED"),
        ("CANCELLED+", "CANCELLED"),
        ("cancelled by 0", "CANCELLED"),
        ("PENDING,REQUEUED", "PENDING"),
        ("OOM", "OUT_OF_MEMORY"),
        ("WIBBLE", "WIBBLE"),  # unknown codes pass through for the caller to see
        ("", ""),
        ("   ", ""),
        ("+", ""),
        (None, ""),
    ],
)
def test_normalise_state_decorations_and_junk(raw: str | None, expected: str) -> None:
    assert normalise_state(raw) == expected


def test_normalisation_table_is_one_to_one() -> None:
    assert len(set(SHORT_TO_LONG.values())) == len(SHORT_TO_LONG)
    assert not set(SHORT_TO_LONG) & set(SHORT_TO_LONG.values())


@pytest.mark.parametrize("long", LONG_STATES)
def test_every_state_in_normalisation_table_is_mapped(long: str) -> None:
    """Fails when a state is added to SHORT_TO_LONG without rules (or a catch-all row)."""
    assert long in STATE_RULES
    rules = STATE_RULES[long]
    assert rules, long
    # The last row must match anything so no facts fall off the end of the table.
    for slurm in (
        SlurmFacts(squeue_state=long),
        SlurmFacts(sacct_state=long, requeueable=False, priority=None),
        SlurmFacts(squeue_state=long, reason="Whatever", priority=3, restarts=2),
    ):
        result = run(slurm)
        assert "unrecognised" not in result.detail
        assert "{" not in result.detail


def test_rule_tables_cover_exactly_the_normalisation_table() -> None:
    assert set(STATE_RULES) == set(SHORT_TO_LONG.values())
    assert set(SHORT_TO_LONG.values()) >= TERMINAL_SLURM_STATES


@pytest.mark.parametrize("long", LONG_STATES)
def test_rule_rows_agree_with_terminality(long: str) -> None:
    """Table-level invariant: ended Slurm states only yield ended lifecycles (the one
    exception, a requeueable PREEMPTED job, comes back), live ones only live lifecycles."""
    for rule in STATE_RULES[long]:
        if long == "PREEMPTED" and rule.state is State.SUSPENDED_SYSTEM:
            continue
        assert rule.state.terminal == (long in TERMINAL_SLURM_STATES), (long, rule)


# ======================================================================================
# Every state code, short and long, from squeue and from sacct
# ======================================================================================

# long state -> (extra facts, lifecycle state, exact detail)
STATE_CASES: dict[str, tuple[dict[str, object], State, str]] = {
    "PENDING": ({"reason": "Resources"}, State.PENDING, "waiting for resources"),
    "CONFIGURING": ({"node_list": "node1"}, State.PENDING, "configuring nodes (node1)"),
    "RUNNING": ({"node_list": "node[1-2]"}, State.ACTIVE, "running on node[1-2]"),
    "COMPLETING": ({"node_list": "node1"}, State.ACTIVE, "completing on node1"),
    "SIGNALING": ({}, State.ACTIVE, "signaling"),
    "STAGE_OUT": ({}, State.ACTIVE, "staging out"),
    "RESIZING": ({}, State.ACTIVE, "resizing"),
    "SUSPENDED": ({"priority": 0}, State.SUSPENDED_USER, "suspended with scontrol suspend"),
    "STOPPED": ({}, State.SUSPENDED_USER, "stopped (SIGSTOP)"),
    "REQUEUE_HOLD": ({"priority": 0}, State.SUSPENDED_USER, "requeued and held"),
    "REQUEUED": (
        {"restarts": 1},
        State.SUSPENDED_SYSTEM,
        "requeued, awaiting reschedule (restart 1)",
    ),
    "REQUEUE_FED": ({}, State.SUSPENDED_SYSTEM, "requeued by federation, awaiting reschedule"),
    "RESV_DEL_HOLD": ({}, State.SUSPENDED_SYSTEM, "held: its reservation was deleted"),
    "PREEMPTED": ({"requeueable": False}, State.FAILED, "preempted (not requeueable)"),
    "COMPLETED": ({"exit_code": "0:0"}, State.COMPLETED, ""),
    "FAILED": ({"exit_code": "3:0"}, State.FAILED, "exited 3"),
    "NODE_FAIL": ({"failed_nodes": "node2"}, State.FAILED, "node failure (node2)"),
    "BOOT_FAIL": ({"node_list": "node1"}, State.FAILED, "node boot failure (node1)"),
    "TIMEOUT": ({"time_limit": "1:00:00"}, State.FAILED, "timeout after 1:00:00"),
    "OUT_OF_MEMORY": ({"exit_code": "0:125"}, State.FAILED, "out of memory"),
    "DEADLINE": ({}, State.FAILED, "deadline reached"),
    "CANCELLED": ({}, State.FAILED, "cancelled"),
    "REVOKED": ({}, State.FAILED, "revoked by the federation"),
    "SPECIAL_EXIT": ({"exit_code": "3:0"}, State.FAILED, "special exit: exited 3"),
}


def test_state_cases_cover_every_state() -> None:
    assert set(STATE_CASES) == set(SHORT_TO_LONG.values())


@pytest.mark.parametrize("source", ["squeue", "sacct"])
@pytest.mark.parametrize("code", ALL_CODES)
def test_every_state_code(code: str, source: str) -> None:
    extra, state, detail = STATE_CASES[normalise_state(code)]
    slurm = SlurmFacts(**{f"{source}_state": code}, **extra)  # type: ignore[arg-type]
    assert run(slurm) == Lifecycle(state, detail)


@pytest.mark.parametrize("code", ALL_CODES)
def test_is_terminal_slurm_state_for_every_code(code: str) -> None:
    assert is_terminal_slurm_state(code) == (normalise_state(code) in TERMINAL_SLURM_STATES)


def test_is_terminal_slurm_state_edge_cases() -> None:
    assert is_terminal_slurm_state("CANCELLED by 0")
    assert is_terminal_slurm_state("CANCELLED+")
    assert is_terminal_slurm_state("PREEMPTED")
    assert is_terminal_slurm_state("PR", requeueable=False)
    assert not is_terminal_slurm_state("PREEMPTED", requeueable=True)
    assert is_terminal_slurm_state("COMPLETED", requeueable=True)
    assert not is_terminal_slurm_state("")
    assert not is_terminal_slurm_state("WIBBLE")
    assert not is_terminal_slurm_state("RQ")


# ======================================================================================
# Pending reasons: every class
# ======================================================================================

WAIT = State.PENDING
SYS = State.SUSPENDED_SYSTEM
USR = State.SUSPENDED_USER

REASON_CASES: list[tuple[str | None, State, str]] = [
    ("Resources", WAIT, "waiting for resources"),
    ("(Resources)", WAIT, "waiting for resources"),  # squeue -l wraps reasons
    ("resources", WAIT, "waiting for resources"),
    ("Priority", WAIT, "waiting for priority"),
    ("None", WAIT, "waiting to be scheduled"),
    ("", WAIT, "waiting to be scheduled"),
    (None, WAIT, "waiting to be scheduled"),
    ("SchedDefer", WAIT, "waiting to be scheduled"),
    ("BeginTime", WAIT, "waiting for start time"),
    ("Dependency", WAIT, "waiting for dependency"),
    ("DependencyNeverSatisfied", WAIT, "dependency can never be satisfied"),
    ("Reservation", WAIT, "waiting for reservation"),
    ("Licenses", WAIT, "waiting for licenses"),
    (
        "ReqNodeNotAvail, UnavailableNodes:node2",
        WAIT,
        "waiting for nodes: ReqNodeNotAvail, UnavailableNodes:node2",
    ),
    (
        "Nodes required for job are DOWN, DRAINED or reserved for jobs in higher priority "
        "partitions",
        WAIT,
        "waiting for nodes: Nodes required for job are DOWN",
    ),
    ("NodeDown", WAIT, "waiting for nodes: NodeDown"),
    ("FrontEndDown", WAIT, "waiting for nodes: FrontEndDown"),
    ("PowerNotAvail", WAIT, "waiting for nodes: PowerNotAvail"),
    ("PartitionDown", WAIT, "partition unavailable: PartitionDown"),
    ("PartitionInactive", WAIT, "partition unavailable: PartitionInactive"),
    ("Prolog", WAIT, "running prolog"),
    ("Cleaning", WAIT, "cleaning up previous run"),
    ("BurstBufferStageIn", WAIT, "waiting for burst buffer: BurstBufferStageIn"),
    ("BurstBufferResources", WAIT, "waiting for burst buffer"),
    ("FedJobLock", WAIT, "waiting for federation lock"),
    ("TimeLimit", WAIT, "waiting (last run: TimeLimit)"),
    ("InactiveLimit", WAIT, "waiting (last run: InactiveLimit)"),
    ("NonZeroExitCode", WAIT, "waiting (last run: NonZeroExitCode)"),
    ("JobLaunchFailure", WAIT, "waiting (last run: JobLaunchFailure)"),
    ("OutOfMemory", WAIT, "waiting (last run: OutOfMemory)"),
    ("DeadLine", WAIT, "waiting (last run: DeadLine)"),
    # Limits: awaiting quota.
    ("QOSMaxGRESPerUser", SYS, "awaiting quota: QOSMaxGRESPerUser"),
    ("AssocGrpGRES", SYS, "awaiting quota: AssocGrpGRES"),
    ("QOSGrpCpuLimit", SYS, "awaiting quota: QOSGrpCpuLimit"),
    ("QOSGrpGRES", SYS, "awaiting quota: QOSGrpGRES"),
    ("QOSUsageThreshold", SYS, "awaiting quota: QOSUsageThreshold"),
    ("QOSMinGRES", SYS, "awaiting quota: QOSMinGRES"),
    ("AssocMaxJobsLimit", SYS, "awaiting quota: AssocMaxJobsLimit"),
    ("AssociationJobLimit", SYS, "awaiting quota: AssociationJobLimit"),
    ("AssociationResourceLimit", SYS, "awaiting quota: AssociationResourceLimit"),
    ("MaxGRESPerAccount", SYS, "awaiting quota: MaxGRESPerAccount"),
    ("MaxMemPerLimit", SYS, "awaiting quota: MaxMemPerLimit"),
    ("JobArrayTaskLimit", SYS, "awaiting quota: JobArrayTaskLimit"),
    ("AccountingPolicy", SYS, "awaiting quota: AccountingPolicy"),
    # Blocked until someone changes the job or the configuration.
    ("InvalidAccount", SYS, "blocked: InvalidAccount"),
    ("InvalidQOS", SYS, "blocked: InvalidQOS"),
    ("QOSNotAllowed", SYS, "blocked: QOSNotAllowed"),
    ("AccountNotAllowed", SYS, "blocked: AccountNotAllowed"),
    ("BadConstraints", SYS, "blocked: BadConstraints"),
    ("PartitionConfig", SYS, "blocked: PartitionConfig"),
    ("ReservationDeleted", SYS, "blocked: ReservationDeleted"),
    # Beyond the partition: no quota frees up as other jobs end.
    ("PartitionTimeLimit", SYS, "blocked: PartitionTimeLimit: beyond what its partition"),
    ("PartitionNodeLimit", SYS, "blocked: PartitionNodeLimit: beyond what its partition"),
    # Holds.
    ("JobHeldAdmin", SYS, "held by an administrator"),
    ("JobHoldMaxRequeue", SYS, "held: requeued too many times"),
    ("launch failed requeued held", SYS, "its launch failed (a node or slurmctld fault)"),
    ("JobHeldUser", USR, "held by user"),
    ("job requeued in held state", USR, "requeued and held"),
    ("(job requeued in held state)", USR, "requeued and held"),
    ("job_requeued_in_held_state", USR, "requeued and held"),  # scontrol's spelling
    # Unknown reasons stay caller-safe and visible.
    ("SomethingFromSlurm27", WAIT, "waiting: SomethingFromSlurm27"),
]


def test_reason_cases_cover_every_reason_class() -> None:
    assert {reason_class(r) for r, _, _ in REASON_CASES} == set(REASON_OUTCOMES)


def test_reason_tables_only_name_known_classes() -> None:
    assert set(REASON_EXACT.values()) <= set(REASON_OUTCOMES)
    assert {cls for _, cls in REASON_PATTERNS} <= set(REASON_OUTCOMES)


@pytest.mark.parametrize("code", ["PD", "PENDING"])
@pytest.mark.parametrize(("reason", "state", "detail"), REASON_CASES)
def test_pending_reason(reason: str | None, state: State, detail: str, code: str) -> None:
    result = run(SlurmFacts(squeue_state=code, reason=reason, priority=1))
    assert result.state is state
    assert result.detail.startswith(detail), result.detail


@pytest.mark.parametrize(("key", "cls"), sorted(REASON_EXACT.items()))
def test_every_exact_reason_maps_to_its_class_outcome(key: str, cls: str) -> None:
    assert reason_class(key) == cls
    state, _ = REASON_OUTCOMES[cls]
    assert run(SlurmFacts(squeue_state="PD", reason=key)).state is state


@pytest.mark.parametrize(("reason", "state", "detail"), REASON_CASES)
def test_requeued_job_that_only_waits_is_awaiting_reschedule(
    reason: str | None, state: State, detail: str
) -> None:
    """Restarts > 0: plain waiting becomes "preempted, awaiting reschedule"; holds, quotas
    and blocks keep their own (more specific) outcome."""
    result = run(SlurmFacts(squeue_state="PD", reason=reason, restarts=2))
    if state is State.PENDING and reason_class(reason) != "dependency_never":
        assert result == Lifecycle(
            State.SUSPENDED_SYSTEM, "preempted, awaiting reschedule (restart 2)"
        )
    else:
        assert result.state is state
        assert result.detail.startswith(detail)


def test_restart_reason_replaces_the_reschedule_detail() -> None:
    why = "retrying after failure (attempt 2 of 3)"
    for slurm in (
        SlurmFacts(squeue_state="PD", reason="BeginTime", restarts=1),
        SlurmFacts(squeue_state="PD", reason="Resources", restarts=0),  # resubmitted retry
        SlurmFacts(squeue_state="RQ", restarts=1),
        SlurmFacts(sacct_state="PREEMPTED", requeueable=True),
    ):
        assert run(slurm, restart_reason=why) == Lifecycle(State.SUSPENDED_SYSTEM, why)
    # A retry that is running is simply ACTIVE; a held retry stays held.
    assert run(SlurmFacts(squeue_state="R"), restart_reason=why).state is State.ACTIVE
    held = run(SlurmFacts(squeue_state="PD", reason="JobHeldAdmin", restarts=1), restart_reason=why)
    assert held == Lifecycle(State.SUSPENDED_SYSTEM, "held by an administrator")


# ======================================================================================
# Rows observed on the real Slurm 22.05 cluster (SLURM_FACTS "What squeue and sacct say")
# ======================================================================================

OBSERVED: list[tuple[str, SlurmFacts, LocalFacts, Lifecycle]] = [
    (
        "running",
        squeue_line("RUNNING|R|None|1", sacct_state="RUNNING", node_list="node1"),
        LocalFacts(),
        Lifecycle(State.ACTIVE, "running on node1"),
    ),
    (
        "waiting for GPUs (Resources)",
        squeue_line("PENDING|PD|Resources|1", sacct_state="PENDING"),
        LocalFacts(),
        Lifecycle(State.PENDING, "waiting for resources"),
    ),
    (
        "waiting for GPUs (Priority)",
        squeue_line("PENDING|PD|Priority|1", sacct_state="PENDING"),
        LocalFacts(),
        Lifecycle(State.PENDING, "waiting for priority"),
    ),
    (
        "--begin",
        squeue_line("PENDING|PD|BeginTime|1", sacct_state="PENDING"),
        LocalFacts(),
        Lifecycle(State.PENDING, "waiting for start time"),
    ),
    (
        "--dependency",
        squeue_line("PENDING|PD|Dependency|1", sacct_state="PENDING"),
        LocalFacts(),
        Lifecycle(State.PENDING, "waiting for dependency"),
    ),
    (
        "user hold",
        squeue_line("PENDING|PD|JobHeldUser|0", sacct_state="PENDING"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_USER, "held by user"),
    ),
    (
        "admin hold",
        squeue_line("PENDING|PD|JobHeldAdmin|0", sacct_state="PENDING"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_SYSTEM, "held by an administrator"),
    ),
    (
        "exit 0",
        squeue_line("COMPLETED|CD|None|0", sacct_state="COMPLETED", exit_code="0:0"),
        LocalFacts(),
        Lifecycle(State.COMPLETED, ""),
    ),
    (
        "exit 3",
        squeue_line("FAILED|F|NonZeroExitCode|0", sacct_state="FAILED", exit_code="3:0"),
        LocalFacts(),
        Lifecycle(State.FAILED, "exited 3"),
    ),
    (
        "srun false",
        squeue_line("FAILED|F|NonZeroExitCode|0", sacct_state="FAILED", exit_code="1:0"),
        LocalFacts(),
        Lifecycle(State.FAILED, "exited 1"),
    ),
    (
        "batch shell killed -9",
        squeue_line("FAILED|F|JobLaunchFailure|0", sacct_state="FAILED", exit_code="0:9"),
        LocalFacts(),
        Lifecycle(State.FAILED, "killed by signal 9 (SIGKILL)"),
    ),
    (
        "cancelled by root",
        squeue_line("CANCELLED|CA|None|0", sacct_state="CANCELLED by 0", exit_code="0:15"),
        LocalFacts(),
        Lifecycle(State.FAILED, "cancelled by root"),
    ),
    (
        "cancelled by a user (uid unresolved)",
        squeue_line("CANCELLED|CA|None|0", sacct_state="CANCELLED by 1001"),
        LocalFacts(),
        Lifecycle(State.FAILED, "cancelled by uid 1001"),
    ),
    (
        "cancelled by a user (uid resolved by the caller)",
        SlurmFacts(sacct_state="CANCELLED by 1001"),
        LocalFacts(uid_names={1001: "alice"}),
        Lifecycle(State.FAILED, "cancelled by alice"),
    ),
    (
        "time limit",
        squeue_line("TIMEOUT|TO|TimeLimit|0", sacct_state="TIMEOUT", time_limit="00:01:00"),
        LocalFacts(),
        Lifecycle(State.FAILED, "timeout after 00:01:00"),
    ),
    (
        "out of memory (cgroups)",
        squeue_line(
            "OUT_OF_MEMORY|OOM|OutOfMemory|0", sacct_state="OUT_OF_MEMORY", exit_code="0:125"
        ),
        LocalFacts(),
        Lifecycle(State.FAILED, "out of memory"),
    ),
    (
        "over memory without cgroups",
        SlurmFacts(sacct_state="FAILED", exit_code="0:9"),
        LocalFacts(),
        Lifecycle(State.FAILED, "killed by signal 9 (SIGKILL)"),
    ),
    (
        "scontrol suspend (operator): priority 0",
        squeue_line("SUSPENDED|S|None|0", sacct_state="SUSPENDED"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_USER, "suspended with scontrol suspend"),
    ),
    (
        "gang preemption (PreemptMode=SUSPEND,GANG): priority > 0",
        squeue_line("SUSPENDED|S|None|4294901758", sacct_state="SUSPENDED"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_SYSTEM, "preempted (suspended)"),
    ),
    (
        "preempted by REQUEUE, sacct still PREEMPTED",
        squeue_line("PENDING|PD|BeginTime|1", restarts=1, sacct_state="PREEMPTED"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_SYSTEM, "preempted, awaiting reschedule (restart 1)"),
    ),
    (
        "preempted by REQUEUE, sacct back to PENDING",
        squeue_line("PENDING|PD|BeginTime|1", restarts=1, sacct_state="PENDING"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_SYSTEM, "preempted, awaiting reschedule (restart 1)"),
    ),
    (
        "preempted by REQUEUE, squeue query missed it",
        SlurmFacts(sacct_state="PREEMPTED", requeueable=True, restarts=1),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_SYSTEM, "preempted, awaiting reschedule (restart 1)"),
    ),
    (
        "preempted, job --no-requeue",
        squeue_line("PREEMPTED|PR|None|0", requeueable=False, sacct_state="PREEMPTED"),
        LocalFacts(),
        Lifecycle(State.FAILED, "preempted (not requeueable)"),
    ),
    (
        "preempted, --no-requeue, gone from squeue",
        SlurmFacts(sacct_state="PREEMPTED", requeueable=False),
        LocalFacts(),
        Lifecycle(State.FAILED, "preempted (not requeueable)"),
    ),
    (
        "scontrol requeue",
        squeue_line("PENDING|PD|BeginTime|1", restarts=1, sacct_state="REQUEUED"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_SYSTEM, "preempted, awaiting reschedule (restart 1)"),
    ),
    (
        "node down, --no-requeue",
        squeue_line(
            "NODE_FAIL|NF|NodeDown|0",
            requeueable=False,
            sacct_state="NODE_FAIL",
            node_list="node2",
        ),
        LocalFacts(),
        Lifecycle(State.FAILED, "node failure (node2)"),
    ),
    (
        "node down, requeueable: squeue's live PD beats sacct's NODE_FAIL run",
        squeue_line("PENDING|PD|BeginTime|1", restarts=1, sacct_state="NODE_FAIL"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_SYSTEM, "preempted, awaiting reschedule (restart 1)"),
    ),
    (
        "scancel --full --signal=STOP: sacct still RUNNING",
        squeue_line("STOPPED|ST|None|1", sacct_state="RUNNING"),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_USER, "stopped (SIGSTOP)"),
    ),
    (
        "scancel --signal=STOP by konduktor stop",
        squeue_line("STOPPED|ST|None|1", sacct_state="RUNNING"),
        LocalFacts(user_stop=UserStop("alice", NOW - 200, "signal")),
        Lifecycle(State.SUSPENDED_USER, "stopped by alice 3 mins ago"),
    ),
    (
        "scontrol requeuehold (not via konduktor)",
        squeue_line("PENDING|PD|job requeued in held state|0", restarts=1),
        LocalFacts(),
        Lifecycle(State.SUSPENDED_USER, "requeued and held"),
    ),
    (
        "requeuehold by konduktor stop",
        squeue_line("PENDING|PD|job requeued in held state|0", restarts=1),
        LocalFacts(user_stop=UserStop("alice", NOW - 200, "requeue")),
        Lifecycle(State.SUSPENDED_USER, "stopped by alice 3 mins ago"),
    ),
    (
        "requeuehold by konduktor stop, still tearing down",
        squeue_line("COMPLETING|CG|job requeued in held state|0", restarts=1, node_list="node1"),
        LocalFacts(user_stop=UserStop("alice", NOW - 2, "requeue")),
        Lifecycle(State.SUSPENDED_USER, "stopped by alice just now; releasing its nodes"),
    ),
    (
        "completing normally after a stop by suspend was resumed elsewhere",
        squeue_line("COMPLETING|CG|None|1", node_list="node1"),
        LocalFacts(user_stop=UserStop("alice", NOW - 200, "suspend")),
        Lifecycle(State.ACTIVE, "completing on node1"),
    ),
    (
        "released and running again: old stop record ignored",
        squeue_line("RUNNING|R|None|1", restarts=1, node_list="node[1-2]"),
        LocalFacts(user_stop=UserStop("alice", NOW - 200, "requeue")),
        Lifecycle(State.ACTIVE, "running on node[1-2]"),
    ),
]


@pytest.mark.parametrize(
    ("slurm", "local", "expected"), [c[1:] for c in OBSERVED], ids=[c[0] for c in OBSERVED]
)
def test_observed_slurm_output(slurm: SlurmFacts, local: LocalFacts, expected: Lifecycle) -> None:
    assert classify(slurm, dataclasses.replace(local, now=NOW)) == expected


# ======================================================================================
# Precedence: squeue while live, sacct once ended
# ======================================================================================


@pytest.mark.parametrize(
    ("slurm", "expected"),
    [
        # squeue live wins over a lagging sacct (either direction).
        (SlurmFacts(squeue_state="R", sacct_state="PENDING"), Lifecycle(State.ACTIVE, "running")),
        (
            SlurmFacts(squeue_state="PD", reason="Priority", sacct_state="CANCELLED by 0"),
            Lifecycle(State.PENDING, "waiting for priority"),
        ),
        # squeue ended, sacct still lags: fall back to squeue's terminal state.
        (
            SlurmFacts(squeue_state="CD", sacct_state="RUNNING", exit_code="0:0"),
            Lifecycle(State.COMPLETED, ""),
        ),
        (
            SlurmFacts(squeue_state="CA", sacct_state="RUNNING"),
            Lifecycle(State.FAILED, "cancelled"),
        ),
        # Both ended: sacct is more precise.
        (
            SlurmFacts(squeue_state="CA", sacct_state="CANCELLED by 1001"),
            Lifecycle(State.FAILED, "cancelled by uid 1001"),
        ),
        (
            SlurmFacts(squeue_state="CD", sacct_state="FAILED", exit_code="3:0"),
            Lifecycle(State.FAILED, "exited 3"),
        ),
        (
            SlurmFacts(squeue_state="F", reason="NonZeroExitCode", sacct_state="OUT_OF_MEMORY+"),
            Lifecycle(State.FAILED, "out of memory"),
        ),
        (
            SlurmFacts(squeue_state="CD", sacct_state="NODE_FAIL", failed_nodes="node2"),
            Lifecycle(State.FAILED, "node failure (node2)"),
        ),
        # Gone from squeue (`squeue -j` hides finished jobs): sacct alone.
        (SlurmFacts(sacct_state="RUNNING"), Lifecycle(State.ACTIVE, "running")),
        (SlurmFacts(sacct_state="COMPLETED", exit_code="0:0"), Lifecycle(State.COMPLETED, "")),
        (
            SlurmFacts(sacct_state="PENDING"),
            Lifecycle(State.PENDING, "waiting to be scheduled"),
        ),
        (
            SlurmFacts(sacct_state="SUSPENDED"),  # priority unknown
            Lifecycle(State.SUSPENDED_SYSTEM, "suspended"),
        ),
        # Neither has it yet (sacct lags squeue by ~1 s).
        (SlurmFacts(), Lifecycle(State.PENDING, "submitted; waiting for Slurm to report it")),
        (
            SlurmFacts(squeue_state="", sacct_state=""),
            Lifecycle(State.PENDING, "submitted; waiting for Slurm to report it"),
        ),
        # Unrecognised codes (a newer Slurm): a known state elsewhere wins, else say it.
        (
            SlurmFacts(squeue_state="WIBBLE", sacct_state="COMPLETED"),
            Lifecycle(State.COMPLETED, ""),
        ),
        (
            SlurmFacts(squeue_state="R", sacct_state="WIBBLE"),
            Lifecycle(State.ACTIVE, "running"),
        ),
        (
            SlurmFacts(squeue_state="WIBBLE"),
            Lifecycle(State.PENDING, "unrecognised Slurm state WIBBLE"),
        ),
        # A requeueable PREEMPTED in squeue is not an end.
        (
            SlurmFacts(squeue_state="PR", sacct_state="PREEMPTED", restarts=1),
            Lifecycle(State.SUSPENDED_SYSTEM, "preempted, awaiting reschedule (restart 1)"),
        ),
    ],
)
def test_precedence(slurm: SlurmFacts, expected: Lifecycle) -> None:
    assert run(slurm) == expected


# ======================================================================================
# Local facts: CREATED, staging errors, user stops
# ======================================================================================


def test_created_while_staging() -> None:
    assert run(SlurmFacts(), submitted=False) == Lifecycle(State.CREATED, "staging workdir")
    assert run(SlurmFacts(), submitted=False, created_detail="submitting") == Lifecycle(
        State.CREATED, "submitting"
    )


def test_staging_error_is_failed_before_anything_else() -> None:
    err = "staging failed: no such file or directory: ./train.py"
    for slurm in (SlurmFacts(), SlurmFacts(squeue_state="R")):
        for submitted in (False, True):
            assert run(slurm, submitted=submitted, staging_error=err) == Lifecycle(
                State.FAILED, err
            )


STOP_OVERRIDDEN = [
    SlurmFacts(squeue_state="PD", reason="Resources", priority=10),
    SlurmFacts(squeue_state="PD", reason="JobHeldUser", priority=0),
    SlurmFacts(squeue_state="PD", reason="job requeued in held state", priority=0, restarts=1),
    SlurmFacts(squeue_state="PD", reason="BeginTime", restarts=1),
    SlurmFacts(squeue_state="PD", reason="QOSGrpGRES"),
    SlurmFacts(squeue_state="PD", reason="JobHeldAdmin"),
    SlurmFacts(squeue_state="RH"),
    SlurmFacts(squeue_state="RQ", restarts=1),
    SlurmFacts(squeue_state="S", priority=0),
    SlurmFacts(squeue_state="S", priority=5),
    SlurmFacts(squeue_state="ST"),
    SlurmFacts(squeue_state="CF"),
    SlurmFacts(sacct_state="PREEMPTED", requeueable=True),
    SlurmFacts(),
]


@pytest.mark.parametrize("slurm", STOP_OVERRIDDEN)
def test_user_stop_turns_waiting_or_held_into_suspended_by_user(slurm: SlurmFacts) -> None:
    assert run(slurm, user_stop=ALICE_STOP) == Lifecycle(
        State.SUSPENDED_USER, "stopped by alice 3 mins ago"
    )


@pytest.mark.parametrize(
    ("slurm", "state"),
    [
        (SlurmFacts(squeue_state="R"), State.ACTIVE),
        (SlurmFacts(squeue_state="CG"), State.ACTIVE),
        (SlurmFacts(squeue_state="SI"), State.ACTIVE),
        (SlurmFacts(sacct_state="COMPLETED"), State.COMPLETED),
        (SlurmFacts(sacct_state="CANCELLED by 1001"), State.FAILED),
        (SlurmFacts(sacct_state="TIMEOUT"), State.FAILED),
        (SlurmFacts(sacct_state="PREEMPTED", requeueable=False), State.FAILED),
    ],
)
def test_user_stop_does_not_hide_running_or_finished_jobs(slurm: SlurmFacts, state: State) -> None:
    assert run(slurm, user_stop=ALICE_STOP).state is state


@pytest.mark.parametrize(
    ("stop", "now", "detail"),
    [
        (UserStop("alice", NOW - 200, "hold"), NOW, "stopped by alice 3 mins ago"),
        (UserStop("alice", NOW - 3, "hold"), NOW, "stopped by alice just now"),
        (UserStop("alice", NOW - 7200, "suspend"), NOW, "stopped by alice 2 hrs ago"),
        (UserStop("alice", NOW + 30, "hold"), NOW, "stopped by alice just now"),  # clock skew
        (UserStop("alice", NOW - 200, "hold"), 0.0, "stopped by alice"),  # caller has no clock
        (UserStop("alice", 0.0, "hold"), NOW, "stopped by alice"),
        (UserStop("", NOW - 60, "hold"), NOW, "stopped 1 min ago"),
    ],
)
def test_user_stop_detail(stop: UserStop, now: float, detail: str) -> None:
    slurm = SlurmFacts(squeue_state="PD", reason="JobHeldUser", priority=0)
    assert classify(slurm, LocalFacts(user_stop=stop, now=now)).detail == detail


# ---- a checkpoint stop: the grace period, then requeue-hold ----------------------------


def checkpoint_stop(signalled_ago: float, grace: float = 90) -> UserStop:
    at = NOW - signalled_ago
    return UserStop("alice", at, "checkpoint", until=at + grace)


def test_a_job_in_its_checkpoint_grace_period_is_active_and_checkpointing() -> None:
    slurm = SlurmFacts(squeue_state="R", node_list="node1")
    got = classify(slurm, LocalFacts(user_stop=checkpoint_stop(30), now=NOW))
    assert got == Lifecycle(
        State.ACTIVE,
        "checkpointing: stop asked by alice; requeued and held when its ranks exit, "
        "at the latest in 60s",
    )


def test_after_the_grace_period_a_running_job_is_shown_as_slurm_says() -> None:
    # The stop was interrupted and nobody requeued it: it just runs.
    slurm = SlurmFacts(squeue_state="R", node_list="node1")
    got = classify(slurm, LocalFacts(user_stop=checkpoint_stop(100), now=NOW))
    assert got == Lifecycle(State.ACTIVE, "running on node1")


@pytest.mark.parametrize(
    ("slurm", "detail"),
    [
        (
            SlurmFacts(squeue_state="CG", reason="job requeued in held state", node_list="node1"),
            "checkpointed and stopped by alice just now; releasing its nodes",
        ),
        (
            SlurmFacts(squeue_state="PD", reason="job requeued in held state", priority=0),
            "checkpointed and stopped by alice just now",
        ),
    ],
)
def test_a_checkpointed_job_that_was_requeued_is_suspended_by_user(
    slurm: SlurmFacts, detail: str
) -> None:
    got = classify(slurm, LocalFacts(user_stop=checkpoint_stop(5), now=NOW))
    assert got == Lifecycle(State.SUSPENDED_USER, detail)


@pytest.mark.parametrize("sacct_state", ["TIMEOUT", "COMPLETED", "CANCELLED by 1001"])
def test_a_checkpointing_job_that_ended_is_shown_as_it_ended(sacct_state: str) -> None:
    got = classify(SlurmFacts(sacct_state=sacct_state), LocalFacts(user_stop=checkpoint_stop(5)))
    assert got.state.terminal


def test_the_stop_record_keeps_its_deadline_and_reads_older_records() -> None:
    stop = checkpoint_stop(10)
    assert UserStop.from_json(stop.to_json()) == stop
    assert UserStop.from_json({"user": "a", "at": 1.0, "mode": "requeue"}) == UserStop(
        "a", 1.0, "requeue", None
    )
    assert UserStop.from_json({"user": "a", "at": 1.0, "mode": "checkpoint", "until": "x"}) == (
        UserStop("a", 1.0, "checkpoint", None)
    )
    assert not UserStop("a", NOW, "requeue", NOW + 50).checkpointing(NOW)


# ======================================================================================
# Exit codes, ranks, and the other failure details
# ======================================================================================


@pytest.mark.parametrize(
    ("slurm", "expected"),
    [
        # COMPLETED needs every rank at 0 and ExitCode 0:0 (or unknown).
        (SlurmFacts(sacct_state="COMPLETED"), Lifecycle(State.COMPLETED, "")),
        (
            SlurmFacts(sacct_state="COMPLETED", rank_exit_codes={0: 0}),
            Lifecycle(State.COMPLETED, "exited 0"),
        ),
        (
            SlurmFacts(sacct_state="COMPLETED", exit_code="0:0", rank_exit_codes={0: 0, 1: 0}),
            Lifecycle(State.COMPLETED, "all 2 nodes exited 0"),
        ),
        (
            SlurmFacts(sacct_state="COMPLETED", exit_code="0:0", rank_exit_codes={0: 0, 1: 3}),
            Lifecycle(State.FAILED, "rank 1 exited 3"),
        ),
        (
            SlurmFacts(sacct_state="COMPLETED", rank_exit_codes={0: 0, 1: 3, 2: 1}),
            Lifecycle(State.FAILED, "ranks 1,2 failed (rank 1 exited 3)"),
        ),
        (
            SlurmFacts(sacct_state="COMPLETED", rank_exit_codes={0: 1, 1: 1, 2: 1, 5: 1}),
            Lifecycle(State.FAILED, "ranks 0-2,5 failed (rank 0 exited 1)"),
        ),
        (
            SlurmFacts(sacct_state="CD", rank_exit_codes={r: 1 for r in range(64)}),
            Lifecycle(State.FAILED, "ranks 0-63 failed (rank 0 exited 1)"),
        ),
        (
            SlurmFacts(sacct_state="COMPLETED", exit_code="0:9"),
            Lifecycle(State.FAILED, "killed by signal 9 (SIGKILL)"),
        ),
        (
            SlurmFacts(sacct_state="COMPLETED", exit_code="2:0"),
            Lifecycle(State.FAILED, "exited 2"),
        ),
        (SlurmFacts(sacct_state="COMPLETED", exit_code="junk"), Lifecycle(State.COMPLETED, "")),
        # FAILED: ranks beat ExitCode (sacct keeps only the highest code), then the reason.
        (
            SlurmFacts(sacct_state="FAILED", exit_code="3:0", rank_exit_codes={0: 0, 1: 3}),
            Lifecycle(State.FAILED, "rank 1 exited 3"),
        ),
        (
            SlurmFacts(sacct_state="FAILED", rank_exit_codes={0: 137}),
            Lifecycle(State.FAILED, "rank 0 exited 137 (signal 9)"),
        ),
        (
            SlurmFacts(sacct_state="FAILED", rank_exit_codes={3: -9}),
            Lifecycle(State.FAILED, "rank 3 killed by signal 9 (SIGKILL)"),
        ),
        (
            SlurmFacts(sacct_state="FAILED", exit_code="0:15"),
            Lifecycle(State.FAILED, "killed by signal 15 (SIGTERM)"),
        ),
        (
            SlurmFacts(sacct_state="FAILED", exit_code="0:42"),
            Lifecycle(State.FAILED, "killed by signal 42"),
        ),
        (SlurmFacts(sacct_state="FAILED", exit_code="0:0"), Lifecycle(State.FAILED, "failed")),
        (
            SlurmFacts(squeue_state="F", reason="JobLaunchFailure"),
            Lifecycle(State.FAILED, "failed (JobLaunchFailure)"),
        ),
        (SlurmFacts(sacct_state="FAILED", exit_code=":"), Lifecycle(State.FAILED, "failed")),
        # A rank srun could not launch (its node's slurmd died or did not answer) beats srun's
        # exit code, which names nothing ("233:0" is Slurm's error 1001, modulo 256).
        (
            SlurmFacts(sacct_state="FAILED", exit_code="233:0", ranks_not_started={1: "node2"}),
            Lifecycle(State.FAILED, "rank 1 never started on node2"),
        ),
        (
            SlurmFacts(
                sacct_state="FAILED",
                exit_code="1:0",
                rank_exit_codes={0: 1},
                ranks_not_started={r: f"gpu{r}" for r in (1, 2, 3, 4, 7)},
            ),
            Lifecycle(State.FAILED, "ranks 1-4,7 never started (gpu1, gpu2, gpu3 and 2 more)"),
        ),
        (
            SlurmFacts(sacct_state="COMPLETED", exit_code="0:0", ranks_not_started={0: "n1"}),
            Lifecycle(State.FAILED, "rank 0 never started on n1"),
        ),
        (  # written by a job script: anything unreadable is left out
            SlurmFacts(
                sacct_state="FAILED", exit_code="233:0", ranks_not_started={"x": "n2", 1: ""}
            ),
            Lifecycle(State.FAILED, "exited 233"),
        ),
        (
            SlurmFacts(sacct_state="FAILED", exit_code="233:0", ranks_not_started={"1": "n2"}),
            Lifecycle(State.FAILED, "rank 1 never started on n2"),
        ),
        # Out of memory names the rank when the ranks say which.
        (
            SlurmFacts(sacct_state="OUT_OF_MEMORY", rank_exit_codes={0: 137, 1: 0}),
            Lifecycle(State.FAILED, "out of memory on rank 0"),
        ),
        (
            SlurmFacts(sacct_state="OOM", rank_exit_codes={0: 0, 1: 137}),
            Lifecycle(State.FAILED, "out of memory on rank 1"),
        ),
        # Node failure: failed_nodes, else node_list, else nothing.
        (
            SlurmFacts(sacct_state="NODE_FAIL", node_list="node[1-2]"),
            Lifecycle(State.FAILED, "node failure (node[1-2])"),
        ),
        (
            SlurmFacts(sacct_state="NODE_FAIL", node_list="None assigned"),
            Lifecycle(State.FAILED, "node failure"),
        ),
        (SlurmFacts(sacct_state="BOOT_FAIL"), Lifecycle(State.FAILED, "node boot failure")),
        # Timeout: the limit when it is a real one.
        (
            SlurmFacts(sacct_state="TIMEOUT", time_limit="1-00:00:00"),
            Lifecycle(State.FAILED, "timeout after 1-00:00:00"),
        ),
        (
            SlurmFacts(sacct_state="TIMEOUT", time_limit="UNLIMITED"),
            Lifecycle(State.FAILED, "timeout"),
        ),
        (SlurmFacts(sacct_state="TO"), Lifecycle(State.FAILED, "timeout")),
        # Special exit carries the failure.
        (
            SlurmFacts(sacct_state="SPECIAL_EXIT", rank_exit_codes={0: 0, 1: 5}),
            Lifecycle(State.FAILED, "special exit: rank 1 exited 5"),
        ),
        (SlurmFacts(sacct_state="SE"), Lifecycle(State.FAILED, "special exit")),
    ],
)
def test_failure_details(slurm: SlurmFacts, expected: Lifecycle) -> None:
    assert run(slurm) == expected


@pytest.mark.parametrize(
    ("sacct_state", "uid_names", "detail"),
    [
        ("CANCELLED by 0", {}, "cancelled by root"),
        ("CANCELLED by 0", {0: "admin"}, "cancelled by admin"),
        ("CANCELLED by 1001", {}, "cancelled by uid 1001"),
        ("CANCELLED by 1001", {1001: "alice"}, "cancelled by alice"),
        ("CANCELLED by 1001", {1002: "bob"}, "cancelled by uid 1001"),
        ("CANCELLED by alice", {}, "cancelled by alice"),
        ("CANCELLED+", {}, "cancelled"),
        ("CANCELLED", {}, "cancelled"),
        ("CA", {}, "cancelled"),
    ],
)
def test_cancelled_by(sacct_state: str, uid_names: dict[int, str], detail: str) -> None:
    slurm = SlurmFacts(sacct_state=sacct_state)
    assert run(slurm, uid_names=uid_names) == Lifecycle(State.FAILED, detail)


def test_nodes_placeholders_are_not_shown() -> None:
    for placeholder in ("", "(null)", "None assigned"):
        assert run(SlurmFacts(squeue_state="R", node_list=placeholder)).detail == "running"


def test_odd_but_typed_inputs_do_not_raise() -> None:
    odd = [
        SlurmFacts(squeue_state="S", priority=-1),
        SlurmFacts(squeue_state="PD", restarts=-3),
        SlurmFacts(sacct_state="FAILED", exit_code="-1:0"),
        SlurmFacts(sacct_state="FAILED", exit_code="3:x"),
        SlurmFacts(sacct_state="FAILED", exit_code="::::"),
        SlurmFacts(sacct_state="COMPLETED", rank_exit_codes={"0": "3"}),  # type: ignore[dict-item]
        SlurmFacts(sacct_state="COMPLETED", rank_exit_codes={"x": 3}),  # type: ignore[dict-item]
        SlurmFacts(squeue_state="(RUNNING)"),
        SlurmFacts(squeue_state="PD", reason="()"),
        SlurmFacts(squeue_state="PD", reason="{c.reason}"),
        SlurmFacts(sacct_state="CANCELLED by"),
    ]
    for slurm in odd:
        assert isinstance(run(slurm), Lifecycle)
    # String rank codes are still understood.
    assert run(odd[5]) == Lifecycle(State.FAILED, "rank 0 exited 3")
    # Format braces inside Slurm text are shown, not interpreted.
    assert run(odd[9]).detail == "waiting: {c.reason}"


# ======================================================================================
# humanize_ago
# ======================================================================================


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "just now"),
        (9.9, "just now"),
        (10, "10 secs"),
        (45, "45 secs"),
        (59.9, "59 secs"),
        (60, "1 min"),
        (180, "3 mins"),
        (22 * 60 + 30, "22 mins"),
        (3599, "59 mins"),
        (3600, "1 hr"),
        (7200, "2 hrs"),
        (86399, "23 hrs"),
        (86400, "1 day"),
        (4 * 86400 + 5, "4 days"),
        (400 * 86400, "400 days"),
        (-5, "just now"),
        (math.nan, "just now"),
        (math.inf, "just now"),
        (-math.inf, "just now"),
    ],
)
def test_humanize_ago(seconds: float, text: str) -> None:
    assert humanize_ago(seconds) == text


# ======================================================================================
# Properties over a grid of inputs
# ======================================================================================

GRID_SQUEUE = [None, "", "WIBBLE", *LONG_STATES]
GRID_SACCT = [None, "", "WIBBLE", "CANCELLED by 0", "CANCELLED+", *LONG_STATES]
GRID_REASONS = ["Resources", "JobHeldUser"]
GRID_RANKS: list[dict[int, int]] = [{}, {0: 0, 1: 3}]
GRID_STOPS = [None, ALICE_STOP, UserStop("alice", NOW - 5, "requeue")]
ACTIVE_SLURM = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"}


def _known(code: str | None) -> str:
    long = normalise_state(code)
    return long if long in STATE_RULES else ""


def test_properties_over_the_input_grid() -> None:
    """No input raises; a terminal Slurm state never yields a live lifecycle (and a live
    squeue state never a terminal one); a stop record never hides a running job."""
    checked = 0
    for sq, sa, requeueable, restarts, priority, reason, ranks, stop in itertools.product(
        GRID_SQUEUE,
        GRID_SACCT,
        (True, False),
        (0, 2),
        (None, 0, 7),
        GRID_REASONS,
        GRID_RANKS,
        GRID_STOPS,
    ):
        slurm = SlurmFacts(
            squeue_state=sq,
            sacct_state=sa,
            requeueable=requeueable,
            restarts=restarts,
            priority=priority,
            reason=reason,
            rank_exit_codes=ranks,
        )
        result = classify(slurm, LocalFacts(user_stop=stop, now=NOW))
        checked += 1
        ctx = (sq, sa, requeueable, restarts, priority, reason, ranks, stop, result)

        assert isinstance(result.state, State), ctx
        assert isinstance(result.detail, str), ctx
        assert "{" not in result.detail, ctx
        assert result.state is not State.CREATED, ctx

        live, acct = _known(sq), _known(sa)
        live_running = bool(live) and not is_terminal_slurm_state(live, requeueable=requeueable)
        acct_ended = bool(acct) and is_terminal_slurm_state(acct, requeueable=requeueable)
        live_ended = bool(live) and is_terminal_slurm_state(live, requeueable=requeueable)
        if live_running:
            # squeue is live: never a finished lifecycle, whatever sacct says.
            assert not result.state.terminal, ctx
            stopping = stop is not None and stop.mode == "requeue" and live == "COMPLETING"
            if live in ACTIVE_SLURM and not stopping:
                assert result.state is State.ACTIVE, ctx
            if stopping:
                assert result.state is State.SUSPENDED_USER, ctx
        elif live_ended or acct_ended:
            assert result.state.terminal, ctx
        else:
            assert not result.state.terminal, ctx
        if stop is not None:
            assert result.state in {
                State.ACTIVE,
                State.COMPLETED,
                State.FAILED,
                State.SUSPENDED_USER,
            }, ctx
    assert checked == len(GRID_SQUEUE) * len(GRID_SACCT) * 2 * 2 * 3 * 2 * 2 * len(GRID_STOPS)


@pytest.mark.parametrize("code", ALL_CODES)
def test_terminal_states_never_give_a_live_lifecycle(code: str) -> None:
    long = normalise_state(code)
    for requeueable, ranks, stop in itertools.product(
        (True, False), ({}, {0: 0}, {0: 1}), (None, ALICE_STOP)
    ):
        for slurm in (
            SlurmFacts(squeue_state=code, requeueable=requeueable, rank_exit_codes=ranks),
            SlurmFacts(sacct_state=code, requeueable=requeueable, rank_exit_codes=ranks),
        ):
            result = classify(slurm, LocalFacts(user_stop=stop, now=NOW))
            if is_terminal_slurm_state(long, requeueable=requeueable):
                assert result.state.terminal, (code, slurm, result)
            else:
                assert result.state in NON_TERMINAL | {State.ACTIVE}, (code, slurm, result)
