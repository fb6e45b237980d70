#!/bin/bash
# A dracut live session in overlayfs mode installed onto a disk without a reboot, then the disk booted alone (issue
# 18, second proof). The ISO has the root tree directly in LiveOS/squashfs.img (no rootfs.img, as Fedora >= 41 and
# KIWI build it), its initrd carries live=upper, so rootshift's pre-trigger hook put the overlay's upper on ext4 on
# zram under rootshift-upper, laid out as dracut's persistent overlay (rd.live.overlay=<wrapper>:/LiveOS/overlay-
# rootshift). Its kernel and initrd are in the ISO's boot/, not next to the image.
#   main  (the ISO booted through its own shim and signed GRUB, OVMF with Secure Boot enforced): a writer busy, a
#         long-running process, files made in /etc and /home (a lower file changed)
#         → `rootshift install --disk /dev/vda --yes --json`: BIOS boot, ESP, the image partition (LiveOS/squashfs.img
#         under the running read-only loop, the medium's kernel and initrd found by the running release and copied
#         to boot/vmlinuz-REL, boot/initrd.img-REL), the persistence partition (the upper's wrapper mirrored onto it
#         and grown); the CD released and ejected, zram freed; the session (PIDs, boot id, files) carries on; GRUB
#         (BIOS and EFI) with a static grub.cfg: root=live:UUID=<image> rd.live.overlay=UUID=<persistence>:<dir>.
#   disk  (vda alone, OVMF with Secure Boot enforced, no CD: the fallback is shim): dracut's own persistent overlay
#         brings the same session up from the disk: / the
#         overlay of the image partition's squashfs and the persistence partition, every file there, fsck clean.
#         Then a kernel update: a kernel .deb installed with apt-get from a local repository (the live-boot base's,
#         carried in as $VMTEST_IN/kernel-repo; no network): dracut builds its initrd with dmsquash-live
#         (rootshift's dracut.conf.d setting: the session's own hostonly build would lack it), rootshift's kernel hook
#         copies the pair to the image partition's boot/ and writes grub.cfg with the new kernel first.
#   newk  (vda alone, SeaBIOS): GRUB from the MBR boots the new kernel with its new initrd into the same session:
#         every file there, / the same persistent overlay.
# vm-system: live-ovl
# vm-firmware: uefi-sb
# vm-loader: iso
# vm-disks: 3G
# vm-then: disk firmware=uefi-sb disk=vda kernel-repo
# vm-then: newk firmware=bios from=disk tier=full
# (CI boots main and disk: the disk boot installs the kernel and checks the hook's copy and grub.cfg; that a
# kernel-updated live disk then boots the new kernel is what liveboot-install's bios boot proves in CI)
# vm-timeout: 900
# vm-host-fsck: vda3
# vm-host-fsck-replay: vda4
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
DISK=/dev/vda IMGP=/dev/vda3 UPP=/dev/vda4
MEDIUM=/run/initramfs/live LOWER=/run/rootfsbase UPMNT=/run/initramfs/overlayfs
UPDIR=$UPMNT/LiveOS/overlay-rootshift
REL=LiveOS/squashfs.img IMAGE_MNT=/run/rootshift/image
PREV=$VMTEST_IN/prev
MiB=1048576
mounts_of() { awk -v d="$1" '$3 == d {print $5}' /proc/self/mountinfo | tr '\n' ' ' | sed 's/ $//'; }   # MAJ:MIN
cmdline_of() { tr '\0' ' ' < /proc/$1/cmdline 2>/dev/null; }
cmdline_has() { tr ' ' '\n' < /proc/cmdline | grep -qxF -- "$1"; }
loop_file_id() { losetup -n -O BACK-MAJ:MIN,BACK-INO "$1" 2>&1 | awk '{print $1 " " $2}'; }
file_id() { echo "$(st_devnum "$1") $(stat -c %i "$1")"; }
dev_of() { basename "$(readlink -f "/sys/dev/block/$1")"; }   # 254:19 -> vda3
KVER=$(uname -r)

