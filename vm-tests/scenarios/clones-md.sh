#!/bin/sh
# Root clones on the md backend: the target and two clones as extra raid1 members, see _clones.inc.
# vm-backend: md
# vm-fs: ext4
# vm-disks: 512M 1G 1G 1G
# vm-timeout: 600
# vm-host-fsck: vdb vdc vdd
# vm-host-sums: vdb
# vm-tier: full (clones (dm); md members are added in md-ext4 and md-abort-signal)
. /vmtest/scenarios/_clones.inc
