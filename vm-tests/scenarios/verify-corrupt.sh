#!/bin/sh
# migrate --verify: a block of the target corrupted behind the mirror's back (written straight to /dev/vdb while
# the migration pauses after the copy) is caught before the switch, at its exact byte offset, and the system stays
# on the source; a clean copy to vdc then verifies and switches.
# vm-fs: ext4
# vm-disks: 512M 1G 1G
# vm-timeout: 600
# vm-host-fsck: vdc
# vm-host-sums: vdc
. /vmtest/lib.sh
step prefill-40MiB prefill /data 10 4
writer_start /live 200
writer_wait_more 1 60
blockdev --flushbufs /dev/vda   # debugfs reads the source directly: no stale cached metadata
BS=$(dumpe2fs -h /dev/vda 2>/dev/null | sed -n 's/^Block size: *//p')
BLK=$(debugfs -R "bmap /data/f3 0" /dev/vda 2>/dev/null | tail -1)
OFF=$((BLK * BS))
check corruption-target-found "/data/f3 starts at block $BLK of $BS bytes = byte $OFF" [ "$BLK" -gt 0 ] 2>/dev/null

ROOTSHIFT_FAILPOINTS=migrate::synced=sleep:8000 rootshift migrate /dev/vdb --verify --yes --json > /tmp/v1.json 2> /tmp/v1.err &
MP=$!
i=0; while [ $i -lt 600 ] && ! grep -q 'failpoint migrate::synced: sleeping' /tmp/v1.err; do sleep 0.1; i=$((i + 1)); done
check paused-after-the-copy "$(tail -1 /tmp/v1.err)" grep -q 'failpoint migrate::synced: sleeping' /tmp/v1.err
step corrupt-one-target-block dd if=/dev/urandom of=/dev/vdb bs=$BS seek=$BLK count=1 conv=notrunc oflag=direct status=none
wait $MP; rc=$?
cp /tmp/v1.json /tmp/v1.err "$RES/"
say "migrate --verify: exit $rc: $(tr '\n' '|' < /tmp/v1.err | cut -c1-500)"
assert_eq caught-exit-1 1 "$rc"
assert_contains caught-at-the-offset /tmp/v1.err "differ at byte offset $OFF"
assert_contains rolled-back /tmp/v1.err "nothing lost"
check no-switch "$(jq -r .event /tmp/v1.json | uniq | tr '\n' ' ')" sh -c "! grep -q '\"event\":\"switched\"' /tmp/v1.json"
# the corrupted block is a mismatch: no "verified" (0 mismatches) event may have been emitted
assert_eq caught-no-verified-event 0 "$(jq -r 'select(.event=="verified")' /tmp/v1.json | grep -c verified_bytes)"
status_json /tmp/st.json
assert_eq still-on-source "$(devnum /dev/vda)" "$(jget /tmp/st.json '[.legs[].dev] | join(",")')"
step checksums-after-catch verify_sums && fault_row "target block corrupted behind the mirror (--verify)" dm "caught at byte $OFF before the switch; back on the source, complete" "$(sums_bytes)"

fault_case
timeout 300 rootshift migrate /dev/vdc --verify --yes --json > /tmp/v2.json 2> /tmp/v2.err; rc=$?
cp /tmp/v2.json /tmp/v2.err "$RES/"
assert_eq clean-verify-exit-0 0 "$rc"
VB=$(jq -r 'select(.event=="verified") | .verified_bytes' /tmp/v2.json)
figure verified_bytes "$VB"
MM=$(jq -r 'select(.event=="verified") | .mismatches' /tmp/v2.json)
check verified-bytes "$VB bytes compared, mismatches $MM" [ "${VB:-0}" -gt 10000000 ]
assert_eq clean-verify-zero-mismatches 0 "$MM"
assert_eq switched-to-vdc "$(devnum /dev/vdc)" "$(rootshift status --json | jq -r '.wrappers[0] | [.legs[].dev] | join(",")')"
step writer-stop writer_stop
step verify-all-checksums verify_sums && fault_row "--verify on a clean copy" dm "verified $VB bytes, 0 mismatches; switched" "$(( VB + $(sums_bytes) ))"
scenario_done
