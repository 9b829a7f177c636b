#!/usr/bin/env bash
# cluster-up.sh: bring up the konduktor-slurm local test cluster. Idempotent.
#
# A real Slurm 22.05 cluster on ONE Debian 12 machine, run as root, no systemd
# needed: munged, MariaDB, slurmdbd, slurmctld and two slurmd (node1, node2,
# 8 fake H100 each), plus an sshd on 127.0.0.1:2222 for the test user.
# Every daemon is started by hand and only if it is not already running.
#
# Usage: cluster-up.sh [--install-only | --foreground]
#   (no argument)   install what is missing, configure, start, verify, exit.
#   --install-only  only install the Debian packages (used by the Dockerfile).
#   --foreground    bring the cluster up, then stay in the foreground, follow
#                   the logs and run cluster-down.sh on SIGTERM/SIGINT (the
#                   container's command).
# Environment overrides: see cluster-common.sh (KC_*).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=cluster-common.sh
. "$HERE/cluster-common.sh"
CONF_SRC="${KC_CONF_SRC:-$HERE/conf}"

MODE="${1:-up}"
case "$MODE" in
  up | --install-only | --foreground) ;;
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "usage: $0 [--install-only | --foreground]" >&2
    exit 2
    ;;
esac

[[ $EUID -eq 0 ]] || { echo "cluster-up.sh must run as root" >&2; exit 1; }

PACKAGES=(munge slurmctld slurmd slurmdbd slurm-client mariadb-server openssh-server openssh-client rsync)

die() {
  local log
  printf '[konduktor-cluster] ERROR: %s\n' "$1" >&2
  shift
  for log in "$@"; do
    [[ -f $log ]] || continue
    printf '\n----- last lines of %s -----\n' "$log" >&2
    tail -n 25 "$log" >&2 || true
  done
  exit 1
}

# wait_until DESCRIPTION LOGFILE COMMAND...: poll COMMAND every 0.1 s until it
# succeeds, or die after KC_WAIT_TIMEOUT seconds showing LOGFILE's tail.
wait_until() {
  local what=$1 logfile=$2 i
  shift 2
  for ((i = 0; i < KC_WAIT_TIMEOUT * 10; i++)); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  die "timed out after ${KC_WAIT_TIMEOUT}s waiting for $what" "$logfile"
}

