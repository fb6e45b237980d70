#!/bin/bash
# A Debian live-boot session installed onto a disk without a reboot, then the disk booted alone twice (issue 18,
# first proof). The project's live-boot ISO (trixie, initramfs-tools + live-boot, rootshift .deb, live=upper: the
# session's upper on rootshift-upper, ext4 on zram, laid out as live-boot's own persistence) boots from the CD:
#   main  (ISO, BIOS): a writer busy, a long-running process, files made in /home and /etc (a lower file changed,
#         one deleted) → `rootshift install --disk /dev/vdb --yes --json`: the process keeps its PID, boot_id is the
#         same, the image moved to the image partition under the running loop, the upper onto the persistence
#         partition, the CD ejected (`released` event, QEMU's tray), zram freed; the disk's boot entry written.
#         vda is a bystander disk that must not change. The host then fscks both filesystems of the powered-off disk
#         (the persistence volume after replaying its journal on a copy: systemd unmounts its mount point at
#         power-off while the overlay keeps it, so it is never remounted read-only).
#   uefi  (vdb alone, OVMF): every session file there, / the overlay of the image partition's squashfs and the
#         persistence partition; a kernel .deb installed with apt-get from the image's local repository (no
#         network): rootshift's kernel hook copies it to the image partition and writes its grub.cfg again.
#   bios  (full tier; the same disk after that boot, SeaBIOS): the new kernel runs, every file is there, fsck -n is
#         clean. Full tier since 2026-12-07: with the second kernel the images now get (6.12.118+deb13 from
#         trixie-security; the ISO has 6.12.117) systemd 257 stops at this boot ("Failed to fork off sandboxing
#         environment for executing generators: Protocol error" after ~140 s, no kernel message; twice, once with
#         no other VM running). The uefi boot still proves the kernel update up to the boot entry.
#   flatten, flat  (full tier: issue 19 §5) `rootshift flatten` of the disk main made, the soft-reboot into it,
#         then the flattened disk booted alone: see _flatten.inc.
# vm-system: liveboot
# vm-loader: iso
# vm-disks: 64M 4G
# vm-then: uefi firmware=uefi disk=vdb
# vm-then: flatten firmware=bios disk=vdb tier=full
# vm-then: flat firmware=uefi from=flatten tier=full
# vm-then: bios firmware=bios from=uefi tier=full
# vm-timeout: 1800
# vm-host-fsck: vdb3
# vm-host-fsck-replay: vdb4
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
MiB=1048576
PREV=$VMTEST_IN/prev
REPO=/var/cache/rootshift-vmtest/kernel-repo
# the overlay / (its options from mountinfo) and what its layers are on
ovl_opt() { mnt_field / 10 | tr ',' '\n' | sed -n "s/^$1=//p" | head -1; }
dev_of() { basename "$(readlink -f "/sys/dev/block/$1")"; }   # 254:19 -> vdb3
loop_backing() { cat "/sys/block/$1/loop/backing_file" 2>&1; }
cmdline_has() { tr ' ' '\n' < /proc/cmdline | grep -qxF -- "$1"; }
live_layers() {  # sets LOWER LOOP UPPERDIR UPPERDEV (kname of the upper's filesystem) and says them
  LOWER=$(ovl_opt lowerdir); LOWER=${LOWER%/}
  UPPERDIR=$(ovl_opt upperdir)
  LOOP=$(basename "$(mnt_field "$LOWER" 9)")
  UPPERDEV=$(dev_of "$(st_devnum "$UPPERDIR")")
  say "overlay: lower $LOWER ($(mnt_field "$LOWER" 8) on $LOOP -> $(loop_backing "$LOOP")), upper $UPPERDIR on $UPPERDEV"
}
# whiteouts and copy-ups must survive: a file of the lower deleted, one changed
DELETED=/etc/issue.net
copy_up() {  # copy_up PATH : change a file of the lower (overlayfs copies it up), checksummed
  cp "$1" /tmp/copyup && echo "# changed in the live session" >> /tmp/copyup || return 1
  echo "$($SHA256SUM /tmp/copyup | cut -d' ' -f1)  $1" >> "$SUMS"
  cp /tmp/copyup "$1"
}
all_files_intact() {  # the checksummed files of the earlier boots, read from disk (caches dropped)
  sync; echo 3 > /proc/sys/vm/drop_caches
  n=$(wc -l < "$SUMS")
  check all-session-files-intact "$n files (session, writer, copy-up, earlier boots)" $SHA256SUM -c --quiet "$SUMS"
  figure files_verified "$n"
  check deleted-file-stays-deleted "$DELETED: $(ls -l $DELETED 2>&1)" [ ! -e $DELETED ]
}
# the disk's own boot (uefi and bios): / is live-boot's overlay of the image partition's squashfs and the
# persistence partition, the medium pinned by its UUID, rootshift's live upper off
disk_boot_checks() {
  IMG_UUID=$(cat "$PREV/image-uuid") LABEL=$(cat "$PREV/upper-label")
  IMGP=$(basename "$(readlink -f "/dev/disk/by-uuid/$IMG_UUID")")
  say "cmdline: $(cat /proc/cmdline)"
  check no-cdrom "$(ls /sys/block | tr '\n' ' ')" [ ! -e /sys/block/sr0 ]
  check cmdline-live-boot-from-disk "$(cat /proc/cmdline)" cmdline_has boot=live
  check cmdline-medium-pinned "live-media= $(tr ' ' '\n' < /proc/cmdline | grep '^live-media=')" cmdline_has "live-media=/dev/disk/by-uuid/$IMG_UUID"
  check cmdline-persistence "$(tr ' ' '\n' < /proc/cmdline | grep persistence | tr '\n' ' ')" cmdline_has "persistence-label=$LABEL"
  check cmdline-live-upper-off "$(tr ' ' '\n' < /proc/cmdline | grep rootshift | tr '\n' ' ')" cmdline_has rd.rootshift.live=0
  assert_eq root-is-overlay overlay "$(mnt_field / 8)"
  live_layers
  assert_eq image-partition-is-vda3 vda3 "$IMGP"
  assert_eq lower-loop-backed-by-image-partition "$IMGP" "$(dev_of "$(st_devnum "$(loop_backing "$LOOP")")")"
  check lower-image-is-live-squashfs "$(loop_backing "$LOOP")" [ "$(basename "$(loop_backing "$LOOP")")" = filesystem.squashfs ]
  assert_eq loop-read-only 1 "$(cat /sys/block/$LOOP/ro 2>&1)"
  assert_eq upper-on-persistence-partition vda4 "$UPPERDEV"
  assert_eq persistence-label "$LABEL" "$(blkid -s LABEL -o value /dev/vda4)"
  check no-rootshift-upper "dm: $(ls /sys/block | grep dm- | tr '\n' ' ')" [ -z "$(dm_by_name rootshift-upper)" ]
  assert_eq machine-id-kept "$(cat "$PREV/machine-id")" "$(cat /etc/machine-id)"
  all_files_intact
}

