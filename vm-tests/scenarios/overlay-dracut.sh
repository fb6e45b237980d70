#!/bin/bash
# A dracut live session in overlayfs mode moved onto a disk without a reboot (issue 18, second proof): the ISO has
# the root tree directly in LiveOS/squashfs.img (no rootfs.img, as Fedora >= 41 and KIWI build it), its initrd
# carries live=upper, so rootshift's pre-trigger hook put the overlay's upper on ext4 on zram under
# rootshift-upper, laid out as dracut's persistent overlay (rd.live.overlay=<wrapper>:/LiveOS/overlay-rootshift).
# Booted under OVMF; a writer busy and files made in /etc and /home; `rootshift migrate /dev/vda2 --image-to
# /dev/vda1 --no-install`: the upper's wrapper mirrored onto vda2 and grown, LiveOS/squashfs.img copied to vda1
# and the lower's read-only loop moved onto the copy, the CD released and ejected, zram freed; the session (PIDs,
# boot id, files) carries on.
# vm-system: live-ovl
# vm-firmware: uefi
# vm-disks: 3G
# vm-timeout: 900
# vm-host-fsck: vda1 vda2
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
DISK=/dev/vda IMGP=/dev/vda1 UPP=/dev/vda2
MEDIUM=/run/initramfs/live LOWER=/run/rootfsbase UPMNT=/run/initramfs/overlayfs
UPDIR=$UPMNT/LiveOS/overlay-rootshift
REL=LiveOS/squashfs.img IMAGE_MNT=/run/rootshift/image
MiB=1048576
mounts_of() { awk -v d="$1" '$3 == d {print $5}' /proc/self/mountinfo | tr '\n' ' ' | sed 's/ $//'; }   # MAJ:MIN
cmdline_of() { tr '\0' ' ' < /proc/$1/cmdline 2>/dev/null; }

