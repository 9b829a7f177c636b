#!/usr/bin/env bash
# chroot-down.sh RELEASE: stop the cluster chroot-up.sh started for RELEASE (24.11 or 26.05)
# and unmount its file systems. Idempotent. The chroot, its accounting DB and keys are kept,
# so the next chroot-up.sh is back in seconds; `rm -rf /var/lib/konduktor-chroots/RELEASE`
# (after this) removes it for good.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=chroot-common.sh
. "$HERE/chroot-common.sh"
chroot_release "${1:-}"

[[ $EUID -eq 0 ]] || { echo "chroot-down.sh must run as root" >&2; exit 1; }

if [[ -x $ROOT/bin/bash && -f $ROOT/opt/konduktor-cluster/cluster-down.sh ]]; then
  mount_chroot # cluster-down.sh reads /proc to find its daemons
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    bash /opt/konduktor-cluster/cluster-down.sh |
    sed "s|\[konduktor-cluster\]|[konduktor-chroot $RELEASE]|"
fi
unmount_chroot
