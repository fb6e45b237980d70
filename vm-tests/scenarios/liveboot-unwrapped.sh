#!/bin/bash
# The project's live-boot ISO booted with rootshift's live wrapping off for this boot (rd.rootshift.live=0): the
# session's upper is live-boot's tmpfs, so there is no block device to mirror. `rootshift install --disk` and
# `rootshift migrate` are refused with one message that says how to turn wrapping on (rd.rootshift.live=upper on
# the command line, live=upper in /etc/rootshift/rootshift.conf before the initramfs is built): exit 2, nothing
# changed (devices, mounts, loops, zram, the disk's first and last MiB).
# vm-system: liveboot
# vm-boot: main lb rd.rootshift.live=0
# vm-disks: 3G
# vm-timeout: 600
# vm-tier: full (the same refusal on the live-boot ISO: overlay-upper proves in CI that an overlay root whose upper is on no wrapper (a tmpfs) is refused, exit 2, nothing changed)
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
starts_with() { [ "$(head -c ${#2} "$1")" = "$2" ]; }   # starts_with FILE PREFIX
state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
say "cmdline: $(cat /proc/cmdline); hook: $(tr '\n' ' ' < /run/rootshift/boot 2>&1)"
check cmdline-live-upper-off "$(cat /proc/cmdline)" sh -c "tr ' ' '\n' < /proc/cmdline | grep -qx rd.rootshift.live=0"
assert_eq image-sets-live-upper live=upper "$(grep -x 'live=upper' /etc/rootshift/rootshift.conf)"
assert_eq root-is-overlay overlay "$(mnt_field / 8)"
UPPERDIR=$(mnt_field / 10 | tr ',' '\n' | sed -n 's/^upperdir=//p')
check upper-in-ram "upperdir $UPPERDIR: $(findmnt -rno FSTYPE,SOURCE --target "$UPPERDIR")" \
  [ "$(findmnt -rno FSTYPE --target "$UPPERDIR")" = tmpfs ]
check no-rootshift-upper "dm: $(ls /sys/block | grep dm- | tr '\n' ' ')" [ -z "$(dm_by_name rootshift-upper)" ]

snapshot() {  # what a refusal must not change
  sync
  echo "blocks: $(ls /sys/block | tr '\n' ' ')"
  echo "dm: $(for d in /sys/block/dm-*; do [ -e "$d" ] && echo "$(basename $d)=$(cat $d/dm/name)"; done | tr '\n' ' ')"
  echo "loops: $(for l in /sys/block/loop*; do [ -e $l/loop/backing_file ] && echo "$(basename $l)=$(cat $l/loop/backing_file)"; done | tr '\n' ' ')"
  echo "zram: $(cat /sys/block/zram*/disksize 2>/dev/null | tr '\n' ' ')"
  echo "vda: $(dd if=/dev/vda bs=1M count=1 2>/dev/null | $SHA256SUM | cut -c1-16) $(dd if=/dev/vda bs=1M skip=3071 2>/dev/null | $SHA256SUM | cut -c1-16)"
  echo "mounts: $(awk '{print $3 "@" $5}' /proc/self/mountinfo | tr '\n' ' ')"
  # (a refused real run leaves its event log and lock file there, as any run does: bad-input.sh)
  echo "run-rootshift: $(ls /run/rootshift 2>/dev/null | grep -vxE 'lock|events.jsonl(.[0-9]+)?' | tr '\n' ' ')"
}
refused() {  # refused NAME CMD... : exit 2, one error line saying how to turn the live upper on, nothing changed
  local n=$1; shift
  snapshot > /tmp/snap0
  timeout 120 "$@" > /tmp/$n.out 2> /tmp/$n.err; rc=$?
  snapshot > /tmp/snap1
  cp /tmp/$n.out /tmp/$n.err "$RES/"
  say "$*: exit $rc; stderr: $(tr '\n' '|' < /tmp/$n.err | cut -c1-600)"
  echo "$n exit=$rc $(head -1 /tmp/$n.err)" >> "$RES/refusals.txt"
  assert_eq $n-exit-2 2 "$rc"
  check $n-error-prefix "stderr: $(head -c 120 /tmp/$n.err | tr '\n' '|')" starts_with /tmp/$n.err "rootshift: error: "
  assert_eq $n-one-error-line 1 "$(grep -c '^rootshift: error: ' /tmp/$n.err)"
  assert_contains $n-says-overlay /tmp/$n.err "/ is an overlayfs"
  assert_contains $n-says-tmpfs /tmp/$n.err "tmpfs"
  assert_contains $n-says-cmdline-way /tmp/$n.err "rd.rootshift.live=upper"
  assert_contains $n-says-image-way /tmp/$n.err "live=upper in /etc/rootshift/rootshift.conf"
  cp /tmp/snap0 "$RES/$n.before"; cp /tmp/snap1 "$RES/$n.after"
  check $n-nothing-changed "$(diff -u /tmp/snap0 /tmp/snap1 | grep '^[-+][a-z]' | cut -c1-300 | tr '\n' '|')" cmp -s /tmp/snap0 /tmp/snap1
}
refused install-disk-dry-run rootshift install --disk /dev/vda --dry-run
check dry-run-wrote-no-log-or-lock "$(ls /run/rootshift 2>&1 | tr '\n' ' ')" [ ! -e /run/rootshift/events.jsonl -a ! -e /run/rootshift/lock ]
refused install-disk rootshift install --disk /dev/vda --yes
refused migrate rootshift migrate /dev/vda --yes
assert_eq target-still-blank "" "$(blkid -p -o value -s PTTYPE /dev/vda)"
scenario_done
