#!/bin/sh
# A live-media root moved live (Debian live-boot layout): / is the overlay of live/filesystem.squashfs on the medium
# vda (a read-only loop, the squashfs at /run/live/rootfs/filesystem.squashfs) and an ext4 upper on rootshift-upper
# over zram0 (/run/live/overlay), built by stage 1 (`# vm-root: overlay`). First an overlay whose upper is on no
# wrapper (a tmpfs upper, entered by chroot) is refused: exit 2, nothing changed. Then `rootshift migrate /dev/vdb
# --image-to /dev/vdc` with a writer busy and a long-lived process: the upper's wrapper is mirrored onto vdb and
# grown, the image is copied onto a fresh ext4 on vdc and the loop moved onto the copy (LOOP_CHANGE_FD), the medium
# is unmounted and the zram device freed; every file and the lower's binaries read back the same afterwards.
# vm-root: overlay
# vm-disks: 384M 1536M 384M
# vm-timeout: 900
# vm-host-fsck: vdb vdc
. /vmtest/lib.sh
MED=/dev/vda TGT=/dev/vdb IMG=/dev/vdc
MEDIUM=/run/live/medium LOWER=/run/live/rootfs/filesystem.squashfs UPPER=/run/live/overlay
IMAGE_MNT=/run/rootshift/image REL=live/filesystem.squashfs
MED_DEV=$(devnum $MED) TGT_DEV=$(devnum $TGT) IMG_DEV=$(devnum $IMG)
TGT_SZ=$(sectors $TGT)
DM=$(wrapper_block) NODE=$(wrapper_node)
WDEV=$(cat /sys/block/$DM/dev 2>/dev/null)
MiB=1048576
say "medium $MED=$MED_DEV, target $TGT=$TGT_DEV ${TGT_SZ}s, image disk $IMG=$IMG_DEV, upper's wrapper $NODE=$DM ($WDEV)"
figure target_mib $((TGT_SZ / 2048))
upper_bytes() { stat -f -c '%b %S' $UPPER | awk '{printf "%d", $1 * $2}'; }   # statfs total of the upper's ext4
starts_with() { [ "$(head -c ${#2} "$1")" = "$2" ]; }   # starts_with FILE PREFIX
slaves() { ls /sys/block/$1/slaves 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }
mounts_of() { awk -v d="$1" '$3 == d {print $5}' /proc/self/mountinfo | tr '\n' ' ' | sed 's/ $//'; }   # MAJ:MIN
BINS="/bin/busybox /usr/sbin/rootshift /usr/sbin/mke2fs /usr/bin/jq"   # read from the lower (the squashfs)
bin_sums() { for b in $BINS; do echo "$b $($SHA256SUM "$b" | cut -c1-16)"; done | tr '\n' ' '; }

# ---- the live root as stage 1 built it -------------------------------------------------------------------------
assert_eq root-is-overlay overlay "$(mnt_field / 8)"
OPTS=$(mnt_field / 10)
check overlay-layers "$OPTS" [ "${OPTS#*lowerdir=$LOWER,upperdir=$UPPER/rw,workdir=$UPPER/work}" != "$OPTS" ]
assert_eq upper-on-wrapper "$WDEV" "$(st_devnum $UPPER/rw)"
assert_eq wrapper-over-zram0 zram0 "$(slaves $DM)"
LOOP=$(mnt_field $LOWER 9) LOOPK=$(basename "$(mnt_field $LOWER 9)")
check lower-is-squashfs-on-loop "$LOWER: $(mnt_field $LOWER 8) from $LOOP" [ "$(mnt_field $LOWER 8)" = squashfs -a "${LOOPK#loop}" != "$LOOPK" ]
assert_eq loop-read-only 1 "$(cat /sys/block/$LOOPK/ro 2>&1)"
assert_eq loop-backing-on-medium "$MEDIUM/$REL" "$(cat /sys/block/$LOOPK/loop/backing_file 2>&1)"
assert_eq image-file-on-vda "$MED_DEV" "$(st_devnum $MEDIUM/$REL)"
assert_eq medium-mounted "$MEDIUM" "$(mounts_of $MED_DEV)"
# ext4's sysfs directory of a device lives as long as its superblock: after a lazy unmount too, while in use
check medium-ext4-alive "$(ls -d /sys/fs/ext4/vda 2>&1)" [ -d /sys/fs/ext4/vda ]
check zram0-in-use "disksize=$(cat /sys/block/zram0/disksize)" [ "$(cat /sys/block/zram0/disksize)" -gt 0 ]
U0=$(upper_bytes)
figure upper_before_mib $((U0 / MiB))
check upper-size-before-lt-256MiB "statfs total of $UPPER = $U0 bytes" [ "$U0" -gt 0 -a "$U0" -le $((256 * MiB)) ]
IMG_BYTES=$(stat -c %s $MEDIUM/$REL)
figure squashfs_mib $((IMG_BYTES / MiB))
IMG_SUM=$($SHA256SUM $MEDIUM/$REL | cut -d' ' -f1)
boot_sums() { (cd "$1" && $SHA256SUM live/vmlinuz live/initrd.img .disk/info 2>&1 | cut -c1-16 | tr '\n' ' '); }
BOOT_SUMS=$(boot_sums $MEDIUM)
check boot-files-on-medium "$BOOT_SUMS" [ -f $MEDIUM/live/vmlinuz -a -f $MEDIUM/live/initrd.img -a -f $MEDIUM/.disk/info ]
rootshift status --json > "$RES/status-before.json" 2> "$RES/status-before.err"
say "status before: exit $?, $(head -c 300 "$RES/status-before.json")"

