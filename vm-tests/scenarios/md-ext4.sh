#!/bin/sh
# Live migration of an ext4 root on the md raid1 backend (ioctls only, no mdadm): 512 MiB vda -> 1.5 GiB vdb,
# writer running throughout; the grow after dropping the source is the step the 2007 attempt failed on.
# vm-backend: md
# vm-fs: ext4
# vm-disks: 512M 1536M
# vm-timeout: 600
# vm-host-fsck: vdb
# vm-host-sums: vdb
# vm-tier: full (live-install-uefi migrates and grows an ext4 root on the md backend (and installs it); md-abort-signal rolls an md copy back)
FS=ext4
. /vmtest/scenarios/_migrate.inc
