#!/bin/sh
# crypt-move on the md backend: the LUKS2 container opened over an md raid1 wrapper moves whole as ciphertext, the
# array grows, then the open mapping (cryptsetup resize) and the ext4 in it (vm-tests/scenarios/_crypt-move.inc).
# vm-backend: md
# vm-root: luks
# vm-tier: full (crypt-move runs the same encrypted-root path on dm; the md raid1 copy, switch and grow run in CI in md-abort-signal, overlay-layers-md and live-install-uefi)
# vm-disks: 512M 1536M 32M
# vm-timeout: 600
. /vmtest/scenarios/_crypt-move.inc