# ---------------------------------------------------------------------------
# 1. Debian packages (fast path: no apt at all when everything is installed)
# ---------------------------------------------------------------------------
install_packages() {
  local missing=() p created_policy=0
  for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
      missing+=("$p")
    fi
  done
  ((${#missing[@]})) || return 0
  kc_log "installing missing packages: ${missing[*]}"
  # Package scripts must not start any daemon: we start them ourselves.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# written by konduktor cluster-up.sh during apt-get install\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local rc=0
  {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Use-Pty=0 "${PACKAGES[@]}"
  } || rc=$?
  if ((created_policy)); then rm -f /usr/sbin/policy-rc.d; fi
  ((rc == 0)) || die "apt-get failed (exit $rc)"
}

install_packages
if [[ $MODE == --install-only ]]; then
  kc_log "packages installed"
  exit 0
fi

# ---------------------------------------------------------------------------
# 2. Users, directories, fake GPUs, /etc/hosts
# ---------------------------------------------------------------------------
getent passwd slurm >/dev/null ||
  useradd --system --user-group --home-dir /nonexistent --shell /usr/sbin/nologin slurm

if ! getent passwd "$KC_TEST_USER" >/dev/null; then
  kc_log "creating user $KC_TEST_USER"
  useradd --create-home --home-dir "/home/$KC_TEST_USER" --shell /bin/bash "$KC_TEST_USER"
fi
# useradd leaves the account locked ("!"), and sshd refuses locked accounts
# even for key logins. "*" = no password login possible, but not locked.
if [[ $(getent shadow "$KC_TEST_USER" | cut -d: -f2) != '*' ]]; then
  usermod -p '*' "$KC_TEST_USER"
fi

install -d -m 755 "$KC_STATE_DIR" "$KC_RUN_DIR" "$KC_GPU_DEV_DIR" \
  "$KC_STATE_DIR/slurmd" "$KC_SLURM_ETC" /run/sshd
install -d -m 700 "$KC_SSH_DIR"
install -d -o slurm -g slurm -m 755 "$KC_STATE_DIR/slurmctld"
# slurmctld/slurmdbd (running as slurm) chdir into their log directory and
# complain unless they may write there.
install -d -o root -g slurm -m 775 "$KC_LOG_DIR"
install -d -o munge -g munge -m 755 /run/munge
install -d -o munge -g munge -m 700 /var/lib/munge /etc/munge
install -d -o mysql -g mysql -m 755 /run/mysqld
install -d -o mysql -g mysql -m 750 "$KC_STATE_DIR/mysql"
for n in "${KC_NODES[@]}"; do
  install -d -m 755 "$KC_STATE_DIR/slurmd/$n"
done
# Daemons that drop privileges must be able to (re)open their logs.
for f in slurmctld.log slurmdbd.log; do
  [[ -e $KC_LOG_DIR/$f ]] || install -o slurm -g slurm -m 640 /dev/null "$KC_LOG_DIR/$f"
done
[[ -e $KC_LOG_DIR/mariadb.log ]] || install -o mysql -g mysql -m 640 /dev/null "$KC_LOG_DIR/mariadb.log"

# Fake GPUs: character devices with the NVIDIA driver's major number 195.
for i in 0 1 2 3 4 5 6 7; do
  dev="$KC_GPU_DEV_DIR/nvidia$i"
  if [[ ! -c $dev ]]; then
    rm -f "$dev"
    mknod -m 666 "$dev" c 195 "$i"
  fi
done

# node1 / node2 must resolve (slurmd -N, srun, users' ssh configs...).
add_host() {
  local addr=$1 name=$2
  if ! grep -qE "^[[:space:]]*${addr//./\\.}[[:space:]]+([^#]*[[:space:]])?${name}([[:space:]]|#|\$)" /etc/hosts; then
    printf '%s %s\n' "$addr" "$name" >>/etc/hosts
  fi
}
add_host 127.0.0.1 node1
add_host 127.0.0.2 node2

# ---------------------------------------------------------------------------
# 3. Configuration (rendered from conf/*; daemons restarted only on change)
# ---------------------------------------------------------------------------
# cgroups: confine jobs (real OUT_OF_MEMORY states) only where it is known to
# work. auto = cgroup v1 with a memory and a freezer hierarchy in which we can
# create a group (the dev sandbox: cgroup v1). Slurm 22.05 on a pure cgroup v2
# host without systemd (e.g. most containers) is not verified, so auto falls
# back to task/none + proctrack/linuxproc there; force with KC_CGROUP=on.
cgroup_v1_usable() {
  local c probe
  for c in memory freezer; do
    [[ -f /sys/fs/cgroup/$c/cgroup.procs ]] || return 1
    probe="/sys/fs/cgroup/$c/konduktor_probe_$$"
    mkdir "$probe" 2>/dev/null || return 1
    rmdir "$probe" 2>/dev/null || true
  done
}
use_cgroup=0
case "$KC_CGROUP" in
  on) use_cgroup=1 ;;
  off) use_cgroup=0 ;;
  auto) if cgroup_v1_usable; then use_cgroup=1; fi ;;
  *) die "KC_CGROUP must be auto, on or off (got '$KC_CGROUP')" ;;
esac
if ((use_cgroup)); then
  TASK_PLUGIN=task/cgroup
  PROCTRACK_TYPE=proctrack/cgroup
else
  TASK_PLUGIN=task/none
  PROCTRACK_TYPE=proctrack/linuxproc
fi
# Constrain swap only where the kernel accounts it (v1 memsw files, or v2).
CONSTRAIN_SWAP=no
if [[ -f /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes || -f /sys/fs/cgroup/cgroup.controllers ]]; then
  CONSTRAIN_SWAP=yes
fi

