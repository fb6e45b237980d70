#!/bin/sh
# Root clones on the dm backend: one pass fills the target and two clones (a 4-leg mirror), see _clones.inc.
# vm-fs: ext4
# vm-disks: 512M 1G 1G 1G
# vm-timeout: 600
# vm-host-fsck: vdb vdc vdd
# vm-host-sums: vdb
# vm-tier: full (disk-install fills a root clone in the same pass (an extra mirror leg), detaches and re-identifies it)
. /vmtest/scenarios/_clones.inc