# ---- the booted live session -----------------------------------------------------------------------------------
state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
check system-running-after-boot "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
say "boot record: $(tr '\n' ' ' < /run/rootshift/boot 2>&1)"
say "rootshift kernel lines: $(kernel_rootshift_lines | tr '\n' '|')"
assert_eq boot-hook-state live-upper "$(boot_info state)"
assert_eq boot-hook-upperdir /LiveOS/overlay-rootshift "$(boot_info upperdir)"
LABEL=$(boot_info label)
check boot-hook-label "label=$LABEL" [ "${LABEL#rsupper-}" != "$LABEL" ]
assert_eq root-is-overlay overlay "$(mnt_field / 8)"
OPTS=$(mnt_field / 10)
check overlay-dracut-layers "$OPTS" [ "${OPTS#*lowerdir=$LOWER,upperdir=/run/overlayfs,workdir=/run/ovlwork}" != "$OPTS" ]
assert_eq run-overlayfs-link "$UPDIR" "$(readlink -f /run/overlayfs)"
assert_eq run-ovlwork-link "$UPMNT/LiveOS/ovlwork" "$(readlink -f /run/ovlwork)"
DM=$(dm_by_name rootshift-upper); WDEV=$(cat /sys/block/$DM/dev 2>/dev/null)
say "rootshift-upper = $DM ($WDEV): $(dmsetup table rootshift-upper 2>&1)"
assert_eq upper-on-wrapper "$WDEV" "$(st_devnum /run/overlayfs/)"
assert_eq upper-mount-from-wrapper "$WDEV ext4" "$(mnt_field $UPMNT 3) $(mnt_field $UPMNT 8)"
assert_eq upper-label "$LABEL" "$(blkid -s LABEL -o value /dev/$DM 2>&1)"
ZK=$(slaves_of "$DM")
check wrapper-over-zram "slaves of $DM: $ZK" [ "${ZK#zram}" != "$ZK" ]
assert_eq zram-not-systemd-ready 0 "$(udev_prop /dev/$ZK SYSTEMD_READY)"
check no-live-rw "dm devices: $(for d in /sys/block/dm-*; do cat $d/dm/name; done | tr '\n' ' ')" [ -z "$(dm_by_name live-rw)" ]
LOOP=$(mnt_field $LOWER 9); LOOPK=$(basename "$LOOP")
check lower-is-squashfs-on-loop "$LOWER: $(mnt_field $LOWER 8) from $LOOP" [ "$(mnt_field $LOWER 8)" = squashfs -a "${LOOPK#loop}" != "$LOOPK" ]
check lower-is-the-root-tree "ls $LOWER: $(ls $LOWER | tr '\n' ' ')" [ -d $LOWER/usr -a ! -e $LOWER/LiveOS ]
assert_eq loop-read-only 1 "$(cat /sys/block/$LOOPK/ro 2>&1)"
# the loop's file is the medium's LiveOS/squashfs.img, by device and inode: its backing_file path as the kernel prints
# it is relative to the initrd's mount of the medium ("/LiveOS/squashfs.img": not reachable from here)
loop_file_id() { losetup -n -O BACK-MAJ:MIN,BACK-INO "$1" 2>&1 | awk '{print $1 " " $2}'; }
file_id() { echo "$(st_devnum "$1") $(stat -c %i "$1")"; }
say "$LOOPK backing_file as the kernel prints it: $(cat /sys/block/$LOOPK/loop/backing_file 2>&1)"
assert_eq loop-backing-is-medium-file "$(file_id $MEDIUM/$REL)" "$(loop_file_id $LOOP)"
assert_eq medium-is-sr0 /dev/sr0 "$(mnt_field $MEDIUM 9)"
check no-rootfs-img "$(ls $MEDIUM/LiveOS | tr '\n' ' ')" [ ! -e $MEDIUM/LiveOS/rootfs.img ]
say "loops: $(for l in /sys/block/loop*; do [ -e $l/loop/backing_file ] && echo "$(basename $l)=$(cat $l/loop/backing_file)"; done | tr '\n' ' ')"
say "stack: $(lsblk -rno NAME,MAJ:MIN,TYPE,MOUNTPOINT | tr '\n' '|')"
Z0=$(cat /sys/block/$ZK/disksize)
figure zram_mib $((Z0 / MiB))
IMG_BYTES=$(stat -c %s $MEDIUM/$REL)
figure squashfs_mib $((IMG_BYTES / MiB))
IMG_SUM=$(sha256sum $MEDIUM/$REL | cut -d' ' -f1)
BOOT_ID=$(cat /proc/sys/kernel/random/boot_id)
rootshift status --json > "$RES/status-before.json" 2> "$RES/status-before.err"
say "status before: exit $?, $(head -c 400 "$RES/status-before.json")"

# ---- install --disk writes boot entries for live-boot sessions only so far: refused, nothing written -------------
timeout 120 rootshift install --disk $DISK --yes > /tmp/inst.out 2> /tmp/inst.err; rc=$?
cp /tmp/inst.err "$RES/install-refused.err"
say "install --disk: exit $rc, $(head -c 300 /tmp/inst.err | tr '\n' '|')"
assert_eq install-disk-refused 2 "$rc"
assert_contains install-refusal-says-live-boot /tmp/inst.err "live-boot"
assert_contains install-refusal-names-the-way-out /tmp/inst.err "--no-install"
check install-refused-left-disk-blank "$(blkid -p $DISK 2>&1 | head -c 200)" [ -z "$(blkid -p -o value -s PTTYPE $DISK)" ]

# ---- the target disk: image partition + upper partition ----------------------------------------------------------
IMG_MIB=$(( IMG_BYTES / MiB + IMG_BYTES / MiB / 10 + 64 ))
printf 'label: gpt\nsize=%dMiB, name=image\nname=upper\n' $IMG_MIB | sfdisk -q $DISK > /tmp/sfdisk.out 2>&1
udevadm settle
check partitioned "sfdisk: $(tr '\n' ' ' < /tmp/sfdisk.out); $(lsblk -rno NAME,SIZE $DISK | tr '\n' ' ')" [ -b $IMGP -a -b $UPP ]
UPP_SZ=$(sectors $UPP); UPP_DEV=$(devnum $UPP); IMG_DEV=$(devnum $IMGP)
figure upper_part_mib $((UPP_SZ / 2048))