# A job preempted from a partition with a GraceTime gets its own --signal (konduktor's
# checkpoint signal) at once instead of SIGTERM: a SlurmctldParameters flag in 22.05,
# PreemptParameters=send_user_signal from 23.02 on (24.11 and 26.05: the chroot clusters).
slurm_release=$(slurmctld -V 2>/dev/null | awk '{print $2}')
if [[ ${slurm_release%%.*} =~ ^[0-9]+$ ]] && ((${slurm_release%%.*} >= 23)); then
  PREEMPT_USER_SIGNAL=PreemptParameters=send_user_signal
else
  PREEMPT_USER_SIGNAL=SlurmctldParameters=preempt_send_user_signal
fi

# Password of the accounting DB user (socket-only DB); made once, kept.
if [[ ! -s $KC_STATE_DIR/db_pass ]]; then
  (umask 077 && od -An -N12 -tx1 /dev/urandom | tr -d ' \n' >"$KC_STATE_DIR/db_pass")
fi
DB_PASS=$(<"$KC_STATE_DIR/db_pass")

render() {
  sed -e "s|@STATE_DIR@|$KC_STATE_DIR|g" \
    -e "s|@RUN_DIR@|$KC_RUN_DIR|g" \
    -e "s|@LOG_DIR@|$KC_LOG_DIR|g" \
    -e "s|@SSH_DIR@|$KC_SSH_DIR|g" \
    -e "s|@GPU_DEV_DIR@|$KC_GPU_DEV_DIR|g" \
    -e "s|@SSH_PORT@|$KC_SSH_PORT|g" \
    -e "s|@SSH_LISTEN@|$KC_SSH_LISTEN|g" \
    -e "s|@TEST_USER@|$KC_TEST_USER|g" \
    -e "s|@TASK_PLUGIN@|$TASK_PLUGIN|g" \
    -e "s|@PROCTRACK_TYPE@|$PROCTRACK_TYPE|g" \
    -e "s|@CONSTRAIN_SWAP@|$CONSTRAIN_SWAP|g" \
    -e "s|@DB_PASS@|$DB_PASS|g" \
    -e "s|@CRED_EXPIRE@|$KC_CRED_EXPIRE|g" \
    -e "s|@CTLD_PORT@|$KC_CTLD_PORT|g" \
    -e "s|@DBD_PORT@|$KC_DBD_PORT|g" \
    -e "s|@NODE1_PORT@|$KC_NODE1_PORT|g" \
    -e "s|@NODE2_PORT@|$KC_NODE2_PORT|g" \
    -e "s|@CGROUP_PLUGIN@|$KC_CGROUP_PLUGIN|g" \
    -e "s|@PREEMPT_USER_SIGNAL@|$PREEMPT_USER_SIGNAL|g" \
    "$CONF_SRC/$1"
}

# put_conf TEMPLATE DEST OWNER MODE: write if different; return 0 if written.
put_conf() {
  local src=$1 dest=$2 owner=$3 mode=$4 tmp
  tmp=$(mktemp "$dest.XXXXXX")
  render "$src" >"$tmp"
  chown "$owner" "$tmp"
  chmod "$mode" "$tmp"
  if [[ -f $dest ]] && cmp -s "$tmp" "$dest" &&
    [[ $(stat -c '%U:%G %a' "$dest") == "$(stat -c '%U:%G %a' "$tmp")" ]]; then
    rm -f "$tmp"
    return 1
  fi
  mv -f "$tmp" "$dest"
  kc_log "wrote $dest"
  return 0
}

slurm_conf_changed=0
dbd_conf_changed=0
db_conf_changed=0
ssh_conf_changed=0
put_conf slurm.conf "$KC_SLURM_ETC/slurm.conf" root:root 644 && slurm_conf_changed=1
put_conf gres.conf "$KC_SLURM_ETC/gres.conf" root:root 644 && slurm_conf_changed=1
put_conf cgroup.conf "$KC_SLURM_ETC/cgroup.conf" root:root 644 && slurm_conf_changed=1
put_conf slurmdbd.conf "$KC_SLURM_ETC/slurmdbd.conf" slurm:slurm 600 && dbd_conf_changed=1
put_conf mariadb.cnf "$KC_STATE_DIR/mariadb.cnf" root:root 644 && db_conf_changed=1
put_conf sshd_config "$KC_SSH_DIR/sshd_config" root:root 600 && ssh_conf_changed=1

