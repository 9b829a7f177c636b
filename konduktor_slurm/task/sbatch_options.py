"""sbatch's own option names, so ``slurm.sbatch_options`` is read exactly as sbatch reads it.

sbatch (getopt_long) accepts any unambiguous prefix of a long option: ``--outp`` is
``--output``, ``--no-requ`` is ``--no-requeue``. Checking only the names as written would let
a prefix slip past the options konduktor manages; so every name is first resolved the way
sbatch resolves it, then checked.

The table is the union of Slurm 22.05, 24.11 and 26.05 (each name verified with
``sbatch --NAME=1 --version`` on each release; ``tests/live/test_hostile_inputs.py`` checks
them against the cluster's sbatch). Options only newer releases know are marked.
"""

from __future__ import annotations

from typing import Final, NamedTuple

LONG_OPTIONS: Final = frozenset(
    {
        "account", "acctg-freq", "array", "batch", "bb", "bbf", "begin", "chdir",
        "cluster-constraint", "clusters", "comment", "constraint", "container",
        "container-id",  # 24.11+
        "container-type",  # 26.05
        "contiguous", "core-spec", "cores-per-socket", "cpu-freq", "cpus-per-gpu",
        "cpus-per-task", "deadline", "delay-boot", "dependency", "distribution", "error",
        "exclude", "exclusive", "export", "export-file", "extra", "extra-node-info",
        "get-user-env", "gid", "gpu-bind", "gpu-freq", "gpus", "gpus-per-node",
        "gpus-per-socket", "gpus-per-task", "gres", "gres-flags", "help", "hint", "hold",
        "ignore-pbs", "input", "job-name", "kill-on-invalid-dep", "licenses", "mail-type",
        "mail-user", "mcs-label", "mem", "mem-per-cpu", "mem-per-gpu", "mincpus", "network",
        "nice", "no-kill", "no-requeue", "nodefile", "nodelist", "nodes", "ntasks",
        "ntasks-per-core", "ntasks-per-gpu", "ntasks-per-node", "ntasks-per-socket",
        "oom-kill-step",  # 24.11+
        "open-mode", "output", "overcommit", "oversubscribe", "parsable", "partition",
        "prefer", "priority", "profile", "propagate", "qos", "quiet", "reboot", "requeue",
        "reservation",
        "resv-ports",  # 24.11+
        "segment",  # 24.11+
        "signal", "sockets-per-node", "spread-job",
        "spread-segments",  # 26.05
        "switches", "test-only", "thread-spec", "threads-per-core", "time", "time-min", "tmp",
        "tres-bind", "tres-per-task",  # 24.11+
        "uid", "usage", "use-min-nodes", "verbose", "version", "wait", "wait-all-nodes",
        "wckey", "wrap",
    }
)  # fmt: skip

SHORT_OPTIONS: Final = {
    "a": "array", "A": "account", "b": "begin", "c": "cpus-per-task", "d": "dependency",
    "D": "chdir", "e": "error", "H": "hold", "i": "input", "J": "job-name", "k": "no-kill",
    "L": "licenses", "M": "clusters", "m": "distribution", "n": "ntasks", "N": "nodes",
    "o": "output", "O": "overcommit", "p": "partition", "q": "qos", "Q": "quiet",
    "s": "oversubscribe", "S": "core-spec", "t": "time", "v": "verbose", "W": "wait",
    "C": "constraint", "F": "nodefile", "w": "nodelist", "x": "exclude", "G": "gpus",
    "h": "help", "V": "version",
}  # fmt: skip

# Options konduktor writes or depends on: a user value would silently fight ours.
MANAGED: Final = {
    "job-name": "name",
    "nodes": "num_nodes",
    "ntasks": "num_nodes (one task per node)",
    "ntasks-per-node": "num_nodes (one task per node)",
    "output": "its log files (read by `konduktor logs`)",
    "error": "its log files (read by `konduktor logs`)",
    "open-mode": "its log files (read by `konduktor logs`)",
    "gres": "resources.accelerators",
    "gpus": "resources.accelerators",
    "gpus-per-node": "resources.accelerators",
    "gpus-per-task": "resources.accelerators",
    "gpus-per-socket": "resources.accelerators",
    "tres-per-task": "resources.accelerators",
    "wrap": "run",
    "parsable": "its own job submission",
    "chdir": "workdir",
    "comment": "its job marker (the comment finds konduktor's jobs in squeue)",
    "array": "one job per launch (an array's elements would share one record)",
    "clusters": "the cluster it follows (jobs on another cluster are not found)",
    "wait": "its own submission (sbatch would block until the job ends): use launch --wait",
    "test-only": "its own submission (nothing would be submitted): use launch --dryrun",
    "help": "its own submission (not a job option)",
    "usage": "its own submission (not a job option)",
    "version": "its own submission (not a job option)",
}
# Options that have a dedicated field; two ways to say one thing invite conflicts.
DEDICATED: Final = {
    "partition": "slurm.partition",
    "account": "slurm.account",
    "qos": "slurm.qos",
    "time": "slurm.time_limit",
    "constraint": "slurm.constraint",
}
# These only conflict when the matching resource is set: '--mem=0' (all of the node's memory)
# has no equivalent in resources.memory, so it stays allowed on its own.
RESOURCE: Final = {
    "mem": "memory",
    "mem-per-cpu": "memory",
    "mem-per-gpu": "memory",
    "cpus-per-task": "cpus",
}


class Resolved(NamedTuple):
    name: str | None  # the option sbatch will read, or None
    problem: str | None  # why it cannot be used as written


def resolve(written: str) -> Resolved:
    """The option sbatch reads for ``written`` (``--outp``, ``outp``, ``-o``, ``o``)."""
    dashes = len(written) - len(written.lstrip("-"))
    name = written.lstrip("-")
    if len(name) == 1 and dashes <= 1:
        if name in SHORT_OPTIONS:
            return Resolved(SHORT_OPTIONS[name], None)
        return Resolved(None, f"-{name} is not an sbatch option")
    if name in LONG_OPTIONS:
        return Resolved(name, None)
    matches = sorted(option for option in LONG_OPTIONS if option.startswith(name))
    if len(matches) == 1:
        return Resolved(matches[0], None)
    if matches:
        shown = ", ".join(f"--{option}" for option in matches[:6])
        more = ", ..." if len(matches) > 6 else ""
        return Resolved(None, f"--{name} is ambiguous for sbatch: it could be {shown}{more}")
    import difflib

    close = difflib.get_close_matches(name, sorted(LONG_OPTIONS), n=1, cutoff=0.75)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return Resolved(None, f"--{name} is not an sbatch option{hint}")
