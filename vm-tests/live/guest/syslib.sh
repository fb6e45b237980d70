# Helpers for scenarios running in a full Debian system (bash, systemd, udev), on top of vm-tests/guest/lib.sh.
VMTEST_DISK=/dev/disk/by-id/virtio-vmtest
HOST_PORT=/dev/virtio-ports/org.rootshift.vmhost
EVENTS_DOC=${EVENTS_DOC:-/run/vmtest/in/events.json}   # docs/events.json, for lib.sh's check_events

# host_request REQUEST... : ask the host (vm-tests/live/run-system-vm); prints the reply, 0 when it starts with ok
host_request() {
  local reply=
  for _ in $(seq 100); do [ -e "$HOST_PORT" ] && break; sleep 0.1; done
  exec 7<> "$HOST_PORT" || { echo "error no host port $HOST_PORT"; return 1; }
  echo "$*" >&7
  read -r -t 60 reply <&7
  exec 7>&-
  echo "${reply:-error no reply from the host}"
  [ "${reply%% *}" = ok ]
}

# wait_running SECONDS : wait until systemd finished booting; prints the state
wait_running() {
  timeout "$1" systemctl is-system-running --wait > /dev/null 2>&1
  systemctl is-system-running 2>/dev/null
}

# disk_boot_start FILE... : the start of a later boot of an installed disk (a `vm-then` boot named uefi or bios):
# running, the earlier boots' checksums and the named result files carried on, booted by the firmware it is named for
disk_boot_start() {
  local state f
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  cp "$VMTEST_IN/prev/sums" "$SUMS"
  for f in "$@"; do [ ! -e "$VMTEST_IN/prev/$f" ] || cp "$VMTEST_IN/prev/$f" "$RES/$f"; done
  if [ "$VMTEST_PHASE" = uefi ]; then
    check booted-with-uefi "$(ls /sys/firmware/efi 2>&1 | head -3 | tr '\n' ' ')" [ -d /sys/firmware/efi ]
  else
    check booted-with-bios "no /sys/firmware/efi" [ ! -d /sys/firmware/efi ]
  fi
}

# crypt_main_start : the start of an encrypted-root scenario's first boot, the installed system wrapped at boot:
# running, / on rootshift-root over vda1 (sets ROOTK), the test passphrase in $KEY (the image's itools initrd
# carries the same key: scripts/build-live-image)
crypt_main_start() {
  local state
  state=$(wait_running 300)
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  ROOTK=$(kname_of "$(root_majmin)")
  assert_eq root-on-wrapper-over-vda1 "rootshift-root vda1" "$(dm_name "$ROOTK") $(slaves_of "$ROOTK")"
  printf 'vmtest luks passphrase' > "$KEY"; chmod 600 "$KEY"
}

# crypt_boot_start : the start of a boot of an encrypted root the earlier boot left (its results: luks-uuid, sums):
# running, the checksums carried on, the hook's kernel log kept; sets U (the LUKS UUID), MAP (luks-U), ROOTK (the
# root's dm device) and WK (what maps it: the wrapper) and checks / is that mapping
crypt_boot_start() {
  local state
  U=$(cat "$VMTEST_IN/prev/luks-uuid"); MAP=luks-$U
  state=$(wait_running 300)
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  cp "$VMTEST_IN/prev/sums" "$SUMS"
  kernel_rootshift_lines > "$RES/kernel-rootshift.txt"
  say "kernel log: $(tr '\n' '|' < "$RES/kernel-rootshift.txt" | cut -c1-600)"
  say "cmdline: $(cat /proc/cmdline)"
  ROOTK=$(kname_of "$(root_majmin)")
  WK=$(slaves_of "$ROOTK")
  assert_eq root-is-the-luks-mapping "$MAP" "$(dm_name "$ROOTK")"
}

# boot_info KEY : a value from /run/rootshift/boot (written by the initrd hook)
boot_info() { sed -n "s/^$1=//p" /run/rootshift/boot 2>/dev/null; }