# Munge key (the package normally makes one; a fresh container may not).
if [[ ! -s /etc/munge/munge.key ]]; then
  kc_log "creating /etc/munge/munge.key"
  (umask 077 && dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none)
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key

# SSH keys: host key for our sshd, key pair for the test user.
[[ -s $KC_SSH_DIR/ssh_host_ed25519_key ]] ||
  ssh-keygen -q -t ed25519 -N '' -C "konduktor-cluster-host" -f "$KC_SSH_DIR/ssh_host_ed25519_key"
[[ -s $KC_SSH_KEY && -s $KC_SSH_KEY.pub ]] || {
  rm -f "$KC_SSH_KEY" "$KC_SSH_KEY.pub"
  ssh-keygen -q -t ed25519 -N '' -C "$KC_TEST_USER@konduktor-cluster" -f "$KC_SSH_KEY"
}
chmod 600 "$KC_SSH_KEY"
chmod 644 "$KC_SSH_KEY.pub"
user_home=$(getent passwd "$KC_TEST_USER" | cut -d: -f6)
user_group=$(id -gn "$KC_TEST_USER")
install -d -o "$KC_TEST_USER" -g "$user_group" -m 700 "$user_home/.ssh"
auth_keys="$user_home/.ssh/authorized_keys"
if ! grep -qxF "$(<"$KC_SSH_KEY.pub")" "$auth_keys" 2>/dev/null; then
  cat "$KC_SSH_KEY.pub" >>"$auth_keys"
fi
chown "$KC_TEST_USER:$user_group" "$auth_keys"
chmod 600 "$auth_keys"

# A changed config takes effect by restarting the daemons that read it.
if ((slurm_conf_changed)); then
  for n in "${KC_NODES[@]}"; do kc_stop slurmd "$KC_RUN_DIR/slurmd-$n.pid"; done
  kc_stop slurmctld "$KC_RUN_DIR/slurmctld.pid"
fi
((dbd_conf_changed)) && kc_stop slurmdbd "$KC_RUN_DIR/slurmdbd.pid"
((db_conf_changed)) && kc_stop mariadbd "$KC_RUN_DIR/mariadbd.pid" 60
((ssh_conf_changed)) && kc_stop sshd "$KC_RUN_DIR/sshd.pid"

# ---------------------------------------------------------------------------
# 4. Daemons, in dependency order, each only if not running
# ---------------------------------------------------------------------------
# Drop stale pid files first (e.g. after a container restart, where PIDs are
# handed out again from 1), so that a new daemon's PID cannot be mistaken for
# another daemon's by an old file.
while IFS='|' read -r name pidfile; do
  kc_alive "$name" "$pidfile" || rm -f "$pidfile"
done < <(kc_daemons)

munge_ok() { munge -n </dev/null | unmunge >/dev/null; }
munge_restarted=
if ! kc_alive munged "$KC_RUN_DIR/munged.pid"; then
  # Slurm's daemons, if running, could not authenticate while munged was gone: their nodes
  # are "not responding" until they register again (see below).
  kc_alive slurmctld "$KC_RUN_DIR/slurmctld.pid" && munge_restarted=1
  kc_log "starting munged"
  # Foreground under setsid so that $! is munged itself (it runs as the
  # munge user, which could not write a pid file into our run dir). In the
  # foreground it logs to stderr. --force: start even if a killed munged
  # left its socket behind.
  setsid setpriv --reuid=munge --regid=munge --init-groups \
    /usr/sbin/munged --foreground --force </dev/null >>"$KC_LOG_DIR/munged.log" 2>&1 &
  echo $! >"$KC_RUN_DIR/munged.pid"
  wait_until "munged" "$KC_LOG_DIR/munged.log" munge_ok
fi

