#!/bin/sh
# encrypt-move on the md backend: the root on a superblock-less md raid1 over the plaintext vda is mirrored into a
# new LUKS2 container's open mapping on vdb (a whole copy: md cannot skip free blocks), the array grown to the
# mapping, then the ext4; the old vda overwritten with zeroes (vm-tests/scenarios/_encrypt-move.inc).
# vm-backend: md
# vm-tier: full (encrypt-move runs the same --encrypt path on dm in CI)
# vm-disks: 512M 1536M 520M
# vm-timeout: 600
. /vmtest/scenarios/_encrypt-move.inc
