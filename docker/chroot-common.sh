# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are used by the scripts that source this
# Shared by chroot-up.sh and chroot-down.sh: which Debian suite and ports each release uses.
# Ports never meet the host cluster's (slurmctld 6817, slurmdbd 6819, nodes 17001-2, ssh 2222).

KC_CHROOTS="${KC_CHROOTS:-/var/lib/konduktor-chroots}"
MIRROR="${KC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

chroot_release() {
  RELEASE=$1
  case "$RELEASE" in
    24.11) SUITE=trixie CTLD_PORT=7817 DBD_PORT=7819 NODE1_PORT=27001 NODE2_PORT=27002 SSH_PORT=2224 ;;
    26.05) SUITE=sid CTLD_PORT=8817 DBD_PORT=8819 NODE1_PORT=28001 NODE2_PORT=28002 SSH_PORT=2226 ;;
    *)
      echo "usage: $0 24.11|26.05" >&2
      exit 2
      ;;
  esac
  CHROOT_DIR="$KC_CHROOTS/$RELEASE"
  ROOT="$CHROOT_DIR/root"
}

# The kernel file systems the daemons need, each mounted once (idempotent).
mount_chroot() {
  local target
  mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
  mountpoint -q "$ROOT/sys" || mount -t sysfs sysfs "$ROOT/sys"
  # /dev itself keeps debootstrap's device nodes: a bind of the host's /dev could propagate
  # the mounts below back onto the host.
  mountpoint -q "$ROOT/dev/pts" || mount -t devpts -o newinstance,ptmxmode=0666 devpts "$ROOT/dev/pts"
  for target in "$ROOT/run" "$ROOT/dev/shm"; do
    mkdir -p "$target"
    mountpoint -q "$target" || mount -t tmpfs -o mode=755 tmpfs "$target"
  done
}

unmount_chroot() {
  local target
  for target in "$ROOT/dev/shm" "$ROOT/dev/pts" "$ROOT/run" "$ROOT/sys" "$ROOT/proc"; do
    if mountpoint -q "$target"; then umount "$target" || umount -l "$target"; fi
  done
}