# ---- refused: an overlay root whose upper is on no wrapper (a tmpfs, like a plain live system's) ---------------
# Its paths hold inside the chroot: the tmpfs sits under /run, which is bound in whole (the lower's mount too).
OT=/run/o-test
control_up() {
  mkdir -p $OT /mnt/o && mount -t tmpfs -o size=32m tmpfs $OT && mkdir $OT/rw $OT/work || return 1
  mount -t overlay overlay -o "lowerdir=$LOWER,upperdir=$OT/rw,workdir=$OT/work" /mnt/o || return 1
  for m in proc sys dev; do mount -o bind /$m /mnt/o/$m || return 1; done
  mount -o rbind /run /mnt/o/run
}
under() { awk -v p="$1" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo; }   # mounts at/below
control_down() {
  under /mnt/o | sort -r | while read -r m; do umount "$m" || exit 1; done || return 1
  umount $OT && rmdir $OT
}
snapshot() {  # what a refusal must not change (taken with the control mounted, its mounts included)
  sync; echo 3 > /proc/sys/vm/drop_caches
  echo "blocks: $(ls /sys/block | tr '\n' ' ')"
  echo "dm: $(for d in /sys/block/dm-*; do echo "$(basename $d)=$(cat $d/dm/name) slaves=$(slaves $(basename $d))"; done | tr '\n' ' ')"
  echo "loops: $(for l in /sys/block/loop*; do [ -e $l/loop/backing_file ] && echo "$(basename $l)=$(cat $l/loop/backing_file)"; done | tr '\n' ' ')"
  echo "zram0: $(cat /sys/block/zram0/disksize)"
  echo "vdb: $(dd if=$TGT bs=1M count=1 2>/dev/null | $SHA256SUM | cut -c1-16)"
  echo "vdc: $(dd if=$IMG bs=1M count=1 2>/dev/null | $SHA256SUM | cut -c1-16)"
  echo "mounts: $(awk '{print $3 "@" $5}' /proc/self/mountinfo | tr '\n' ' ')"
}
step control-overlay-up control_up
assert_eq control-root-is-overlay overlay "$(mnt_field /mnt/o 8)"
assert_eq control-upper-on-tmpfs tmpfs "$(mnt_field $OT 8)"
snapshot > /tmp/snap0
timeout 120 chroot /mnt/o /usr/sbin/rootshift migrate $TGT --image-to $IMG --yes > /tmp/refuse.out 2> /tmp/refuse.err; rc=$?
cp /tmp/refuse.err "$RES/refuse-tmpfs-upper.err"; cp /tmp/refuse.out "$RES/refuse-tmpfs-upper.out"
say "tmpfs upper: exit $rc, stderr: $(head -c 400 /tmp/refuse.err | tr '\n' '|')"
echo "tmpfs-upper exit=$rc $(head -1 /tmp/refuse.err)" >> "$RES/refusals.txt"
snapshot > /tmp/snap1
assert_eq refused-tmpfs-upper-exit-2 2 "$rc"
check refused-tmpfs-upper-error-prefix "stderr: $(head -c 120 /tmp/refuse.err | tr '\n' '|')" starts_with /tmp/refuse.err "rootshift: error: "
assert_contains refused-tmpfs-upper-says-overlay /tmp/refuse.err overlay
assert_contains refused-tmpfs-upper-says-upper /tmp/refuse.err upper
check refused-tmpfs-upper-nothing-changed "$(diff /tmp/snap0 /tmp/snap1 | grep '^[-+][a-z]' | cut -c1-300 | tr '\n' '|')" cmp -s /tmp/snap0 /tmp/snap1
assert_eq refused-no-rootshift-dm-added rootshift-upper "$(for d in /sys/block/dm-*; do cat $d/dm/name; done | grep rootshift- | tr '\n' ' ' | sed 's/ $//')"
step control-overlay-down control_down
check control-unmounted "left: '$(under /mnt/o; under $OT)'" [ -z "$(under /mnt/o; under $OT)" ]

