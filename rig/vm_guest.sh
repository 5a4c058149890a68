#!/bin/sh
# Runs inside the virtme-ng guest before the user's command (rig/vm.py passes it as the command).
# The guest sees the host's root read-only over 9p, so everything LIO and the tools write goes
# to tmpfs. Usage: sh rig/vm_guest.sh [VAR=value ...] CMD [ARGS...]
set -eu
# Leading VAR=value arguments are the host's environment for the guest (rig/vm.py passes them).
while [ $# -gt 0 ]; do
    case "$1" in *=*) export "$1"; shift ;; *) break ;; esac
done
t0=$(cut -d" " -f1 /proc/uptime)
# rig/vm.py passes the directory the host command ran in (a checkout, or anywhere for a wheel).
cd "${SCSI_PR_GUEST_CWD:-$(dirname "$0")/..}"
# Order matters: configfs before target_core_mod (which registers target/ in it), the fabric
# after the core, sg/sd so each loopback LUN gets /dev/sgN and /dev/sdX.
for m in configfs target_core_mod target_core_file target_core_iblock tcm_loop sg sd_mod; do
    modprobe "$m"
done
mountpoint -q /sys/kernel/config || mount -t configfs none /sys/kernel/config
# LIO's dbroot (APTPL files in pr/) must be an existing, writable directory before the first
# backstore exists. rtslib-fb picks /etc/target upstream, /etc/rtslib-fb-target on Debian; the
# host provides the mount points (rig/vm.py creates /etc/target).
for d in /etc/target /etc/rtslib-fb-target; do
    if [ -d "$d" ]; then
        mount -t tmpfs -o mode=0700 scsi-pr-target "$d"
        mkdir -p "$d/pr"
    fi
done
# multipath-tools reads its configuration from /etc/multipath/conf.d and keeps prkeys and wwids
# there: the multipath rig (rig/multipath.py) writes them (rig/vm.py creates the mount point).
if [ -d /etc/multipath ]; then
    mount -t tmpfs -o mode=0755 scsi-pr-multipath /etc/multipath
fi
# pytest's tmp_path, targetcli's prefs/lock and helper sockets need writable scratch space. A
# checkout that itself lives under /tmp (a CI clone, say) must stay visible: bind it back. Not
# /tmp itself (a command started there): binding that back would hide the tmpfs again.
checkout="$PWD"
case "$checkout/" in
    /tmp/?*)
        mkdir -p /run/scsi-pr-checkout
        mount --bind "$checkout" /run/scsi-pr-checkout
        mount -t tmpfs scsi-pr-tmp /tmp
        mkdir -p "$checkout"
        mount --bind /run/scsi-pr-checkout "$checkout"
        ;;
    *) mount -t tmpfs scsi-pr-tmp /tmp ;;
esac
cd "$checkout"  # through the new mounts
# rig/vm.py may attach this checkout and the stdlib as a disk image (virtio-blk, /dev/vda):
# reading them over 9p is the slowest part of the VM tier under TCG.
if [ -n "${SCSI_PR_IMAGE_BINDS:-}" ]; then
    modprobe virtio_blk 2>/dev/null || true
    mkdir -p /run/scsi-pr-image
    for _ in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; sleep 0.5; done
    mount -o ro /dev/vda /run/scsi-pr-image
    for pair in $(echo "$SCSI_PR_IMAGE_BINDS" | tr , ' '); do
        mkdir -p "${pair#*:}" 2>/dev/null || true  # under the /tmp tmpfs it may not exist
        mount --bind "/run/scsi-pr-image/${pair%%:*}" "${pair#*:}"
    done
    cd "$PWD"  # re-enter the checkout through the bind mount
fi
mkdir -p /tmp/targetcli
export TARGETCLI_HOME=/tmp/targetcli HOME=/tmp PYTHONDONTWRITEBYTECODE=1
export PATH="${SCSI_PR_GUEST_BIN:-$PWD/.venv/bin}:$PATH"
echo "scsi-pr vm: $(uname -r), LIO ready at ${t0}s+$(awk -v t="$t0" '{print $1-t}' /proc/uptime)s ($(cat /sys/kernel/config/target/version 2>/dev/null | head -1))"
# Not exec: the line after the command tells the host its work is done, because the power-off
# that follows can block for good on an LU that LIO wedged (rig/vm.py stops waiting then).
rc=0
"$@" || rc=$?
echo "scsi-pr vm: guest command exited $rc"
exit "$rc"
