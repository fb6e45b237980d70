#!/bin/bash
# Install a running live system without a reboot: boot the live ISO (dracut dmsquash-live, systemd, root on the
# dm snapshot live-rw wrapped at boot by the rootshift dracut module), migrate / onto the empty disk vda with a
# writer running, let rootshift release the live stack, eject the CD through QEMU's monitor with a plain
# (non-forced) eject, which QEMU refuses while the guest still uses the drive, and show the system keeps working.
# vm-system: live
# vm-suite: bookworm
# (bookworm on purpose: the other full-system scenarios run trixie; this keeps dracut 059, systemd 252 and
# kernel 6.1 under test too)
# vm-disks: 2G
# vm-timeout: 900
# vm-host-fsck: vda
# vm-host-sums: vda
# vm-tier: full (the same live-rw release and eject on bookworm (dracut 059, systemd 252, kernel 6.1); CI runs the trixie live-rw path (disk-install, live-install-uefi, retain-last) and kernel 6.1 in every busybox scenario)
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
TGT=/dev/vda
MiB=1048576

# ---- the booted live system --------------------------------------------------------------------------------------
t=$(now_cs)
state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
check system-running-after-boot "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
assert_eq boot-hook-state wrapped "$(boot_info state)"
assert_eq boot-hook-backend dm "$(boot_info backend)"
ROOT=$(root_majmin); ROOTK=$(kname_of "$ROOT")
assert_eq root-is-wrapper rootshift-root "$(dm_name "$ROOTK")"
COMPK=$(slaves_of "$ROOTK")
assert_eq wrapper-over-live-rw live-rw "$(dm_name "$COMPK")"
UUID=$(blkid -s UUID -o value "/dev/$ROOTK")
check by-uuid-is-wrapper "/dev/disk/by-uuid/$UUID -> $(readlink -f /dev/disk/by-uuid/$UUID)" \
  [ "$(readlink -f "/dev/disk/by-uuid/$UUID")" = "/dev/$ROOTK" ]
assert_eq live-rw-not-systemd-ready 0 "$(udev_prop /dev/$COMPK SYSTEMD_READY)"
check target-is-empty-vda "serial=$(cat /sys/block/vda/serial) fs='$(blkid -o value -s TYPE $TGT)'" \
  [ "$(cat /sys/block/vda/serial)" = vda -a -z "$(blkid -o value -s TYPE $TGT)" ]
say "live stack: $(lsblk -rno NAME,MAJ:MIN,TYPE,MOUNTPOINT | tr '\n' '|')"
LOOPS0=$(ls -d /sys/block/loop*/loop 2>/dev/null | wc -l)
check live-stack-before "loops=$LOOPS0 live-base=$(dm_by_name live-base) medium=$(findmnt -no SOURCE /run/initramfs/live)" \
  [ "$LOOPS0" -ge 3 -a -n "$(dm_by_name live-base)" -a "$(findmnt -no SOURCE /run/initramfs/live)" = /dev/sr0 ]

