#!/bin/sh
# Live migration of an ext4 root: 512 MiB source (vda) -> 1.5 GiB target (vdb), writer running throughout.
# vm-fs: ext4
# vm-tier: full (an ext4 root on dm migrated with a writer: fio-verify, with every block read back; the same _migrate.inc path runs in CI as dm-xfs)
# vm-disks: 512M 1536M
# vm-timeout: 600
# vm-host-fsck: vdb
# vm-host-sums: vdb
FS=ext4
. /vmtest/scenarios/_migrate.inc
