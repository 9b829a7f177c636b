#!/usr/bin/env bash
# chroot-up.sh RELEASE: a real Slurm cluster of another release beside the host's 22.05.
# Idempotent; run as root on Debian 12.
#
#   RELEASE  24.11 (Debian trixie) or 26.05 (Debian sid)
#
# Each release lives in a debootstrap chroot under /var/lib/konduktor-chroots/RELEASE/root
# and runs THE SAME cluster-up.sh and config templates as the host cluster, inside the
# chroot, on ports of its own (so the two never meet): two slurmd nodes with 8 fake H100
# each, slurmdbd + MariaDB, the gpu/low/high partitions, the ordinary user kdtest, and an
# sshd on 127.0.0.1 that the tests log into as a workstation would (the host's 22.05 client
# cannot talk to a newer controller: "Incompatible versions of client and server code").
#
# First run: debootstrap (~20 s, ~215 MB) + packages (~10 s) + start (~10 s).
# Later runs with everything up: a few seconds. chroot-down.sh RELEASE stops it.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=chroot-common.sh
. "$HERE/chroot-common.sh"
chroot_release "${1:-}"

[[ $EUID -eq 0 ]] || { echo "chroot-up.sh must run as root" >&2; exit 1; }

log() { printf '[konduktor-chroot %s] %s\n' "$RELEASE" "$*"; }

if [[ ! -e $ROOT/.konduktor-bootstrapped ]]; then
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  fi
  log "debootstrap $SUITE into $ROOT"
  rm -rf "$ROOT"
  mkdir -p "$ROOT"
  debootstrap --variant=minbase "$SUITE" "$ROOT" "$MIRROR" >"$CHROOT_DIR/debootstrap.log" 2>&1 || {
    tail -n 20 "$CHROOT_DIR/debootstrap.log" >&2
    exit 1
  }
  touch "$ROOT/.konduktor-bootstrapped"
fi

mount_chroot

# sid's Release files are "expired" by this machine's clock; the archive is still right.
if [[ $SUITE == sid ]]; then
  echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99konduktor"
fi
grep -qE '^127\.0\.0\.1[[:space:]].*localhost' "$ROOT/etc/hosts" 2>/dev/null ||
  printf '127.0.0.1 localhost\n' >>"$ROOT/etc/hosts"
# slurmctld calls back the submitting host by name (e.g. to kill a job): it must resolve.
host_name=$(hostname)
grep -qE "[[:space:]]$host_name([[:space:]]|\$)" "$ROOT/etc/hosts" ||
  printf '127.0.0.1 %s\n' "$host_name" >>"$ROOT/etc/hosts"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
# MariaDB 11.8 (sid) looks for its socket under /run/mariadbd; ours is /run/mysqld.
ln -sfn mysqld "$ROOT/run/mariadbd"

# The cluster scripts, as the host uses them (refreshed on every run).
install -d "$ROOT/opt/konduktor-cluster"
cp -r "$HERE/cluster-up.sh" "$HERE/cluster-down.sh" "$HERE/cluster-common.sh" "$HERE/conf" \
  "$ROOT/opt/konduktor-cluster/"

# 24.11+ run without cgroups in a chroot: task/none, proctrack/linuxproc, CgroupPlugin=disabled.
chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  KC_CGROUP=off KC_CGROUP_PLUGIN=disabled \
  KC_CTLD_PORT="$CTLD_PORT" KC_DBD_PORT="$DBD_PORT" \
  KC_NODE1_PORT="$NODE1_PORT" KC_NODE2_PORT="$NODE2_PORT" KC_SSH_PORT="$SSH_PORT" \
  bash /opt/konduktor-cluster/cluster-up.sh |
  sed -e "s|\[konduktor-cluster\]|[konduktor-chroot $RELEASE]|" \
    -e "s|\([ :]\)\(/var/l[a-z]*/konduktor-cluster/\)|\1$ROOT\2|g" \
    -e "s|stop:     /opt/konduktor-cluster/cluster-down.sh|stop:     $HERE/chroot-down.sh $RELEASE|"
exit "${PIPESTATUS[0]}"
