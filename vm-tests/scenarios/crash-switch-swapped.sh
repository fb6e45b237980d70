#!/bin/bash
# Power cut right after the switch (installed system, dm), and the disks come back in the other order: the target
# (vdb, a whole disk) is vda in the next boot and the source partition vda1 is vdb1, so every device number the
# journal recorded now names another device or none (issue 15 item 1). `rootshift migrate --resume` must find the
# source and the target by identity (serial, serial#partno), check the filesystem UUID, finish the migration and give
# the right device (the old source, now vdb1) the new UUID — never whatever now has the old numbers.
# vm-system: installed
# vm-disks: 2G
# vm-then: after firmware=bios boot=same order=swapped
# vm-timeout: 900
CRASH_AT=switch
. "$VMTEST_IN/_crash.inc"
say "disks now: $(for d in /sys/block/vd*; do echo "$(basename $d)=$(cat $d/serial 2>/dev/null)($(cat $d/dev))"; done | tr '\n' ' ')"
assert_eq target-is-vda-now vdb "$(cat /sys/block/vda/serial)"
assert_eq booted-the-target vda "$(slaves_of "$ROOTK")"
step=$(jq -r .journal.step /tmp/st.json)
assert_eq journal-says-switched switched "$step"
assert_eq status-advises-resume "resume rootshift migrate --resume" "$(jq -r '"\(.next.action) \(.next.command)"' /tmp/st.json)"
say "journal records: $(jq -c '.journal | {source: .source.dev, target: .target.dev}' /tmp/st.json); now vda=$(cat /sys/block/vda/dev) vdb1=$(cat /sys/class/block/vdb1/dev)"
timeout 600 rootshift migrate --resume --yes --json > /tmp/r.json 2> /tmp/r.err; rc=$?
say "resume: exit $rc: $(tail -3 /tmp/r.err | tr '\n' '|') events: $(jq -r .event /tmp/r.json | uniq | tr '\n' ' ')"
assert_eq resume-exit-0 0 "$rc"
status_json /tmp/st2.json
assert_eq state-done done "$(jq -r .state /tmp/st2.json)"
assert_eq nothing-more-advised null "$(jq -c .next /tmp/st2.json)"
size=$(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2 / 1048576}')
check fs-fills-the-target "statfs $size MiB" [ "$size" -gt 1800 ]
check old-source-vdb1-got-a-new-uuid "vdb1: $(blkid -p -s UUID -o value /dev/vdb1)" \
  sh -c "[ -n \"\$(blkid -p -s UUID -o value /dev/vdb1)\" ] && [ \"\$(blkid -p -s UUID -o value /dev/vdb1)\" != '$UUID' ]"
assert_eq the-target-keeps-the-uuid "$UUID" "$(blkid -p -s UUID -o value /dev/vda)"
step verify-all verify_sums && [ "$FAILS" = 0 ] && crash_row "disks swapped after the cut: booted the target (now vda), --resume found both by identity and finished"
scenario_done
