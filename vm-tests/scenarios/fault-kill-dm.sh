#!/bin/sh
# SIGKILL at every failpoint (guardian, abort/--resume) and SIGTERM at some, dm backend, one boot, writer busy.

# vm-fs: ext4
# vm-disks: 640M 640M 640M
# vm-timeout: 900
# vm-host-fsck: vdc
# vm-host-sums: vdc
. /vmtest/scenarios/_fault-kill.inc
