#!/bin/sh
# SIGTERM mid-copy on the dm backend (mirror over a dm-delay target) -> exit 3, linear on vda alone, data intact.
# vm-fs: ext4
# vm-disks: 512M 1G
# vm-timeout: 600
# vm-host-fsck: vda
# vm-host-sums: vda
. /vmtest/scenarios/_abort-signal.inc
