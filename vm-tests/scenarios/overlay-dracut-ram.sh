#!/bin/bash
# Bad input on the overlayfs-mode dracut ISO: booted with rd.rootshift.live=0, dracut keeps the overlay's upper in
# RAM (/run/overlayfs on the /run tmpfs) and `rootshift migrate --image-to` is refused with one message that says
# how to enable the upper on rootshift-upper (rd.rootshift.live=upper / live=upper): exit 2, nothing changed.
# vm-system: live-ovl
# vm-firmware: uefi
# vm-disks: 3G
# vm-boot: main dracut rd.rootshift.live=0
# vm-timeout: 600
# vm-tier: full (liveboot-unwrapped: the same refusal (the live upper is on no wrapper) on the live-boot flavour)
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
DISK=/dev/vda IMGP=/dev/vda1 UPP=/dev/vda2
starts_with() { [ "$(head -c ${#2} "$1")" = "$2" ]; }   # starts_with FILE PREFIX

state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
check system-running-after-boot "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
say "boot record: $(tr '\n' ' ' < /run/rootshift/boot 2>&1)"
assert_eq root-is-overlay overlay "$(mnt_field / 8)"
check no-rootshift-upper "dm devices: $(ls /sys/block | grep dm- | tr '\n' ' ')" [ -z "$(dm_by_name rootshift-upper)" ]
check upper-in-ram "/run/overlayfs: $(stat -f -c %T /run/overlayfs/ 2>&1)" [ "$(stat -f -c %T /run/overlayfs/)" = tmpfs ]
check no-zram "$(ls -d /sys/block/zram* 2>&1 | tr '\n' ' ')" [ -z "$(ls -d /sys/block/zram* 2>/dev/null)" ]

printf 'label: gpt\nsize=512MiB, name=image\nname=upper\n' | sfdisk -q $DISK > /tmp/sfdisk.out 2>&1
udevadm settle
check partitioned "$(lsblk -rno NAME,SIZE $DISK | tr '\n' ' ')" [ -b $IMGP -a -b $UPP ]
snapshot() {  # what a refusal must not change
  sync; echo 3 > /proc/sys/vm/drop_caches
  echo "blocks: $(ls /sys/block | tr '\n' ' ')"
  echo "loops: $(for l in /sys/block/loop*; do [ -e $l/loop/backing_file ] && echo "$(basename $l)=$(cat $l/loop/backing_file)"; done | tr '\n' ' ')"
  echo "vda1: $(dd if=$IMGP bs=1M count=1 2>/dev/null | sha256sum | cut -c1-16)"
  echo "vda2: $(dd if=$UPP bs=1M count=1 2>/dev/null | sha256sum | cut -c1-16)"
  echo "mounts: $(awk '{print $3 "@" $5}' /proc/self/mountinfo | tr '\n' ' ')"
}
snapshot > /tmp/snap0
timeout 120 rootshift migrate $UPP --image-to $IMGP --yes --no-install > /tmp/refuse.out 2> /tmp/refuse.err; rc=$?
cp /tmp/refuse.err "$RES/refuse-ram-upper.err"
say "migrate with the upper in RAM: exit $rc, stderr: $(head -c 600 /tmp/refuse.err | tr '\n' '|')"
echo "dracut-ram-upper exit=$rc $(head -1 /tmp/refuse.err)" >> "$RES/refusals.txt"
snapshot > /tmp/snap1
assert_eq refused-exit-2 2 "$rc"
check refused-error-prefix "stderr: $(head -c 120 /tmp/refuse.err | tr '\n' '|')" starts_with /tmp/refuse.err "rootshift: error: "
assert_contains refused-says-upper-on-tmpfs /tmp/refuse.err "upper layer /run/overlayfs is on tmpfs"
assert_contains refused-says-how-to-enable /tmp/refuse.err "rd.rootshift.live=upper"
assert_contains refused-names-dracut /tmp/refuse.err "dmsquash-live"
check refused-one-error-line "$(grep -c '^rootshift: error: ' /tmp/refuse.err) error lines" [ "$(grep -c '^rootshift: error: ' /tmp/refuse.err)" = 1 ]
check refused-nothing-changed "$(diff /tmp/snap0 /tmp/snap1 | grep '^[-+][a-z]' | cut -c1-300 | tr '\n' '|')" cmp -s /tmp/snap0 /tmp/snap1
scenario_done
