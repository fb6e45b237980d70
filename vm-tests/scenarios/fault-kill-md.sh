#!/bin/sh
# SIGKILL at every failpoint (guardian, abort/--resume) and SIGTERM at some, md backend, one boot, writer busy.
# vm-backend: md
# vm-fs: ext4
# vm-disks: 640M 640M 640M
# vm-timeout: 900
# vm-host-fsck: vdc
# vm-host-sums: vdc
# vm-tier: full (fault-kill-dm (the guardian at every failpoint), md-abort-signal and target-errors-md (md roll-back))
. /vmtest/scenarios/_fault-kill.inc
