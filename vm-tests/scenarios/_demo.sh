#!/bin/sh
# Demo (not a test; scripts/demo boots it): / is ext4 on rootshift-root over vda (512 MiB). Move it live to vdb
# (1.5 GiB) while a writer keeps writing, with rootshift's own human output on the console.
# vm-fs: ext4
# vm-disks: 512M 1536M
. /vmtest/lib.sh
banner() { echo; echo "==================== $* ===================="; }
banner "/ is on the wrapper"
grep ' / ' /proc/mounts | tail -1
df -h / | tail -1
banner "rootshift status"
rootshift status
prefill /data 5 4
writer_start /live 100
writer_wait_more 2 60
banner "rootshift migrate /dev/vdb --yes   (a writer is busy on / all along)"
rootshift migrate /dev/vdb --yes
echo "exit status $?"
banner "rootshift status"
rootshift status
banner "df -h /"
df -h / | tail -1
writer_stop
banner "every file written before, during and after the switch"
verify_sums && echo "checksums: all match"
echo "/dev/vda is held by: [$(ls /sys/block/vda/holders)] (empty = free to unplug)"
scenario_done
