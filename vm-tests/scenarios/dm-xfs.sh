#!/bin/sh
# Live migration of an xfs root: 512 MiB source (vda) -> 1.5 GiB target (vdb), writer running throughout.
# vm-fs: xfs
# vm-disks: 512M 1536M
# vm-timeout: 600
# vm-host-fsck: vdb
FS=xfs
. /vmtest/scenarios/_migrate.inc
