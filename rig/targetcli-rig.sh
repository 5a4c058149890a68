#!/bin/sh
# The rig `scsi-pr lio up --initiators 3 --size 64M` builds, done by hand with targetcli
# (for people who know targetcli). Root, LIO kernel. `sh rig/targetcli-rig.sh down` removes it.
#
# targetcli cannot choose a loopback target's initiator (nexus) name: `/loopback create`
# writes a random one. So the two configfs writes below make each target's TPG with our fixed
# nexus first; targetcli then sees the target and links the LUN. The nexus must exist before
# the LUN is linked, else the disk never probes.
set -eu
N=${N:-3}
SIZE=${SIZE:-64M}
LOOP=/sys/kernel/config/target/loopback
target() { printf 'naa.5001405f00%06x' "$1"; }      # scsi_pr.rig.lio.target_wwn(i - 1)
nexus() { printf 'naa.50014050000000%02x' "$1"; }   # scsi_pr.rig.backends.initiator_name(i - 1)

if [ "${1:-up}" = down ]; then
    i=1; while [ $i -le "$N" ]; do targetcli /loopback delete "$(target $i)" 2>/dev/null || true; i=$((i + 1)); done
    targetcli /backstores/ramdisk delete scsipr0 2>/dev/null || true
    rm -f /etc/target/pr/aptpl_* /etc/rtslib-fb-target/pr/aptpl_* 2>/dev/null || true
    exit 0
fi

for m in target_core_mod tcm_loop sg sd_mod; do modprobe "$m"; done
targetcli /backstores/ramdisk create name=scsipr0 size="$SIZE"
# LIO rewrites <dbroot>/pr/aptpl_<serial> on every registration and fails the command if pr/
# is missing.
mkdir -p "$(cat /sys/kernel/config/target/dbroot)/pr"
i=1
while [ $i -le "$N" ]; do
    mkdir -p "$LOOP/$(target $i)/tpgt_1"
    echo "$(nexus $i)" > "$LOOP/$(target $i)/tpgt_1/nexus"
    targetcli "/loopback/$(target $i)/tpgt1/luns" create /backstores/ramdisk/scsipr0 lun=0 2>/dev/null ||
        targetcli "/loopback/$(target $i)/luns" create /backstores/ramdisk/scsipr0 lun=0
    i=$((i + 1))
done
targetcli ls /loopback
# Each target is one SCSI host: its LUN 0 is /sys/class/scsi_device/$(cat tpgt_1/address):0/.
for t in "$LOOP"/naa.5001405f*; do
    hctl="$(cat "$t/tpgt_1/address"):0"
    echo "$(cat "$t/tpgt_1/nexus") -> $(basename "$t") $hctl" \
        "$(ls /sys/class/scsi_device/"$hctl"/device/scsi_generic) $(ls /sys/class/scsi_device/"$hctl"/device/block)"
done