# disk_session_checks: a boot of the installed disk alone brings the session up through dracut's persistent overlay
disk_session_checks() {
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  cp "$PREV/sums" "$SUMS"
  cp "$PREV/image-uuid" "$PREV/upper-uuid" "$PREV/kver" "$PREV/machine-id" "$RES/"
  IMG_UUID=$(cat "$PREV/image-uuid") UP_UUID=$(cat "$PREV/upper-uuid")
  say "cmdline: $(cat /proc/cmdline)"
  check no-cdrom "$(ls /sys/block | tr '\n' ' ')" [ ! -e /sys/block/sr0 ]
  check cmdline-image-pinned "$(tr ' ' '\n' < /proc/cmdline | grep '^root=')" cmdline_has "root=live:UUID=$IMG_UUID"
  check cmdline-persistent-overlay "$(tr ' ' '\n' < /proc/cmdline | grep 'overlay' | tr '\n' ' ')" \
    cmdline_has "rd.live.overlay=UUID=$UP_UUID:/LiveOS/overlay-rootshift"
  assert_eq root-is-overlay overlay "$(mnt_field / 8)"
  assert_eq upper-on-persistence-partition vda4 "$(dev_of "$(st_devnum /run/overlayfs/)")"
  assert_eq medium-is-image-partition vda3 "$(dev_of "$(mnt_field $MEDIUM 3)")"
  assert_eq machine-id-kept "$(cat "$PREV/machine-id")" "$(cat /etc/machine-id)"
  sync; echo 3 > /proc/sys/vm/drop_caches
  n=$(wc -l < "$SUMS")
  check all-session-files-intact "$n files (session, writer, copy-up, earlier disk boots)" $SHA256SUM -c --quiet "$SUMS"
  figure files_verified "$n"
}

# ==== newk: the same disk after the kernel update, through SeaBIOS and the MBR's GRUB ================================
if [ "$VMTEST_PHASE" = newk ]; then
  disk_session_checks
  check booted-with-bios "no /sys/firmware/efi" [ ! -d /sys/firmware/efi ]
  NEWK=$(cat "$PREV/kver-new")
  assert_eq new-kernel-running "$NEWK" "$KVER"
  check booted-new-kernel-image "$(tr ' ' '\n' < /proc/cmdline | grep BOOT_IMAGE)" cmdline_has "BOOT_IMAGE=/boot/vmlinuz-$NEWK"
  step write-on-new-kernel mkfile /home/newk-boot.bin 2
  step verify-all-checksums verify_sums
  e2fsck -fn $IMGP > "$RES/fsck-image.txt" 2>&1; rc=$?
  check fsck-image-partition-clean "exit=$rc: $(tail -2 "$RES/fsck-image.txt" | tr '\n' '|')" [ $rc = 0 ]
  scenario_done
  exit 0
fi