# ---- what the migration must keep -------------------------------------------------------------------------------
check lower-binaries-not-copied-up "$BINS under $UPPER/rw: $(for b in $BINS; do [ -e $UPPER/rw$b ] && echo $b; done)" \
  [ -z "$(for b in $BINS; do [ -e $UPPER/rw$b ] && echo $b; done)" ]
B0=$(bin_sums)
say "lower binaries: $B0"
copy_up() {  # copy_up PATH : change a file of the lower (overlayfs copies it up), checksummed
  _t=/tmp/copyup.$$
  cp "$1" $_t && echo "ovl:x:1000:" >> $_t || return 1
  _h=$($SHA256SUM $_t | cut -d' ' -f1)
  cp $_t "$1" && rm -f $_t && echo "$_h  $1" >> "$SUMS"
}
step prefill-20MiB prefill /home/data 5 4
step file-in-etc mkfile /etc/ovl-created.bin 1
step copy-up-etc-group copy_up /etc/group
check etc-group-copied-up "$(ls -l $UPPER/rw/etc/group 2>&1)" [ -f $UPPER/rw/etc/group ]
mkdir -p /home/ovl
step file-in-home mkfile /home/ovl/created.bin 2
sleep 100000 &
SLEEP_PID=$! SLEEP_CMD="sleep 100000 "
cmdline() { tr '\0' ' ' < /proc/$1/cmdline 2>/dev/null; }
i=0; while [ "$(cmdline $SLEEP_PID)" != "$SLEEP_CMD" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done  # until exec'd
assert_eq long-running-process-started "$SLEEP_CMD" "$(cmdline $SLEEP_PID)"
writer_start /home/live 120
writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]

# ---- migrate the live root ------------------------------------------------------------------------------------
say "rootshift migrate $TGT --image-to $IMG --yes --json"
t_start=$(now_cs)
timeout 600 rootshift migrate $TGT --image-to $IMG --yes --json > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
t_end=$(now_cs)
cp /tmp/migrate.json /tmp/migrate.err "$RES/"
say "migrate exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr:"; sed 's/^/    | /' /tmp/migrate.err | tail -20
say "stdout (first/last lines):"; head -3 /tmp/migrate.json | sed 's/^/    | /'; tail -3 /tmp/migrate.json | sed 's/^/    | /'
figure migrate_s "$(fmt_cs $((t_end - t_start)))"
check migrate-exit-0 "exit=$rc after $(fmt_cs $((t_end - t_start)))s; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|')" [ $rc = 0 ]

