"""What slurm.py reads besides job states, from real output of 22.05, 24.11 and 26.05
(tests/fixtures/slurm/record.py): free-text job names, hostlists, and what `check` asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from konduktor_slurm.slurm import (
    Partition,
    SlurmError,
    hostnames_command,
    node_events_command,
    parse_admin_level,
    parse_hostnames,
    parse_node_events,
    parse_partitions,
    parse_runs,
    parse_sacct,
    parse_slurm_user,
    parse_squeue,
    parse_version,
    runs_command,
    sacct_command,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "slurm"
RELEASES = ("22.05", "24.11", "26.05")
SEPARATOR_NAME = "x\x1fy\nz"  # record.py's second foreign job


def fixture(name: str, release: str) -> str:
    return (FIXTURES / f"{name}-{release}.txt").read_text()


# ---- free-text job names: a|b used to shift every column after JobName


@pytest.mark.parametrize("release", RELEASES)
def test_a_job_named_a_pipe_b_is_billed_and_classified_right(release: str) -> None:
    runs = {run.job_id: run for run in parse_runs(fixture("sacct-runs-compat", release))}
    piped = runs["JOB6"]
    assert (piped.name, piped.user, piped.state) == ("a|b", "root", "COMPLETED")
    assert (piped.nodes, piped.gpus) == (1, 2)  # --gres=gpu:h100:2
    assert piped.active_seconds >= 2  # `sleep 2`: ElapsedRaw, not a neighbouring column
    assert piped.start_time and piped.end_time and piped.end_time > piped.start_time
    running = runs["JOB3"]
    assert (running.name, running.state, running.nodes, running.gpus) == ("wrap", "RUNNING", 2, 16)
    assert parse_squeue(fixture("squeue-compat", release))["JOB6"].name == "a|b"


@pytest.mark.parametrize("release", RELEASES)
def test_a_name_holding_the_delimiter_and_a_newline_stays_one_record(release: str) -> None:
    run = next(r for r in parse_runs(fixture("sacct-runs-compat", release)) if r.job_id == "JOB7")
    assert (run.name, run.user, run.state, run.nodes) == (SEPARATOR_NAME, "root", "FAILED", 1)
    row = parse_squeue(fixture("squeue-compat", release))["JOB7"]
    assert (row.name, row.state, row.reason) == (SEPARATOR_NAME, "FAILED", "NonZeroExitCode")
    assert row.launched_by_konduktor and row.user == "root"  # the fields after the name
    assert parse_sacct(fixture("sacct-compat", release))["JOB7"].exit_code == "4:0"


def test_every_sacct_call_asks_for_the_unit_separator() -> None:
    for argv in (sacct_command(["1"]), runs_command(["1"]), runs_command(since=0.0)):
        assert "--delimiter=\x1f" in argv
        assert "--parsable" in argv and "--parsable2" not in argv  # records end "\x1f\n"


def test_lines_that_are_no_records_are_skipped() -> None:
    record = "7\x1fRUNNING\x1f0:0\x1fUnknown\x1fUnknown\x1fnode1\x1fUNLIMITED\x1fbob\x1f\n"
    output = "sacct: warning: something\n\n" + record + "8\x1fRUNNING\x1f\n"  # truncated
    rows = parse_sacct(output)
    assert list(rows) == ["7"] and rows["7"].user == "bob"
    assert parse_sacct(record.rstrip("\n"))["7"].state == "RUNNING"  # no final newline


# ---- hostlists, expanded by Slurm's own scontrol in one call

HOSTLISTS = ("rack[1-2]-node[01-02]", "node[1-3,7],gpu01", "a-[01-03]", "gpu[08-10]", "node1")
EXPANDED = {
    "rack[1-2]-node[01-02]": ["rack1-node01", "rack1-node02", "rack2-node01", "rack2-node02"],
    "node[1-3,7],gpu01": ["node1", "node2", "node3", "node7", "gpu01"],
    "a-[01-03]": ["a-01", "a-02", "a-03"],
    "gpu[08-10]": ["gpu08", "gpu09", "gpu10"],
    "node1": ["node1"],
}


@pytest.mark.parametrize("release", RELEASES)
def test_hostlists_expanded_by_scontrol(release: str) -> None:
    assert parse_hostnames(fixture("scontrol-hostnames", release), HOSTLISTS) == EXPANDED


def test_one_scontrol_call_for_every_hostlist() -> None:
    argv = hostnames_command(HOSTLISTS)
    assert argv[:3] == ["scontrol", "show", "hostnames"] and len(argv) == 4


@pytest.mark.parametrize(
    "output",
    ["", "node1\n", "node1\nkonduktor-end-of-hostlist\nnode2\n"],  # e.g. scontrol said nothing
)
def test_hostnames_output_that_does_not_match_is_an_error(output: str) -> None:
    with pytest.raises(SlurmError, match="scontrol show hostnames"):
        parse_hostnames(output, ["node1", "node2"])


def test_which_nodes_went_down() -> None:
    """After NODE_FAIL: the accounting database's node events (recorded: node2 set DOWN)."""
    assert parse_node_events((FIXTURES / "sacctmgr-events-22.05.txt").read_text()) == {"node2"}
    assert parse_node_events("node1|IDLE|\nnode3|NOT_RESPONDING|\n") == {"node3"}
    argv = node_events_command(["node1", "node2"], 0.0)
    assert argv[:5] == ["sacctmgr", "--noheader", "--parsable", "show", "event"]
    assert "nodes=node1,node2" in argv and "format=NodeName,State" in argv


# ---- what `konduktor check` asks


@pytest.mark.parametrize(
    ("release", "version", "parsed"),
    [("22.05", "22.05.8", (22, 5)), ("24.11", "24.11.5", (24, 11)), ("26.05", "26.05.5", (26, 5))],
)
def test_version(release: str, version: str, parsed: tuple[int, int]) -> None:
    found = parse_version(fixture("sinfo-version", release))
    assert (found.text, found.version, found.release) == (f"slurm-wlm {version}", version, parsed)


@pytest.mark.parametrize("release", RELEASES)
def test_partitions(release: str) -> None:
    assert parse_partitions(fixture("sinfo-partitions", release)) == [
        Partition("gpu", True, "up", 2, "gpu:h100:8"),
        Partition("low", False, "up", 2, "gpu:h100:8"),
        Partition("high", False, "up", 2, "gpu:h100:8"),
    ]


def test_a_partition_sinfo_prints_twice_is_one_partition() -> None:
    # sinfo prints a partition once per kind of node (other GRES, no GRES) in it.
    output = (
        "gpu*\x1fup\x1f2\x1fgpu:h100:8\x1f\n"
        "gpu*\x1fup\x1f1\x1f(null)\x1f\n"
        "cpu\x1fup\x1f4\x1f(null)\x1f\n"
    )
    assert parse_partitions(output) == [
        Partition("gpu", True, "up", 3, "gpu:h100:8"),
        Partition("cpu", False, "up", 4, None),
    ]


@pytest.mark.parametrize("release", RELEASES)
def test_admin_levels(release: str) -> None:
    assert parse_admin_level(fixture("sacctmgr-adminlevel-root", release)) == "Administrator"
    assert parse_admin_level(fixture("sacctmgr-adminlevel-kdtest", release)) == "None"
    assert parse_admin_level("") == "None"  # a user accounting does not know


@pytest.mark.parametrize("release", RELEASES)
def test_slurm_user(release: str) -> None:
    assert parse_slurm_user(fixture("scontrol-config", release)) == "slurm"
    assert parse_slurm_user("ClusterName = x\n") is None
