#!/usr/bin/env bash
# cluster-down.sh: stop every daemon that cluster-up.sh started, in reverse
# order, and wait until each has exited. Idempotent: daemons that are not
# running are skipped. Only processes recorded in our pid files are touched.
# State (job queue, accounting DB, keys, configs) is kept, so the next
# cluster-up.sh resumes where this left off.
#
# Not stopped: slurmstepd processes of jobs still running when their slurmd
# goes away (Slurm keeps them alive on purpose; they finish with their job,
# and a restarted slurmd re-attaches to them).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cluster-common.sh
. "$HERE/cluster-common.sh"

[[ $EUID -eq 0 ]] || { echo "cluster-down.sh must run as root" >&2; exit 1; }

mapfile -t daemons < <(kc_daemons)
for ((i = ${#daemons[@]} - 1; i >= 0; i--)); do
  name=${daemons[i]%%|*}
  pidfile=${daemons[i]#*|}
  timeout=20
  [[ $name == mariadbd ]] && timeout=60
  kc_stop "$name" "$pidfile" "$timeout"
done
kc_log "cluster stopped"
