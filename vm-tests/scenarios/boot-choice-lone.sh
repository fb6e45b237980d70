#!/bin/sh
# The boot-time choice (issue 15 items 3, 6, 7) on plain disks, no full system: vdb holds a filesystem whose rootshift
# journal says it is the target of an unfinished migration from vdc (a half copy seen before its slow source).
# `rootshift choose` alone must wait for the twin (--wait, rd.rootshift.wait=), then refuse (exit 4) naming the twin
# and rd.rootshift.pick=; `rootshift wrap` refuses too (before issue 15 it wrapped the lone half copy: exit 0);
# --pick boots it; the probe mounts leave the devices writable (BLKROSET restored); once the twin appears, the
# journal picks the source.
# vm-fs: ext4
# vm-disks: 512M 256M 256M
# vm-timeout: 300
. /vmtest/lib.sh
step mkfs-vdb mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/vdb
mkdir -p /mnt/b
step mount-vdb mount /dev/vdb /mnt/b
mkdir -p /mnt/b/var/lib/rootshift
cat > /mnt/b/var/lib/rootshift/rootshift-root.json << EOF
{"version": 1, "wrapper": "rootshift-root", "backend": "dm-mirror", "step": "mirroring",
 "source": {"dev": "254:32", "path": "/dev/vdc", "size_bytes": 268435456, "identity": {"serial": "vdc"}},
 "target": {"dev": "254:16", "path": "/dev/vdb", "size_bytes": 268435456, "identity": {"serial": "vdb"}},
 "started_unix": 100, "updated_unix": 100, "seq": 5, "migration_id": "0123456789abcdef0123456789abcdef"}
EOF
step umount-vdb umount /mnt/b
t0=$(now_cs)
rootshift choose --wait 3 /dev/vdb > /tmp/c1 2> /tmp/e1; rc=$?
t1=$(now_cs)
say "lone target: exit $rc after $(fmt_cs $((t1 - t0)))s: $(tr '\n' '|' < /tmp/e1)"
assert_eq lone-unfinished-target-refused 4 "$rc"
assert_contains refusal-names-the-twin /tmp/e1 "its twin /dev/vdc did not appear"
assert_contains refusal-names-the-pick /tmp/e1 "rd.rootshift.pick=SERIAL=vdb"
check waited-for-the-twin "$(fmt_cs $((t1 - t0)))s" [ $((t1 - t0)) -ge 300 ]
assert_eq probe-left-vdb-writable 0 "$(cat /sys/block/vdb/ro)"
# (before issue 15: exit 0, the half copy wrapped)
timeout 60 rootshift wrap --name lone --wait 1 /dev/vdb > /tmp/w1 2> /tmp/we1; rc=$?
say "wrap: exit $rc: $(tr '\n' '|' < /tmp/we1)"
assert_eq wrap-refuses-too 4 "$rc"
check no-wrapper-made "$(ls /dev/mapper | tr '\n' ' ')" [ ! -e /dev/mapper/rootshift-lone ]
rootshift choose --wait 1 --pick SERIAL=vdb /dev/vdb > /tmp/c2 2> /tmp/e2; rc=$?
assert_eq pick-boots-it "0 /dev/vdb" "$rc $(cat /tmp/c2)"
step twin-appears dd if=/dev/vdb of=/dev/vdc bs=4M conv=fsync status=none
rootshift choose --wait 1 /dev/vdb > /tmp/c3 2> /tmp/e3; rc=$?
say "with the twin: exit $rc: $(tr '\n' '|' < /tmp/e3)"
assert_eq with-the-twin-the-source "0 /dev/vdc" "$rc $(cat /tmp/c3)"
assert_eq probe-left-vdc-writable 0 "$(cat /sys/block/vdc/ro)"
scenario_done
