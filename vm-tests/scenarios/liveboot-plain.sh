#!/bin/bash
# A Debian live-boot session becomes a conventional installed system (a plain ext4 root), copied file by file while
# it runs, then entered by `systemctl soft-reboot` (issue 19). The project's live-boot ISO (trixie, systemd 257,
# initramfs-tools + live-boot, the session's upper on rootshift-upper over zram) boots from the CD:
#   main  (ISO, BIOS): session files in /home, a changed and a deleted lower file, a prepared tree with every kind of
#         metadata (vm-tests/live/guest/treefacts.py: owners, modes, xattrs of the user/trusted/security
#         namespaces, ACLs, a capability, inode flags, hard links, a sparse file, a device node, a fifo, a socket, a
#         name that is not UTF-8) and its facts, a writer that syncs each file and logs when → `rootshift install
#         --disk /dev/vdb --layout plain --yes --json`, which soft-reboots. A watcher notes the last moment before
#         the `cut-off` event appeared.
#   soft  (the same kernel after the soft-reboot; this runner starts again): boot_id unchanged, / is the ext4 of
#         vdb3, a new machine-id, live-boot purged, every session file and every writer file synced before the
#         cut-off there with its checksum, the prepared tree's facts equal, the deleted file still gone;
#         rootshift-release-live.service let go of the live stack (nothing kept): the CD ejected (QEMU's tray
#         open), no loop device, zram0 freed, rootshift-upper gone.
#   uefi  (vdb alone, OVMF, empty NVRAM: the removable path) and bios (SeaBIOS): the installed system boots from
#         its disk, / is its ext4, no live option on the command line, every file still there. The host fscks vdb3.
# vm-system: liveboot
# vm-loader: iso
# vm-disks: 64M 4G
# vm-then: uefi firmware=uefi disk=vdb
# vm-then: bios firmware=bios from=uefi
# vm-timeout: 1800
# vm-host-fsck: vdb3
# vm-tier: full (issue 19 is open: the plain layout and soft-reboot are proven here; CI's copy-tree-overlay proves the copier on an overlay root)
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
MiB=1048576
PREV=$VMTEST_IN/prev
TF="python3 $VMTEST_IN/treefacts.py"
WLOG=$RES/writer.log   # "index uptime_cs sha256 path" per file written and synced
DELETED=/etc/issue.net
cmdline_has() { tr ' ' '\n' < /proc/cmdline | grep -qxF -- "$1"; }

# the checks of an installed boot (soft, uefi, bios): / is the installed ext4, the files are there
installed_checks() {  # installed_checks DISK-KNAME
  local uuid
  uuid=$(cat "$RES/root-uuid")
  assert_eq root-is-installed-ext4 "/dev/${1}3 ext4" "$(findmnt -no SOURCE,FSTYPE /)"
  assert_eq root-uuid "$uuid" "$(findmnt -no UUID /)"
  check no-live-mounts "$(findmnt -rno TARGET | grep '^/run/live' | tr '\n' ' ')" [ -z "$(findmnt -rno TARGET | grep '^/run/live')" ]
  check live-boot-purged "$(dpkg-query -W -f '${Package} ${db:Status-Abbrev}' live-boot 2>&1)" \
    sh -c "! dpkg-query -W -f '\${db:Status-Abbrev}' live-boot 2>/dev/null | grep -q '^ii'"
  assert_eq kernel-cmdline-file "root=UUID=$uuid" "$(cut -d' ' -f1 /etc/kernel/cmdline)"
  assert_eq fstab-root "UUID=$uuid" "$(awk '$2 == "/" { print $1 }' /etc/fstab)"
  check deleted-file-stays-deleted "$DELETED: $(ls -l $DELETED 2>&1)" [ ! -e $DELETED ]
  files_and_tree_intact
}

# ==== main: the live ISO ===========================================================================================
if [ "$VMTEST_PHASE" = main ]; then
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  check cmdline-boot-live "$(cat /proc/cmdline)" cmdline_has boot=live
  assert_eq root-is-overlay overlay "$(findmnt -no FSTYPE /)"
  check rootshift-upper-on-zram "$(ls /sys/block/zram0/holders 2>&1)" [ -n "$(ls /sys/block/zram0/holders 2>/dev/null)" ]
  say "systemd: $(systemctl --version | head -1); kernel $(uname -r)"
  cat /proc/sys/kernel/random/boot_id > "$RES/boot-id"
  cat /etc/machine-id > "$RES/live-machine-id"
  # the session
  step files-in-home prefill /home/session 4 2
  step file-in-etc mkfile /etc/session-created.bin 1
  step delete-lower-file rm $DELETED
  step prepared-tree sh -c "$TF make /srv/prepared > /tmp/make.out"
  if grep -q '^no-flags' /tmp/make.out; then say "inode flags left out: $(cat /tmp/make.out)"; echo --no-flags > "$RES/facts-opts"; fi
  $TF facts /srv/prepared $(cat "$RES/facts-opts" 2>/dev/null) > "$RES/prepared.facts"
  check prepared-facts "$(wc -l < "$RES/prepared.facts") entries" [ "$(wc -l < "$RES/prepared.facts")" -eq 13 ]
  # a writer: each file synced, then logged with the moment it was complete
  cutoff_writer_start "$RES/install.json"
  echo soft > /run/vmtest/next-phase
  say "rootshift install --disk /dev/vdb --layout plain --yes --json"
  echo "$(now_cs)" > "$RES/install-start-cs"
  timeout 1500 rootshift install --disk /dev/vdb --layout plain --yes --json > "$RES/install.json" 2> "$RES/install.err"; rc=$?
  echo "$(now_cs)" > "$RES/install-end-cs"
  soft_reboot_or_fail install $rc "$RES/install.err"
