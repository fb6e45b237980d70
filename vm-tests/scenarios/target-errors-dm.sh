#!/bin/sh
# Target I/O errors under a dm-mirror copy (write errors mid-target; a target that vanishes), see _target-errors.inc.
# vm-fs: ext4
# vm-disks: 512M 1G 1G
# vm-timeout: 600
# vm-host-fsck: vda
. /vmtest/scenarios/_target-errors.inc
