#!/bin/bash
# Move an installed system to a new disk without a reboot, then boot the new disk alone: the installed Debian
# system (root=UUID=… on vda1, wrapped at boot by the initramfs-tools hook — its init mounts /run noexec and systemd
# keeps that, so the guardian must not exec from /run; a swap partition vda2 in fstab) →
# `rootshift migrate /dev/vdb2 --install` (vdb: GPT, BIOS boot + root) with a writer running. The move keeps the
# machine's identity (machine-id, hostname, the root's UUID: the old disk got a fresh one right after the switch),
# replaces the swap partition left on the old disk by a swap file on the new root, rewrites fstab (the old swap
# entry goes), installs grub-bios on vdb.
# Then SeaBIOS boots vdb alone (the guest sees it as vda) through that GRUB.
# vm-system: installed
# vm-firmware: bios
# vm-disks: 3G
# vm-boot: main itools
# vm-then: target firmware=bios disk=vdb
# vm-timeout: 1200
# vm-host-fsck: vdb2
# vm-host-sums: vdb2
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
MiB=1048576
LAYOUT='label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root'
active_swaps() { swapon --show=NAME --noheadings 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }

if [ "$VMTEST_PHASE" = main ]; then
  state=$(wait_running 300)
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
  ROOTK=$(kname_of "$(root_majmin)")
  assert_eq root-on-wrapper-over-vda1 "rootshift-root vda1" "$(dm_name "$ROOTK") $(slaves_of "$ROOTK")"
  # what this boot is for: initramfs-tools' /run is noexec (the guardian used to be exec'd from there: EACCES)
  check run-is-noexec "$(findmnt -no OPTIONS /run)" sh -c "findmnt -no OPTIONS /run | tr , '\n' | grep -qx noexec"
  OLD_UUID=$(blkid -s UUID -o value "/dev/$ROOTK"); echo "$OLD_UUID" > "$RES/old-uuid"
  cat /etc/machine-id > "$RES/machine-id"
  SWAP_UUID=$(blkid -p -s UUID -o value /dev/vda2)
  assert_eq old-swap-partition-active /dev/vda2 "$(active_swaps)"
  step partition-vdb sh -c "echo '$LAYOUT' | sfdisk -q /dev/vdb && udevadm settle"
  # issue 15 item 8: without --install, an fstab naming the root by its old partition (PARTUUID=) would boot the
  # stale source after the migration: refused (exit 2), nothing changed; with --install (below) it is rewritten
  cp /etc/fstab /tmp/fstab.orig
  PU=$(blkid -p -s PART_ENTRY_UUID -o value /dev/vda1)
  sed -i "s|^UUID=$OLD_UUID[[:space:]]\+/[[:space:]]|PARTUUID=$PU / |" /etc/fstab
  check fstab-names-partuuid "$(grep ' / ' /etc/fstab)" grep -q "^PARTUUID=$PU / " /etc/fstab
  rootshift migrate /dev/vdb2 --yes --no-install > /tmp/stale.out 2> /tmp/stale.err; rc=$?
  say "migrate without --install, fstab by PARTUUID: exit $rc: $(tr '\n' '|' < /tmp/stale.err)"
  assert_eq stale-root-name-refused 2 "$rc"
  assert_contains stale-root-name-message /tmp/stale.err "/etc/fstab mounts / from PARTUUID=$PU"
  assert_eq stale-root-name-unchanged "linear vda1" "$(rootshift status --json | jq -r '.wrappers[0] | .table') $(slaves_of "$ROOTK")"
  cp /tmp/fstab.orig /etc/fstab
  step prefill-4MiB prefill /data 4 1
  writer_start /live 600 2
  writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]
  # detached (issue 16 §1): systemd runs here, so the work goes into a transient unit of its own; this shell follows
  # it with `status --follow --json` (the stream it shows is the run's own events). The unit is polled while it runs;
  # While it runs, logind lists rootshift's shutdown/sleep lock (`systemd-inhibit --list`, the image has D-Bus): the
  # list is polled from the moment the unit exists until it shows rootshift or the unit is gone.
  ( for i in $(seq 1200); do
      if COLUMNS=400 systemctl list-units --all --no-pager --plain --no-legend 'rootshift-*' 2>/dev/null | grep -q 'rootshift-migration-.*\.service'; then
        COLUMNS=400 systemctl list-units --all --no-pager --plain --no-legend 'rootshift-*' > /tmp/unit.txt 2>&1
        for j in $(seq 240); do
          COLUMNS=400 systemd-inhibit --list --no-pager > /tmp/inhibit.txt 2>&1
          grep -q rootshift /tmp/inhibit.txt && break
          systemctl list-units --no-pager --plain --no-legend 'rootshift-migration-*' | grep -q . || break
          sleep 0.5
        done
        break
      fi
      sleep 0.5
    done ) &
  UNP=$!
  t_start=$(now_cs)
  rootshift migrate /dev/vdb2 --install --initramfs keep --yes --detach > /tmp/detach.out 2> /tmp/detach.err; drc=$?
  timeout 1200 rootshift status --follow --json > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
  switch_figures /tmp/migrate.json
  t_end=$(now_cs)
  kill $UNP 2>/dev/null
  cp /tmp/migrate.json /tmp/migrate.err /tmp/detach.err /tmp/unit.txt /tmp/inhibit.txt "$RES/" 2>/dev/null
  say "detach: exit $drc: $(tr '\n' '|' < /tmp/detach.err | cut -c1-300)"
  say "while it ran: $(tr '\n' '|' < /tmp/unit.txt 2>/dev/null | cut -c1-600)"
  say "inhibitors while it ran: $(tr '\n' '|' < /tmp/inhibit.txt 2>/dev/null | cut -c1-600)"
  # issue 16 §1: the lock logind holds for the run, with the reason `systemctl poweroff` would show; gone after it
  check inhibitor-held-while-running "$(grep -m1 rootshift /tmp/inhibit.txt 2>/dev/null)" \
    sh -c "grep rootshift /tmp/inhibit.txt | grep -q 'shutdown:sleep' && grep -q 'rootshift is moving the root filesystem to /dev/vdb2' /tmp/inhibit.txt"
  check no-inhibitor-warning "$(jq -c 'select(.event=="warning")' /tmp/migrate.json 2>/dev/null | head -2)" \
    sh -c '[ -z "$(jq -c "select(.event==\"warning\" and .what==\"inhibitor\")" /tmp/migrate.json)" ]'
  # `status --follow` ends with the run's last event; the process (and its lock) may outlive that by a moment
  for i in $(seq 40); do
    COLUMNS=400 systemd-inhibit --list --no-pager > /tmp/inhibit-after.txt 2>&1
    grep -q rootshift /tmp/inhibit-after.txt || break
    sleep 0.5
  done
  cp /tmp/inhibit-after.txt "$RES/"
  check inhibitor-released "after $i polls: $(tr '\n' '|' < /tmp/inhibit-after.txt | cut -c1-300)" \
    sh -c '! grep -q rootshift /tmp/inhibit-after.txt && grep -qiE "inhibitors listed|no inhibitors" /tmp/inhibit-after.txt'
  assert_eq detach-exit-0 0 "$drc"
  assert_contains detach-in-a-systemd-unit /tmp/detach.err "in the systemd unit rootshift-migration-"
  check ran-in-its-own-unit "$(grep -m1 'rootshift-migration-' /tmp/unit.txt 2>/dev/null)" grep -q 'rootshift-migration-.*\.service' /tmp/unit.txt
  figure migrate_install_s "$(fmt_cs $((t_end - t_start)))"
  check migrate-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|' | cut -c1-400)" [ $rc = 0 ]
  jq -r 'select(.event=="install") | .detail' /tmp/migrate.json > "$RES/install-steps.txt" 2>/dev/null
  say "install steps: $(tr '\n' '|' < "$RES/install-steps.txt")"
  during=$(writer_count_between "$t_start" "$t_end")
  check writer-wrote-during-migrate "$during files between migrate start and end" [ "$during" -ge 1 ]

  NEW_UUID=$(jq -r 'select(.event=="installed") | .root_uuid' /tmp/migrate.json); echo "$NEW_UUID" > "$RES/new-uuid"
  assert_eq root-now-over-vdb2 "rootshift-root vdb2" "$(dm_name "$ROOTK") $(slaves_of "$ROOTK")"
  # an installed source got a fresh UUID right after the switch (so that a crash can never boot the stale
  # copy by root=UUID=): the moved root keeps the system's UUID and only vdb2 carries it
  assert_eq moved-root-keeps-its-uuid "$OLD_UUID" "$NEW_UUID"
  assert_eq raw-partition-shows-the-uuid "$NEW_UUID" "$(blkid -p -s UUID -o value /dev/vdb2)"
  OLD_NOW=$(blkid -p -s UUID -o value /dev/vda1); echo "$OLD_NOW" > "$RES/old-disk-uuid"
  check old-disk-has-a-fresh-uuid "vda1: $OLD_NOW" [ -n "$OLD_NOW" -a "$OLD_NOW" != "$NEW_UUID" ]
  assert_eq only-vdb2-carries-the-uuid /dev/vdb2 "$(for p in /dev/vd[a-z][0-9]*; do [ "$(blkid -p -s UUID -o value "$p")" = "$NEW_UUID" ] && echo "$p"; done | tr '\n' ' ' | sed 's/ $//')"
  assert_eq old-disk-released "" "$(holders_of vda1)"
  assert_eq machine-id-kept "$(cat "$RES/machine-id")" "$(cat /etc/machine-id)"
  cp /etc/fstab "$RES/fstab"
  check fstab-root-is-new-uuid "$(grep -v '^#' /etc/fstab | tr '\n' '|')" grep -qE "^UUID=$NEW_UUID[[:space:]]+/[[:space:]]+ext4" /etc/fstab
  # the swap partition stays behind with the old disk: a swap file of its size on the new root replaces it
  assert_eq swap-now-a-file-on-the-new-root /swapfile "$(active_swaps)"
  check fstab-swap-is-the-file "$(grep -v '^#' /etc/fstab | tr '\n' '|')" \
    sh -c "grep -qE '^/swapfile[[:space:]]+none[[:space:]]+swap' /etc/fstab && ! grep -q '$SWAP_UUID' /etc/fstab"
  assert_eq swapfile-size-of-the-partition "$(blockdev --getsize64 /dev/vda2)" "$(stat -c %s /swapfile)"
  check grub-cfg-boots-new-uuid "$(grep -m1 -E '^\s*linux\s' /boot/grub/grub.cfg)" \
    sh -c "grep -E '^\s*linux\s' /boot/grub/grub.cfg | head -1 | grep -q 'root=UUID=$NEW_UUID'"
  check mbr-of-vdb-has-grub "$(dd if=/dev/vdb bs=512 count=1 2>/dev/null | strings | tr '\n' ' ')" \
    sh -c "dd if=/dev/vdb bs=512 count=1 2>/dev/null | grep -aq GRUB"
  check mbr-of-vda-untouched "$(dd if=/dev/vda bs=512 count=1 2>/dev/null | strings | tr '\n' ' ')" \
    sh -c "! dd if=/dev/vda bs=512 count=1 2>/dev/null | grep -aq GRUB"
  status_json "$RES/status.json"
  assert_eq journal-install-done done "$(jget "$RES/status.json" '.journal.install.state')"
  n0=$(writer_count); writer_wait_more 2 90
  step writer-stop-no-errors writer_stop
  figure writer_files "$(writer_count)"
  step verify-all-checksums verify_sums
  figure fs_mib $(( $(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2}') / MiB ))
  scenario_done
  exit 0
fi

# ---- phase "target": vdb alone (the guest's vda), through SeaBIOS and the GRUB rootshift installed ----------------
state=$(wait_running 300)
figure target_boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
PREV=$VMTEST_IN/prev
NEW_UUID=$(cat "$PREV/new-uuid")
say "cmdline: $(cat /proc/cmdline)"
lsblk -o NAME,MAJ:MIN,TYPE,FSTYPE,UUID,MOUNTPOINT | sed 's/^/    | /'
assert_eq vda-is-the-3GiB-disk 3221225472 "$(blockdev --getsize64 /dev/vda)"
check booted-with-bios "no /sys/firmware/efi" [ ! -d /sys/firmware/efi ]
ROOTK=$(kname_of "$(root_majmin)")
assert_eq root-on-wrapper-over-vda2 "rootshift-root vda2" "$(dm_name "$ROOTK") $(slaves_of "$ROOTK")"
assert_eq root-uuid "$NEW_UUID" "$(blkid -s UUID -o value "/dev/$ROOTK")"
check cmdline-root-uuid "$(cat /proc/cmdline)" grep -q "root=UUID=$NEW_UUID" /proc/cmdline
check booted-through-grub "$(cat /proc/cmdline)" grep -q 'BOOT_IMAGE=' /proc/cmdline
assert_eq machine-id-kept "$(cat "$PREV/machine-id")" "$(cat /etc/machine-id)"
assert_eq hostname-kept rootshift-installed "$(hostname)"
assert_eq swap-file-active /swapfile "$(active_swaps)"
journalctl -b --no-pager -o short-monotonic 2>/dev/null | grep -E 'systemd-fsck' > "$RES/fsck-lines.txt"
check root-fsck-clean "$(tr '\n' '|' < "$RES/fsck-lines.txt" | cut -c1-300)" grep -qE 'systemd-fsck\[[0-9]+\]: .*: clean, ' "$RES/fsck-lines.txt"
sync; echo 3 > /proc/sys/vm/drop_caches
n=$(wc -l < "$PREV/sums")
check all-files-intact "$n files written before, during and after the move" $SHA256SUM -c --quiet "$PREV/sums"
figure files_verified "$n"
step write-on-moved-system mkfile /moved-write.bin 2
step verify-new-write verify_sums
scenario_done
