#!/bin/sh
# Issue 21 §2, encrypt while migrating (dm): / is ext4 on the wrapper over the plaintext vda. Refusals first (nothing
# written to vdb or vdc): no key and no terminal, --wipe-source without --encrypt, --encrypt --install onto a whole disk, a target
# too small for the root behind a LUKS2 header (vdc: 520 MiB for a 512 MiB root). Then `rootshift migrate /dev/vdb
# --encrypt --key-file K --wipe-source --verify` (light KDF settings: argon2id at its defaults is very slow under TCG)
# with a writer busy: vdb becomes LUKS2, opened as luks-<UUID>, the root (a used-only copy) is mirrored into the open
# mapping, compared, switched, grown; the old vda is overwritten with zeroes. After: / is on the wrapper over the
# mapping over vdb; a marker written before the move reads through the wrapper, and at its place in the raw vdb
# (past the payload offset) are not its bytes; at its old place on vda are zeroes; every file reads back; fsck of the
# root (read-only) is clean. (The host cannot fsck it: no dm there.)
# vm-disks: 512M 1536M 520M
# vm-timeout: 600
. /vmtest/scenarios/_encrypt-move.inc
