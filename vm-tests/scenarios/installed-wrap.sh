#!/bin/bash
# An installed Debian system (GPT, ext4 root partition vda1, root=UUID=...) booted through the rootshift boot hooks:
# dracut with systemd inside, dracut without systemd, and initramfs-tools; wrapped with dm and md, turned off with
# rd.rootshift=0, and boots where wrapping fails (a bogus rd.rootshift= value; dm_mod refused by the kernel, with
# initramfs-tools and with systemd's initrd, where the generator's plan to mount the wrapper must be redirected),
# which must still come up, unwrapped, with one "rootshift: ..." error line in the kernel log.
# Each boot runs on its own qcow2 overlay of the same disk image; rootshift.expect= says what this boot must show.
# vm-system: installed
# (CI boots md under initramfs-tools and a failed dm wrap under systemd's initrd; nosd-md, dracut-dm, itools-dm,
# dracut-off, dracut-bogus and itools-nodm boot in installed-wrap-more, a full-tier scenario: the crash scenarios
# boot dracut with dm, installed-move initramfs-tools with dm; the hooks' shared logic for a bogus value and a failed
# wrap is initrd-hook/test-lib's.)
# vm-boot: itools-md     itools       rd.rootshift=md rootshift.expect=md
# vm-boot: dracut-nodm   dracut       module_blacklist=dm_mod rootshift.expect=failed-wrap
# vm-timeout: 600
. "$VMTEST_IN/_installed-wrap.inc"