# ==== main: the live ISO ===========================================================================================
if [ "$VMTEST_PHASE" = main ]; then
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  check booted-with-bios "no /sys/firmware/efi" [ ! -d /sys/firmware/efi ]
  check cmdline-boot-live "$(cat /proc/cmdline)" cmdline_has boot=live
  say "kernel $(uname -r); rootshift: $(rootshift --version 2>&1 | head -1); hook: $(tr '\n' ' ' < /run/rootshift/boot)"
  uname -r > "$RES/kver-before"
  assert_eq hook-made-live-upper live-upper "$(boot_info state)"
  LABEL=$(boot_info label)
  check upper-label-unique "label '$LABEL'" sh -c "echo '$LABEL' | grep -qE '^rsupper-[0-9a-f]{8}$'"
  assert_eq root-is-overlay overlay "$(mnt_field / 8)"
  live_layers
  assert_eq upper-on-rootshift-upper rootshift-upper "$(dm_name "$UPPERDEV")"
  assert_eq rootshift-upper-over-zram0 zram0 "$(slaves_of "$UPPERDEV")"
  assert_eq upper-fs-label "$LABEL" "$(blkid -s LABEL -o value "/dev/$UPPERDEV")"
  assert_eq lower-squashfs squashfs "$(mnt_field "$LOWER" 8)"
  assert_eq loop-read-only 1 "$(cat /sys/block/$LOOP/ro 2>&1)"
  assert_eq loop-backed-by-cd sr0 "$(dev_of "$(st_devnum "$(loop_backing "$LOOP")")")"
  assert_eq medium-mounted-from-cd "/run/live/medium iso9660" "$(findmnt -rno TARGET,FSTYPE /dev/sr0 | head -1)"
  check zram0-in-use "disksize=$(cat /sys/block/zram0/disksize 2>&1)" [ "$(cat /sys/block/zram0/disksize 2>/dev/null)" -gt 0 ]
  figure squashfs_mib $(( $(stat -c %s "$(loop_backing "$LOOP")") / MiB ))
  BOOT_ID=$(cat /proc/sys/kernel/random/boot_id)
  cat /etc/machine-id > "$RES/machine-id"
  VDA0=$(dd if=/dev/vda bs=1M 2>/dev/null | $SHA256SUM | cut -c1-16)
  check target-vdb-blank "serial=$(cat /sys/block/vdb/serial) type='$(blkid -p -o value -s PTTYPE /dev/vdb)'" \
    [ "$(cat /sys/block/vdb/serial)" = vdb -a -z "$(blkid -p -o value -s PTTYPE /dev/vdb)" ]

  # ---- the session: files in /home and /etc, a changed and a deleted lower file, a process, a writer ------------
  step files-in-home prefill /home/session 4 2
  step file-in-etc mkfile /etc/session-created.bin 1
  step copy-up-etc-group copy_up /etc/group
  check etc-group-copied-up "$(ls -l "$UPPERDIR/etc/group" 2>&1)" [ -f "$UPPERDIR/etc/group" ]
  step delete-lower-file rm $DELETED
  check lower-file-deleted "$(ls -l $DELETED 2>&1)" [ ! -e $DELETED ]
  sleep 100000 &
  SLEEP_PID=$!
  pcmd() { tr '\0' ' ' < /proc/$1/cmdline 2>/dev/null; }
  i=0; while [ "$(pcmd $SLEEP_PID)" != "sleep 100000 " ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  assert_eq long-running-process-started "sleep 100000 " "$(pcmd $SLEEP_PID)"
  writer_start /home/live 600 1
  writer_wait_more 2 60; check writer-running-before-install "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]

  # ---- install ----------------------------------------------------------------------------------------------------
  say "rootshift install --disk /dev/vdb --yes --json"
  t_start=$(now_cs)
  timeout 1500 rootshift install --disk /dev/vdb --yes --json > /tmp/install.json 2> /tmp/install.err; rc=$?
  t_end=$(now_cs)
  cp /tmp/install.json /tmp/install.err "$RES/"
  say "install exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr:"; tail -20 /tmp/install.err | sed 's/^/    | /'
  figure install_s "$(fmt_cs $((t_end - t_start)))"
  check install-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/install.err | tr '\n' '|' | cut -c1-400)" [ $rc = 0 ]
  check_events json-events-documented /tmp/install.json
  jq -r '.event' /tmp/install.json > /tmp/events 2>/dev/null
  EV=$(uniq /tmp/events | tr '\n' ' ')
  for e in layout partitioned switched grown image released done install installed; do
    check json-has-$e "events: $EV" grep -qx $e /tmp/events
  done
  jq -r 'select(.event=="released") | .released[]' /tmp/install.json > "$RES/released.txt" 2>/dev/null
  say "released: $(tr '\n' '|' < "$RES/released.txt")"
  assert_contains released-says-ejected "$RES/released.txt" "ejected /dev/sr0"
  check released-nothing-kept "$(grep '^kept' "$RES/released.txt" | tr '\n' '|')" [ -z "$(grep '^kept' "$RES/released.txt")" ]
  during=$(writer_count_between "$t_start" "$t_end")
  figure writer_files_during "$during"
  check writer-wrote-during-install "$during files between install start and end" [ "$during" -ge 1 ]
  jq -r 'select(.event=="done") | .copy_seconds' /tmp/install.json > /tmp/cs 2>/dev/null; figure copy_s "$(cat /tmp/cs)"

  # ---- the session did not notice ---------------------------------------------------------------------------------
  assert_eq long-running-process-same-pid "sleep 100000 " "$(pcmd $SLEEP_PID)"
  assert_eq boot-id-unchanged "$BOOT_ID" "$(cat /proc/sys/kernel/random/boot_id)"
  n0=$(writer_count); writer_wait_more 3 90; n1=$(writer_count)
  check writer-continues-after-install "files: $n0 then $n1" [ $((n1 - n0)) -ge 3 ]

  # ---- where the session is now -----------------------------------------------------------------------------------
  sfdisk -J /dev/vdb > "$RES/sfdisk.json"
  say "vdb: $(lsblk -rno NAME,SIZE,FSTYPE,LABEL /dev/vdb | tr '\n' '|')"
  IMG_UUID=$(jq -r 'select(.event=="installed") | .image_uuid' /tmp/install.json)
  echo "$IMG_UUID" > "$RES/image-uuid"; echo "$LABEL" > "$RES/upper-label"
  assert_eq image-partition-vdb3 "/dev/vdb3 rootshift-live" "$(blkid -U "$IMG_UUID" 2>&1) $(blkid -s LABEL -o value /dev/vdb3)"
  assert_eq upper-on-persistence-partition vdb4 "$(slaves_of "$UPPERDEV")"
  assert_eq upper-fs-still-labelled "$LABEL" "$(blkid -s LABEL -o value /dev/vdb4)"
  assert_eq upper-dir-still-on-wrapper "$UPPERDEV" "$(dev_of "$(st_devnum "$UPPERDIR")")"
  U1=$(stat -f -c '%b %S' "$UPPERDIR" | awk '{printf "%d", $1 * $2}'); figure upper_after_mib $((U1 / MiB))
  check upper-grown "statfs total $((U1 / MiB)) MiB, vdb4 $(( $(sectors /dev/vdb4) / 2048 )) MiB" [ $((U1 / MiB)) -ge $(( $(sectors /dev/vdb4) / 2048 * 9 / 10 )) ]
  assert_eq loop-backed-by-image-partition "/run/rootshift/image/live/filesystem.squashfs vdb3" \
    "$(loop_backing "$LOOP") $(dev_of "$(st_devnum "$(loop_backing "$LOOP")")")"
  assert_eq loop-still-read-only 1 "$(cat /sys/block/$LOOP/ro 2>&1)"
  check zram0-freed "$([ -e /sys/block/zram0 ] && echo "disksize=$(cat /sys/block/zram0/disksize)" || echo 'zram0 removed')" \
    sh -c '[ ! -e /sys/block/zram0 ] || [ "$(cat /sys/block/zram0/disksize)" = 0 ]'
  check medium-unmounted "mounts of sr0: '$(grep ' 11:0 ' /proc/self/mountinfo | cut -d' ' -f5)'" [ -z "$(grep ' 11:0 ' /proc/self/mountinfo)" ]
  cd1=$(host_request query-cd); echo "$cd1" > "$RES/cd-after.json"
  check cd-tray-open "$(echo "${cd1#ok }" | jq -c '{tray_open, locked}' 2>&1)" [ "$(echo "${cd1#ok }" | jq -r '.tray_open')" = true ]
  # the medium's kernel: live/vmlinuz and live/initrd.img on the project's ISO; live-build names them by version
  # (live/vmlinuz-VER, live/initrd.img-VER: vm-tests/livebuild-install's spin)
  MEDK=vmlinuz MEDI=initrd.img
  if [ ! -e /run/rootshift/image/live/vmlinuz ] && [ -e "/run/rootshift/image/live/vmlinuz-$(uname -r)" ]; then
    MEDK=vmlinuz-$(uname -r) MEDI=initrd.img-$(uname -r)
  fi
  echo "$MEDK" > "$RES/medium-kernel"
  say "medium kernel: live/$MEDK, live/$MEDI"
  for f in live/$MEDK live/$MEDI .disk/info live/filesystem.squashfs; do
    check "image-partition-has-${f//\//-}" "$(ls -l /run/rootshift/image/$f 2>&1)" [ -s /run/rootshift/image/$f ]
  done
  cp /run/rootshift/image/boot/grub/grub.cfg "$RES/grub.cfg" 2>&1
  L1=$(grep -m1 -E '^\s*linux\s' "$RES/grub.cfg")
  say "grub.cfg: $L1"
  for w in /live/vmlinuz boot=live "live-media=/dev/disk/by-uuid/$IMG_UUID" persistence "persistence-label=$LABEL" rd.rootshift.live=0 rootshift.vmtest=; do
    check "grub-cfg-has-$(echo "${w%%=*}" | tr -c 'a-z0-9.\n-' - | sed 's/^-*//')" "$L1" sh -c "echo ' $L1 ' | grep -qF -- ' $w'"
  done
  check grub-cfg-no-live-upper "$L1" sh -c "! echo '$L1' | grep -q 'rd.rootshift.live=upper'"
  check live-conf-written "$(tr '\n' '|' < /etc/rootshift/live.conf 2>&1)" grep -qx "image_uuid=$IMG_UUID" /etc/rootshift/live.conf
  check mbr-has-grub "$(dd if=/dev/vdb bs=512 count=1 2>/dev/null | strings | tr '\n' ' ')" \
    sh -c "dd if=/dev/vdb bs=512 count=1 2>/dev/null | grep -aq GRUB"
  mkdir -p /tmp/esp && mount -o ro /dev/vdb2 /tmp/esp
  check esp-fallback-loader "$(find /tmp/esp -iname '*.efi' | tr '\n' ' ')" test -s /tmp/esp/EFI/BOOT/BOOTX64.EFI
  umount /tmp/esp
  assert_eq bystander-vda-unchanged "$VDA0" "$(dd if=/dev/vda bs=1M 2>/dev/null | $SHA256SUM | cut -c1-16)"

  # ---- keep working, then power off ---------------------------------------------------------------------------------
  step writer-stop-no-errors writer_stop
  figure writer_files "$(writer_count)"
  step write-after-install mkfile /home/after-install.bin 2
  step verify-all-checksums verify_sums
  state=$(systemctl is-system-running)
  check system-running-after-install "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  scenario_done
  exit 0
fi

case "$VMTEST_PHASE" in flatten | flatsoft | flat) . "$VMTEST_IN/_flatten.inc" ;; esac

