"""Speed and memory of the commands people and cron run most, measured side by side.

Run with `make bench` (needs the local cluster). Every number is printed next to its
baseline, measured in the same run, as a ratio: the targets are ratios, not seconds, so
they mean the same on a fast laptop and on a 2-core CI machine.

    status startup   `konduktor status` (empty store) vs `python -c pass` target <= 6x
    help startup     `konduktor --help` vs `python -c pass`               target <= 4x
    (squeue's own time is printed for reference: a C binary, not a target)
    status at scale  `konduktor status` with 200 jobs vs with 1 job       target <= 2.5x
    (Slurm is asked the same number of times; what grows is rich laying out 200 rows)
    memory           peak RSS of status with 200 jobs vs with 1 job       target <= 1.5x

    Startup runs alternate with their baseline's, so a load spike hits both sides, and the
    package is byte-compiled first, as `pip install` does: with PYTHONDONTWRITEBYTECODE set
    (common in containers) every run would otherwise recompile our sources, a cost no
    installed user pays.
"""

from __future__ import annotations

import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import submit_held_jobs  # noqa: E402

BIN = Path(sys.executable).parent
KONDUKTOR = str(BIN / "konduktor")
REPEAT = 7


def wall_time(argv: list[str], env: dict | None = None) -> float:
    """Seconds one run of ``argv`` takes, output discarded."""
    start = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def timed(argv: list[str], env: dict | None = None) -> float:
    """Median wall time of ``argv`` over REPEAT runs."""
    return statistics.median(wall_time(argv, env) for _ in range(REPEAT))


def timed_pair(subject: list[str], baseline: list[str], env: dict) -> tuple[float, float]:
    """Median wall times of ``subject`` and ``baseline``, run alternately REPEAT times."""
    subject_times, baseline_times = [], []
    for _ in range(REPEAT):
        baseline_times.append(wall_time(baseline, env))
        subject_times.append(wall_time(subject, env))
    return statistics.median(subject_times), statistics.median(baseline_times)


def peak_rss(argv: list[str], env: dict) -> int:
    """Peak RSS (KiB) of one run, read from the child's own rusage via /usr/bin/time."""
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *argv], env=env, capture_output=True, text=True
    )
    return int(result.stderr.strip().splitlines()[-1])


def row(label: str, value: float, baseline: float, unit: str, target: float) -> bool:
    ratio = value / baseline if baseline else float("inf")
    ok = ratio <= target
    print(
        f"{label:<18} {value:9.3f}{unit} vs {baseline:9.3f}{unit}   ratio {ratio:5.2f}x   "
        f"target <= {target}x   {'ok' if ok else 'OVER TARGET'}"
    )
    return ok


def main() -> int:
    all_ok = True
    with tempfile.TemporaryDirectory() as tmp:
        empty = {**os.environ, "KONDUKTOR_HOME": str(Path(tmp) / "empty")}
        compileall.compile_dir(ROOT / "konduktor_slurm", quiet=1)
        bare_python = [sys.executable, "-c", "pass"]
        status_t, python_t = timed_pair([KONDUKTOR, "status"], bare_python, empty)
        all_ok &= row("status startup", status_t, python_t, "s", 6.0)
        help_t, python_t = timed_pair([KONDUKTOR, "--help"], bare_python, empty)
        all_ok &= row("help startup", help_t, python_t, "s", 4.0)
        squeue_t = timed(["squeue", "-h"])
        print(f"{'(squeue alone)':<18} {squeue_t:9.3f}s")

        homes = {}
        submitted: list[str] = []
        for count in (1, 200):
            home = Path(tmp) / f"n{count}"
            home.mkdir()
            submitted += submit_held_jobs(home, count, f"bench{count}")
            homes[count] = {**os.environ, "KONDUKTOR_HOME": str(home)}
        try:
            one_t = timed([KONDUKTOR, "status"], homes[1])
            many_t = timed([KONDUKTOR, "status"], homes[200])
            all_ok &= row("status 200 jobs", many_t, one_t, "s", 2.5)
            one_m = peak_rss([KONDUKTOR, "status"], homes[1]) / 1024
            many_m = peak_rss([KONDUKTOR, "status"], homes[200]) / 1024
            all_ok &= row("status memory", many_m, one_m, "MiB", 1.5)
        finally:
            subprocess.run(["scancel", *submitted], check=False)
    print("all within targets" if all_ok else "some ratios are over their targets")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
