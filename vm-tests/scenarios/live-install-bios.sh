#!/bin/bash
# Install a live system without a reboot and boot it with BIOS firmware: live ISO → `rootshift migrate /dev/vda2`
# (GPT: BIOS boot + root; --install by default for a live source, boot loader auto = grub-bios, initramfs: the
# image's prebuilt generic one) → eject → power off → SeaBIOS boots the disk alone through GRUB.
# vm-system: live
# vm-firmware: bios
# vm-disks: 3G
# vm-then: target firmware=bios
# vm-timeout: 1200
# vm-host-fsck: vda2
# vm-host-sums: vda2
# vm-tier: full (grub-bios from a live session: disk-install installs and boots it)
LAYOUT='label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root'
ROOTP=/dev/vda2
BACKEND=dm
FW=bios
MIGRATE_ARGS="--initramfs keep"
. "$VMTEST_IN/_live-install-boot.inc"
