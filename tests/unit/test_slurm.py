"""Parsing of real Slurm output (22.05, 24.11 and 26.05, recorded live: tests/fixtures/slurm)."""

from __future__ import annotations

from pathlib import Path

import pytest

from konduktor_slurm.slurm import (
    QUEUE_FIELDS,
    CheckpointSupport,
    Slurm,
    SlurmError,
    array_expressions,
    expand_array_record,
    owners_may_suspend,
    parse_checkpoint_support,
    parse_release,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
    parse_time,
    sacct_command,
    squeue_command,
    with_array_records,
)
from konduktor_slurm.transport import CommandResult

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"


def test_squeue_rows_from_real_output() -> None:
    rows = parse_squeue((FIXTURES / "squeue-22.05.txt").read_text())
    assert set(rows) == {"32", "33", "34", "35", "36"}
    assert rows["32"].state == "COMPLETED" and rows["32"].reason is None
    assert rows["33"].state == "FAILED" and rows["33"].reason == "NonZeroExitCode"
    running = rows["34"]
    assert running.state == "RUNNING"
    assert running.node_list == "node[1-2]"
    assert running.end_time is None  # "NONE" while running
    assert running.start_time == parse_time("2026-11-28T17:59:57")
    held = rows["35"]
    assert (held.state, held.reason, held.priority) == ("PENDING", "JobHeldUser", 0)
    assert held.node_list is None and held.start_time is None
    assert rows["36"].state == "CANCELLED"
    assert all(row.requeueable and row.restarts == 0 for row in rows.values())
    assert rows["32"].user == "root" and rows["32"].name == "wrap"


def test_squeue_konduktor_comment_resources_and_attempt() -> None:
    rows = parse_squeue((FIXTURES / "squeue-22.05.txt").read_text())
    retrying = rows["34"]
    assert retrying.launched_by_konduktor
    assert retrying.attempt == (2, 3)
    assert (retrying.num_nodes, retrying.cpus_per_task, retrying.min_memory) == (2, 2, "1G")
    assert retrying.tres_per_node == "gres:gpu:h100:8"
    assert rows["32"].launched_by_konduktor and rows["32"].attempt is None
    plain = rows["35"]  # submitted without konduktor: comment "(null)"
    assert plain.comment is None and not plain.launched_by_konduktor
    assert plain.tres_per_node is None  # "N/A"


def test_squeue_ignores_truncated_lines() -> None:
    assert parse_squeue("7\x1fRUNNING\x1f\n\n") == {}


def test_sacct_rows_from_real_output() -> None:
    rows = parse_sacct((FIXTURES / "sacct-22.05.txt").read_text())
    assert rows["32"].state == "COMPLETED" and rows["32"].exit_code == "0:0"
    assert rows["33"].state == "FAILED" and rows["33"].exit_code == "3:0"
    assert rows["36"].state == "CANCELLED by 0"
    pending = rows["35"]
    assert pending.node_list is None  # "None assigned"
    assert pending.time_limit is None  # "Partition_Limit"
    assert pending.start_time is None  # "Unknown"
    assert rows["34"].end_time is None


def test_sacct_keeps_the_latest_run_of_a_requeued_job() -> None:
    output = (
        "9\x1fPREEMPTED\x1f0:0\x1f2026-11-28T10:00:00\x1f2026-11-28T10:01:00\x1fnode1"
        "\x1fUNLIMITED\x1fbob\x1f\n"
        "9\x1fRUNNING\x1f0:0\x1f2026-11-28T10:03:00\x1fUnknown\x1fnode2\x1fUNLIMITED\x1fbob\x1f\n"
    )
    assert parse_sacct(output)["9"].state == "RUNNING"


@pytest.mark.parametrize("release", ["22.05", "24.11", "26.05"])
def test_elements_of_a_sweep_cancelled_before_they_ran_each_have_a_record(release: str) -> None:
    # A three- (five-) element array cancelled while pending, element 1 held and released
    # first: accounting keeps 0, 2.. in the array's one record "900_[0,2-4]".
    rows = parse_sacct((FIXTURES / f"sacct-array-{release}.txt").read_text())
    last = 2 if release == "22.05" else 4
    assert set(rows) == {f"900_{index}" for index in range(last + 1)}
    assert all(row.state == "CANCELLED by 0" for row in rows.values())
    assert rows["900_0"].job_id == "900_0" and rows["900_0"].node_list is None


@pytest.mark.parametrize(
    ("record", "elements"),
    [
        ("7_[0,2]", ["7_0", "7_2"]),
        ("7_[3-5%2]", ["7_3", "7_4", "7_5"]),
        ("7_[0-6:3]", ["7_0", "7_3", "7_6"]),
        ("7_4", ["7_4"]),
        ("7", ["7"]),
        ("7_[x]", ["7_[x]"]),
    ],
)
def test_array_records_expand_to_their_elements(record: str, elements: list[str]) -> None:
    assert expand_array_record(record) == elements


