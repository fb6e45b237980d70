#!/bin/bash
# Power cut in the middle of the copy (installed system, dm): the next boot must come up on the source — the
# half-copied vdb carries the same filesystem UUID, the journal inside the filesystem says "mirroring" — with every
# file written before the cut; `rootshift abort` then abandons the interrupted migration and clears the half copy,
# and a new migration goes through.
# vm-system: installed
# vm-disks: 2G
# vm-then: after firmware=bios boot=same
# vm-timeout: 900
# vm-tier: full (the boot-time choice of the source over a half copy is boot-choice-lone's (busybox, real hook logic) and blank-target's; crash-switch-swapped cuts the power and reboots the installed system)
CRASH_AT=copy
. "$VMTEST_IN/_crash.inc"
assert_eq booted-the-source vda1 "$(slaves_of "$ROOTK")"
check hook-said-which "$(grep -m1 'devices carry' "$RES/kernel-rootshift.txt")" grep -q "picks /dev/vda1" "$RES/kernel-rootshift.txt"
assert_eq journal-says-mirroring mirroring "$(jq -r .journal.step /tmp/st.json)"
assert_eq status-advises-abort "abort rootshift abort" "$(jq -r '"\(.next.action) \(.next.command)"' /tmp/st.json)"
check half-copy-carries-the-uuid "vdb: $(blkid -p -s UUID -o value /dev/vdb)" [ "$(blkid -p -s UUID -o value /dev/vdb)" = "$UUID" ]
rootshift abort --json > /tmp/ab.json 2> /tmp/ab.err; rc=$?
say "abort: exit $rc: $(tr '\n' '|' < /tmp/ab.err) $(tr '\n' '|' < /tmp/ab.json)"
assert_eq abort-exit-0 0 "$rc"
check abort-abandons "$(jq -r .event /tmp/ab.json | tr '\n' ' ')" grep -q '"cleared"' /tmp/ab.json
assert_eq half-copy-cleared "" "$(blkid -p -s UUID -o value /dev/vdb)"
writer_start /after 100 0.3
timeout 600 rootshift migrate /dev/vdb --yes --json > /tmp/m2.json 2> /tmp/m2.err; rc=$?
say "migrate again: exit $rc: $(tail -2 /tmp/m2.err | tr '\n' '|')"
assert_eq migrate-again-exit-0 0 "$rc"
assert_eq now-on-vdb vdb "$(slaves_of "$ROOTK")"
check old-source-got-new-uuid "vda1: $(blkid -p -s UUID -o value /dev/vda1)" [ "$(blkid -p -s UUID -o value /dev/vda1)" != "$UUID" ]
step writer-stop writer_stop
step verify-all verify_sums && [ "$FAILS" = 0 ] && crash_row "next boot on the source (journal: mirroring), intact; abort cleared the half copy; migrated again"
scenario_done
