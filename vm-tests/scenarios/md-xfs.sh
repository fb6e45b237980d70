#!/bin/sh
# Live migration of an xfs root on the md raid1 backend (ioctls only, no mdadm): 512 MiB vda -> 1.5 GiB vdb,
# writer running throughout; the grow after dropping the source is the step the 2007 attempt failed on.
# vm-backend: md
# vm-fs: xfs
# vm-disks: 512M 1536M
# vm-timeout: 600
# vm-host-fsck: vdb
# vm-tier: full (dm-xfs (xfs grow) and md-ext4 (md backend))
FS=xfs
. /vmtest/scenarios/_migrate.inc
