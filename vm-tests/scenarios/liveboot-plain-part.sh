#!/bin/bash
# `install --layout plain` onto one partition of a disk that keeps its table (issue 19 §1, the partition-level form),
# without the soft-reboot (--no-soft-reboot). The project's live-boot ISO boots from the CD (BIOS):
#   main  vdb is laid out first as a user's disk would be: GPT with a BIOS boot partition, a blank ESP, the partition
#         for the root, and a data partition holding files. `rootshift install --disk /dev/vdb3 --layout plain
#         --no-soft-reboot --yes --json`: the table is the same before and after (sfdisk's dump), the data partition
#         reads back bit for bit, the blank ESP got a FAT with GRUB's fallback loader, vdb3 an ext4; nothing of it is
#         mounted afterwards, and every mount of the session is still there (the chroot's binds of /dev and /sys are
#         slaves: their unmount must not propagate back); the session goes on (boot_id, the CD still in use).
#   bios  (vdb alone, SeaBIOS) and uefi (OVMF, empty NVRAM): the installed system boots, / is vda3's ext4, the
#         session's files are there, the data partition untouched. The host fscks vdb3.
# vm-system: liveboot
# vm-loader: iso
# vm-disks: 64M 4G
# vm-then: bios firmware=bios disk=vdb
# vm-then: uefi firmware=uefi from=bios
# vm-timeout: 1800
# vm-host-fsck: vdb3
# vm-tier: full (issue 19 is open: the partition-level plain install; liveboot-plain proves the whole-disk form)
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
PREV=$VMTEST_IN/prev
table() { sfdisk -d "$1" | grep -v '^device:' | sed 's|^/dev/[a-z]*|PART|'; }   # the table, without device names
data_sum() { dd if="$1" bs=1M 2>/dev/null | $SHA256SUM | cut -c1-16; }

if [ "$VMTEST_PHASE" = main ]; then
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  check system-running "is-system-running=$state" [ "$state" = running ]
  assert_eq root-is-overlay overlay "$(findmnt -no FSTYPE /)"
  step layout-vdb sh -c "printf 'label: gpt\nsize=1MiB, type=21686148-6449-6E6F-744E-656564454649\nsize=100MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nsize=3000MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' | sfdisk -q /dev/vdb && udevadm settle"
  step data-partition sh -c "mkfs.ext4 -q -L userdata /dev/vdb4 && mkdir -p /mnt/data && mount /dev/vdb4 /mnt/data && head -c 8M /dev/urandom > /mnt/data/keep.bin && umount /mnt/data"
  table /dev/vdb > "$RES/table-before"; data_sum /dev/vdb4 > "$RES/data-sum"
  step files-in-home prefill /home/session 3 2
  cat /proc/sys/kernel/random/boot_id > "$RES/boot-id"
  findmnt -rno TARGET | sort > "$RES/mounts-before"
  rootshift install --disk /dev/vdb3 --layout plain --no-soft-reboot --yes --json > "$RES/install.json" 2> "$RES/install.err"; rc=$?
  findmnt -rno TARGET | sort > "$RES/mounts-after"
  # the chroot's binds of /dev and /sys must not take the system's own mounts with them when they go
  check system-mounts-intact "$(diff "$RES/mounts-before" "$RES/mounts-after" | grep '^[<>]' | head -5 | tr '\n' ' ')" \
    cmp -s "$RES/mounts-before" "$RES/mounts-after"
  say "install exit=$rc; stderr: $(tail -5 "$RES/install.err" | tr '\n' '|')"
  check install-exit-0 "exit=$rc; $(tail -3 "$RES/install.err" | tr '\n' '|' | cut -c1-400)" [ $rc = 0 ]
  check_events json-events-documented "$RES/install.json"
  jq -r '.event' "$RES/install.json" > /tmp/events 2>/dev/null
  for e in source layout mkfs pass cut-off install installed next-boot; do
    check json-has-$e "events: $(uniq /tmp/events | tr '\n' ' ')" grep -qx -- $e /tmp/events
  done
  check no-partitioned-event "events: $(uniq /tmp/events | tr '\n' ' ')" sh -c "! grep -qx partitioned /tmp/events"
  jq -r 'select(.event == "installed") | .root_uuid' "$RES/install.json" > "$RES/root-uuid"
  table /dev/vdb > "$RES/table-after"
  check table-unchanged "$(diff "$RES/table-before" "$RES/table-after" | head -3 | tr '\n' '|')" cmp -s "$RES/table-before" "$RES/table-after"
  assert_eq data-partition-unchanged "$(cat "$RES/data-sum")" "$(data_sum /dev/vdb4)"
  assert_eq root-ext4 "ext4 $(cat "$RES/root-uuid")" "$(blkid -o value -s TYPE /dev/vdb3) $(blkid -o value -s UUID /dev/vdb3)"
  assert_eq esp-got-fat vfat "$(blkid -o value -s TYPE /dev/vdb2)"
  check nothing-mounted-from-vdb "$(grep -E '/dev/vdb|254:1[6-9]' /proc/self/mountinfo | cut -d' ' -f5 | tr '\n' ' ')" \
    [ -z "$(findmnt -rno SOURCE | grep '^/dev/vdb')" ]
  mkdir -p /tmp/esp && mount -o ro /dev/vdb2 /tmp/esp
  check esp-fallback-loader "$(find /tmp/esp -iname '*.efi' | tr '\n' ' ')" test -s /tmp/esp/EFI/BOOT/BOOTX64.EFI
  umount /tmp/esp
  assert_eq boot-id-unchanged "$(cat "$RES/boot-id")" "$(cat /proc/sys/kernel/random/boot_id)"
  check medium-still-in-use "$(findmnt -rno TARGET /dev/sr0)" [ -n "$(findmnt -rno TARGET /dev/sr0)" ]
  scenario_done
  exit 0
fi

disk_boot_start root-uuid data-sum table-before
assert_eq root-is-installed-ext4 "/dev/vda3 ext4 $(cat "$RES/root-uuid")" "$(findmnt -no SOURCE,FSTYPE,UUID /)"
check cmdline-not-live "$(cat /proc/cmdline)" sh -c "! tr ' ' '\n' < /proc/cmdline | grep -qx 'boot=live'"
assert_eq data-partition-unchanged "$(cat "$RES/data-sum")" "$(data_sum /dev/vda4)"
table /dev/vda > "$RES/table-now"
check table-unchanged "$(diff "$RES/table-before" "$RES/table-now" | head -3 | tr '\n' '|')" cmp -s "$RES/table-before" "$RES/table-now"
step verify-all-checksums verify_sums
step write-in-$VMTEST_PHASE mkfile /home/$VMTEST_PHASE-boot.bin 2
scenario_done
exit 0
