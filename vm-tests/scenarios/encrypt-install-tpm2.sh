#!/bin/bash
# Issue 21 §2, unlocked by the TPM: as encrypt-install, with `--tpm2` instead of `--crypttab-key`. The guest has a
# TPM 2.0 (swtpm); `install --disk /dev/vdb --encrypt --key-file K --tpm2` enrolls it into the new container
# (systemd-cryptenroll, sealed to PCR 7, systemd's default) before the copy, crypttab gets
# `luks-<UUID> UUID=<UUID> none luks,discard,tpm2-device=auto`, and the regenerated initramfs carries no key, only
# systemd-cryptsetup and dracut's tpm2-tss module. Refused first: --tpm2 with --initramfs keep.
# target: vdb alone through SeaBIOS and GRUB, the same machine's TPM (its state as the main boot left it):
#   systemd-cryptsetup unseals the key from the TPM and opens the container on the wrapper.
# vm-system: installed
# vm-firmware: bios
# vm-tpm: yes
# vm-disks: 4G
# vm-then: target firmware=bios disk=vdb
# vm-timeout: 1500
UNLOCK=tpm2
. "$VMTEST_IN/_encrypt-install.inc"
