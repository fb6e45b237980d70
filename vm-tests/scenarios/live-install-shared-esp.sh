#!/bin/bash
# A UEFI install onto a disk whose EFI System Partition another system already uses (issue 20): the ESP holds that
# system's removable fallback \EFI\BOOT\BOOTX64.EFI (a stand-in: 64 KiB starting with "MZ") and its own \EFI\other\.
# The live ISO under OVMF → `rootshift migrate /dev/vda2` (boot loader auto = grub-efi: Debian's signed chain into
# \EFI\debian\ and an NVRAM entry for it) must leave the foreign fallback byte for byte. Then the same machine (OVMF
# with the variable store the install left: vm-then nvram=kept) boots ours through that NVRAM entry: BootCurrent is
# the entry that starts \EFI\debian\shimx64.efi, and the other system's files are still there.
# vm-system: live
# vm-firmware: uefi
# vm-disks: 3G
# vm-then: target firmware=uefi nvram=kept
# vm-timeout: 1500
# vm-host-fsck: vda2
# vm-tier: full (CI's live-install-uefi installs the signed chain and boots it under Secure Boot; the choice to keep a
# foreign fallback is unit-tested in src/finish/secureboot.rs)
LAYOUT='label: gpt
size=64MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root'
ROOTP=/dev/vda2
BACKEND=dm
FW=uefi
MIGRATE_ARGS="--initramfs keep"
E=/boot/efi/EFI

foreign_state() {  # the other system's files on the ESP mounted at $1: checksums, one line
  (cd "$1/EFI" && $SHA256SUM BOOT/BOOTX64.EFI other/README 2>&1 | tr '\n' ' ')
}

before_install() {
  step esp-other-system mkfs.vfat -F 32 -n OTHER /dev/vda1
  mkdir -p /mnt/other-esp && mount /dev/vda1 /mnt/other-esp
  mkdir -p /mnt/other-esp/EFI/BOOT /mnt/other-esp/EFI/other
  step foreign-fallback sh -c '{ printf MZ; head -c 65534 /dev/urandom; } > /mnt/other-esp/EFI/BOOT/BOOTX64.EFI'
  step foreign-readme sh -c 'echo "another system'"'"'s boot files" > /mnt/other-esp/EFI/other/README'
  foreign_state /mnt/other-esp > "$RES/foreign.txt"
  umount /mnt/other-esp
  say "the other system's files: $(cat "$RES/foreign.txt")"
  check foreign-files-written "$(cat "$RES/foreign.txt")" sh -c "! grep -q 'No such file' '$RES/foreign.txt'"
}

main_extra() {
  check esp-signed-chain "$(ls $E/debian $E/BOOT 2>&1 | tr '\n' ' ')" test -s $E/debian/shimx64.efi -a -s $E/debian/grubx64.efi
  assert_eq foreign-files-kept "$(cat "$RES/foreign.txt")" "$(foreign_state /boot/efi)"
  check fallback-is-not-shim "" sh -c "! cmp -s $E/BOOT/BOOTX64.EFI /usr/lib/shim/shimx64.efi.signed"
  efibootmgr -v > "$RES/efibootmgr-v.txt" 2>&1
  check nvram-entry-starts-shim "$(grep -i debian "$RES/efibootmgr-v.txt" | tr '\n' '|')" \
    sh -c "grep -i debian '$RES/efibootmgr-v.txt' | grep -qi 'shimx64.efi'"
}

target_extra() {
  efibootmgr -v > "$RES/efibootmgr-v.txt" 2>&1
  CUR=$(sed -n 's/^BootCurrent: //p' "$RES/efibootmgr-v.txt")
  say "BootCurrent $CUR: $(grep "^Boot$CUR" "$RES/efibootmgr-v.txt")"
  check booted-through-nvram-entry "Boot$CUR: $(grep "^Boot$CUR" "$RES/efibootmgr-v.txt" | cut -c1-200)" \
    sh -c "grep '^Boot$CUR' '$RES/efibootmgr-v.txt' | grep -qi 'EFI.debian.shimx64.efi'"
  assert_eq foreign-files-still-kept "$(cat "$VMTEST_IN/prev/foreign.txt")" "$(foreign_state /boot/efi)"
}
. "$VMTEST_IN/_live-install-boot.inc"