all=$(grep -c . /tmp/migrate.json); good=$(jq -c 'select(type=="object" and has("event"))' /tmp/migrate.json 2>/dev/null | wc -l)
check json-lines-valid "$good of $all stdout lines are JSON objects with an event" [ "$all" -gt 0 -a "$good" = "$all" ]
check_events json-events-documented /tmp/migrate.json   # against docs/events.json (docs/json.md)
jq -r '.event' /tmp/migrate.json 2>/dev/null > /tmp/events
EV=$(uniq /tmp/events | tr '\n' ' ')
for e in switched grown image released; do check json-has-$e "events: $EV" grep -qx $e /tmp/events; done
check json-done-is-last "events: $EV" [ "$(tail -1 /tmp/events)" = done ]
jq -c 'select(.event=="image")' /tmp/migrate.json > /tmp/image.json 2>/dev/null
IMGEV="$(jq -r '"\(.file)|\(.bytes)|\(.device)|\(.loop)"' /tmp/image.json 2>/dev/null | tr '\n' ' ' | sed 's/ $//')"
assert_eq json-image-event "$REL|$IMG_BYTES|$IMG|$LOOP" "$IMGEV"
jq -r 'select(.event=="released") | .released[]' /tmp/migrate.json > "$RES/released.txt" 2>/dev/null
say "released: $(tr '\n' '|' < "$RES/released.txt")"
say "grown: $(jq -c 'select(.event=="grown")' /tmp/migrate.json 2>/dev/null)"
RATE=$(jq -r 'select(.event=="done" or .event=="progress") | to_entries[]
              | select((.key|test("rate|speed|per_s|mib_s|bps";"i")) and (.value|type=="number")) | "\(.key)=\(.value)"' \
       /tmp/migrate.json 2>/dev/null | tail -1)
figure sync_rate "${RATE:-not-reported}"
during=$(writer_count_between "$t_start" "$t_end")
figure writer_files_during "$during"
check writer-wrote-during-migrate "$during files completed between migrate start and end" [ "$during" -ge 1 ]
n0=$(writer_count); writer_wait_more 3 60; n1=$(writer_count)
check writer-continues-after-migrate "files: $n0 when migrate returned, $n1 after waiting (want +3)" [ $((n1 - n0)) -ge 3 ]

# ---- the upper: on vdb, grown ------------------------------------------------------------------------------------
rootshift status --json > "$RES/status-after.json" 2> /tmp/st1.err; rc=$?
check status-after-exit0 "exit=$rc $(head -c 200 /tmp/st1.err | tr '\n' ' ')" [ $rc = 0 ]
assert_eq status-after-upper-legs "$TGT_DEV" \
  "$(jq -r --arg d "$WDEV" '[.wrappers[] | select(.dev == $d) | [.legs[].dev] | join(",")] | first' "$RES/status-after.json" 2>&1)"
assert_eq wrapper-slaves-after "$(basename $TGT)" "$(slaves $DM)"
assert_eq wrapper-size-is-target "$TGT_SZ" "$(cat /sys/block/$DM/size)"
assert_eq upper-still-on-wrapper "$WDEV" "$(st_devnum $UPPER/rw)"
U1=$(upper_bytes)
figure upper_after_mib $((U1 / MiB))
check upper-size-after-gt-1.3GiB "statfs total of $UPPER = $U1 bytes ($((U1 / MiB)) MiB), before $((U0 / MiB)) MiB" [ "$U1" -gt $((1331 * MiB)) ]

# ---- the lower: its image copied to vdc, the loop moved onto the copy --------------------------------------------
assert_eq image-mounted-from-vdc "$IMG_DEV ext4" "$(mnt_field $IMAGE_MNT 3) $(mnt_field $IMAGE_MNT 8)"
assert_eq image-label rootshift-live "$(blkid -s LABEL -o value $IMG 2>&1)"
assert_eq loop-backing-is-copy "$IMAGE_MNT/$REL" "$(cat /sys/block/$LOOPK/loop/backing_file 2>&1)"
assert_eq copy-on-vdc "$IMG_DEV" "$(st_devnum $IMAGE_MNT/$REL)"
assert_eq loop-still-read-only 1 "$(cat /sys/block/$LOOPK/ro 2>&1)"
assert_eq lower-still-on-loop "$LOOP squashfs" "$(mnt_field $LOWER 9) $(mnt_field $LOWER 8)"
check copy-equals-loop "cmp $IMAGE_MNT/$REL $LOOP: $(cmp $IMAGE_MNT/$REL $LOOP 2>&1 | head -1)" cmp -s $IMAGE_MNT/$REL $LOOP
sync; echo 3 > /proc/sys/vm/drop_caches
assert_eq copy-equals-original "$IMG_SUM" "$($SHA256SUM $IMAGE_MNT/$REL | cut -d' ' -f1)"

# the files that boot the image (live/vmlinuz, live/initrd.img, .disk/info) came along, byte for byte
assert_eq boot-files-copied "$BOOT_SUMS" "$(boot_sums $IMAGE_MNT)"

# ---- the medium and the zram device are free ---------------------------------------------------------------------
check medium-no-holders "/sys/block/vda/holders: '$(ls /sys/block/vda/holders | tr '\n' ' ')'" [ -z "$(ls /sys/block/vda/holders)" ]
check medium-not-mounted "mounts of $MED_DEV: '$(mounts_of $MED_DEV)'" [ -z "$(mounts_of $MED_DEV)" ]
check medium-ext4-gone "$(ls -d /sys/fs/ext4/vda 2>&1)" [ ! -e /sys/fs/ext4/vda ]
zfree() { [ ! -e /sys/block/zram0 ] || [ "$(cat /sys/block/zram0/disksize)" = 0 ]; }
check zram0-freed "$([ -e /sys/block/zram0 ] && echo "disksize=$(cat /sys/block/zram0/disksize)" || echo 'zram0 removed')" zfree

# ---- the running system did not notice ---------------------------------------------------------------------------
assert_eq long-running-process-alive "$SLEEP_CMD" "$(cmdline $SLEEP_PID)"   # the same PID
step writer-stop-no-errors writer_stop
figure writer_files "$(writer_count)"
step verify-all-checksums verify_sums   # drops the caches first
B1=$(bin_sums)
assert_eq lower-binaries-unchanged "$B0" "$B1"
step write-after-migrate mkfile /home/after-migrate.bin 2
step verify-after-migrate-write verify_sums
say "final: upper $(df -k $UPPER | tail -1); image $(df -k $IMAGE_MNT | tail -1); $(wc -l < "$SUMS") checksummed files"
scenario_done