# ==== disk: the installed disk alone =================================================================================
if [ "$VMTEST_PHASE" = disk ]; then
  disk_session_checks
  say "rootshift kernel lines: $(kernel_rootshift_lines | tr '\n' '|')"
  check booted-with-uefi "$(ls /sys/firmware/efi 2>&1 | head -3 | tr '\n' ' ')" [ -d /sys/firmware/efi ]
  secure_boot_checks disk
  check booted-disk-kernel "$(tr ' ' '\n' < /proc/cmdline | grep BOOT_IMAGE)" cmdline_has "BOOT_IMAGE=/boot/vmlinuz-$KVER"
  assert_eq same-kernel-as-the-iso "$(cat "$PREV/kver")" "$KVER"
  check cmdline-live-upper-off "$(tr ' ' '\n' < /proc/cmdline | grep rootshift | tr '\n' ' ')" cmdline_has rd.rootshift.live=0
  OPTS=$(mnt_field / 10)
  check overlay-dracut-layers "$OPTS" [ "${OPTS#*lowerdir=$LOWER,upperdir=/run/overlayfs,workdir=/run/ovlwork}" != "$OPTS" ]
  assert_eq upper-link-into-persistent-overlay "$UPDIR" "$(readlink -f /run/overlayfs)"
  assert_eq upper-fs-uuid "$UP_UUID" "$(blkid -s UUID -o value /dev/vda4)"
  check no-rootshift-upper "dm: $(ls /sys/block | grep dm- | tr '\n' ' ')" [ -z "$(dm_by_name rootshift-upper)" ]
  check no-zram-in-use "$(for z in /sys/block/zram*; do [ -e $z ] && echo "$(basename $z)=$(cat $z/disksize)"; done | tr '\n' ' ')" \
    sh -c 'for z in /sys/block/zram*; do [ -e $z ] || continue; [ "$(cat $z/disksize)" = 0 ] || exit 1; done'
  LOOP=$(mnt_field $LOWER 9); LOOPK=$(basename "$LOOP")
  check lower-is-squashfs-on-loop "$LOWER: $(mnt_field $LOWER 8) from $LOOP" [ "$(mnt_field $LOWER 8)" = squashfs -a "${LOOPK#loop}" != "$LOOPK" ]
  assert_eq loop-read-only 1 "$(cat /sys/block/$LOOPK/ro 2>&1)"
  assert_eq loop-backing-is-image-partition-file "$(file_id $MEDIUM/$REL)" "$(loop_file_id $LOOP)"
  # a kernel update's initrd is built here: rootshift's dracut.conf.d setting must give it dmsquash-live
  assert_contains dracut-conf-live-module /etc/dracut.conf.d/90-rootshift-live.conf 'add_dracutmodules+=" dmsquash-live "'
  step write-on-disk-boot mkfile /home/disk-boot.bin 2
  step verify-all-checksums verify_sums
  e2fsck -fn $IMGP > "$RES/fsck-image.txt" 2>&1; rc=$?
  check fsck-image-partition-clean "exit=$rc: $(tail -2 "$RES/fsck-image.txt" | tr '\n' '|')" [ $rc = 0 ]
  fsck.fat -n /dev/vda2 > "$RES/fsck-esp.txt" 2>&1; rc=$?
  check fsck-esp-clean "exit=$rc: $(tail -2 "$RES/fsck-esp.txt" | tr '\n' '|')" [ $rc = 0 ]
  # the kernel update (newk boots it)
  REPO=$VMTEST_IN/kernel-repo
  echo "deb [trusted=yes] file:$REPO ./" > /tmp/kernel-repo.list
  . "$VMTEST_IN/_kernel-update.inc"
  install_repo_kernel $REPO /tmp/kernel-repo.list
  lsinitrd -m /boot/initrd.img-$NEWK > "$RES/lsinitrd-modules.txt" 2>&1
  say "the new initrd's dracut modules: $(grep -E 'dmsquash|overlay|rootshift' "$RES/lsinitrd-modules.txt" | tr '\n' ' ')"
  check new-initrd-has-dmsquash-live "" grep -qx 'dmsquash-live' "$RES/lsinitrd-modules.txt"
  check new-initrd-has-rootshift "" grep -qx 'rootshift' "$RES/lsinitrd-modules.txt"
  check image-partition-read-only-again "$(findmnt -rno OPTIONS $IMGP | head -1)" sh -c "findmnt -rno OPTIONS $IMGP | head -1 | grep -q '^ro'"
  check_live_sync "$MEDIUM" boot "vmlinuz-$KVER" "rd.live.overlay=UUID=$UP_UUID:/LiveOS/overlay-rootshift"
  step write-after-kernel-update mkfile /home/kernel-boot.bin 2
  step verify-all-checksums-after-update verify_sums
  scenario_done
  exit 0
fi

# ==== main: the booted live session ==================================================================================
state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
check system-running-after-boot "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
say "boot record: $(tr '\n' ' ' < /run/rootshift/boot 2>&1)"
say "rootshift kernel lines: $(kernel_rootshift_lines | tr '\n' '|')"
secure_boot_checks live
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

# the medium's kernel and initrd (boot/ on the ISO: not next to the image), which the disk must boot
check medium-kernel-is-running-one "$(ls -l $MEDIUM/boot/ 2>&1 | tr '\n' '|')" grep -aqF "$KVER (" $MEDIUM/boot/vmlinuz
KSUM=$($SHA256SUM $MEDIUM/boot/vmlinuz | cut -d' ' -f1) ISUM=$($SHA256SUM $MEDIUM/boot/initrd.img | cut -d' ' -f1)
echo "$KVER" > "$RES/kver"; cat /etc/machine-id > "$RES/machine-id"
check target-blank "type='$(blkid -p -o value -s PTTYPE $DISK)'" [ -z "$(blkid -p -o value -s PTTYPE $DISK)" ]

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
writer_wait_more 2 60; check writer-running-before-install "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]

