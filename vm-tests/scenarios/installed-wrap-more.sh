#!/bin/bash
# The boots of installed-wrap that CI leaves out (see installed-wrap.sh for what is checked): dracut without systemd
# wrapping with md, dracut with systemd and initramfs-tools wrapping with dm, dracut with rd.rootshift=0 (off), a
# bogus rd.rootshift= value, and dm_mod refused under initramfs-tools.
# vm-system: installed
# vm-boot: nosd-md       dracut-nosd  rd.rootshift=md rootshift.expect=md
# vm-boot: dracut-dm     dracut       rootshift.expect=dm
# vm-boot: itools-dm     itools       rootshift.expect=dm
# vm-boot: dracut-off    dracut       rd.rootshift=0 rootshift.expect=off
# vm-boot: dracut-bogus  dracut       rd.rootshift=bogus rootshift.expect=failed-value
# vm-boot: itools-nodm   itools       module_blacklist=dm_mod rootshift.expect=failed-wrap
# vm-timeout: 600
# vm-tier: full (installed-optin's enabled boot and the crash scenarios boot dracut wrapped with dm, installed-move initramfs-tools with dm; installed-wrap boots the failure fallbacks)
. "$VMTEST_IN/_installed-wrap.inc"