root_majmin() { awk '$5 == "/" { m = $3 } END { print m }' /proc/self/mountinfo; }   # the visible / mount
kname_of() { basename "$(readlink -f "/sys/dev/block/$1")"; }                        # 253:1 -> dm-1
dm_name() { cat "/sys/block/$1/dm/name" 2>/dev/null; }
slaves_of() { ls "/sys/block/$1/slaves" 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }
holders_of() { ls "/sys/class/block/$1/holders" 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }
udev_prop() { udevadm info -q property -n "$1" 2>/dev/null | sed -n "s/^$2=//p"; }

# kernel_rootshift_lines : the "rootshift: " lines of this boot's kernel log (the initrd hook writes there)
kernel_rootshift_lines() { dmesg | grep -F 'rootshift: ' | sed 's/^\[[ 0-9.]*\] //'; }

# ship_results : diagnostics, then the tar of $RES onto the vmtest disk
ship_results() {
  say "finishing: $(grep -c ' FAIL ' "$RES/steps.txt" 2>/dev/null) failed steps"
  dmesg > "$RES/dmesg.txt" 2>&1
  journalctl -b -o short-monotonic --no-pager > "$RES/journal.txt" 2>&1
  systemctl list-units --all --no-pager > "$RES/units.txt" 2>&1
  cat /proc/self/mountinfo > "$RES/mountinfo.txt"
  lsblk -o NAME,MAJ:MIN,SIZE,TYPE,FSTYPE,UUID,MOUNTPOINT > "$RES/lsblk.txt" 2>&1
  cp /run/rootshift/boot "$RES/rootshift-boot.txt" 2>/dev/null
  sync
  if tar -C "$RES" -cf "$VMTEST_DISK" . && sync; then echo "VMTEST-RESULTS-WRITTEN"; else echo "VMTEST-NO-RESULTS"; fi
}

# host_put NAME FILE : keep FILE among the results even if the VM is killed (run-system-vm `put`)
host_put() { [ -f "$2" ] && host_request "put $1 $(base64 -w0 < "$2")" > /dev/null; }

