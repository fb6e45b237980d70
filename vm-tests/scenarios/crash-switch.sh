#!/bin/bash
# Power cut right after the switch (installed system, dm): the next boot must come up on the target vdb — the
# journal there says the switch happened — with every file written before the cut; `rootshift migrate --resume`
# then finishes the migration (grow, the old device's new UUID).
# vm-system: installed
# vm-disks: 2G
# vm-then: after firmware=bios boot=same
# vm-timeout: 900
# vm-tier: full (crash-switch-swapped cuts the power at the same point and resumes by identity)
CRASH_AT=switch
. "$VMTEST_IN/_crash.inc"
assert_eq booted-the-target vdb "$(slaves_of "$ROOTK")"
# the boot hook saw both devices with the root's UUID and chose the target by its journal
check hook-picked-the-target "$(grep -m1 'picks' "$RES/kernel-rootshift.txt")" grep -q "picks /dev/vdb" "$RES/kernel-rootshift.txt"
step=$(jq -r .journal.step /tmp/st.json)
assert_eq journal-says-switched switched "$step"
assert_eq status-advises-resume "resume rootshift migrate --resume" "$(jq -r '"\(.next.action) \(.next.command)"' /tmp/st.json)"
timeout 600 rootshift migrate --resume --yes --json > /tmp/r.json 2> /tmp/r.err; rc=$?
say "resume: exit $rc: $(tail -3 /tmp/r.err | tr '\n' '|') events: $(jq -r .event /tmp/r.json | uniq | tr '\n' ' ')"
assert_eq resume-exit-0 0 "$rc"
status_json /tmp/st2.json
assert_eq state-done done "$(jq -r .state /tmp/st2.json)"
assert_eq nothing-more-advised null "$(jq -c .next /tmp/st2.json)"
size=$(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2 / 1048576}')
check fs-fills-vdb "statfs $size MiB" [ "$size" -gt 1800 ]
check only-vdb-carries-the-uuid "$(blkid -t UUID=$UUID -o device | tr '\n' ' ')" sh -c "[ \"\$(blkid -p -s UUID -o value /dev/vda1)\" != '$UUID' ]"
step verify-all verify_sums && [ "$FAILS" = 0 ] && crash_row "next boot on the target (journal: $step), intact; --resume finished"
scenario_done
