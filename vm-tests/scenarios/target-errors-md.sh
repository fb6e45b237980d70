#!/bin/sh
# Target I/O errors under an md raid1 copy (the member goes faulty), see _target-errors.inc.
# vm-backend: md
# vm-fs: ext4
# vm-disks: 512M 1G 1G
# vm-timeout: 600
# vm-host-fsck: vda
# vm-tier: full (target-errors-dm (the same faults under a dm-mirror copy); md-abort-signal (md roll-back))
. /vmtest/scenarios/_target-errors.inc