fi

# ==== soft: the installed system, entered by soft-reboot =============================================================
if [ "$VMTEST_PHASE" = soft ]; then
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  figure install_to_running_s "$(fmt_cs $(( $(now_cs) - $(cat "$RES/install-start-cs") )))"
  figure soft_reboot_s "$(journalctl -b -o cat _PID=1 | sed -n 's/^Soft-reboot finished in \([0-9.]*\)s.*/\1/p' | tail -1)"
  check_events json-events-documented "$RES/install.json"
  jq -r '.event' "$RES/install.json" > /tmp/events 2>/dev/null
  for e in source layout partitioned mkfs file-progress pass cut-off install installed soft-reboot; do
    check json-has-$e "events: $(uniq /tmp/events | tr '\n' ' ')" grep -qx -- $e /tmp/events
  done
  jq -r 'select(.event == "pass") | "pass \(.pass) final=\(.final) files=\(.files) bytes=\(.bytes) s=\(.seconds)"' "$RES/install.json" | while read -r l; do say "$l"; done
  figure pass1_s "$(jq -r 'select(.event == "pass" and .pass == 1) | .seconds' "$RES/install.json")"
  figure pass1_mib $(( $(jq -r 'select(.event == "pass" and .pass == 1) | .bytes' "$RES/install.json") / MiB ))
  figure final_pass_s "$(jq -r 'select(.event == "pass" and .final) | .seconds' "$RES/install.json")"
  assert_eq boot-id-unchanged "$(cat "$RES/boot-id")" "$(cat /proc/sys/kernel/random/boot_id)"
  jq -r 'select(.event == "installed") | .root_uuid' "$RES/install.json" > "$RES/root-uuid"
  check new-machine-id "live $(cat "$RES/live-machine-id"), now $(cat /etc/machine-id)" \
    sh -c "[ '$(cat /etc/machine-id)' != '$(cat "$RES/live-machine-id")' ] && grep -qxE '[0-9a-f]{32}' /etc/machine-id"
  cat /etc/machine-id > "$RES/machine-id"
  cutoff_sums
  installed_checks vdb
  # what the soft-reboot left of the live stack, released by the runtime unit
  release_checks
  check released-ejected-cd "$(jq -c .released /run/rootshift/released.json 2>&1)" \
    sh -c "jq -r '.released[]' /run/rootshift/released.json | grep -qx 'ejected /dev/sr0'"
  check no-loop-devices "$(grep -l . /sys/block/loop*/loop/backing_file 2>/dev/null | tr '\n' ' ')" \
    [ -z "$(cat /sys/block/loop*/loop/backing_file 2>/dev/null)" ]
  check zram0-freed "$([ -e /sys/block/zram0 ] && echo "disksize=$(cat /sys/block/zram0/disksize)" || echo 'zram0 removed')" \
    sh -c '[ ! -e /sys/block/zram0 ] || [ "$(cat /sys/block/zram0/disksize)" = 0 ]'
  check no-rootshift-upper "$(ls /dev/mapper 2>&1 | tr '\n' ' ')" [ ! -e /dev/mapper/rootshift-upper ]
  cd1=$(host_request query-cd); echo "$cd1" > "$RES/cd-after.json"
  check cd-tray-open "$(echo "${cd1#ok }" | jq -c '{tray_open, locked}' 2>&1)" [ "$(echo "${cd1#ok }" | jq -r '.tray_open')" = true ]
  figure mem_available_mib $(( $(awk '/^MemAvailable/ { print $2 }' /proc/meminfo) / 1024 ))
  check mbr-has-grub "" sh -c "dd if=/dev/vdb bs=512 count=1 2>/dev/null | grep -aq GRUB"
  check esp-fallback-loader "$(ls /boot/efi/EFI/BOOT 2>&1 | tr '\n' ' ')" test -s /boot/efi/EFI/BOOT/BOOTX64.EFI
  step write-after-soft-reboot mkfile /home/after-soft-reboot.bin 2
  scenario_done
  exit 0
fi

# ==== uefi, bios: the installed disk alone ===========================================================================
disk_boot_start root-uuid machine-id prepared.facts facts-opts
check no-cdrom "$(ls /sys/block | tr '\n' ' ')" [ ! -e /sys/block/sr0 ]
check cmdline-not-live "$(cat /proc/cmdline)" sh -c "! tr ' ' '\n' < /proc/cmdline | grep -qE '^(boot=live|components)$'"
check cmdline-root-uuid "$(cat /proc/cmdline)" cmdline_has "root=UUID=$(cat "$RES/root-uuid")"
assert_eq machine-id-kept "$(cat "$RES/machine-id")" "$(cat /etc/machine-id)"
installed_checks vda
step write-in-$VMTEST_PHASE mkfile /home/$VMTEST_PHASE-boot.bin 2
scenario_done
exit 0