def test_an_element_record_of_its_own_wins_over_the_arrays_record() -> None:
    own = (
        "7_1\x1fRUNNING\x1f0:0\x1f2026-11-28T10:00:00\x1fUnknown\x1fnode1\x1fUNLIMITED\x1fbob\x1f\n"
    )
    meta = (
        "7_[0-2]\x1fPENDING\x1f0:0\x1fUnknown\x1fUnknown\x1fNone assigned\x1fUNLIMITED\x1fbob\x1f\n"
    )
    for output in (own + meta, meta + own):
        rows = parse_sacct(output)
        assert rows["7_1"].state == "RUNNING" and rows["7_0"].state == "PENDING", output


def test_elements_cancelled_one_by_one_take_the_arrays_plain_record() -> None:
    # 22.05, after `scancel 901_0 901_1 901_2` of a waiting sweep (901_1 held and released
    # first): accounting has 901_1 and a plain "901" with no element listed.
    rows = parse_sacct((FIXTURES / "sacct-array-emptied-22.05.txt").read_text())
    assert set(rows) == {"901", "901_1"}
    found = with_array_records(rows, ["901_0", "901_1", "901_2", "77_0"])
    assert found["901_0"].state == found["901_2"].state == "CANCELLED by 0"
    assert found["901_0"].job_id == "901_0"
    assert "77_0" not in found  # no record at all stays unknown
    # A plain row that ran is one element's run (the last element reuses the array's
    # record): the elements without rows are not given its state.
    ran = {"901": rows["901"]._replace(state="FAILED", node_list="node1")}
    assert with_array_records(ran, ["901_0"]) == {}


def test_elements_are_asked_for_by_their_arrays_id() -> None:
    asked: list[list[str]] = []

    class Recorder:
        def run(self, argv: list[str], timeout: float | None = None) -> CommandResult:
            asked.append(argv)
            return CommandResult(tuple(argv), 0, "", "")

    Slurm(Recorder()).accounting(["900_0", "900_7", "41"])  # type: ignore[arg-type]
    assert asked[0][-1] == "--jobs=900,41"


@pytest.mark.parametrize(("output", "job_id"), [("42\n", "42"), ("42;cluster\n", "42")])
def test_sbatch_parsable(output: str, job_id: str) -> None:
    assert parse_sbatch(output) == job_id


def test_sbatch_unexpected_output_is_an_error() -> None:
    with pytest.raises(SlurmError, match="unexpected output"):
        parse_sbatch("Submitted batch job 42\n")


def test_one_command_whatever_the_number_of_jobs() -> None:
    ids = [str(n) for n in range(200)]
    squeue = squeue_command(ids)
    assert squeue[0] == "squeue" and "--states=all" in squeue
    assert squeue[-1] == "--jobs=" + ",".join(ids)
    assert all(f"{name}:\x1f" in squeue[4] for name in QUEUE_FIELDS)
    assert "--array" in squeue  # one line per job-array element
    sacct = sacct_command(ids)
    assert sacct[0] == "sacct" and "--parsable" in sacct and "--delimiter=\x1f" in sacct
    assert sacct[-1] == "--jobs=" + ",".join(ids)


def test_sacct_steps_reveal_an_oom_kill_the_allocation_hides() -> None:
    rows = parse_sacct((FIXTURES / "sacct-oom-22.05.txt").read_text())
    assert set(rows) == {"1658"}
    job = rows["1658"]
    assert (job.state, job.exit_code) == ("FAILED", "1:0")
    assert "OUT_OF_MEMORY" in job.step_states
    assert job.out_of_memory


def test_resources_and_attempt_from_a_konduktor_comment() -> None:
    fields = dict.fromkeys(QUEUE_FIELDS, "")
    fields.update(JobArrayID="7", State="RUNNING", Requeue="1", UserName="bob", Name="x-1a2b")
    fields["Comment"] = "konduktor;resources=2x(8CPU,32GiMEM,H100:8);attempt=2/3"
    row = parse_squeue("\x1f".join(fields[name] for name in QUEUE_FIELDS) + "\x1f\n")["7"]
    assert row.launched_by_konduktor
    assert row.resources_summary == "2x(8CPU, 32GiMEM, H100:8)"
    assert row.attempt == (2, 3)


# ---- the same jobs on every tested release (tests/fixtures/slurm/record.py recorded them)
RELEASES = ("22.05", "24.11", "26.05")


