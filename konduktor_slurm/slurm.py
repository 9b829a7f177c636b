"""The Slurm adapter: build Slurm commands and parse their output, in one place.

Only parsable formats are used (``squeue -h -O ...`` and ``sacct -p`` with a delimiter,
``sinfo -o``, ``sacctmgr -p``): they print the same on Slurm 22.05, 24.11 and 26.05, unlike
``--json``, whose schema changes every release. Each function makes exactly one Slurm call,
however many jobs it is asked about, so ``konduktor status`` costs the same for 1 job and for
200.

Every record is read the same way (``_records``): fields end with the ASCII unit separator,
which no one types into a job name (sacct's default ``|`` is: ``--job-name='a|b'`` used to
shift every column after the name), and a record ends at "separator + newline", so a newline
in a name does not split it either.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple, TypeVar

from konduktor_slurm.durations import (
    DurationError,
    parse_elapsed,
    slurm_timestamp,
    slurm_timestamp_text,
)
from konduktor_slurm.transport import (
    DEFAULT_TIMEOUT,
    CommandResult,
    CommandTimeout,
    Transport,
    TransportError,
)

# The field delimiter of every parsable output konduktor reads (squeue --Format "F:\x1f",
# sacct --delimiter, sinfo --format): the ASCII unit separator. sacctmgr has no --delimiter;
# what konduktor asks it for (node names, node states, an admin level) never holds a "|".
_DELIM = "\x1f"


def _records(
    output: str, fields: Sequence[str], *, delimiter: str = _DELIM, free: str | None = None
) -> Iterator[dict[str, str]]:
    """``{field: value}`` for each record of parsable Slurm output in which every field,
    the last one too, ends with ``delimiter`` (squeue ``--Format=F:<d>``, sacct/sacctmgr
    ``--parsable``, ``sinfo --format=%P<d>...<d>``).

    A record ends at "delimiter + newline", so a newline inside a value does not split it;
    the first field (a job id, a node name) never holds one, so a line before it that is no
    record (a blank line, a warning) is dropped. One ``free`` field (a job name: anyone's
    free text) may even hold the delimiter itself: the fields before it are counted from
    the left, those after it from the right. A record of any other shape (a truncated line)
    is skipped. Values are stripped, except ``free``.
    """
    text = output if output.endswith("\n") else output + "\n"
    for chunk in text.split(delimiter + "\n"):
        first = chunk.find(delimiter)
        record = chunk[chunk.rfind("\n", 0, first if first >= 0 else len(chunk)) + 1 :]
        if not record.strip():
            continue
        values = record.split(delimiter)
        extra = len(values) - len(fields)
        if extra > 0 and free is not None:
            at = fields.index(free)
            values[at : at + extra + 1] = [delimiter.join(values[at : at + extra + 1])]
        if len(values) != len(fields):
            continue
        yield {
            name: value if name == free else value.strip()
            for name, value in zip(fields, values, strict=True)
        }


# squeue --Format fields, in output order. JobArrayID, not JobID: for an element of a job
# array (a grid launch) it is "889_1", what scontrol, scancel and sacct take, where JobID
# would print the array's id for every element.
QUEUE_FIELDS = (
    "JobArrayID",
    "State",
    "Reason",
    "PriorityLong",
    "RestartCnt",
    "Requeue",
    "NodeList",
    "SubmitTime",
    "StartTime",
    "EndTime",
    "TimeLimit",
    "UserName",
    "Name",
    "Comment",
    "NumNodes",
    "tres-per-node",
    "cpus-per-task",
    "MinMemory",
)
# Every job konduktor submits carries this comment, so `status --all-users` can find other
# users' konduktor jobs in one squeue call; a retrying job appends "attempt=N/M".
KONDUKTOR_COMMENT = "konduktor"
_ATTEMPT = re.compile(r"attempt=(\d+)/(\d+)")
_RESOURCES = re.compile(r"resources=([^;\s]+)")


def resources_in_comment(comment: str | None) -> str | None:
    """``2x(8CPU, 32GiMEM, H100:8)`` from a konduktor job comment (None without one)."""
    match = _RESOURCES.search(comment or "")
    return match.group(1).replace(",", ", ") if match else None


def konduktor_comment(resources_summary: str) -> str:
    """The job comment: ``konduktor;resources=2x(8CPU,32GiMEM,H100:8)`` (no spaces, so it
    fits an ``#SBATCH`` line); a retrying job appends `` attempt=N/M``."""
    return f"{KONDUKTOR_COMMENT};resources={resources_summary.replace(', ', ',')}"


ACCT_FIELDS = ("JobID", "State", "ExitCode", "Start", "End", "NodeList", "Timelimit", "User")


# Release differences, all handled here. Job owners may `scontrol suspend`/`resume` their own
# jobs on 26.05; 22.05 and 24.11 answer "Access/permission denied" (only operators may).
# Releases in between were not tested, so they are treated as the older behaviour: `stop`'s
# auto mode tries suspend and falls back to requeue on a refusal either way.
OWNER_SUSPEND_SINCE = (26, 5)


def parse_release(version_output: str) -> tuple[int, int] | None:
    """``sinfo --version`` ("slurm-wlm 26.05.5", "slurm 22.05.8") -> (26, 5)."""
    match = re.search(r"(\d+)\.(\d+)(?:\.\d+)?\s*$", version_output.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def owners_may_suspend(release: tuple[int, int] | None) -> bool:
    return release is not None and release >= OWNER_SUSPEND_SINCE


# squeue's first try and the ping that follows when it runs out (see Slurm._ask_queue).
QUEUE_FIRST_TRY_SECONDS = 4.0
PING_TIMEOUT_SECONDS = 3.0


class SlurmError(RuntimeError):
    """A Slurm command ran but failed; the message is Slurm's own, trimmed to one line."""

    def __init__(self, command: str, message: str) -> None:
        super().__init__(f"{command}: {message}")
        self.command = command
        self.slurm_message = message


class PermissionDenied(SlurmError):
    """Slurm refused an operation to this user (e.g. ``scontrol suspend`` as a non-operator)."""


# "Access/permission denied" on 22.05-26.05 (scontrol suspend as a user, or another user's job).
_PERMISSION_DENIED = re.compile(r"access/permission denied|permission denied|not authorized", re.I)


class NodesCannotFit(SlurmError):
    """sbatch: no set of the partition's nodes can ever give what the job asks (more GPUs,
    CPUs or memory per node than a node has, a GPU type it lacks, more nodes than it has).
    Slurm's message names none of it."""


# sbatch's ESLURM_REQUESTED_NODE_CONFIG_UNAVAILABLE, on 22.05 to 26.05.
_CANNOT_FIT = "Requested node configuration is not available"


class RateLimited(SlurmError):
    """slurmctld is up but holding this user's requests back for a moment: its per-user rate
    limit (``SlurmctldParameters=rl_enable``, Slurm 23.02+). Commands get through after the
    client's own pause; a status is slow, not stale."""


# Observed on 26.05 with rl_enable: a throttled `scontrol ping` says at once that the
# controller is DOWN, as for one that is; squeue sleeps and tries again, and says so only
# with -v ("squeue: RPC rate limited 1 time(s). Sleeping then trying again.").
_RATE_LIMITED = re.compile(r"RPC rate limited", re.I)
RATE_PROBE_SECONDS = 2


class AuthenticationFailed(SlurmError):
    """This machine cannot authenticate to Slurm (munge): no Slurm command works from it, and
    none did anything. Not a controller that is down, though ``scontrol ping`` then says so."""


# Observed on 22.05 with munged stopped on the login node: every command retries for a few
# seconds, then prints 'Munge encode failed: Failed to access "/run/munge/munge.socket.2":
# No such file or directory (Did you start munged?)' before its own error ("Protocol
# authentication error"), and `scontrol ping` says the controller is DOWN.
_MUNGE_ENCODE = re.compile(r"Munge encode failed: (.*?)(?: \(Did you start munged\?\))?$", re.M)
# Observed with another munge key on the login node: slurmctld logs "Munge decode failed:
# Invalid credential" and closes the connection, and the command says only this (a clock
# far off gives the same; so may a network fault, hence a hint, not a verdict).
_NO_ANSWER = "Zero Bytes were transmitted or received"
_NO_ANSWER_HINT = (
    " (slurmctld closed the connection without an answer, as it does when it cannot verify "
    "this machine's munge credential: another munge key here, or a clock far off)"
)


def slurm_error(command: str, result: CommandResult, host: str | None = None) -> SlurmError:
    """The error of a Slurm command that failed, in one line: Slurm's last line, without the
    program's name repeated ("sbatch: sbatch: error: ..."), and what to check when the
    machine it ran on cannot authenticate (the last line alone would blame the job or the
    controller). ``host``: that machine when it is not this one (the SSH login host)."""
    local = _MUNGE_ENCODE.search(result.stderr)
    if local:
        machine, there = (f"the login host {host}", "there") if host else ("this machine", "here")
        return AuthenticationFailed(
            command,
            f"{machine} cannot authenticate to Slurm: munge failed ({local.group(1)}). "
            f"Is munged running {there}? (systemctl status munge)",
        )
    message = _first_line(result).removeprefix(f"{command.split()[0]}: ")
    if _NO_ANSWER in message:
        message += _NO_ANSWER_HINT
    if _CANNOT_FIT in message:
        return NodesCannotFit(command, message)
    return SlurmError(command, message)


class QueueRow(NamedTuple):
    """One job's line of squeue output (QUEUE_FIELDS), parsed."""

    job_id: str
    state: str
    reason: str | None
    priority: int | None
    restarts: int
    requeueable: bool
    node_list: str | None
    submit_time: float | None
    start_time: float | None
    end_time: float | None
    time_limit: str | None
    user: str
    name: str
    comment: str | None = None
    num_nodes: int | None = None
    tres_per_node: str | None = None  # "gres:gpu:h100:8" (22.05) or "gres/gpu:h100:8" (24.11+)
    cpus_per_task: int | None = None
    min_memory: str | None = None  # "1G", "4000M"
    work_dir: str | None = None  # with RECOVERY_QUEUE_FIELDS only: --chdir, the job's dir

    @property
    def attempt(self) -> tuple[int, int] | None:
        """``(attempt, max_attempts)`` published by a retrying job in its comment."""
        match = _ATTEMPT.search(self.comment or "")
        return (int(match.group(1)), int(match.group(2))) if match else None

    @property
    def resources_summary(self) -> str | None:
        """Konduktor's resources text, as the submitting konduktor recorded it."""
        return resources_in_comment(self.comment)

    @property
    def gpu_gres(self) -> tuple[str, int] | None:
        """``("h100", 8)`` from tres-per-node: "gres:gpu:h100:8" on 22.05, "gres/gpu:h100:8"
        on 24.11 and later (the one output difference between them that konduktor reads)."""
        fields = (self.tres_per_node or "").replace("gres/", "gres:", 1).split(":")
        if len(fields) == 4 and fields[:2] == ["gres", "gpu"] and fields[3].isdigit():
            return fields[2], int(fields[3])
        return None

    @property
    def launched_by_konduktor(self) -> bool:
        return (self.comment or "").startswith(KONDUKTOR_COMMENT)


class AcctRow(NamedTuple):
    """One job's allocation line of sacct output (ACCT_FIELDS), parsed."""

    job_id: str
    state: str
    exit_code: str | None
    start_time: float | None
    end_time: float | None
    node_list: str | None
    time_limit: str | None
    user: str
    # States of the job's steps ("batch", "0", ...): an OOM kill shows only there, while
    # the allocation itself says FAILED.
    step_states: tuple[str, ...] = ()

    @property
    def out_of_memory(self) -> bool:
        return any(state.startswith("OUT_OF_MEMORY") for state in self.step_states)


def _missing(value: str) -> bool:
    # Slurm's spellings of "no value" (sacct prints "None assigned" and "Partition_Limit").
    return value.strip() in (
        "",
        "Unknown",
        "None",
        "N/A",
        "n/a",
        "(null)",
        "None assigned",
        "Partition_Limit",
    )


def parse_time(value: str) -> float | None:
    """Slurm prints local wall-clock times like ``2026-11-28T17:40:16``; None for none."""
    if _missing(value):
        return None
    try:
        return slurm_timestamp(value)
    except DurationError:
        return None


def _int_or_none(value: str) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        return None


def _text_or_none(value: str) -> str | None:
    return None if _missing(value) else value.strip()


def _first_line(result: CommandResult) -> str:
    text = (result.stderr or result.stdout).strip()
    return text.splitlines()[-1] if text else f"exit code {result.returncode}"


# At most this many job ids on one Slurm command line: a status after a sweep of 20,000 jobs
# must not hit "Argument list too long" (Linux caps one argument at 128 KiB).
IDS_PER_CALL = 500


def _chunks(ids: list[str]) -> list[list[str]]:
    return [ids[start : start + IDS_PER_CALL] for start in range(0, len(ids), IDS_PER_CALL)]


_ARRAY_ELEMENT = re.compile(r"([0-9]+)_([0-9]+)")


def array_expressions(job_ids: Iterable[str]) -> list[str]:
    """Job ids with each job array's elements folded into one of Slurm's array expressions:
    ``812_0 812_1 812_2 812_5 900`` -> ``812_[0-2,5] 900``, in order of first appearance.

    scancel sends one request per word, so a sweep of 1,000 variants is cancelled with one
    request, and its command line stays short (observed on 22.05, 24.11 and 26.05). A lone
    element stays as it is.
    """
    words: list[str] = []
    elements: dict[str, list[int]] = {}
    for job_id in job_ids:
        match = _ARRAY_ELEMENT.fullmatch(job_id)
        if match is None:
            words.append(job_id)
            continue
        array, index = match.groups()
        if array not in elements:
            elements[array] = []
            words.append(array + "_")  # a placeholder, filled below in its place
        elements[array].append(int(index))
    result = []
    for word in words:
        indexes = elements.get(word[:-1]) if word.endswith("_") else None
        if indexes is None:
            result.append(word)
            continue
        runs = _runs(sorted(set(indexes)))
        # A sweep stopped every other variant makes one run per element: a few hundred runs
        # a word keeps each word far below Linux's 128 KiB for one argument.
        for start in range(0, len(runs), _RUNS_PER_EXPRESSION):
            part = runs[start : start + _RUNS_PER_EXPRESSION]
            lone = len(part) == 1 and "-" not in part[0]
            result.append(f"{word}{part[0]}" if lone else f"{word}[{','.join(part)}]")
    return result


_RUNS_PER_EXPRESSION = 500


def _runs(numbers: list[int]) -> list[str]:
    """Sorted distinct numbers -> their runs: ``["0-2", "5", "7-9"]``."""
    runs: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        runs.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return runs


def squeue_command(
    job_ids: Iterable[str] | None = None,
    user: str | None = None,
    name: str | None = None,
    fields: Sequence[str] = QUEUE_FIELDS,
) -> list[str]:
    formats = ",".join(f"{field}:{_DELIM}" for field in fields)
    # --array: one line per element of a job array, pending ones too (not "889_[2-9]").
    argv = ["squeue", "--noheader", "--array", "--states=all", f"--Format={formats}"]
    ids = list(job_ids or [])
    if ids:
        argv.append("--jobs=" + ",".join(ids))
    if user:
        argv.append(f"--user={user}")
    if name:
        argv.append(f"--name={name}")
    return argv


def parse_squeue(output: str, fields: Sequence[str] = QUEUE_FIELDS) -> dict[str, QueueRow]:
    """``squeue_command(..., fields)``'s output: QUEUE_FIELDS, or RECOVERY_QUEUE_FIELDS."""
    rows: dict[str, QueueRow] = {}
    for values in _records(output, fields, free="Name"):
        rows[values["JobArrayID"]] = QueueRow(
            job_id=values["JobArrayID"],
            state=values["State"],
            reason=_text_or_none(values["Reason"]),
            priority=_int_or_none(values["PriorityLong"]),
            restarts=_int_or_none(values["RestartCnt"]) or 0,
            requeueable=values["Requeue"] == "1",
            node_list=_text_or_none(values["NodeList"]),
            submit_time=parse_time(values["SubmitTime"]),
            start_time=parse_time(values["StartTime"]),
            end_time=parse_time(values["EndTime"]),
            time_limit=_text_or_none(values["TimeLimit"]),
            user=values["UserName"],
            name=values["Name"],
            comment=_text_or_none(values["Comment"]),
            num_nodes=_int_or_none(values["NumNodes"]),
            tres_per_node=_text_or_none(values["tres-per-node"]),
            cpus_per_task=_int_or_none(values["cpus-per-task"]),
            min_memory=_text_or_none(values["MinMemory"]),
            work_dir=_text_or_none(values["WorkDir"]) if "WorkDir" in values else None,
        )
    return rows


# A job array's elements that never started have no record of their own in accounting: sacct
# keeps them in the array's one record, "4305_[0,2-5%4]" (ranges, a ":step", a "%" limit of
# elements running at once), and `sacct --jobs=4305_0` prints nothing for them. So elements
# are asked for by their array's id and that record stands for each element it lists.
_ARRAY_RECORD = re.compile(r"^(\d+)_\[([^\]]*)\]$")


def array_base(job_id: str) -> str:
    """The array's id for an element ("4305_0" -> "4305"); any other id unchanged."""
    base, underscore, index = job_id.partition("_")
    return base if underscore and index.isdigit() else job_id


def expand_array_record(job_id: str) -> list[str]:
    """["4305_0", "4305_2"] for sacct's "4305_[0,2]"; ``[job_id]`` for any other id."""
    match = _ARRAY_RECORD.match(job_id)
    if not match:
        return [job_id]
    base, spec = match.groups()
    elements: list[str] = []
    for part in spec.split("%", 1)[0].split(","):
        bounds, _colon, step = part.partition(":")
        first, _dash, last = bounds.partition("-")
        if not first.isdigit() or not (last or first).isdigit() or not (step or "1").isdigit():
            return [job_id]  # a spelling this parser does not know: keep the record as is
        elements += [
            f"{base}_{index}" for index in range(int(first), int(last or first) + 1, int(step or 1))
        ]
    return elements


_Row = TypeVar("_Row", "QueueRow", "AcctRow")


def with_array_records(rows: dict[str, _Row], job_ids: Iterable[str]) -> dict[str, _Row]:
    """The rows of ``job_ids``; an element without a row of its own takes its array's plain
    row if that never ran.

    Slurm 22.05 prints an array whose elements were cancelled one by one while they waited
    ("scancel 889_0 889_1 889_2") as plain "889" in squeue and sacct, listing no element, and
    `squeue --jobs=889_0` then prints nothing: that row, which never ran on a node, is the
    state of every element without one of its own. (24.11 and 26.05 print "889_[0-2]" in
    sacct.) A plain row that ran is one element's own run printed without its index (the
    array's last element reuses the array's record): it says nothing of the others.
    """
    found: dict[str, _Row] = {}
    for job_id in job_ids:
        row = rows.get(job_id)
        base = array_base(job_id)
        plain = rows.get(base) if base != job_id else None
        if row is None and plain is not None and plain.node_list is None:
            row = plain._replace(job_id=job_id)
        if row is not None:
            found[job_id] = row
    return found


def sacct_command(job_ids: Iterable[str]) -> list[str]:
    # Allocations and their steps (one call); -j implies a start time of the epoch.
    return [
        "sacct",
        "--noheader",
        "--parsable",  # a delimiter after the last field too: records end "<d>\n"
        f"--delimiter={_DELIM}",
        "--format=" + ",".join(ACCT_FIELDS),
        "--jobs=" + ",".join(job_ids),
    ]


def parse_sacct(output: str) -> dict[str, AcctRow]:
    rows: dict[str, AcctRow] = {}
    steps: dict[str, list[str]] = {}
    for values in _records(output, ACCT_FIELDS):
        job_id, dot, _step = values["JobID"].partition(".")
        if dot:
            steps.setdefault(job_id, []).append(values["State"])
            continue
        row = AcctRow(
            job_id=job_id,
            state=values["State"],
            exit_code=_text_or_none(values["ExitCode"]),
            start_time=parse_time(values["Start"]),
            end_time=parse_time(values["End"]),
            node_list=_text_or_none(values["NodeList"]),
            time_limit=_text_or_none(values["Timelimit"]),
            user=values["User"],
        )
        elements = expand_array_record(job_id)
        if elements != [job_id]:
            # An array's record of elements that never ran: it has no steps. An element with
            # a record of its own keeps that one, printed before or after (24.11 and 26.05
            # list such elements in the array's record too: "240_[0-2]" beside "240_1").
            for element in elements:
                rows.setdefault(element, row._replace(job_id=element))
            continue
        # A requeued job has one row per run; the last one printed is the current run, and
        # the steps printed after it are that run's.
        steps[job_id] = []
        rows[job_id] = row
    return {
        job_id: row._replace(step_states=tuple(steps.get(job_id, ())))
        for job_id, row in rows.items()
    }


# One row per run of a job (--duplicates: a requeued job ran several times), for billing.
RUN_FIELDS = (
    "JobID",
    "JobName",
    "User",
    "State",
    "Submit",
    "Start",
    "End",
    "ElapsedRaw",  # seconds actually running: Slurm leaves out time suspended
    "Suspended",
    "AllocNodes",
    "AllocTRES",
)
_GPU_TRES = re.compile(r"(?:^|,)gres/gpu=(\d+)")


class AcctRun(NamedTuple):
    """One run of a job as accounting saw it (a requeued job has one per start)."""

    job_id: str
    name: str
    user: str
    state: str
    submit_time: float | None
    start_time: float | None
    end_time: float | None
    active_seconds: int  # running, suspension excluded (sacct ElapsedRaw)
    suspended_seconds: int
    nodes: int
    gpus: int  # over all nodes (AllocTRES gres/gpu=N)


def parse_duration(text: str) -> int:
    """``[D-]HH:MM:SS`` or ``MM:SS`` (sacct's Suspended, Elapsed) -> seconds; 0 for none.

    Slurm prints INVALID for a time it cannot compute: nothing to bill, not a crash.
    """
    if _missing(text):
        return 0
    try:
        return parse_elapsed(text)
    except DurationError:
        return 0


def runs_command(
    job_ids: Iterable[str] | None = None,
    since: float | None = None,
    all_users: bool = False,
    user: str | None = None,
) -> list[str]:
    argv = [
        "sacct",
        "--noheader",
        "--parsable",
        f"--delimiter={_DELIM}",
        "--allocations",
        "--duplicates",
        "--format=" + ",".join(RUN_FIELDS),
    ]
    ids = list(job_ids or [])
    if ids:
        argv.append("--jobs=" + ",".join(ids))
    if since is not None:
        argv += [f"--starttime={slurm_timestamp_text(since)}", "--endtime=now"]
    if all_users:
        argv.append("--allusers")
    elif user:
        argv.append(f"--user={user}")
    return argv


def parse_runs(output: str) -> list[AcctRun]:
    runs = []
    for values in _records(output, RUN_FIELDS, free="JobName"):
        gpus = _GPU_TRES.search(values["AllocTRES"])
        runs.append(
            AcctRun(
                job_id=values["JobID"],
                name=values["JobName"],
                user=values["User"],
                state=values["State"],
                submit_time=parse_time(values["Submit"]),
                start_time=parse_time(values["Start"]),
                end_time=parse_time(values["End"]),
                active_seconds=_int_or_none(values["ElapsedRaw"]) or 0,
                suspended_seconds=parse_duration(values["Suspended"]),
                nodes=_int_or_none(values["AllocNodes"]) or 0,
                gpus=int(gpus.group(1)) if gpus else 0,
            )
        )
    return runs


# `konduktor store rebuild`: which of a user's jobs konduktor launched. squeue shows what
# slurmctld still remembers (MinJobAge after the end, 300 s by default) with the comment that
# marks konduktor's jobs; the work dir is the marker for jobs launched before the comment was
# (the first release) and for sacct, which has the comment only where the site stores it
# (AccountingStoreFlags=job_comment).
RECOVERY_QUEUE_FIELDS = (*QUEUE_FIELDS, "WorkDir")
HISTORY_FIELDS = (
    "JobID",
    "JobName",
    "User",
    "State",
    "Submit",
    "Start",
    "End",
    "WorkDir",
    "NNodes",
    "AllocTRES",
    "Comment",
)
_TYPED_GPU_TRES = re.compile(r"(?:^|,)gres/gpu:([^=,]+)=(\d+)")


class HistoryRow(NamedTuple):
    """One job as accounting remembers it (its latest run), for ``store rebuild``."""

    job_id: str
    name: str
    user: str
    state: str
    submit_time: float | None
    start_time: float | None
    end_time: float | None
    work_dir: str | None
    nodes: int | None
    gpus: int  # over all nodes (AllocTRES gres/gpu=N); 0 for a job that never started
    gpu_type: str | None  # "h100" where accounting tracks typed GPUs (gres/gpu:h100=N)
    comment: str | None  # only where the site stores job comments

    @property
    def launched_by_konduktor(self) -> bool:
        return (self.comment or "").startswith(KONDUKTOR_COMMENT)

    @property
    def resources_summary(self) -> str | None:
        return resources_in_comment(self.comment)


def queue_of_user_command(user: str) -> list[str]:
    """Every job of ``user`` slurmctld remembers, with its work dir."""
    return squeue_command(user=user, fields=RECOVERY_QUEUE_FIELDS)


def history_command(user: str, since: float) -> list[str]:
    """Every job of ``user`` accounting has from ``since`` on (one row each: its latest run)."""
    return [
        "sacct",
        "--noheader",
        "--parsable",
        f"--delimiter={_DELIM}",
        "--allocations",
        f"--user={user}",
        f"--starttime={slurm_timestamp_text(since)}",
        "--endtime=now",
        "--format=" + ",".join(HISTORY_FIELDS),
    ]


def parse_history(output: str) -> list[HistoryRow]:
    rows = []
    for values in _records(output, HISTORY_FIELDS, free="JobName"):
        tres = values["AllocTRES"]
        gpus = _GPU_TRES.search(tres)
        typed = _TYPED_GPU_TRES.search(tres)
        rows.extend(
            HistoryRow(
                job_id=job_id,
                name=values["JobName"],
                user=values["User"],
                state=values["State"],
                submit_time=parse_time(values["Submit"]),
                start_time=parse_time(values["Start"]),
                end_time=parse_time(values["End"]),
                work_dir=_text_or_none(values["WorkDir"]),
                nodes=_int_or_none(values["NNodes"]),
                gpus=int(gpus.group(1)) if gpus else 0,
                gpu_type=typed.group(1) if typed else None,
                comment=_text_or_none(values["Comment"]),
            )
            for job_id in expand_array_record(values["JobID"])
        )
    return rows


# Hostlists ("node[1-3,7],gpu01", "rack[1-2]-node[01-02]") are expanded by Slurm itself:
# `scontrol show hostnames` is Slurm's own parser (the sbatch template uses it too), so every
# form Slurm prints is read as Slurm means it; a hand parser here once turned
# rack[1-2]-node[01-02] into four wrong names. It parses on the client without asking
# slurmctld and is needed only when a job ended NODE_FAIL. The maintained library for this,
# python-hostlist, is GPL-2.0-or-later: a licence to weigh and a dependency for one call.
# scontrol takes one hostlist, so several are joined with a marker between them; it prints
# the names in the order given (observed on 22.05, 24.11 and 26.05).
_HOSTLIST_END = "konduktor-end-of-hostlist"  # no digits: never merged into a range


def hostnames_command(node_lists: Sequence[str]) -> list[str]:
    """One ``scontrol show hostnames`` for several hostlists."""
    marked = "".join(f"{node_list},{_HOSTLIST_END}," for node_list in node_lists)
    return ["scontrol", "show", "hostnames", marked.rstrip(",")]


def parse_hostnames(output: str, node_lists: Sequence[str]) -> dict[str, list[str]]:
    """``{hostlist: [names]}`` from ``hostnames_command(node_lists)``'s output."""
    expanded: dict[str, list[str]] = {}
    names: list[str] = []
    pending = iter(node_lists)
    for name in output.split():
        if name != _HOSTLIST_END:
            names.append(name)
            continue
        node_list = next(pending, None)
        if node_list is None:
            break
        expanded[node_list], names = names, []
    if len(expanded) != len(set(node_lists)) or names:
        raise SlurmError("scontrol show hostnames", f"unexpected output {output.strip()!r}")
    return expanded


# `konduktor check`: what the cluster offers. The parsers are pure for the recorded fixtures.


class SlurmVersion(NamedTuple):
    """The Slurm release the cluster runs, as sinfo --version says it."""

    text: str  # what sinfo --version printed: "slurm-wlm 22.05.8"
    version: str  # "22.05.8"
    release: tuple[int, int] | None  # (22, 5)


def parse_version(output: str) -> SlurmVersion:
    text = output.strip()
    return SlurmVersion(text, text.split()[-1] if text else "", parse_release(text))


class Partition(NamedTuple):
    """One partition of sinfo's output: whether it is up, its nodes and GRES."""

    name: str
    default: bool  # the partition jobs go to without --partition ("gpu*" in sinfo)
    available: str  # "up", "down", "drain", "inact"
    nodes: int
    gres: str | None  # "gpu:h100:8"; several kinds comma-separated


PARTITION_FIELDS = ("Partition", "Avail", "Nodes", "Gres")
_PARTITION_FORMAT = ("%P", "%a", "%D", "%G")


def partitions_command() -> list[str]:
    return ["sinfo", "--noheader", "--format=" + "".join(f"{f}{_DELIM}" for f in _PARTITION_FORMAT)]


def parse_partitions(output: str) -> list[Partition]:
    """One entry per partition, in sinfo's order. sinfo prints a partition once per kind of
    node in it (nodes with other GRES, or down ones, make a second line): merged here."""
    merged: dict[str, Partition] = {}
    for values in _records(output, PARTITION_FIELDS):
        name = values["Partition"].rstrip("*")
        nodes = _int_or_none(values["Nodes"]) or 0
        gres = _text_or_none(values["Gres"])
        seen = merged.get(name)
        if seen is None:
            merged[name] = Partition(
                name, values["Partition"].endswith("*"), values["Avail"], nodes, gres
            )
            continue
        kinds = [kind for kind in (seen.gres, gres) if kind]
        merged[name] = seen._replace(
            nodes=seen.nodes + nodes,
            gres=",".join(dict.fromkeys(",".join(kinds).split(","))) if kinds else None,
        )
    return list(merged.values())


def admin_level_command(user: str) -> list[str]:
    return ["sacctmgr", "--noheader", "--parsable", "show", "user", user, "format=AdminLevel"]


def parse_admin_level(output: str) -> str:
    """The user's AdminLevel: "Administrator", "Operator" or "None" (also for a user
    accounting does not know)."""
    levels = [values["AdminLevel"] for values in _records(output, ("AdminLevel",), delimiter="|")]
    return levels[0] if levels and levels[0] else "None"


def parse_slurm_user(config: str) -> str | None:
    """The SlurmUser from ``scontrol show config`` ("SlurmUser = slurm(64030)" -> "slurm")."""
    match = re.search(r"^SlurmUser\s*=\s*([^\s(]+)", config, re.MULTILINE)
    return match.group(1) if match else None


# Slurm's default when scontrol does not say (job array indices run 0..MaxArraySize-1).
DEFAULT_MAX_ARRAY_SIZE = 1001


def parse_max_array_size(config: str) -> int:
    """MaxArraySize from ``scontrol show config`` ("MaxArraySize = 1001")."""
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config, re.MULTILINE)
    return int(match.group(1)) if match else DEFAULT_MAX_ARRAY_SIZE


class CheckpointSupport(NamedTuple):
    """How this cluster signals a checkpointing task (from ``scontrol show config``)."""

    proctrack: str  # "proctrack/cgroup": only srun's process is signalled; konduktor passes on
    user_signal_at_preemption: bool  # else a preempted job's ranks get SIGTERM, not --signal

    def describe(self) -> str:
        if self.proctrack == "proctrack/cgroup":
            reach = f"{self.proctrack}: konduktor passes the signal on to the ranks' processes"
        else:
            reach = f"{self.proctrack or 'unknown'}: Slurm signals every process of the ranks"
        preempt = (
            "a preemption with a GraceTime sends the task's checkpoint signal"
            if self.user_signal_at_preemption
            else "a preemption with a GraceTime sends SIGTERM (no preempt_send_user_signal / "
            "send_user_signal): save on SIGTERM too"
        )
        return f"{reach}; {preempt}"


def parse_checkpoint_support(config: str) -> CheckpointSupport:
    """``SlurmctldParameters=preempt_send_user_signal`` (22.05) or ``PreemptParameters=
    send_user_signal`` (23.02 on) make a preemption send the job's own --signal."""
    proctrack = re.search(r"^ProctrackType\s*=\s*(\S+)", config, re.MULTILINE)
    flags = re.findall(r"^(?:SlurmctldParameters|PreemptParameters)\s*=\s*(.*)$", config, re.M)
    user_signal = any(
        word.strip() in ("preempt_send_user_signal", "send_user_signal")
        for line in flags
        for word in line.split(",")
    )
    return CheckpointSupport(proctrack.group(1) if proctrack else "", user_signal)


def accounting_command() -> list[str]:
    """A cheap sacct call: it fails when accounting (slurmdbd) is missing or down."""
    return [
        "sacct",
        "--noheader",
        "--parsable",
        f"--delimiter={_DELIM}",
        "--allocations",
        "--starttime=now-1hours",
        "--format=JobID",
    ]


def node_events_command(nodes: Sequence[str], since: float) -> list[str]:
    return [
        "sacctmgr",
        "--noheader",
        "--parsable",  # "|" after the last field too (sacctmgr has no --delimiter)
        "show",
        "event",
        f"nodes={','.join(nodes)}",
        f"start={slurm_timestamp_text(since)}",
        "format=NodeName,State",
    ]


def parse_node_events(output: str) -> set[str]:
    """The nodes with an event saying they went down or failed."""
    return {
        values["NodeName"]
        for values in _records(output, ("NodeName", "State"), delimiter="|")
        if any(word in values["State"].upper() for word in ("DOWN", "FAIL", "NOT_RESPONDING"))
    }


def parse_sbatch(output: str) -> str:
    """``sbatch --parsable`` prints ``jobid`` or ``jobid;cluster``."""
    first = output.strip().splitlines()[0] if output.strip() else ""
    job_id = first.split(";", 1)[0].strip()
    if not job_id.isdigit():
        raise SlurmError("sbatch", f"unexpected output {output.strip()!r}")
    return job_id


class Slurm:
    """One cluster's Slurm commands, run through a transport."""

    def __init__(self, transport: Transport, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.transport = transport
        self.timeout = timeout

    @property
    def _host(self) -> str | None:
        """The machine Slurm's commands run on, when it is not this one (for messages)."""
        description = self.transport.description
        return description.removeprefix("ssh ") if description.startswith("ssh ") else None

    def _run(self, argv: list[str]) -> CommandResult:
        result = self.transport.run(argv, timeout=self.timeout)
        if not result.ok:
            raise slurm_error(argv[0], result, self._host)
        return result

    def nodes_that_went_down(self, nodes: Iterable[str], since: float) -> set[str]:
        """Which of ``nodes`` went DOWN or FAILED since ``since`` (epoch seconds).

        squeue and sacct only say NODE_FAIL, not which node; the accounting database keeps
        node events durably, so this still answers after the node came back.
        """
        wanted = sorted(set(nodes))
        if not wanted:
            return set()
        return parse_node_events(self._run(node_events_command(wanted, since)).stdout)

    def expand_hostlists(self, node_lists: Iterable[str]) -> dict[str, list[str]]:
        """``{"rack[1-2]-node[01-02]": ["rack1-node01", ...], ...}`` with one scontrol call
        for all of them (see hostnames_command)."""
        wanted = list(dict.fromkeys(node_list for node_list in node_lists if node_list))
        if not wanted:
            return {}
        return parse_hostnames(self._run(hostnames_command(wanted)).stdout, wanted)

    # ---- what `konduktor check` asks. Each raises SlurmError when the command fails.

    def version(self) -> SlurmVersion:
        return parse_version(self._run(["sinfo", "--version"]).stdout)

    def partitions(self) -> list[Partition]:
        return parse_partitions(self._run(partitions_command()).stdout)

    def admin_level(self, user: str) -> str:
        return parse_admin_level(self._run(admin_level_command(user)).stdout)

    def slurm_user(self) -> str | None:
        return parse_slurm_user(self._run(["scontrol", "show", "config"]).stdout)

    def max_array_size(self) -> int:
        """How many elements one job array may have here (the cluster's MaxArraySize)."""
        return parse_max_array_size(self._run(["scontrol", "show", "config"]).stdout)

    def elements_per_array(self) -> int:
        """How many variants launch puts in one job array (indices 0..size-1): the cluster's
        MaxArraySize, or Slurm's default when the controller cannot say."""
        try:
            return max(1, self.max_array_size())
        except (SlurmError, TransportError):
            return DEFAULT_MAX_ARRAY_SIZE

    def checkpoint_support(self) -> CheckpointSupport:
        return parse_checkpoint_support(self._run(["scontrol", "show", "config"]).stdout)

    def check_accounting(self) -> None:
        """Raise SlurmError unless sacct (slurmdbd) answers."""
        self._run(accounting_command())

    def user_names(self, uids: Iterable[int]) -> dict[int, str]:
        """Account names on the cluster for uids ("CANCELLED by 1001" -> "kdtest").

        Asked of the cluster, not this machine: over SSH the local uids mean nothing.
        """
        wanted = sorted({str(uid) for uid in uids})
        if not wanted:
            return {}
        result = self.transport.run(["getent", "passwd", *wanted], timeout=self.timeout)
        names = {}
        for line in result.stdout.splitlines():  # exit 2 when some uid is unknown: keep the rest
            fields = line.split(":")
            if len(fields) > 2 and fields[2].isdigit():
                names[int(fields[2])] = fields[0]
        return names

    def ping(self, timeout: float | None = None) -> None:
        """Raise SlurmError unless slurmctld answers (for callers with no job to ask about)."""
        result = self.transport.run(["scontrol", "ping"], timeout=timeout or self.timeout)
        if not result.ok or " is UP" not in result.stdout:
            error = slurm_error("scontrol ping", result, self._host)
            if isinstance(error, AuthenticationFailed):  # it says DOWN, and the controller is not
                raise error
            if self._rate_limited():  # so it says when this user is throttled
                raise RateLimited(
                    "scontrol ping",
                    "slurmctld is holding this user's requests back for a moment (its rate "
                    "limit); they are answered after a pause",
                )
            down = result.stdout.strip().splitlines()
            raise SlurmError("scontrol ping", down[0] if down else _first_line(result))

    def _rate_limited(self) -> bool:
        """Whether slurmctld is throttling this user, which `scontrol ping` cannot tell from
        a controller that is down: a squeue -v of RATE_PROBE_SECONDS says it at once, where
        against a dead controller it says nothing in that time."""
        probe = ["timeout", str(RATE_PROBE_SECONDS), "squeue", "-v", "--noheader", "--jobs=1"]
        try:
            result = self.transport.run(probe, timeout=RATE_PROBE_SECONDS + 5)
        except TransportError:
            return False
        return bool(_RATE_LIMITED.search(result.stderr))

    def submit(self, script_path: str) -> str:
        return parse_sbatch(self._run(["sbatch", "--parsable", script_path]).stdout)

    def queue(self, job_ids: Iterable[str]) -> dict[str, QueueRow]:
        """squeue's row of each job still queued or recently ended; an element of an array
        is asked for by the array's id (see with_array_records)."""
        asked = list(job_ids)
        if not asked:
            return {}
        ids = list(dict.fromkeys(array_base(job_id) for job_id in asked))
        if len(ids) > IDS_PER_CALL:
            # Many jobs: ask for all of the user's jobs and keep ours, rather than a command
            # line that grows with the number of jobs (Linux caps one argument at 128 KiB).
            result = self._ask_queue(squeue_command(user=self.transport.user))
            if not result.ok:
                raise slurm_error("squeue", result, self._host)
            return with_array_records(parse_squeue(result.stdout), asked)
        result = self._ask_queue(squeue_command(ids))
        # When every id asked for has been purged from slurmctld's memory, squeue fails with
        # "Invalid job id specified" instead of printing nothing: that means "none queued".
        if not result.ok and "Invalid job id" in result.stderr:
            return {}
        if not result.ok:
            raise slurm_error("squeue", result, self._host)
        return with_array_records(parse_squeue(result.stdout), asked)

    def find_by_name(self, name: str, user: str) -> str | None:
        """The id of the user's job called ``name`` that slurmctld knows, if any (a job name
        konduktor gives is unique: it finds a submission whose answer was lost)."""
        ids = self.ids_by_name(name, user)
        return ids[0] if ids else None

    def ids_by_name(self, name: str, user: str) -> list[str]:
        """The ids of every job of the user called ``name`` that slurmctld knows (an array's
        elements as "889_0", ...), in squeue's order."""
        result = self._ask_queue(squeue_command(user=user, name=name))
        if not result.ok:
            raise slurm_error("squeue", result, self._host)
        return [row.job_id for row in parse_squeue(result.stdout).values() if row.name == name]

    def queue_of_user(self, user: str) -> dict[str, QueueRow]:
        """Every job of ``user`` slurmctld still remembers, with its work dir (``store
        rebuild``)."""
        return parse_squeue(
            self._run(queue_of_user_command(user)).stdout, fields=RECOVERY_QUEUE_FIELDS
        )

    def history(self, user: str, since: float) -> list[HistoryRow]:
        """Every job of ``user`` in accounting since ``since`` (``store rebuild``)."""
        return parse_history(self._run(history_command(user, since)).stdout)

    def queue_all_users(self) -> dict[str, QueueRow]:
        """Every job slurmctld still remembers, of every user (for ``status --all-users``)."""
        result = self._ask_queue(squeue_command())
        if not result.ok:
            raise slurm_error("squeue", result, self._host)
        return parse_squeue(result.stdout)

    def _ask_queue(self, argv: list[str]) -> CommandResult:
        """squeue, told within seconds when slurmctld is gone.

        squeue retries a dead controller for its MessageTimeout (10-20 s) before it says so;
        a status must say "stale" sooner. So squeue gets a short first try; if that runs out,
        ``scontrol ping`` (which knows at once) decides: a controller that is DOWN or does
        not answer means stale now, a live but slow one gets the whole timeout.
        """
        first = min(self.timeout, QUEUE_FIRST_TRY_SECONDS)
        try:
            return self.transport.run(argv, timeout=first)
        except CommandTimeout:
            if first >= self.timeout:
                raise
        # Throttled but up: squeue gets the whole timeout, its own pauses included.
        with contextlib.suppress(RateLimited):
            self.ping(timeout=PING_TIMEOUT_SECONDS)
        return self.transport.run(argv, timeout=self.timeout)

    def accounting(self, job_ids: Iterable[str]) -> dict[str, AcctRow]:
        """Accounting's record of each job; an element of an array is asked for by the
        array's id (see expand_array_record), so the answer may hold its siblings too."""
        asked = list(job_ids)
        wanted = list(dict.fromkeys(array_base(job_id) for job_id in asked))
        rows: dict[str, AcctRow] = {}
        for chunk in _chunks(wanted):
            rows.update(parse_sacct(self._run(sacct_command(chunk)).stdout))
        return with_array_records(rows, asked)

    def runs(
        self,
        job_ids: Iterable[str] = (),
        since: float | None = None,
        all_users: bool = False,
        user: str | None = None,
    ) -> list[AcctRun]:
        """Every run of the given jobs, or of every job since ``since`` (of ``user``, or of
        every user)."""
        ids = list(job_ids)
        if not ids:
            if since is None:
                return []
            return parse_runs(self._run(runs_command((), since, all_users, user)).stdout)
        runs: list[AcctRun] = []
        for chunk in _chunks(ids):
            runs += parse_runs(self._run(runs_command(chunk, since, all_users)).stdout)
        return runs

    def cancel(self, job_ids: Iterable[str]) -> None:
        """Cancel the jobs: a job array's elements as one expression, at most IDS_PER_CALL
        words a command (a `down` of a 20,000-variant sweep is one short scancel)."""
        for chunk in _chunks(array_expressions(job_ids)):
            self._run(["scancel", *chunk])

    def hold_many(self, job_ids: Sequence[str]) -> set[str]:
        """``scontrol hold`` for many jobs, a comma-separated list of IDS_PER_CALL per command
        rather than one command each. Returns the ids of the lists Slurm took whole."""
        return self._control_many("hold", job_ids)

    def release_many(self, job_ids: Sequence[str]) -> set[str]:
        """``scontrol release`` for many jobs, as ``hold_many``."""
        return self._control_many("release", job_ids)

    def _control_many(self, verb: str, job_ids: Sequence[str]) -> set[str]:
        # scontrol acts on every job of a list and names each it could not act on, but in
        # words that change between releases; so a list with any failure (a job that ended
        # meanwhile, another user's) is not taken apart here: its jobs are left out of the
        # result, and the caller acts on them one at a time, saying which failed and why.
        # Holding or releasing a job twice is harmless (22.05: exit 0, nothing changes).
        taken: set[str] = set()
        for chunk in _chunks(list(job_ids)):
            if self.transport.run(["scontrol", verb, ",".join(chunk)], timeout=self.timeout).ok:
                taken.update(chunk)
        return taken

    # ---- stop / start of one job (hold_many and release_many above take pending jobs by
    # the list). One job per call: Slurm reports a failure for the whole list otherwise,
    # and the caller must say which job could not be stopped.

    def suspend(self, job_id: str) -> None:
        """Freeze a running job in place (operators and root only; raises PermissionDenied)."""
        self._control(["scontrol", "suspend", job_id])

    def resume(self, job_id: str) -> None:
        self._control(["scontrol", "resume", job_id])

    def requeue_hold(self, job_id: str) -> None:
        """Kill the running job, put it back in the queue and hold it (GPUs are released)."""
        self._control(["scontrol", "requeuehold", job_id])

    def hold(self, job_id: str) -> None:
        """Keep a pending job from starting (a user hold: priority 0, reason JobHeldUser)."""
        self._control(["scontrol", "hold", job_id])

    def release(self, job_id: str, *, now: bool = False) -> None:
        """Lift a hold; with ``now``, also make the job eligible at once.

        A requeued job gets a begin time in the future (Slurm's requeue delay, up to ~2
        minutes); its owner may set it to now. Not done for a plain hold, which would
        override a begin time the user asked for.
        """
        self._control(["scontrol", "release", job_id])
        if now:
            self._control(["scontrol", "update", f"jobid={job_id}", "starttime=now"])

    def signal(self, job_id: str, signal: str) -> None:
        """Send ``signal`` to the batch shell and every step of the job (all nodes)."""
        self._control(["scancel", "--full", f"--signal={signal}", job_id])

    def signal_steps(self, job_id: str, signal: str) -> None:
        """Send ``signal`` to the job's steps on every node (the ranks), not to the batch
        shell. Observed on 22.05: with ``--full`` the batch step's ``srun`` gets it too, and
        srun ends its step on SIGHUP ("forcing job termination"), killing the ranks."""
        self._control(["scancel", f"--signal={signal}", job_id])

    def _control(self, argv: list[str]) -> None:
        result = self.transport.run(argv, timeout=self.timeout)
        if result.ok:
            return
        error = slurm_error(" ".join(argv[:2]), result, self._host)
        if not isinstance(error, AuthenticationFailed) and _PERMISSION_DENIED.search(
            error.slurm_message
        ):
            raise PermissionDenied(error.command, error.slurm_message)
        raise error
