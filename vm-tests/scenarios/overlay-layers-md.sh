#!/bin/sh
# A live-media root of two stacked images (as Ubuntu's casper stacks its layers) whose upper is on an md wrapper
# (`rootshift wrap --backend md --name upper /dev/zram0`), moved onto two partitions of one new disk: the
# partition-level form `rootshift migrate /dev/vdb2 --image-to /dev/vdb1`. Both image files are copied to vdb1 and
# both read-only loops moved onto the copies; md mirrors zram0 onto vdb2 and grows; medium and zram are let go.
# vm-root: overlay
# vm-layers: 2
# vm-backend: md
# vm-disks: 384M 1536M
# vm-timeout: 900
. /vmtest/lib.sh
MED=/dev/vda DISK=/dev/vdb
MEDIUM=/run/live/medium UPPER=/run/live/overlay IMAGE_MNT=/run/rootshift/image
L1=/run/live/rootfs/filesystem.squashfs L2=/run/live/rootfs/extra.squashfs
MED_DEV=$(devnum $MED)
MD=$(wrapper_block) NODE=$(wrapper_node)
WDEV=$(cat /sys/block/$MD/dev 2>/dev/null)
MiB=1048576
say "medium $MED=$MED_DEV, disk $DISK, upper's wrapper $NODE=$MD ($WDEV)"
upper_bytes() { stat -f -c '%b %S' $UPPER | awk '{printf "%d", $1 * $2}'; }
mounts_of() { awk -v d="$1" '$3 == d {print $5}' /proc/self/mountinfo | tr '\n' ' ' | sed 's/ $//'; }
loop_of() { basename "$(mnt_field "$1" 9)"; }   # the loop device a lower layer is mounted from

# ---- the root stage 1 built ---------------------------------------------------------------------------------------
OPTS=$(mnt_field / 10)
check two-lower-layers "$OPTS" [ "${OPTS#*lowerdir=$L2:$L1,}" != "$OPTS" ]
assert_eq upper-on-md-wrapper "$WDEV" "$(st_devnum $UPPER/rw)"
assert_eq md-wrapper-over-zram0 zram0 "$(ls /sys/block/$MD/slaves | tr '\n' ' ' | sed 's/ $//')"
LA=$(loop_of $L1) LB=$(loop_of $L2)
assert_eq loops-read-only "1 1" "$(cat /sys/block/$LA/ro) $(cat /sys/block/$LB/ro)"
check extra-layer-visible "$(ls /opt/extra 2>&1 | tr '\n' ' ')" [ -f /opt/extra/file3.bin ]
step extra-layer-sums sh -c "cd / && $SHA256SUM -c --quiet $RES/extra.sums"
S1=$($SHA256SUM $MEDIUM/live/filesystem.squashfs | cut -d' ' -f1) S2=$($SHA256SUM $MEDIUM/live/extra.squashfs | cut -d' ' -f1)

# the new disk: partition 1 for the image files, partition 2 (the rest) for the upper
step partition-vdb sh -c "printf 'label: gpt\n,128M\n,\n' | sfdisk -q $DISK"
i=0; while [ ! -b ${DISK}2 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
P1_DEV=$(devnum ${DISK}1) P2_DEV=$(devnum ${DISK}2) P2_SZ=$(sectors ${DISK}2)
say "image partition ${DISK}1=$P1_DEV, upper's partition ${DISK}2=$P2_DEV (${P2_SZ}s)"

step prefill-20MiB prefill /home/data 5 4
step file-in-etc mkfile /etc/layers-created.bin 1
writer_start /home/live 120
writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]

# ---- migrate -------------------------------------------------------------------------------------------------------
t_start=$(now_cs)
timeout 600 rootshift migrate ${DISK}2 --image-to ${DISK}1 --yes --json > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
t_end=$(now_cs)
cp /tmp/migrate.json /tmp/migrate.err "$RES/"
say "migrate exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr:"; sed 's/^/    | /' /tmp/migrate.err | tail -20
figure migrate_s "$(fmt_cs $((t_end - t_start)))"
check migrate-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|')" [ $rc = 0 ]
check_events json-events-documented /tmp/migrate.json
jq -r 'select(.event=="image") | "\(.file)|\(.device)|\(.loop)"' /tmp/migrate.json 2>/dev/null | sort > /tmp/images
assert_eq json-two-image-events "live/extra.squashfs|${DISK}1|/dev/$LB live/filesystem.squashfs|${DISK}1|/dev/$LA" \
  "$(tr '\n' ' ' < /tmp/images | sed 's/ $//')"
jq -r 'select(.event=="released") | .released[]' /tmp/migrate.json > "$RES/released.txt" 2>/dev/null
say "released: $(tr '\n' '|' < "$RES/released.txt")"
during=$(writer_count_between "$t_start" "$t_end")
check writer-wrote-during-migrate "$during files completed during the migrate" [ "$during" -ge 1 ]

# ---- after ---------------------------------------------------------------------------------------------------------
assert_eq md-wrapper-on-vdb2 "$(basename ${DISK}2)" "$(ls /sys/block/$MD/slaves | tr '\n' ' ' | sed 's/ $//')"
assert_eq md-raid-disks-1 1 "$(cat /sys/block/$MD/md/raid_disks)"
U1=$(upper_bytes)
figure upper_after_mib $((U1 / MiB))
check upper-fills-vdb2 "statfs total of $UPPER = $U1 bytes, partition $((P2_SZ * 512))" [ "$U1" -gt $((P2_SZ * 512 * 9 / 10)) ]
assert_eq loops-on-the-copies "$IMAGE_MNT/live/filesystem.squashfs $IMAGE_MNT/live/extra.squashfs" \
  "$(cat /sys/block/$LA/loop/backing_file) $(cat /sys/block/$LB/loop/backing_file)"
assert_eq copies-on-vdb1 "$P1_DEV $P1_DEV" "$(st_devnum $IMAGE_MNT/live/filesystem.squashfs) $(st_devnum $IMAGE_MNT/live/extra.squashfs)"
sync; echo 3 > /proc/sys/vm/drop_caches
assert_eq copies-equal-originals "$S1 $S2" \
  "$($SHA256SUM $IMAGE_MNT/live/filesystem.squashfs | cut -d' ' -f1) $($SHA256SUM $IMAGE_MNT/live/extra.squashfs | cut -d' ' -f1)"
check medium-released "mounts of $MED_DEV: '$(mounts_of $MED_DEV)', holders: '$(ls /sys/block/vda/holders)'" \
  [ -z "$(mounts_of $MED_DEV)" -a -z "$(ls /sys/block/vda/holders)" ]
zfree() { [ ! -e /sys/block/zram0 ] || [ "$(cat /sys/block/zram0/disksize)" = 0 ]; }
check zram0-freed "$([ -e /sys/block/zram0 ] && echo "disksize=$(cat /sys/block/zram0/disksize)" || echo 'zram0 removed')" zfree
# the medium is gone for good: every read of the lower comes from the copies now
step medium-zeroed dd if=/dev/zero of=$MED bs=1M count=64 conv=fsync
sync; echo 3 > /proc/sys/vm/drop_caches
step extra-layer-sums-after sh -c "cd / && $SHA256SUM -c --quiet $RES/extra.sums"
step writer-stop-no-errors writer_stop
step verify-all-checksums verify_sums
step write-after-migrate mkfile /home/after-migrate.bin 2
step verify-after-migrate-write verify_sums
scenario_done