@pytest.mark.parametrize("release", RELEASES)
def test_every_release_parses_to_the_same_jobs(release: str) -> None:
    queue = parse_squeue((FIXTURES / f"squeue-compat-{release}.txt").read_text())
    acct = parse_sacct((FIXTURES / f"sacct-compat-{release}.txt").read_text())
    assert {job: row.state for job, row in queue.items()} == {
        "JOB1": "COMPLETED",
        "JOB2": "FAILED",
        "JOB3": "RUNNING",
        "JOB4": "PENDING",
        "JOB5": "CANCELLED",
        "JOB6": "COMPLETED",  # named a|b
        "JOB7": "FAILED",  # named with the unit separator and a newline
    }
    running = queue["JOB3"]
    assert (running.node_list, running.num_nodes, running.cpus_per_task) == ("node[1-2]", 2, 2)
    assert running.attempt == (2, 3) and running.launched_by_konduktor
    assert running.resources_summary == "2x(2CPU, 1GiMEM, H100:8)"
    assert running.gpu_gres == ("h100", 8)
    assert running.priority and running.priority > 0  # 22.05: ~4.29e9, 24.11+: 1
    held = queue["JOB4"]
    assert (held.reason, held.priority, held.start_time) == ("JobHeldUser", 0, None)
    assert queue["JOB2"].reason == "NonZeroExitCode"
    assert {job: (row.state, row.exit_code) for job, row in acct.items()} == {
        "JOB1": ("COMPLETED", "0:0"),
        "JOB2": ("FAILED", "3:0"),
        "JOB3": ("RUNNING", "0:0"),
        "JOB4": ("PENDING", "0:0"),
        "JOB5": ("CANCELLED by 0", "0:0"),
        "JOB6": ("COMPLETED", "0:0"),
        "JOB7": ("FAILED", "4:0"),
    }
    assert acct["JOB4"].node_list is None and acct["JOB4"].time_limit is None
    assert acct["JOB5"].step_states == ("CANCELLED",)


def test_tres_per_node_is_spelled_differently_from_24_11_on() -> None:
    old = parse_squeue((FIXTURES / "squeue-compat-22.05.txt").read_text())["JOB3"]
    new = parse_squeue((FIXTURES / "squeue-compat-24.11.txt").read_text())["JOB3"]
    assert (old.tres_per_node, new.tres_per_node) == ("gres:gpu:h100:8", "gres/gpu:h100:8")
    assert old.gpu_gres == new.gpu_gres == ("h100", 8)


@pytest.mark.parametrize(
    ("version", "release", "owners_suspend"),
    [
        ("slurm-wlm 22.05.8", (22, 5), False),
        ("slurm 24.11.5", (24, 11), False),
        ("slurm-wlm 26.05.5", (26, 5), True),
        ("slurm 27.11.0", (27, 11), True),
        ("something else", None, False),
    ],
)
def test_job_owners_may_suspend_from_26_05_on(
    version: str, release: tuple[int, int] | None, owners_suspend: bool
) -> None:
    assert parse_release(version) == release
    assert owners_may_suspend(release) is owners_suspend


@pytest.mark.parametrize(
    ("release", "proctrack"),
    [
        ("22.05", "proctrack/cgroup"),
        ("24.11", "proctrack/linuxproc"),
        ("26.05", "proctrack/linuxproc"),
    ],
)
def test_how_each_release_signals_a_checkpointing_task(release: str, proctrack: str) -> None:
    config = (FIXTURES / f"scontrol-config-{release}.txt").read_text()
    support = parse_checkpoint_support(config)
    assert support == CheckpointSupport(proctrack, user_signal_at_preemption=False)
    assert "save on SIGTERM too" in support.describe()
    # The flag's spelling: 22.05's SlurmctldParameters, PreemptParameters from 23.02 on.
    flag = {
        "22.05": (
            "SlurmctldParameters     = (null)",
            "SlurmctldParameters     = enable_configless,preempt_send_user_signal",
        ),
        "24.11": ("PreemptParameters       = (null)", "PreemptParameters       = send_user_signal"),
        "26.05": ("PreemptParameters       = (null)", "PreemptParameters       = send_user_signal"),
    }[release]
    assert flag[0] in config
    with_flag = parse_checkpoint_support(config.replace(*flag))
    assert with_flag.user_signal_at_preemption
    assert "sends the task's checkpoint signal" in with_flag.describe()


@pytest.mark.parametrize(
    ("ids", "words"),
    [
        (["812_0", "812_1", "812_2", "812_5", "900", "812_7", "813_3", "812_6"],
         ["812_[0-2,5-7]", "900", "813_3"]),
        (["812_4"], ["812_4"]),
        (["812_4", "812_4"], ["812_4"]),
        (["812_9", "812_8"], ["812_[8-9]"]),
        (["900", "901"], ["900", "901"]),
        ([], []),
    ],
)  # fmt: skip
def test_array_elements_fold_into_one_expression_per_array(
    ids: list[str], words: list[str]
) -> None:
    assert array_expressions(ids) == words


