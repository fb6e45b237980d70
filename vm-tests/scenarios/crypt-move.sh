#!/bin/sh
# Issue 21 §1, the migration of an encrypted root (dm; crypt-move-md: the same on md): / is ext4 in a LUKS2
# container that was opened *over* the wrapper (the guest's init does what a LUKS-aware boot hook does: vda is the
# LUKS partition, rootshift-root wraps it, luks-root is opened on rootshift-root), so the wrapper carries
# ciphertext. Refusals first (nothing written to vdb): a used-only copy, no key where the resize needs one (LUKS2:
# the volume key is in the kernel keyring) and no terminal, a wrong key. Then `rootshift migrate /dev/vdb
# --key-file K` with a writer busy: the container moves whole, the switch, `cryptsetup resize` of the open
# mapping, the grow of the ext4 in it, a new LUKS UUID for the old header. A marker written before the move is read
# through the mapping, and at its place in the raw target are the same ciphertext bytes as in the raw source, not
# the marker; every file reads back; fsck of the root (read-only) is clean. (The host cannot fsck it: no dm there.)
# vm-root: luks
# vm-disks: 512M 1536M 32M
# vm-timeout: 600
. /vmtest/scenarios/_crypt-move.inc
