#!/bin/bash
# `install --layout plain` on dracut's dm-snapshot live media (issue 19 §1: "and on the dm-snapshot media as an
# alternative to the block copy"). The project's dracut live ISO (trixie, dmsquash-live: / is the ext4 of the
# snapshot live-rw, wrapped at boot by rootshift-root) boots from the CD:
#   main  session files, a prepared tree (every kind of metadata: treefacts.py), a writer that syncs → `rootshift
#         install --disk /dev/vda --layout plain --yes --json` (GPT, ext4 copied file by file, chroot finish with
#         dracut, GRUB), which soft-reboots.
#   soft  (the same kernel): boot_id unchanged, / is vda3's ext4, the session's files and the writer's synced before
#         the cut-off there, the prepared tree's facts equal; rootshift-release-live.service let go of the live
#         stack: rootshift-root, live-rw and live-base removed, no loop device, the CD ejected.
#   disk  (vda alone, OVMF): the installed system boots, no live option on its command line, every file there.
#         The host fscks vda3.
# vm-system: live
# vm-disks: 4G
# vm-then: disk firmware=uefi disk=vda
# vm-timeout: 1800
# vm-host-fsck: vda3
# vm-tier: full (issue 19: the plain install on dm-snapshot live media; liveboot-plain proves it on overlay media, copy-tree-overlay the copier in CI)
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
MiB=1048576
PREV=$VMTEST_IN/prev
TF="python3 $VMTEST_IN/treefacts.py"
WLOG=$RES/writer.log   # "index uptime_cs sha256 path" per file written and synced
cmdline_has() { tr ' ' '\n' < /proc/cmdline | grep -qxF -- "$1"; }

installed_checks() {  # what every boot of the installed system shows
  local uuid
  uuid=$(cat "$RES/root-uuid")
  assert_eq root-is-installed-ext4 "/dev/vda3 ext4" "$(findmnt -no SOURCE,FSTYPE /)"
  assert_eq root-uuid "$uuid" "$(findmnt -no UUID /)"
  assert_eq fstab-root "UUID=$uuid" "$(awk '$2 == "/" { print $1 }' /etc/fstab)"
  check kernel-cmdline-file-not-live "$(cat /etc/kernel/cmdline)" sh -c "! grep -qE 'rd.live|root=live' /etc/kernel/cmdline"
  files_and_tree_intact
}

if [ "$VMTEST_PHASE" = main ]; then
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  ROOTK=$(kname_of "$(root_majmin)")
  say "/ on $ROOTK ($(dm_name "$ROOTK")) over $(slaves_of "$ROOTK"); systemd: $(systemctl --version | head -1)"
  assert_eq root-is-wrapper rootshift-root "$(dm_name "$ROOTK")"
  assert_eq wrapper-over-live-rw live-rw "$(dm_name "$(slaves_of "$ROOTK")")"
  cat /proc/sys/kernel/random/boot_id > "$RES/boot-id"
  step files-in-home prefill /home/session 4 2
  step prepared-tree sh -c "$TF make /srv/prepared > /tmp/make.out"
  $TF facts /srv/prepared > "$RES/prepared.facts"
  check prepared-facts "$(wc -l < "$RES/prepared.facts") entries" [ "$(wc -l < "$RES/prepared.facts")" -ge 13 ]
  cutoff_writer_start "$RES/install.json"
  echo soft > /run/vmtest/next-phase
  say "rootshift install --disk /dev/vda --layout plain --yes --json"
  timeout 1500 rootshift install --disk /dev/vda --layout plain --yes --json > "$RES/install.json" 2> "$RES/install.err"; rc=$?
  soft_reboot_or_fail install $rc "$RES/install.err"
fi

if [ "$VMTEST_PHASE" = soft ]; then
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  figure soft_reboot_s "$(journalctl -b -o cat _PID=1 | sed -n 's/^Soft-reboot finished in \([0-9.]*\)s.*/\1/p' | tail -1)"
  assert_eq boot-id-unchanged "$(cat "$RES/boot-id")" "$(cat /proc/sys/kernel/random/boot_id)"
  check_events json-events-documented "$RES/install.json"
  jq -r '.event' "$RES/install.json" > /tmp/events 2>/dev/null
  for e in source layout partitioned mkfs pass cut-off installed soft-reboot; do
    check json-has-$e "events: $(uniq /tmp/events | tr '\n' ' ')" grep -qx -- $e /tmp/events
  done
  jq -r 'select(.event == "source") | .source' "$RES/install.json" > "$RES/source"
  check source-is-the-snapshot "$(cat "$RES/source")" grep -q "live medium's snapshot" "$RES/source"
  jq -r 'select(.event == "installed") | .root_uuid' "$RES/install.json" > "$RES/root-uuid"
  cutoff_sums
  installed_checks
  release_checks
  for dm in rootshift-root live-rw live-base; do
    check no-dm-$dm "dm: $(for d in /sys/block/dm-*; do cat "$d/dm/name" 2>/dev/null; done | tr '\n' ' ')" [ -z "$(dm_by_name $dm)" ]
  done
  check no-loop-devices "$(cat /sys/block/loop*/loop/backing_file 2>/dev/null | tr '\n' ' ')" \
    [ -z "$(cat /sys/block/loop*/loop/backing_file 2>/dev/null)" ]
  cd1=$(host_request query-cd)
  check cd-tray-open "$(echo "${cd1#ok }" | jq -c '{tray_open, locked}' 2>&1)" [ "$(echo "${cd1#ok }" | jq -r '.tray_open')" = true ]
  cat /etc/machine-id > "$RES/machine-id"
  step write-after-soft-reboot mkfile /home/after-soft-reboot.bin 2
  scenario_done
  exit 0
fi

# ==== disk: the installed disk alone ====
state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
cp "$PREV/sums" "$SUMS"
for f in root-uuid machine-id prepared.facts; do cp "$PREV/$f" "$RES/$f"; done
check booted-with-uefi "$(ls /sys/firmware/efi 2>&1 | head -3 | tr '\n' ' ')" [ -d /sys/firmware/efi ]
check no-cdrom "$(ls /sys/block | tr '\n' ' ')" [ ! -e /sys/block/sr0 ]
check cmdline-not-live "$(cat /proc/cmdline)" sh -c "! tr ' ' '\n' < /proc/cmdline | grep -qE '^(rd.live.image|root=live:.*)$'"
check cmdline-root-uuid "$(cat /proc/cmdline)" cmdline_has "root=UUID=$(cat "$RES/root-uuid")"
assert_eq machine-id-kept "$(cat "$RES/machine-id")" "$(cat /etc/machine-id)"
installed_checks
step write-in-disk mkfile /home/disk-boot.bin 2
scenario_done
exit 0
