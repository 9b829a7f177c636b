"""A transport that answers Slurm's commands with recorded real output, for workflow tests.

Like submitit's ``MockedSubprocess``, the fake sits at the process boundary: the service
layer, the Slurm adapter and the parsers run unchanged; only the commands' answers are
replayed. Each answer is a line recorded from Slurm 22.05 (tests/fixtures/slurm, see
record.py) with the job id, name and comment put in; the scenario says which recorded state
each job is in. Everything that is not a Slurm command (mkdir, grep, test, rsync, files) runs
for real on this machine, in the test's temporary directory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from konduktor_slurm.transport import CommandResult, CommandTimeout, LocalTransport

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"
SEP = "\x1f"


def _records(name: str) -> list[list[str]]:
    """The recorded lines of a fixture, split into fields (records end with SEP + newline)."""
    text = (FIXTURES / name).read_text()
    return [record.split(SEP) for record in text.split(f"{SEP}\n") if record.strip()]


def _recorded_error(name: str) -> tuple[int, str]:
    code, _, stderr = (FIXTURES / name).read_text().partition("\n")
    return int(code.split()[1]), stderr


# Recorded squeue rows (QUEUE_FIELDS order) and sacct rows (ACCT_FIELDS order), by state.
_SQUEUE = {row[1]: row for row in _records("squeue-compat-22.05.txt")}
_SACCT = {}
for _row in _records("sacct-compat-22.05.txt"):
    if "." not in _row[0]:
        _SACCT.setdefault(_row[1].split()[0], _row)
# One recorded row of `sacct --duplicates` (RUN_FIELDS order), for every run of a job.
_RUN = next(row for row in _records("sacct-runs-compat-22.05.txt") if row[3] == "COMPLETED")


@dataclass
class FakeJob:
    job_id: str
    name: str
    comment: str = "konduktor;resources=1x(-)"
    queue: str | None = "PENDING"  # squeue's state; None: slurmctld forgot the job
    reason: str = "Resources"
    priority: str = "4294901729"
    acct: str | None = None  # sacct's state once the job has ended ("COMPLETED", ...)
    exit_code: str = "0:0"
    user: str = "kdtest"
    runs: tuple[str, ...] = ()  # states of earlier runs, oldest first (a requeued job)
    node_list: str = "node1"
    submit_time: str | None = None  # squeue's SubmitTime ("2026-11-30T18:00:00"); else recorded


def _expand_array_expression(word: str) -> list[str]:
    """Slurm's ``812_[0-2,5]`` -> ``812_0 812_1 812_2 812_5``; any other word as it is."""
    match = re.fullmatch(r"([0-9]+)_\[([0-9,-]+)\]", word)
    if match is None:
        return [word]
    ids = []
    for run in match.group(2).split(","):
        first, _, last = run.partition("-")
        ids += [f"{match.group(1)}_{index}" for index in range(int(first), int(last or first) + 1)]
    return ids