# ---- install --disk ---------------------------------------------------------------------------------------------
say "rootshift install --disk $DISK --yes --json"
t_start=$(now_cs)
timeout 700 rootshift install --disk $DISK --yes --json > /tmp/install.json 2> /tmp/install.err; rc=$?
t_end=$(now_cs)
cp /tmp/install.json /tmp/install.err "$RES/"
say "install exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr:"; sed 's/^/    | /' /tmp/install.err | tail -20
figure install_s "$(fmt_cs $((t_end - t_start)))"
check install-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/install.err | tr '\n' '|')" [ $rc = 0 ]
check_events json-events-documented /tmp/install.json
jq -r '.event' /tmp/install.json 2>/dev/null > /tmp/events
EV=$(uniq /tmp/events | tr '\n' ' ')
for e in layout partitioned switched grown image released done install installed; do check json-has-$e "events: $EV" grep -qx $e /tmp/events; done
check json-installed-is-last "events: $EV" [ "$(tail -1 /tmp/events)" = installed ]
IMGEV=$(jq -r 'select(.event=="image") | "\(.file)|\(.bytes)|\(.device)|\(.loop)"' /tmp/install.json 2>/dev/null | tr '\n' ' ' | sed 's/ $//')
assert_eq json-image-event "$REL|$IMG_BYTES|$IMGP|$LOOP" "$IMGEV"
jq -r 'select(.event=="released") | .released[]' /tmp/install.json > "$RES/released.txt" 2>/dev/null
say "released: $(tr '\n' '|' < "$RES/released.txt")"
during=$(writer_count_between "$t_start" "$t_end")
figure writer_files_during "$during"
check writer-wrote-during-install "$during files between install start and end" [ "$during" -ge 1 ]
sfdisk -J $DISK > "$RES/sfdisk.json"
say "$DISK: $(lsblk -rno NAME,SIZE,FSTYPE,LABEL $DISK | tr '\n' '|')"
UPP_SZ=$(sectors $UPP); UPP_DEV=$(devnum $UPP); IMG_DEV=$(devnum $IMGP)
figure upper_part_mib $((UPP_SZ / 2048))
IMG_UUID=$(jq -r 'select(.event=="installed") | .image_uuid' /tmp/install.json)
UP_UUID=$(blkid -s UUID -o value $UPP)
echo "$IMG_UUID" > "$RES/image-uuid"; echo "$UP_UUID" > "$RES/upper-uuid"
assert_eq image-partition-by-uuid "$IMGP rootshift-live" "$(blkid -U "$IMG_UUID" 2>&1) $(blkid -s LABEL -o value $IMGP)"
assert_eq upper-fs-label-kept "$LABEL" "$(blkid -s LABEL -o value $UPP)"

# ---- / is still the same overlay; its upper is on vda4 -------------------------------------------------------------
assert_eq root-still-overlay "overlay $OPTS" "$(mnt_field / 8) $(mnt_field / 10)"
TABLE=$(dmsetup table rootshift-upper 2>&1)
say "rootshift-upper after: $TABLE"
assert_eq upper-table-linear-on-vda4 "0 $UPP_SZ linear $UPP_DEV 0" "$TABLE"
assert_eq wrapper-slaves-after vda4 "$(slaves_of "$DM")"
assert_eq upper-still-on-wrapper "$WDEV" "$(st_devnum /run/overlayfs/)"
U1=$(stat -f -c '%b %S' $UPMNT | awk '{printf "%d", $1 * $2}')
figure upper_after_mib $((U1 / MiB))
check upper-grown-to-partition "statfs of $UPMNT: $((U1 / MiB)) MiB, partition $((UPP_SZ / 2048)) MiB" \
  [ "$U1" -gt $((UPP_SZ * 512 * 9 / 10)) ]

