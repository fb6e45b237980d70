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