class FakeSlurm(LocalTransport):
    """Slurm's commands answered from the recordings; the rest run locally."""

    description = "fake"

    def __init__(self, user: str = "kdtest", operator: bool = False) -> None:
        super().__init__()
        self.jobs: dict[str, FakeJob] = {}
        self.calls: list[list[str]] = []
        self.timeouts: list[float] = []  # the timeouts of the calls that ran out
        self.scripts: list[str] = []  # every sbatch script submitted
        self.unreachable = False
        # slurmctld: "up"; "down" (squeue retries until it times out, ping says DOWN);
        # "hung" (nothing answers); "slow" (answers after 5 s); "throttled" (the per-user
        # rate limit, as 26.05 showed it: squeue answers after its own pauses, beyond a
        # short timeout, and says so with -v; ping says DOWN at once).
        self.controller = "up"
        self.accounting_down = False  # slurmdbd down: sacct fails, squeue answers
        # This machine's munge: "up"; "down" (munged stopped here: every command fails as
        # recorded, ping says DOWN); "other key" (slurmctld closes the connection).
        self.munge = "up"
        self.max_array_size: int | None = None  # the cluster's MaxArraySize (else recorded)
        self.gpus_per_node = 8  # what each node has: a job asking more is refused, as recorded
        self.node_events = True  # False: slurmdbd has not recorded the node's DOWN event yet
        self.operator = operator
        self._user = user
        self._next_id = 100
        # What the job does when its ranks get a signal (scancel --signal without --full).
        self.on_rank_signal: Callable[[FakeJob, str], None] | None = None

    @property
    def user(self) -> str:
        return self._user

    def slurm_calls(self, command: str) -> list[list[str]]:
        return [argv for argv in self.calls if argv[0] == command]

    def add(self, job: FakeJob) -> FakeJob:
        self.jobs[job.job_id] = job
        return job

    # ---- the boundary ---------------------------------------------------------------

    def run(
        self, argv: list[str], *, timeout: float = 30.0, input_text: str | None = None
    ) -> CommandResult:
        handler = getattr(self, f"_{argv[0]}", None)
        if handler is None:
            return super().run(argv, timeout=timeout, input_text=input_text)
        self.calls.append(list(argv))
        asks_controller = argv[0] in ("squeue", "scontrol")
        if asks_controller and (
            self.controller == "hung"
            or (self.controller == "down" and argv[0] == "squeue")
            or (self.controller in ("slow", "throttled") and argv[0] == "squeue" and timeout < 5)
        ):
            self.timeouts.append(timeout)
            raise CommandTimeout(f"{argv[0]} did not answer within {timeout:g}s")
        if self.munge != "up" and argv[:3] != ["scontrol", "show", "hostnames"]:
            return CommandResult(tuple(argv), *self._munge_failure(argv))
        code, out, err = handler(argv)
        return CommandResult(tuple(argv), code, out, err)

    def _munge_failure(self, argv: list[str]) -> tuple[int, str, str]:
        """What Slurm 22.05 printed with munged stopped, or another munge key, here."""
        command = "scontrol-ping" if argv[:2] == ["scontrol", "ping"] else argv[0]
        out = "Slurmctld(primary) at localhost is DOWN\n" if command == "scontrol-ping" else ""
        if self.munge == "down" and (FIXTURES / f"munge-down-{command}-22.05.txt").exists():
            code, err = _recorded_error(f"munge-down-{command}-22.05.txt")
        elif self.munge == "down":  # not recorded: squeue's words under this command's name
            code, err = _recorded_error("munge-down-squeue-22.05.txt")
            err = err.replace("squeue:", f"{argv[0]}:")
        elif command in ("squeue", "sbatch"):
            code, err = _recorded_error(f"munge-key-mismatch-{command}-22.05.txt")
        else:
            code, err = 1, f"{argv[0]}: error: Zero Bytes were transmitted or received\n"
        return code, out, err

    def _ids(self, argv: list[str]) -> list[str]:
        for arg in argv:
            if arg.startswith("--jobs="):
                return arg.removeprefix("--jobs=").split(",")
        return []

    def _squeue(self, argv: list[str]) -> tuple[int, str, str]:
        if self.unreachable:
            code, err = _recorded_error("squeue-unreachable-22.05.txt")
            return code, "", err
        ids = set(self._ids(argv))
        # As squeue does, an array's id answers for each of its elements ("889" -> "889_0"...).
        wanted = [
            job
            for job_id, job in self.jobs.items()
            if not ids or job_id in ids or job_id.partition("_")[0] in ids
        ]
        rows = [job for job in wanted if job.queue is not None]
        if ids and not rows:
            code, err = _recorded_error("squeue-invalid-id-22.05.txt")
            return code, "", err
        return 0, "".join(self._squeue_row(job) for job in rows), ""

    def _squeue_row(self, job: FakeJob) -> str:
        fields = list(_SQUEUE["RUNNING" if job.queue in ("SUSPENDED", "COMPLETING") else job.queue])
        fields[0], fields[1], fields[2] = job.job_id, job.queue, job.reason
        fields[3] = "0" if job.reason.startswith(("JobHeld", "job requeued")) else job.priority
        fields[11], fields[12], fields[13] = job.user, job.name, job.comment
        fields[4] = str(len(job.runs))  # RestartCnt
        if job.submit_time is not None:
            fields[7] = job.submit_time
        fields[6] = job.node_list if job.queue in ("RUNNING", "SUSPENDED", "COMPLETING") else ""
        return SEP.join(fields) + f"{SEP}\n"  # every record ends with the separator

    def _sacct(self, argv: list[str]) -> tuple[int, str, str]:
        if self.unreachable or self.accounting_down:
            return 1, "", "sacct: error: Problem talking to the database: Connection refused\n"
        if "--duplicates" in argv:
            return 0, self._runs(argv), ""
        out = []
        asked = set(self._ids(argv))
        # As sacct does, an array's id answers for each of its elements ("889" -> "889_0"...).
        for job_id, job in self.jobs.items():
            if job_id not in asked and job_id.partition("_")[0] not in asked:
                continue
            if job.acct is None:
                continue
            fields = list(_SACCT[job.acct.split()[0]])
            fields[0], fields[1], fields[2], fields[7] = job_id, job.acct, job.exit_code, job.user
            out.append(SEP.join(fields) + f"{SEP}\n")
        return 0, "".join(out), ""

    def _runs(self, argv: list[str]) -> str:
        out = []
        ids = self._ids(argv)
        if not ids:  # by time window (--starttime): every job's runs, of --user if given
            user = next((a.removeprefix("--user=") for a in argv if a.startswith("--user=")), None)
            ids = [i for i, job in self.jobs.items() if user is None or job.user == user]
        for job_id in ids:
            job = self.jobs.get(job_id)
            for state in job.runs if job else ():
                fields = list(_RUN)
                fields[0], fields[1], fields[2], fields[3] = job_id, job.name, job.user, state
                out.append(SEP.join(fields) + f"{SEP}\n")
        return "".join(out)

    def _sbatch(self, argv: list[str]) -> tuple[int, str, str]:
        script = Path(argv[-1]).read_text()
        gres = re.search(r"(?m)^#SBATCH --gres=gpu:\w+:(\d+)$", script)
        if gres and int(gres.group(1)) > self.gpus_per_node:
            code, err = _recorded_error("sbatch-cannot-fit-22.05.txt")
            return code, "", err
        name = next(line.split("=", 1)[1] for line in script.splitlines() if "--job-name=" in line)
        job_id = str(self._next_id)
        self._next_id += 1
        array = re.search(r"(?m)^#SBATCH --array=0-(\d+)$", script)
        if array is None:
            self.add(FakeJob(job_id, name, user=self._user))
        else:  # one element per index, as squeue --array shows them
            for index in range(int(array.group(1)) + 1):
                self.add(FakeJob(f"{job_id}_{index}", name, user=self._user))
        self.scripts.append(script)
        return 0, f"{job_id}\n", ""

    def _scontrol(self, argv: list[str]) -> tuple[int, str, str]:
        verb, target = argv[1], argv[2] if len(argv) > 2 else ""
        if verb == "show" and target == "hostnames":  # Slurm's client-side expansion
            result = LocalTransport().run(argv)
            return result.returncode, result.stdout, result.stderr
        if verb == "show" and target == "config":
            config = (FIXTURES / "scontrol-config-22.05.txt").read_text()
            if self.max_array_size is not None:
                config = re.sub(
                    r"(?m)^MaxArraySize\s*=.*$", f"MaxArraySize = {self.max_array_size}", config
                )
            return 0, config, ""
        if verb == "ping":
            if self.unreachable or self.controller in ("down", "throttled"):
                return 1, "Slurmctld(primary) at localhost is DOWN\n", ""
            return 0, "Slurmctld(primary) at localhost is UP\n", ""
        if verb in ("hold", "release") and "," in target:  # a list: each job, each failure
            results = [self._scontrol([*argv[:2], one]) for one in target.split(",")]
            errors = "".join(err for _, _, err in results)
            return (1 if errors else 0), "", errors
        job = self.jobs.get(target.removeprefix("jobid="))
        if verb in ("suspend", "resume") and not self.operator:
            code, err = _recorded_error("scontrol-suspend-denied-22.05.txt")
            return code, "", err.replace("JOB1", target)
        if job is None:
            return 1, "", f"Invalid job id specified for job {target}\n"
        if verb == "suspend":
            job.queue = "SUSPENDED"
        elif verb == "resume":
            job.queue = "RUNNING"
        elif verb == "requeuehold":
            job.queue, job.reason = "PENDING", "job requeued in held state"
        elif verb == "hold":
            job.reason = "JobHeldUser"
        elif verb == "release":
            job.reason = "None"
        return 0, "", ""

    def _timeout(self, argv: list[str]) -> tuple[int, str, str]:
        """coreutils' ``timeout N COMMAND...`` (the rate-limit probe): the command's answer,
        or 124 and what it said before it was killed."""
        inner = argv[2:]
        if self.controller == "throttled" and inner[0] == "squeue":
            return 124, "", "squeue: RPC rate limited 1 time(s). Sleeping then trying again.\n"
        try:
            result = self.run(inner, timeout=float(argv[1]))
        except CommandTimeout:
            return 124, "", ""
        return result.returncode, result.stdout, result.stderr

    def _scancel(self, argv: list[str]) -> tuple[int, str, str]:
        signal = next((a.removeprefix("--signal=") for a in argv if a.startswith("--signal=")), "")
        if signal and "--full" not in argv:  # to the steps only: the ranks get it
            job = self.jobs.get(argv[-1])
            if job is None:
                error = f"Kill job error on job id {argv[-1]}: Invalid job id specified"
                return 1, "", f"scancel: error: {error}\n"
            if self.on_rank_signal is not None:
                self.on_rank_signal(job, signal)
            return 0, "", ""
        for job_id in (one for word in argv[1:] for one in _expand_array_expression(word)):
            job = self.jobs[job_id]
            job.queue, job.reason = "CANCELLED", "None"
            job.acct = f"CANCELLED by {1001 if self._user == 'kdtest' else 0}"
        return 0, "", ""

    def _sacctmgr(self, argv: list[str]) -> tuple[int, str, str]:
        if "event" in argv:
            if not self.node_events:
                return 0, "", ""
            return 0, (FIXTURES / "sacctmgr-events-22.05.txt").read_text(), ""
        level = "root" if self.operator else "kdtest"
        return 0, (FIXTURES / f"sacctmgr-adminlevel-{level}-22.05.txt").read_text(), ""

    def _sinfo(self, argv: list[str]) -> tuple[int, str, str]:
        fixture = "sinfo-version" if "--version" in argv else "sinfo-partitions"
        return 0, (FIXTURES / f"{fixture}-22.05.txt").read_text(), ""

    def _id(self, argv: list[str]) -> tuple[int, str, str]:
        return 0, f"{self._user}\n", ""

    def _getent(self, argv: list[str]) -> tuple[int, str, str]:
        return 0, "kdtest:x:1001:1001::/home/kdtest:/bin/bash\n", ""
