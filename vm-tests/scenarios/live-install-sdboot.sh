#!/bin/bash
# Install a live system without a reboot with systemd-boot instead of GRUB: the live ISO booted under OVMF
# (dm backend) → `rootshift migrate /dev/vda2 --bootloader systemd-boot` (GPT: an unformatted 256 MiB ESP + root;
# bootctl install + kernel-install add write a Boot Loader Specification entry with root=UUID=<new> onto the ESP)
# → eject → power off → OVMF with an empty NVRAM boots the disk alone through \EFI\BOOT\BOOTX64.EFI, which is
# systemd-boot (the target phase reads its LoaderInfo EFI variable).
# vm-system: live
# vm-firmware: uefi
# vm-disks: 3G
# vm-then: target firmware=uefi
# vm-timeout: 1500
# vm-host-fsck: vda2
# vm-host-sums: vda2
# vm-tier: full (systemd-boot: retain-last installs and boots it)
LAYOUT='label: gpt
size=256MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root'
ROOTP=/dev/vda2
BACKEND=dm
FW=uefi
BOOTLOADER=systemd-boot
MIGRATE_ARGS="--bootloader systemd-boot --initramfs keep"
. "$VMTEST_IN/_live-install-boot.inc"