state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
cp "$PREV/sums" "$SUMS"
for f in image-uuid upper-label machine-id kver-before; do cp "$PREV/$f" "$RES/$f"; done
[ ! -e "$PREV/medium-kernel" ] || cp "$PREV/medium-kernel" "$RES/medium-kernel"

# ==== uefi: the disk alone, then a kernel update ===================================================================
if [ "$VMTEST_PHASE" = uefi ]; then
  check booted-with-uefi "$(ls /sys/firmware/efi 2>&1 | head -3 | tr '\n' ' ')" [ -d /sys/firmware/efi ]
  disk_boot_checks
  assert_eq same-kernel-as-the-iso "$(cat "$PREV/kver-before")" "$(uname -r)"
  step write-in-installed-session mkfile /home/uefi-boot.bin 2
  # a kernel package from the image's local repository, with apt (no network)
  . "$VMTEST_IN/_kernel-update.inc"
  install_repo_kernel $REPO $REPO.list
  MED=$(findmnt -rno TARGET "/dev/$IMGP" | head -1)
  say "image partition $IMGP mounted on '$MED' ($(findmnt -rno OPTIONS "/dev/$IMGP" | head -1))"
  check image-partition-mounted "$IMGP on '$MED'" [ -n "$MED" ]
  MEDK=$(cat "$PREV/medium-kernel" 2>/dev/null || echo vmlinuz)
  check_live_sync "$MED" live "$MEDK" "persistence-label=$(cat "$PREV/upper-label")"
  check image-partition-read-only-again "$(findmnt -rno OPTIONS "/dev/$IMGP" | head -1)" sh -c "findmnt -rno OPTIONS /dev/$IMGP | head -1 | grep -q '^ro'"
  step verify-all-checksums verify_sums
  scenario_done
  exit 0
