#!/bin/sh
# Issue 15, items 5 and 2 (dm, ext4), in one boot.
# (a) A failed switch is recorded before the legs diverge: the switch fails right after `switching` is recorded
#     (failpoint migrate::switching=error) and rootshift is killed right after the roll-back's detach
#     (migrate::rolled-back=kill), before it records `aborted` or clears the half copy. The target's own copy of the
#     journal (var/lib/rootshift/ in its filesystem, read with ro,noload) must say `mirroring`, not `switching`:
#     a boot (or a retry onto it) must never take that half copy for the switched root. Then `rootshift abort`
#     abandons the migration and clears the half copy (found by identity, issue 15 item 1).
# (b) A whole disk with an old partition table as a --force target: two MBR partitions live in the kernel and a GPT
#     backup header sits in its last sector. After the migration no partition of it is left in the kernel (they would
#     be live nodes over the migrated root) and the last sector no longer says "EFI PART".
# vm-fs: ext4
# vm-disks: 512M 1G 1536M
# vm-timeout: 900
# vm-host-fsck: vdc
. /vmtest/lib.sh
step prefill-10MiB prefill /data 5 2

# ---- (a) failed switch, killed after the detach ----------------------------------------------------------------------
ROOTSHIFT_FAILPOINTS="migrate::switching=error,migrate::rolled-back=kill" timeout 300 \
  rootshift migrate /dev/vdb --yes --force --json > /tmp/a.json 2> /tmp/a.err; rc=$?
sleep 1
say "failed switch: exit $rc; stderr: $(tr '\n' '|' < /tmp/a.err | cut -c1-300)"
assert_eq switch-fail/killed-after-detach 137 "$rc"
assert_eq switch-fail/back-on-source "linear $(devnum /dev/vda)" "$(rootshift status --json | jq -r '.wrappers[0] | "\(.table) \(.legs[0].dev)"')"
mkdir -p /mnt/t
step switch-fail/mount-target-ro mount -t ext4 -o ro,noload /dev/vdb /mnt/t
# the persisted copy: format 2 (two slots, the newer decides) or format 1 (a plain journal)
jf=$(ls /mnt/t/var/lib/rootshift/rootshift-root.json /mnt/t/.rootshift/rootshift-root.json 2>/dev/null | head -1)
tstep=$(jq -r 'if .version == 2 then ([.slots[] | select(type == "object" and .journal != null)] | max_by(.seq)
               | .journal | fromjson | .step) else .step end' "${jf:-/nonexistent}" 2>&1)
umount /mnt/t
assert_eq switch-fail/target-journal-not-switching mirroring "$tstep"
rootshift abort > /tmp/ab.out 2> /tmp/ab.err; rc=$?
say "abort: exit $rc $(tr '\n' '|' < /tmp/ab.out /tmp/ab.err | cut -c1-300)"
assert_eq switch-fail/abort-exit-0 0 "$rc"
assert_eq switch-fail/half-copy-cleared 0 "$(head -c 1048576 /dev/vdb | tr -d '\0' | wc -c)"

# ---- (b) a whole disk with an old table ---------------------------------------------------------------------------------
printf 'o\nn\np\n1\n\n+100M\nn\np\n2\n\n+100M\nw\n' | fdisk /dev/vdc > /tmp/fdisk.out 2>&1
blockdev --rereadpt /dev/vdc 2>/dev/null
last=$(($(sectors /dev/vdc) - 1))
printf 'EFI PART' | dd of=/dev/vdc bs=512 seek=$last conv=notrunc 2>/dev/null; sync
check old-table/partitions-before "$(ls /sys/block/vdc | grep '^vdc[0-9]' | tr '\n' ' ')" [ -e /sys/block/vdc/vdc1 ]
check old-table/backup-header-before "$(dd if=/dev/vdc bs=512 skip=$last count=1 2>/dev/null | head -c 8)" \
  [ "$(dd if=/dev/vdc bs=512 skip=$last count=1 2>/dev/null | head -c 8)" = "EFI PART" ]
timeout 300 rootshift migrate /dev/vdc --yes --force --json > /tmp/b.json 2> /tmp/b.err; rc=$?
say "migrate onto the old table: exit $rc; stderr: $(tr '\n' '|' < /tmp/b.err | cut -c1-300)"
assert_eq old-table/migrate-exit-0 0 "$rc"
assert_eq old-table/done-on-vdc "done $(devnum /dev/vdc)" "$(rootshift status --json | jq -r '.wrappers[0] | "\(.state) \(.legs[0].dev)"')"
check old-table/no-partitions-left "$(ls /sys/block/vdc | grep '^vdc[0-9]' | tr '\n' ' ')" \
  sh -c '! ls /sys/block/vdc | grep -q "^vdc[0-9]"'
tail=$(dd if=/dev/vdc bs=512 skip=$last count=1 2>/dev/null | head -c 8 | tr -d '\0')
check old-table/no-backup-gpt-header "last sector: '$tail'" [ "$tail" != "EFI PART" ]
step verify-sums verify_sums
scenario_done