mysql_cli() { mariadb --no-defaults --socket="$KC_MYSQL_SOCK" -uroot "$@"; }
if ! kc_alive mariadbd "$KC_RUN_DIR/mariadbd.pid"; then
  if [[ ! -d $KC_STATE_DIR/mysql/mysql ]]; then
    kc_log "initialising MariaDB data directory"
    mariadb-install-db --defaults-file="$KC_STATE_DIR/mariadb.cnf" --user=mysql \
      --auth-root-authentication-method=socket --skip-test-db \
      >>"$KC_LOG_DIR/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed" "$KC_LOG_DIR/mariadb-install.log"
  fi
  # A socket (and its .lock) left by a mariadbd that died without cleaning
  # up would stop the new one; remove them only if nothing answers there.
  if [[ -e $KC_MYSQL_SOCK ]] &&
    ! mariadb-admin --no-defaults --socket="$KC_MYSQL_SOCK" -uroot ping >/dev/null 2>&1; then
    rm -f "$KC_MYSQL_SOCK" "$KC_MYSQL_SOCK.lock"
  fi
  kc_log "starting mariadbd"
  setsid /usr/sbin/mariadbd --defaults-file="$KC_STATE_DIR/mariadb.cnf" \
    </dev/null >>"$KC_LOG_DIR/mariadb.out" 2>&1 &
  echo $! >"$KC_RUN_DIR/mariadbd.pid"
  wait_until "mariadbd" "$KC_LOG_DIR/mariadb.log" \
    mariadb-admin --no-defaults --socket="$KC_MYSQL_SOCK" -uroot ping
  mysql_cli -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';" ||
    die "could not create the accounting database" "$KC_LOG_DIR/mariadb.log"
fi

if ! kc_alive slurmdbd "$KC_RUN_DIR/slurmdbd.pid"; then
  kc_log "starting slurmdbd"
  /usr/sbin/slurmdbd </dev/null >>"$KC_LOG_DIR/slurmdbd.out" 2>&1 ||
    die "slurmdbd did not start" "$KC_LOG_DIR/slurmdbd.out" "$KC_LOG_DIR/slurmdbd.log"
  wait_until "slurmdbd" "$KC_LOG_DIR/slurmdbd.log" sacctmgr -n show cluster
fi

# Accounting: cluster, account, and an association for every user that
# submits (AccountingStorageEnforce=associations rejects anyone else).
assocs=$(sacctmgr -n -P show assoc format=cluster,account,user 2>/dev/null) ||
  die "sacctmgr cannot reach slurmdbd" "$KC_LOG_DIR/slurmdbd.log"
if ! grep -q "^$KC_CLUSTER|" <<<"$assocs"; then
  kc_log "adding cluster $KC_CLUSTER to accounting"
  sacctmgr -i add cluster "$KC_CLUSTER" >/dev/null
fi
if ! grep -q "^$KC_CLUSTER|$KC_ACCOUNT|$" <<<"$assocs"; then
  sacctmgr -i add account "$KC_ACCOUNT" cluster="$KC_CLUSTER" \
    description="konduktor test account" organization=konduktor >/dev/null
fi
for u in root "$KC_TEST_USER"; do
  if ! grep -q "^$KC_CLUSTER|$KC_ACCOUNT|$u$" <<<"$assocs"; then
    kc_log "adding user $u to account $KC_ACCOUNT"
    sacctmgr -i add user "$u" account="$KC_ACCOUNT" cluster="$KC_CLUSTER" >/dev/null
  fi
done

ctld_up() { scontrol ping | grep -q 'is UP'; }
if ! kc_alive slurmctld "$KC_RUN_DIR/slurmctld.pid"; then
  kc_log "starting slurmctld"
  /usr/sbin/slurmctld </dev/null >>"$KC_LOG_DIR/slurmctld.out" 2>&1 ||
    die "slurmctld did not start" "$KC_LOG_DIR/slurmctld.out" "$KC_LOG_DIR/slurmctld.log"
  wait_until "slurmctld" "$KC_LOG_DIR/slurmctld.log" ctld_up
fi