def test_an_array_expression_of_scattered_elements_stays_a_bounded_word() -> None:
    # Every other element of a 100,000-variant sweep: 50,000 runs, split across words that
    # each stay far below Linux's 128 KiB for one argument, and none lost.
    ids = [f"7_{index}" for index in range(0, 100_000, 2)]
    words = array_expressions(ids)
    assert max(len(word) for word in words) < 8 * 1024
    expanded = [
        f"7_{run}" for word in words for run in word.removeprefix("7_[").rstrip("]").split(",")
    ]
    assert expanded == ids


def test_cancel_of_a_huge_sweep_is_short_commands(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    class Recording:
        host = None

        def run(self, argv: list[str], **_: object) -> CommandResult:
            calls.append(argv)
            return CommandResult(tuple(argv), 0, "", "")

    slurm = Slurm(Recording())  # type: ignore[arg-type]
    slurm.cancel([f"812_{index}" for index in range(20_000)] + [str(n) for n in range(1200)])
    assert calls[0][:2] == ["scancel", "812_[0-19999]"]
    assert len(calls) == 3 and all(len(argv) <= 501 for argv in calls)
    assert sum(len(argv) - 1 for argv in calls) == 1201


class _Scripted:
    """A transport answering each command by its first words, recording what ran."""

    description = "local"

    def __init__(self, answers: dict[str, object]) -> None:
        self.answers = answers
        self.ran: list[tuple[list[str], float]] = []

    def run(self, argv: list[str], *, timeout: float = 30, **_: object) -> CommandResult:
        self.ran.append((argv, timeout))
        key = next(k for k in self.answers if " ".join(argv).startswith(k))
        answer = self.answers[key]
        if isinstance(answer, list):  # one answer per call, in turn
            answer = answer.pop(0)
        if isinstance(answer, Exception):
            raise answer
        code, out, err = answer  # type: ignore[misc]
        return CommandResult(tuple(argv), code, out, err)


DOWN = (1, "Slurmctld(primary) at vm is DOWN\n", "")
# squeue -v while throttled (26.05, rl_enable): it sleeps and tries again, saying so.
THROTTLED = (
    124,
    "",
    "squeue: -----------------------------\nsqueue: RPC rate limited 1 time(s). Sleeping then"
    " trying again.\n",
)
SILENT = (124, "", "squeue: -----------------------------\nsqueue: all         = false\n")


def test_a_throttled_controller_is_rate_limited_not_down() -> None:
    from konduktor_slurm.slurm import RateLimited

    transport = _Scripted({"scontrol ping": DOWN, "timeout 2 squeue -v": THROTTLED})
    with pytest.raises(RateLimited, match="holding this user's requests back"):
        Slurm(transport).ping()  # type: ignore[arg-type]
    dead = _Scripted({"scontrol ping": DOWN, "timeout 2 squeue -v": SILENT})
    with pytest.raises(SlurmError, match="is DOWN") as info:
        Slurm(dead).ping()  # type: ignore[arg-type]
    assert not isinstance(info.value, RateLimited)


def test_a_status_squeue_slowed_by_the_rate_limit_gets_its_whole_timeout() -> None:
    from konduktor_slurm.transport import CommandTimeout

    rows = (FIXTURES / "squeue-22.05.txt").read_text()
    transport = _Scripted(
        {
            "squeue --noheader": [CommandTimeout("squeue did not answer"), (0, rows, "")],
            "scontrol ping": DOWN,
            "timeout 2 squeue -v": THROTTLED,
        }
    )
    slurm = Slurm(transport, timeout=30)  # type: ignore[arg-type]
    assert set(slurm.queue(["32", "33"])) >= {"32", "33"}
    squeues = [timeout for argv, timeout in transport.ran if argv[0] == "squeue"]
    assert squeues == [4.0, 30]  # the short first try, then the whole timeout


@pytest.mark.parametrize(
    ("argv", "mapped"),
    [
        (["squeue", "-h"], ["/opt/slurm/bin/squeue", "-h"]),
        (["timeout", "2", "squeue", "-v"], ["timeout", "2", "/opt/slurm/bin/squeue", "-v"]),
        (["grep", "-r", "x"], ["grep", "-r", "x"]),
        (["timeout", "2", "grep"], ["timeout", "2", "grep"]),
    ],
)
def test_the_slurm_bin_dir_reaches_a_command_run_under_timeout(
    argv: list[str], mapped: list[str]
) -> None:
    from konduktor_slurm.transport import with_slurm_bin_dir

    assert with_slurm_bin_dir(argv, "/opt/slurm/bin/") == mapped
    assert with_slurm_bin_dir(argv, None) == argv