fi

# ==== bios: the same disk after the kernel update ==================================================================
check booted-with-bios "no /sys/firmware/efi" [ ! -d /sys/firmware/efi ]
cp "$PREV/kver-new" "$RES/kver-new"
NEWK=$(cat "$PREV/kver-new")
assert_eq new-kernel-running "$NEWK" "$(uname -r)"
check booted-new-kernel-image "$(tr ' ' '\n' < /proc/cmdline | grep BOOT_IMAGE)" cmdline_has "BOOT_IMAGE=/live/vmlinuz-$NEWK"
figure kernel "$(cat "$PREV/kver-before") -> $(uname -r)"
check new-kernel-modules "$(ls -d /lib/modules/$NEWK 2>&1)" [ -d /lib/modules/$NEWK/kernel ]
disk_boot_checks
# fsck where it can be checked: the image partition is mounted read-only (live-boot's medium), the ESP not at all
assert_eq image-partition-mounted-ro ro "$(findmnt -rno OPTIONS "/dev/$IMGP" | head -1 | cut -d, -f1)"
e2fsck -fn "/dev/$IMGP" > "$RES/fsck-image.txt" 2>&1; rc=$?
check fsck-image-partition-clean "exit=$rc: $(tail -2 "$RES/fsck-image.txt" | tr '\n' '|')" [ $rc = 0 ]
fsck.fat -n /dev/vda2 > "$RES/fsck-esp.txt" 2>&1; rc=$?
check fsck-esp-clean "exit=$rc: $(tail -2 "$RES/fsck-esp.txt" | tr '\n' '|')" [ $rc = 0 ]
step write-after-kernel-update mkfile /home/bios-boot.bin 2
step verify-all-checksums verify_sums
scenario_done