for n in "${KC_NODES[@]}"; do
  if ! kc_alive slurmd "$KC_RUN_DIR/slurmd-$n.pid"; then
    kc_log "starting slurmd -N $n"
    /usr/sbin/slurmd -N "$n" </dev/null >>"$KC_LOG_DIR/slurmd-$n.out" 2>&1 ||
      die "slurmd -N $n did not start" "$KC_LOG_DIR/slurmd-$n.out" "$KC_LOG_DIR/slurmd-$n.log"
  fi
done

# munged died under a running cluster: slurmctld marked the nodes not responding (down*),
# and they stay so until each slurmd registers again, which reconfigure asks of them now
# (observed: still down* 60 s after munged was back).
if [[ -n $munge_restarted ]]; then
  kc_log "munged was restarted under a running slurmctld: asking the nodes to register again"
  scontrol reconfigure >/dev/null 2>&1 || true
fi

# Wait until every node is usable. A node left DOWN/DRAINED by an earlier run
# (or a test) is resumed once. "*" = not responding yet: just wait.
nodes_ready() {
  local name state ok=0
  while read -r name state; do
    [[ -n $name ]] || continue
    case "$state" in
      idle | mixed | allocated | completing) ok=$((ok + 1)) ;;
      *'*') ;;
      *drain* | down | fail* | inval)
        if [[ -z ${resumed[$name]:-} ]]; then
          resumed[$name]=1
          kc_log "resuming $name (was $state)"
          scontrol update nodename="$name" state=resume >/dev/null 2>&1 || true
        fi
        ;;
    esac
  done < <(sinfo -h -N -p gpu -o '%N %T' 2>/dev/null | sort -u)
  ((ok == ${#KC_NODES[@]}))
}
declare -A resumed=()
if ! nodes_ready; then
  logs=()
  for n in "${KC_NODES[@]}"; do logs+=("$KC_LOG_DIR/slurmd-$n.log"); done
  for ((i = 0; i < KC_WAIT_TIMEOUT * 10; i++)); do
    nodes_ready && break
    sleep 0.1
  done
  if ! nodes_ready; then
    sinfo -N >&2 || true
    die "nodes not idle after ${KC_WAIT_TIMEOUT}s" "$KC_LOG_DIR/slurmctld.log" "${logs[@]}"
  fi
fi

ssh_ok() {
  ssh -i "$KC_SSH_KEY" -p "$KC_SSH_PORT" -o BatchMode=yes -o ConnectTimeout=5 \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
    "$KC_TEST_USER@127.0.0.1" squeue -h -o %i
}
if ! kc_alive sshd "$KC_RUN_DIR/sshd.pid"; then
  kc_log "starting sshd on $KC_SSH_LISTEN:$KC_SSH_PORT"
  /usr/sbin/sshd -f "$KC_SSH_DIR/sshd_config" -E "$KC_LOG_DIR/sshd.log" ||
    die "sshd did not start" "$KC_LOG_DIR/sshd.log"
  wait_until "ssh login as $KC_TEST_USER" "$KC_LOG_DIR/sshd.log" ssh_ok
fi

# ---------------------------------------------------------------------------
# 5. Summary
# ---------------------------------------------------------------------------
confine="no (task/none: over-memory jobs end FAILED, not OUT_OF_MEMORY)"
((use_cgroup)) && confine="yes (task/cgroup, ConstrainRAMSpace)"
cat <<EOF
[konduktor-cluster] Slurm cluster '$KC_CLUSTER' is up
$(sinfo -o '  %10P %6a %12N %6D %10T %G' 2>/dev/null)
  cgroups:  $confine
  ssh:      ssh -i $KC_SSH_KEY -p $KC_SSH_PORT $KC_TEST_USER@127.0.0.1   (listening on $KC_SSH_LISTEN)
  logs:     $KC_LOG_DIR/   pids: $KC_RUN_DIR/
  stop:     $HERE/cluster-down.sh
EOF

if [[ $MODE == --foreground ]]; then
  tail -n 0 -F "$KC_LOG_DIR"/*.log &
  tail_pid=$!
  trap 'kill "$tail_pid" 2>/dev/null; "$HERE/cluster-down.sh"; exit 0' TERM INT
  wait "$tail_pid"
fi
