# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this
# Shared settings and helpers for cluster-up.sh and cluster-down.sh.
# Sourced, not executed. Every setting can be overridden from the environment;
# the defaults work with zero arguments.

KC_STATE_DIR="${KC_STATE_DIR:-/var/lib/konduktor-cluster}"
KC_LOG_DIR="${KC_LOG_DIR:-/var/log/konduktor-cluster}"
KC_RUN_DIR="$KC_STATE_DIR/run"
KC_SSH_DIR="$KC_STATE_DIR/ssh"
KC_GPU_DEV_DIR="$KC_STATE_DIR/dev"
KC_SSH_PORT="${KC_SSH_PORT:-2222}"
# 0.0.0.0 in a container so a published port reaches it.
KC_SSH_LISTEN="${KC_SSH_LISTEN:-127.0.0.1}"
KC_TEST_USER="${KC_TEST_USER:-kdtest}"
# auto | on | off: whether Slurm confines jobs with cgroups (see cluster-up.sh).
KC_CGROUP="${KC_CGROUP:-auto}"
# Job credential lifetime = delay before a requeued job may start again.
# 15 s instead of Slurm's 120: a requeued (preempted, node-failed) job waits cred_expire + 1 s
# before it is eligible again, and the preemption tests wait for exactly that. Still far more
# than a step's launch takes here (well under a second), which the credential must outlive.
KC_CRED_EXPIRE="${KC_CRED_EXPIRE:-15}"
# Ports, so that clusters of other Slurm releases (docker/chroot-up.sh) can run beside this one.
KC_CTLD_PORT="${KC_CTLD_PORT:-6817}"
KC_DBD_PORT="${KC_DBD_PORT:-6819}"
KC_NODE1_PORT="${KC_NODE1_PORT:-17001}"
KC_NODE2_PORT="${KC_NODE2_PORT:-17002}"
# cgroup.conf CgroupPlugin: autodetect here; "disabled" where Slurm (24.11+) runs without cgroups.
KC_CGROUP_PLUGIN="${KC_CGROUP_PLUGIN:-autodetect}"
# Seconds to wait for each daemon / for the nodes to become usable.
KC_WAIT_TIMEOUT="${KC_WAIT_TIMEOUT:-60}"

KC_SLURM_ETC=/etc/slurm
KC_CLUSTER=konduktor
KC_ACCOUNT=konduktor
KC_NODES=(node1 node2)
KC_MYSQL_SOCK=/run/mysqld/mysqld.sock
KC_SSH_KEY="$KC_SSH_DIR/${KC_TEST_USER}_ed25519"

kc_log() { printf '[konduktor-cluster] %s\n' "$*"; }

# kc_pid_of NAME PIDFILE: print the PID from PIDFILE if that process is alive
# and really is NAME (guards against stale pid files and reused PIDs). For
# slurmd, whose pid files are named slurmd-NODE.pid, the process must also
# have been started with "-N NODE" (both slurmds share the name "slurmd").
kc_pid_of() {
  local name=$1 pidfile=$2 pid comm node cmdline
  [[ -r $pidfile ]] || return 1
  read -r pid <"$pidfile" 2>/dev/null || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [[ -r /proc/$pid/comm ]] || return 1
  read -r comm <"/proc/$pid/comm" 2>/dev/null || return 1
  [[ $comm == "$name" ]] || return 1
  kc_running "$pid" || return 1
  if [[ $name == slurmd && $pidfile =~ slurmd-([^/]+)\.pid$ ]]; then
    node=${BASH_REMATCH[1]}
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ " $cmdline" == *" -N $node "* ]] || return 1
  fi
  printf '%s\n' "$pid"
}

kc_alive() { kc_pid_of "$1" "$2" >/dev/null; }

# kc_running PID: true while PID exists and is not a zombie. Daemons are
# reparented to PID 1, which may reap them only after a while (seconds on
# the dev sandbox); a zombie has exited for our purposes.
kc_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# kc_stop NAME PIDFILE [TIMEOUT]: SIGTERM, wait, then SIGKILL. Idempotent.
kc_stop() {
  local name=$1 pidfile=$2 timeout=${3:-20} pid i
  if ! pid=$(kc_pid_of "$name" "$pidfile"); then
    rm -f "$pidfile" 2>/dev/null || true
    return 0
  fi
  kc_log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    kc_running "$pid" || break
    sleep 0.1
  done
  if kc_running "$pid"; then
    kc_log "$name (pid $pid) ignored SIGTERM for ${timeout}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kc_running "$pid" || break
      sleep 0.1
    done
  fi
  rm -f "$pidfile" 2>/dev/null || true
}

# Pid files of every daemon, in start order. "name|pidfile" pairs.
kc_daemons() {
  local n
  printf '%s\n' "munged|$KC_RUN_DIR/munged.pid" \
    "mariadbd|$KC_RUN_DIR/mariadbd.pid" \
    "slurmdbd|$KC_RUN_DIR/slurmdbd.pid" \
    "slurmctld|$KC_RUN_DIR/slurmctld.pid"
  for n in "${KC_NODES[@]}"; do
    printf '%s\n' "slurmd|$KC_RUN_DIR/slurmd-$n.pid"
  done
  printf '%s\n' "sshd|$KC_RUN_DIR/sshd.pid"
}
