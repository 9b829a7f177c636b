"""SkyPilot task files read more than SKYPILOT_NODE_RANK: setup reads SKYPILOT_SETUP_NODE_RANK
(often `: "${SKYPILOT_SETUP_NODE_RANK:?}"`, or work on the head node only), _IPS and
_NUM_GPUS_PER_NODE, and tools parse SKYPILOT_CLUSTER_INFO as JSON. Unset, such a task fails
or silently skips its head-node setup. The rendered batch script runs here under bash with a
fake srun (tests/unit/test_unstarted_ranks.py); tests/live/test_konduktor_parity.py runs a
world task file that needs them on the real cluster.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.unit.test_unstarted_ranks import run_batch_script

TASK = """name: w
num_nodes: 2
resources:
  accelerators: H100:4
setup: |
  : "${SKYPILOT_SETUP_NODE_RANK:?not set}"
  ips=$(echo "$SKYPILOT_SETUP_NODE_IPS" | paste -sd,)
  echo "setup rank=$SKYPILOT_SETUP_NODE_RANK ips=$ips gpus=$SKYPILOT_SETUP_NUM_GPUS_PER_NODE"
  if [ "$SKYPILOT_SETUP_NODE_RANK" -eq 0 ]; then echo "head-only setup"; fi
run: |
  echo "info=$SKYPILOT_CLUSTER_INFO"
  echo "hosts=$NODE_HOST_IPS"
"""


def test_setup_sees_skypilots_setup_names_and_run_its_cluster_info(tmp_path: Path) -> None:
    env = {"SLURM_CLUSTER_NAME": "hpc", "SLURM_JOB_PARTITION": 'gpu"x\\y'}
    _job_dir, output, code = run_batch_script(tmp_path, TASK, "0 1", env=env)
    assert code == 0, output
    setups = sorted(re.findall(r"setup rank=(\d) ips=(\S+) gpus=(\d+)", output))
    hosts = re.findall(r"^hosts=(.*)$", output, re.MULTILINE)
    assert [(rank, gpus) for rank, _, gpus in setups] == [("0", "4"), ("1", "4")], output
    assert {ips for _, ips, _ in setups} == set(hosts) and len(hosts[0].split(",")) == 2, output
    assert output.count("head-only setup") == 1, output
    infos = re.findall(r"^info=(.*)$", output, re.MULTILINE)
    assert len(infos) == 2, output
    for info in infos:
        assert json.loads(info) == {
            "cluster_name": "w-1a2b",
            "cloud": "Slurm",
            "region": "hpc",
            "zone": 'gpu"x\\y',
        }
