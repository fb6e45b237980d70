#!/bin/sh
# SIGTERM mid-copy on the md backend (raid1 recovery onto a dm-delay target) -> exit 3, vda alone, data intact.
# vm-backend: md
# vm-fs: ext4
# vm-disks: 512M 1G
# vm-timeout: 600
# vm-host-fsck: vda
# vm-host-sums: vda
. /vmtest/scenarios/_abort-signal.inc