# ---- the lower: LiveOS/squashfs.img copied to vda3, its loop moved onto the copy ------------------------------------
assert_eq image-mounted-from-vda3 "$IMG_DEV ext4" "$(mnt_field $IMAGE_MNT 3) $(mnt_field $IMAGE_MNT 8)"
assert_eq loop-backing-is-copy "$IMAGE_MNT/$REL" "$(cat /sys/block/$LOOPK/loop/backing_file 2>&1)"
assert_eq copy-on-vda3 "$IMG_DEV" "$(st_devnum $IMAGE_MNT/$REL)"
assert_eq loop-file-is-copy "$(file_id $IMAGE_MNT/$REL)" "$(loop_file_id $LOOP)"
assert_eq loop-still-read-only 1 "$(cat /sys/block/$LOOPK/ro 2>&1)"
assert_eq lower-still-on-loop "$LOOP squashfs" "$(mnt_field $LOWER 9) $(mnt_field $LOWER 8)"
sync; echo 3 > /proc/sys/vm/drop_caches
assert_eq copy-equals-original "$IMG_SUM" "$(sha256sum $IMAGE_MNT/$REL | cut -d' ' -f1)"
assert_eq kernel-copied-from-medium "$KSUM" "$($SHA256SUM $IMAGE_MNT/boot/vmlinuz-$KVER 2>&1 | cut -d' ' -f1)"
assert_eq initrd-copied-from-medium "$ISUM" "$($SHA256SUM $IMAGE_MNT/boot/initrd.img-$KVER 2>&1 | cut -d' ' -f1)"
cp $IMAGE_MNT/boot/grub/grub.cfg "$RES/grub.cfg" 2>&1
L1=$(grep -m1 -E '^\s*linux\s' "$RES/grub.cfg")
say "grub.cfg: $L1"
for w in /boot/vmlinuz-$KVER "root=live:UUID=$IMG_UUID" rd.live.image "rd.live.overlay=UUID=$UP_UUID:/LiveOS/overlay-rootshift" rd.rootshift.live=0 rootshift.vmtest=; do
  check "grub-cfg-has-$(echo "${w%%=*}" | tr -c 'a-z0-9.\n-' - | sed 's/^-*//')" "$L1" sh -c "echo ' $L1 ' | grep -qF -- ' $w'"
done
check grub-cfg-no-cd-label "$L1" sh -c "! echo '$L1' | grep -q CDLABEL"
assert_contains live-conf-kernel-dir /etc/rootshift/live.conf "kernel_dir=boot"
check mbr-has-grub "$(dd if=$DISK bs=512 count=1 2>/dev/null | strings | tr '\n' ' ')" sh -c "dd if=$DISK bs=512 count=1 2>/dev/null | grep -aq GRUB"
mkdir -p /tmp/esp && mount -o ro /dev/vda2 /tmp/esp
check esp-fallback-loader "$(find /tmp/esp -iname '*.efi' | tr '\n' ' ')" test -s /tmp/esp/EFI/BOOT/BOOTX64.EFI
check esp-fallback-is-shim "$(cmp /tmp/esp/EFI/BOOT/BOOTX64.EFI /usr/lib/shim/shimx64.efi.signed 2>&1)" \
  cmp -s /tmp/esp/EFI/BOOT/BOOTX64.EFI /usr/lib/shim/shimx64.efi.signed
umount /tmp/esp

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
check writer-continues-after-install "files: $n0 then $n1" [ $((n1 - n0)) -ge 3 ]
step writer-stop-no-errors writer_stop
figure writer_files "$(writer_count)"
step verify-all-checksums verify_sums
check session-files-in-upper "$(ls $UPDIR/etc/ovl-dracut.bin $UPDIR/home/data/f0 2>&1 | tr '\n' ' ')" \
  [ -f $UPDIR/etc/ovl-dracut.bin -a -f $UPDIR/home/data/f0 ]
step write-after-install mkfile /home/after-install.bin 2
step verify-after-install verify_sums
out=$(/usr/sbin/mkfs.ext4 -V 2>&1 | head -1; dpkg-query -W -f '${Package}\n' | wc -l)
check run-commands-from-lower "mkfs.ext4 -V + dpkg-query (caches dropped): $(echo "$out" | tr '\n' ' ')" [ "$(echo "$out" | tail -1)" -gt 50 ]
state=$(systemctl is-system-running)
check system-running-after-install "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
rootshift status --json > "$RES/status-after.json" 2>&1
scenario_done