# Control: while the live system runs from the CD, QEMU refuses a plain eject: the kernel locks the tray while the
# drive is open (the test image leaves the lock to the kernel, see vm-tests/live/image/60-cdrom_id.rules).
reply=$(host_request eject); echo "$reply" > "$RES/eject-before.txt"; say "eject before the migration: $reply"
check eject-refused-while-in-use "$reply" [ "${reply%% *}" = error ]
assert_contains eject-refusal-says-locked "$RES/eject-before.txt" "is locked"
sleep 3
cd0=$(host_request query-cd); echo "$cd0" > "$RES/cd-before.json"
check cd-still-in-after-refused-eject "$(echo "${cd0#ok }" | jq -c '{tray_open, locked, inserted: (.inserted != null)}' 2>&1)" \
  [ "$(echo "${cd0#ok }" | jq -r '.locked and (.inserted != null) and (.tray_open | not)')" = true ]
check medium-readable "$(dd if=/dev/sr0 of=/dev/null bs=64k count=16 iflag=direct 2>&1 | tail -1)" \
  dd if=/dev/sr0 of=/dev/null bs=64k count=16 iflag=direct

# ---- migrate / with a writer running --------------------------------------------------------------------------
step prefill-4MiB prefill /data 4 1
writer_start /live 200
writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]
B0=$(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2}')
# A live source is installed by default, and a whole disk without a layout cannot be: refused, nothing changed.
rootshift migrate $TGT --yes > /tmp/refuse.out 2> /tmp/refuse.err; rc=$?
assert_eq install-on-whole-disk-refused 2 "$rc"
assert_contains install-refusal-says-whole-disk /tmp/refuse.err "is a whole disk"
assert_contains install-refusal-names-the-way-out /tmp/refuse.err "rootshift install --disk $TGT"
assert_eq refused-left-target-blank "" "$(blkid -o value -s TYPE $TGT)"
t_start=$(now_cs)
timeout 600 rootshift migrate $TGT --yes --no-install --json > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
t_end=$(now_cs)
cp /tmp/migrate.json /tmp/migrate.err "$RES/"
say "migrate exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr: $(tail -5 /tmp/migrate.err | tr '\n' '|')"
figure migrate_s "$(fmt_cs $((t_end - t_start)))"
check migrate-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|')" [ $rc = 0 ]
jq -r '.event' /tmp/migrate.json > /tmp/events 2>/dev/null
EV=$(uniq /tmp/events | tr '\n' ' ')
check json-switched-grown-released-done "events: $EV" \
  [ "$(grep -xE 'switched|grown|released|done' /tmp/events | uniq | tr '\n' ' ')" = "switched grown released done " ]
jq -r 'select(.event=="released") | .released[]' /tmp/migrate.json > "$RES/released.txt" 2>/dev/null
say "released: $(tr '\n' '|' < "$RES/released.txt")"
figure released "$(grep -vc '^kept' "$RES/released.txt")"
check released-nothing-kept "$(grep '^kept' "$RES/released.txt" | tr '\n' '|')" [ -z "$(grep '^kept' "$RES/released.txt")" ]
for want in "removed dm live-rw" "removed dm live-base" "unmounted /run/initramfs/live"; do
  assert_contains "released-$(echo "$want" | tr ' /' '--' | tr -s -)" "$RES/released.txt" "$want"
done
check released-three-loops "$(grep -c '^detached /dev/loop' "$RES/released.txt") loop devices detached" \
  [ "$(grep -c '^detached /dev/loop' "$RES/released.txt")" -ge 3 ]
during=$(writer_count_between "$t_start" "$t_end")
check writer-wrote-during-migrate "$during files between migrate start and end" [ "$during" -ge 1 ]

# ---- nothing of the live stack is left; the medium is free ---------------------------------------------------
bound=$(for l in /sys/block/loop*; do [ -e "$l/loop/backing_file" ] && echo "$(basename $l)=$(cat $l/loop/backing_file)"; done | tr '\n' ' ')
check no-bound-loop-devices "bound: '$bound'" [ -z "$bound" ]
dms=$(for d in /sys/block/dm-*; do cat "$d/dm/name"; done | tr '\n' ' ')
assert_eq only-dm-device-is-wrapper "rootshift-root " "$dms"
check medium-not-mounted "$(grep -c sr0 /proc/self/mountinfo) mounts of sr0" [ -z "$(grep ' 11:0 ' /proc/self/mountinfo)" ]
assert_eq wrapper-on-target vda "$(slaves_of "$ROOTK")"
check by-uuid-still-wrapper "/dev/disk/by-uuid/$UUID -> $(readlink -f /dev/disk/by-uuid/$UUID)" \
  [ "$(readlink -f "/dev/disk/by-uuid/$UUID")" = "/dev/$ROOTK" ]

# The proof: the tray is unlocked now, a plain eject succeeds, and the tray is open with no medium.
cd1=$(host_request query-cd)
sr0_users() {  # processes with sr0 open or mounted in their mount namespace
  for p in /proc/[0-9]*; do
    if grep -q ' 11:0 ' "$p/mountinfo" 2>/dev/null || ls -l "$p/fd" 2>/dev/null | grep -q '/dev/sr0'; then
      echo "$(basename $p):$(cat $p/comm 2>/dev/null)"
    fi
  done | tr '\n' ' '
}
say "sr0 users after the release: '$(sr0_users)'"
check cd-unlocked-after-release "$(echo "${cd1#ok }" | jq -c '{tray_open, locked}' 2>&1)" \
  [ "$(echo "${cd1#ok }" | jq -r '.locked')" = false ]
reply=$(host_request eject); say "eject after the migration: $reply"
check eject-succeeds-after-release "$reply" [ "${reply%% *}" = ok ]
echo "$(now_cs)" > "$RES/ejected-at-cs"
cd2=$(host_request query-cd); echo "$cd2" > "$RES/cd-after.json"
check cd-ejected "$(echo "${cd2#ok }" | jq -c '{tray_open, inserted: (.inserted != null)}' 2>&1)" \
  [ "$(echo "${cd2#ok }" | jq -r '(.inserted == null) and .tray_open')" = true ]

# ---- the system keeps working without its medium -------------------------------------------------------------
n0=$(writer_count); writer_wait_more 3 90; n1=$(writer_count)
check writer-continues-after-eject "files: $n0 then $n1" [ $((n1 - n0)) -ge 3 ]
step writer-stop-no-errors writer_stop
figure writer_files "$(writer_count)"
step verify-all-checksums verify_sums
step write-after-eject mkfile /after-eject.bin 4
step verify-after-eject verify_sums
sync; echo 3 > /proc/sys/vm/drop_caches
out=$(/usr/sbin/mkfs.ext4 -V 2>&1 | head -1; dpkg-query -W -f '${Package}\n' | wc -l)
check run-commands-from-root "mkfs.ext4 -V + dpkg-query (caches dropped): $(echo "$out" | tr '\n' ' ')" [ "$(echo "$out" | tail -1)" -gt 50 ]
cat > /etc/systemd/system/rs-after-eject.service <<'UNIT'
[Unit]
Description=a service started after the medium was ejected
[Service]
ExecStart=/bin/sh -c 'echo started > /run/rs-after-eject; exec sleep 600'
UNIT
step daemon-reload systemctl daemon-reload
step start-service systemctl start rs-after-eject.service
assert_eq service-active active "$(systemctl is-active rs-after-eject.service)"
check service-ran "$(cat /run/rs-after-eject 2>&1)" [ "$(cat /run/rs-after-eject 2>/dev/null)" = started ]
state=$(systemctl is-system-running)
check system-running-after-eject "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|'); jobs: $(systemctl list-jobs --no-legend | wc -l)" \
  [ "$state" = running ]
check no-emergency "$(journalctl -b --no-pager | grep -ci 'emergency') journal lines mention emergency" \
  [ -z "$(journalctl -b --no-pager | grep -i 'emergency mode\|Reached target.*Emergency')" ]
status_json /tmp/st.json; cp /tmp/st.json "$RES/status-after.json"
assert_eq status-state done "$(jget /tmp/st.json .state)"
assert_eq status-legs "$(cat /sys/block/vda/dev)" "$(jget /tmp/st.json '[.legs[].dev] | join(",")')"
B1=$(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2}')
figure fs_before_mib $((B0 / MiB)); figure fs_after_mib $((B1 / MiB))
check fs-grown "statfs of /: $((B0 / MiB)) MiB before, $((B1 / MiB)) MiB after" [ "$B1" -gt $((B0 + 700 * MiB)) ]
scenario_done
