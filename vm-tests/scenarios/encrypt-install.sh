#!/bin/bash
# Issue 21 §2 with the install step: `rootshift install --disk /dev/vdb --encrypt` on the running installed system
# (root=UUID=... on vda1, wrapped at boot by the dracut module; the system's own initramfs tool is dracut with
# systemd), then SeaBIOS boots vdb alone.
# main: refusals first (nothing written to vdb): --crypttab-key without --encrypt, --encrypt with --initramfs keep,
#   --encrypt with --layout plain. Then, with a writer busy, `install --disk /dev/vdb --encrypt --key-file K
#   --crypttab-key K`: GPT with BIOS boot, ESP, an unencrypted /boot (laid out because of --encrypt) and the root
#   partition formatted as LUKS2; the root mirrored into the open container, the switch, the grow; the install step
#   writes /etc/crypttab (the container by its LUKS UUID, key K), keeps K in every future initramfs (dracut.conf.d),
#   regenerates the initramfs (crypttab and K in it) and installs GRUB with /boot on its own partition. A marker
#   written before the move is read through the mapping, and is not at its place in the raw root partition.
# target (vdb alone, as vda, through SeaBIOS and that GRUB): rootshift-crypt-wrap.service wraps the LUKS partition,
#   systemd-cryptsetup opens the container on the wrapper with K from the initramfs: / is ext4 in luks-<UUID> over
#   rootshift-root over vda4, /boot is vda3, and every file written before, during and after the move reads back.
# vm-system: installed
# vm-firmware: bios
# vm-disks: 4G
# vm-then: target firmware=bios disk=vdb
# vm-timeout: 1500
UNLOCK=key
. "$VMTEST_IN/_encrypt-install.inc"
