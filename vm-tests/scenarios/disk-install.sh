#!/bin/bash
# Whole-disk install of a running live system: `rootshift install --disk /dev/vda` lays out a blank 4 GiB disk
# (GPT: BIOS boot, ESP, /boot, one root clone, root, data), moves / onto the root partition with the clone filled
# in the same pass (extra mirror leg, detached with the filesystem frozen, then checked and given its own UUID and
# label), installs grub-bios and writes /etc/rootshift/partids; then SeaBIOS boots the disk alone.
# vm-system: live
# vm-firmware: bios
# vm-loader: iso
# vm-disks: 4G
# vm-then: target firmware=bios
# vm-timeout: 1200
# vm-host-fsck: vda5 vda4
ROOTP=/dev/vda5
BACKEND=dm
FW=bios
INSTALL_CMD="rootshift install --disk /dev/vda --root-clones 1 --boot-partition 256M --data-partition 128M --initramfs keep --yes --json"
CLONEP=/dev/vda4

before_install() {
  # --dry-run shows the table and changes nothing
  rootshift install --disk /dev/vda --root-clones 1 --boot-partition 256M --data-partition 128M --dry-run > /tmp/dry.out 2> /tmp/dry.err; rc=$?
  cp /tmp/dry.out "$RES/dry-run.txt"
  say "dry run (exit $rc):"; sed 's/^/    | /' /tmp/dry.out
  assert_eq dry-run-exit-0 0 "$rc"
  check dry-run-shows-six-partitions "$(grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ ' /tmp/dry.out) rows" [ "$(grep -cE '^ +[0-9]+ +[0-9]+ +[0-9]+ ' /tmp/dry.out)" = 6 ]
  assert_eq dry-run-wrote-nothing "" "$(blkid -p -o value -s PTTYPE /dev/vda)"
}

main_extra() {
  sfdisk -J /dev/vda > "$RES/sfdisk.json"
  assert_eq six-partitions "bios esp boot root-clone1 root data" "$(jq -r '[.partitiontable.partitions[].name] | join(" ")' "$RES/sfdisk.json")"
  n_uuids=$(jq -r '.partitiontable.partitions[].uuid' "$RES/sfdisk.json" | sort -u | wc -l)
  assert_eq partuuids-distinct 6 "$n_uuids"
  cat /etc/rootshift/partids > "$RES/partids" 2>&1
  assert_eq partids "$(printf 'kiwi_BiosGrub="1" kiwi_EfiPart="2" kiwi_BootPart="3" kiwi_rootPartClone1="4" kiwi_RootPart="5" kiwi_DataPart="6"')" "$(tr '\n' ' ' < /etc/rootshift/partids | sed 's/ $//')"
  # the clone: its own fs UUID and PARTUUID, a label suffix, clean, not mounted, same files as at the switch
  CU=$(blkid -p -s UUID -o value $CLONEP); RU=$(blkid -p -s UUID -o value $ROOTP)
  check clone-has-own-fs-uuid "clone $CU, origin $RU" [ -n "$CU" -a "$CU" != "$RU" ]
  check clone-has-own-partuuid "clone $(blkid -p -s PART_ENTRY_UUID -o value $CLONEP), origin $(blkid -p -s PART_ENTRY_UUID -o value $ROOTP)" \
    [ "$(blkid -p -s PART_ENTRY_UUID -o value $CLONEP)" != "$(blkid -p -s PART_ENTRY_UUID -o value $ROOTP)" ]
  assert_eq clone-label "$(blkid -p -s LABEL -o value $ROOTP)-c1" "$(blkid -p -s LABEL -o value $CLONEP)"
  jq -c 'select(.event=="clone")' /tmp/migrate.json > "$RES/clone-events.txt"
  check clone-checked-by-e2fsck "$(cat "$RES/clone-events.txt")" grep -q 'e2fsck -f (clean)' "$RES/clone-events.txt"
  check only-origin-mounted "$(findmnt -rn -o SOURCE,TARGET | grep vda | tr '\n' ' ')" sh -c "! grep -q ' $(cat /sys/class/block/vda4/dev) ' /proc/self/mountinfo"
  mkdir -p /mnt/clone && mount -o ro $CLONEP /mnt/clone
  grep '  /data/' "$SUMS" | sed 's|  /|  /mnt/clone/|' > /tmp/clone.sums
  check clone-holds-the-prefill "$(wc -l < /tmp/clone.sums) files: $(ls /mnt/clone/data | tr '\n' ' ')" $SHA256SUM -c --quiet /tmp/clone.sums
  check clone-holds-writer-files "$(ls /mnt/clone/live | wc -l) writer files in the clone" [ "$(ls /mnt/clone/live | wc -l)" -ge 1 ]
  umount /mnt/clone
  # the ESP of the hybrid layout is a valid FAT filesystem even though GRUB boots by BIOS here
  assert_eq esp-mounted-at-boot-efi /dev/vda2 "$(findmnt -no SOURCE /boot/efi)"
  # /boot is its own partition now
  assert_eq boot-is-vda3 /dev/vda3 "$(findmnt -no SOURCE /boot)"
  check fstab-has-boot "$(grep ' /boot ' /etc/fstab)" grep -qE '^UUID=[0-9a-f-]+ /boot ext4' /etc/fstab
  check grub-on-boot-partition "$(ls /boot/grub | tr '\n' ' ')" test -s /boot/grub/grub.cfg
}

target_extra() {
  assert_eq target-boot-is-vda3 /dev/vda3 "$(findmnt -no SOURCE /boot)"
  check target-partids "$(tr '\n' ' ' < /etc/rootshift/partids)" grep -q 'kiwi_RootPart="5"' /etc/rootshift/partids
  check clone-not-mounted "$(findmnt -rn -o SOURCE | tr '\n' ' ')" sh -c "! findmnt -rn -o SOURCE | grep -q vda4"
}
. "$VMTEST_IN/_live-install-boot.inc"