# ---- the session: files in /etc and /home, a writer, a long-lived process ----------------------------------------
step file-in-etc mkfile /etc/ovl-dracut.bin 1
copy_up() {  # copy_up PATH : change a file of the lower (overlayfs copies it up), checksummed
  cp "$1" /tmp/copyup && echo "ovl:x:1000:" >> /tmp/copyup || return 1
  echo "$(sha256sum /tmp/copyup | cut -d' ' -f1)  $1" >> "$SUMS"
  cp /tmp/copyup "$1" && rm -f /tmp/copyup
}
step copy-up-etc-group copy_up /etc/group
check etc-group-copied-up "$(ls -l $UPDIR/etc/group 2>&1)" [ -f $UPDIR/etc/group ]
step prefill-home prefill /home/data 5 4
sleep 100000 &
SLEEP_PID=$! SLEEP_CMD="sleep 100000 "
i=0; while [ "$(cmdline_of $SLEEP_PID)" != "$SLEEP_CMD" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
assert_eq long-running-process-started "$SLEEP_CMD" "$(cmdline_of $SLEEP_PID)"
writer_start /home/live 200
writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]

# ---- migrate --------------------------------------------------------------------------------------------------
say "rootshift migrate $UPP --image-to $IMGP --yes --no-install --json"
t_start=$(now_cs)
timeout 600 rootshift migrate $UPP --image-to $IMGP --yes --no-install --json > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
t_end=$(now_cs)
cp /tmp/migrate.json /tmp/migrate.err "$RES/"
say "migrate exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr:"; sed 's/^/    | /' /tmp/migrate.err | tail -20
figure migrate_s "$(fmt_cs $((t_end - t_start)))"
check migrate-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|')" [ $rc = 0 ]
all=$(grep -c . /tmp/migrate.json); good=$(jq -c 'select(type=="object" and has("event"))' /tmp/migrate.json 2>/dev/null | wc -l)
check json-lines-valid "$good of $all stdout lines are JSON objects with an event" [ "$all" -gt 0 -a "$good" = "$all" ]
jq -r '.event' /tmp/migrate.json 2>/dev/null > /tmp/events
EV=$(uniq /tmp/events | tr '\n' ' ')
for e in switched grown image released; do check json-has-$e "events: $EV" grep -qx $e /tmp/events; done
check json-done-is-last "events: $EV" [ "$(tail -1 /tmp/events)" = done ]
IMGEV=$(jq -r 'select(.event=="image") | "\(.file)|\(.bytes)|\(.device)|\(.loop)"' /tmp/migrate.json 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
assert_eq json-image-event "$REL|$IMG_BYTES|$IMGP|$LOOP" "$IMGEV"
jq -r 'select(.event=="released") | .released[]' /tmp/migrate.json > "$RES/released.txt" 2>/dev/null
say "released: $(tr '\n' '|' < "$RES/released.txt")"
during=$(writer_count_between "$t_start" "$t_end")
figure writer_files_during "$during"
check writer-wrote-during-migrate "$during files between migrate start and end" [ "$during" -ge 1 ]

# ---- / is still the same overlay; its upper is on vda2 -------------------------------------------------------------
assert_eq root-still-overlay "overlay $OPTS" "$(mnt_field / 8) $(mnt_field / 10)"
TABLE=$(dmsetup table rootshift-upper 2>&1)
say "rootshift-upper after: $TABLE"
assert_eq upper-table-linear-on-vda2 "0 $UPP_SZ linear $UPP_DEV 0" "$TABLE"
assert_eq wrapper-slaves-after vda2 "$(slaves_of "$DM")"
assert_eq upper-still-on-wrapper "$WDEV" "$(st_devnum /run/overlayfs/)"
U1=$(stat -f -c '%b %S' $UPMNT | awk '{printf "%d", $1 * $2}')
figure upper_after_mib $((U1 / MiB))
check upper-grown-to-partition "statfs of $UPMNT: $((U1 / MiB)) MiB, partition $((UPP_SZ / 2048)) MiB" \
  [ "$U1" -gt $((UPP_SZ * 512 * 9 / 10)) ]

# ---- the lower: LiveOS/squashfs.img copied to vda1, its loop moved onto the copy ------------------------------------
assert_eq image-mounted-from-vda1 "$IMG_DEV ext4" "$(mnt_field $IMAGE_MNT 3) $(mnt_field $IMAGE_MNT 8)"
assert_eq loop-backing-is-copy "$IMAGE_MNT/$REL" "$(cat /sys/block/$LOOPK/loop/backing_file 2>&1)"
assert_eq copy-on-vda1 "$IMG_DEV" "$(st_devnum $IMAGE_MNT/$REL)"
assert_eq loop-file-is-copy "$(file_id $IMAGE_MNT/$REL)" "$(loop_file_id $LOOP)"
assert_eq loop-still-read-only 1 "$(cat /sys/block/$LOOPK/ro 2>&1)"
assert_eq lower-still-on-loop "$LOOP squashfs" "$(mnt_field $LOWER 9) $(mnt_field $LOWER 8)"
sync; echo 3 > /proc/sys/vm/drop_caches
assert_eq copy-equals-original "$IMG_SUM" "$(sha256sum $IMAGE_MNT/$REL | cut -d' ' -f1)"

# ---- the medium and the zram device are released ------------------------------------------------------------------
check medium-not-mounted "mounts of 11:0: '$(mounts_of 11:0)'" [ -z "$(mounts_of 11:0)" ]
bound=$(for l in /sys/block/loop*; do [ -e $l/loop/backing_file ] && echo "$(basename $l)=$(cat $l/loop/backing_file)"; done | tr '\n' ' ' | sed 's/ $//')
check only-the-moved-loop-bound "bound: '$bound'" [ "$bound" = "$LOOPK=$IMAGE_MNT/$REL" ]
assert_contains released-ejected "$RES/released.txt" "ejected /dev/sr0"
# rootshift's eject opens the tray from the guest (CDROMEJECT); QEMU keeps the medium in the open tray (only a
# host-side eject removes it), so the proof is the open tray
cd2=$(host_request query-cd); echo "$cd2" > "$RES/cd-after.json"
check cd-tray-open "$(echo "${cd2#ok }" | jq -c '{tray_open, locked}' 2>&1)" \
  [ "$(echo "${cd2#ok }" | jq -r '.tray_open and (.locked | not)')" = true ]
zfree() { [ ! -e /sys/block/$ZK ] || [ "$(cat /sys/block/$ZK/disksize)" = 0 ]; }
check zram-freed "$([ -e /sys/block/$ZK ] && echo "disksize=$(cat /sys/block/$ZK/disksize)" || echo "$ZK removed")" zfree

# ---- the session did not notice -------------------------------------------------------------------------------------
assert_eq long-running-process-alive "$SLEEP_CMD" "$(cmdline_of $SLEEP_PID)"
assert_eq boot-id-unchanged "$BOOT_ID" "$(cat /proc/sys/kernel/random/boot_id)"
n0=$(writer_count); writer_wait_more 3 90; n1=$(writer_count)
check writer-continues-after-migrate "files: $n0 then $n1" [ $((n1 - n0)) -ge 3 ]
step writer-stop-no-errors writer_stop
figure writer_files "$(writer_count)"
step verify-all-checksums verify_sums
check session-files-in-upper "$(ls $UPDIR/etc/ovl-dracut.bin $UPDIR/home/data/f0 2>&1 | tr '\n' ' ')" \
  [ -f $UPDIR/etc/ovl-dracut.bin -a -f $UPDIR/home/data/f0 ]
step write-after-migrate mkfile /home/after-migrate.bin 2
step verify-after-migrate verify_sums
out=$(/usr/sbin/mkfs.ext4 -V 2>&1 | head -1; dpkg-query -W -f '${Package}\n' | wc -l)
check run-commands-from-lower "mkfs.ext4 -V + dpkg-query (caches dropped): $(echo "$out" | tr '\n' ' ')" [ "$(echo "$out" | tail -1)" -gt 50 ]
state=$(systemctl is-system-running)
check system-running-after-migrate "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
rootshift status --json > "$RES/status-after.json" 2>&1
scenario_done