# pull_the_plug : ship what the results need now, then ask the host to SIGKILL the VM (a power cut)
pull_the_plug() {
  echo "$(now_cs)" > "$RES/complete"
  for f in "$RES"/*; do [ -f "$f" ] && host_put "$(basename "$f")" "$f"; done
  echo "VMTEST-PULLING-THE-PLUG uptime=$(cut -d' ' -f1 /proc/uptime)"
  host_request kill
  sleep 600
}

# secure_boot_checks WHO (issue 20): the SecureBoot variable reads 1 and the kernel says Secure Boot is on
secure_boot_checks() {
  local d=/sys/firmware/efi/efivars
  # (systemd mounts efivarfs; mounted here only if it did not)
  mountpoint -q $d || mount -t efivarfs efivarfs $d || say "mounting efivarfs failed"
  local v=$d/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c
  say "efivarfs: $(findmnt -no SOURCE,FSTYPE,OPTIONS $d) entries: $(ls $d | wc -l): $(ls $d | grep -i -e secure -e ^Boot -e Mok | head -8 | tr '\n' ' ')"
  check $1-secure-boot-variable-1 "$(od -An -t u1 $v 2>&1 | tr -s ' ')" sh -c "[ \"\$(od -An -t u1 -j4 -N1 $v | tr -d ' ')\" = 1 ]"
  check $1-kernel-secure-boot-enabled "$(dmesg | grep -i 'secure boot' | head -2 | tr '\n' '|')" sh -c "dmesg | grep -qi 'secure boot enabled'"
}

# ---- a live session copied file by file (install --layout plain, flatten): what was synced before the cut-off -------
# cutoff_writer_start JSON : a writer of 1 MiB files in /home/cutoff, each synced, then logged in $WLOG ("index
# uptime_cs sha256 path"); and a watcher that writes into $RES/cutoff-cs the last moment JSON (the command's events
# on stdout) had no `cut-off` event yet
cutoff_writer_start() {
  mkdir -p /home/cutoff
  ( i=0; while [ $i -lt 2000 ]; do
      f=/home/cutoff/w$i
      head -c 1048576 /dev/urandom > $f && sync $f && echo "$i $(now_cs) $($SHA256SUM $f | cut -d' ' -f1) $f" >> "$WLOG"
      i=$((i + 1)); sleep 0.5
    done ) &
  for _ in $(seq 100); do [ -s "$WLOG" ] && break; sleep 0.2; done
  check writer-running "$(wc -l < "$WLOG" 2>/dev/null) files" [ -s "$WLOG" ]
  ( last=$(now_cs)
    while :; do
      t=$(now_cs)
      if grep -q '"event":"cut-off"' "$1" 2>/dev/null; then echo "$last" > "$RES/cutoff-cs"; break; fi
      last=$t; sleep 0.2
    done ) &
}

# cutoff_sums : the writer's files complete before the cut-off belong to the copy: they join $SUMS; at least 3 of
# them were written while it ran
cutoff_sums() {
  local cut before after
  cut=$(cat "$RES/cutoff-cs" 2>/dev/null)
  check cut-off-seen "cut-off noted at ${cut:-never} cs" [ -n "$cut" ]
  awk -v c="${cut:-0}" '$2 < c { print $3 "  " $4 }' "$WLOG" >> "$SUMS"
  before=$(awk -v c="${cut:-0}" '$2 < c' "$WLOG" | wc -l); after=$(awk -v c="${cut:-0}" '$2 >= c' "$WLOG" | wc -l)
  figure writer_files_before_cutoff "$before"; figure writer_files_after_cutoff "$after"
  check writer-wrote-during-copy "$before files before the cut-off" [ "$before" -ge 3 ]
}

# release_checks : after a soft-reboot, rootshift-release-live.service ran once and kept nothing of the live stack
release_checks() {
  for _ in $(seq 150); do
    [ "$(systemctl show -P ActiveState rootshift-release-live.service)" = inactive ] && [ -s /run/rootshift/released.json ] && break
    sleep 0.2
  done
  cp /run/rootshift/released.json "$RES/" 2>/dev/null
  say "released: $(jq -c . /run/rootshift/released.json 2>&1 | cut -c1-600)"
  assert_eq release-unit-result success "$(systemctl show -P Result rootshift-release-live.service)"
  assert_eq released-nothing-kept 0 "$(jq -r .kept /run/rootshift/released.json 2>&1)"
}

# soft_reboot_or_fail NAME RC ERRFILE : the command NAME (install, flatten) returned RC. 0: it soft-reboots (systemd
# stops everything now; the runner starts again in the phase /run/vmtest/next-phase names), so this one must not
# get far; else the failure, and no next phase. Ends the phase either way.
soft_reboot_or_fail() {
  say "$1 exit=$2; stderr: $(tail -5 "$3" | tr '\n' '|')"
  if [ "$2" = 0 ]; then
    sleep 600
    check soft-reboot-happened "still running 600 s after $1 returned" false
  else
    rm -f /run/vmtest/next-phase
    umount -R /run/nextroot 2>/dev/null
    check "$1-exit-0" "exit=$2; $(tail -3 "$3" | tr '\n' '|' | cut -c1-400)" false
  fi
  scenario_done
  exit 0
}

# files_and_tree_intact : every checksummed file reads back (caches dropped), and the prepared tree's facts
# (live/guest/treefacts.py, taken before the copy into $RES/prepared.facts) are the same now
files_and_tree_intact() {
  sync; echo 3 > /proc/sys/vm/drop_caches
  check all-files-intact "$(wc -l < "$SUMS") files (earlier boots, the session, the writer before the cut-off)" $SHA256SUM -c --quiet "$SUMS"
  python3 "$VMTEST_IN/treefacts.py" facts /srv/prepared $(cat "$RES/facts-opts" 2>/dev/null) > "$RES/prepared-$VMTEST_PHASE.facts" 2> "$RES/facts.err"
  check prepared-tree-equal "$(diff "$RES/prepared.facts" "$RES/prepared-$VMTEST_PHASE.facts" 2>&1 | head -4 | cut -c1-200 | tr '\n' '|') $(head -c 200 "$RES/facts.err")" \
    cmp -s "$RES/prepared.facts" "$RES/prepared-$VMTEST_PHASE.facts"
}
