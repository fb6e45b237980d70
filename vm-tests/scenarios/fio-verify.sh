#!/bin/sh
# A concurrent fio writer with verification (fio --verify=crc32c) runs through a whole migration of / (dm, used-only
# copy, then the switch and the grow): every block fio wrote must read back intact — 0 verify errors.
# vm-fs: ext4
# vm-disks: 1G 2G
# vm-tools: fio
# vm-timeout: 600
# vm-host-fsck: vdb
. /vmtest/lib.sh
# fio writes 64 MiB in 4 KiB random blocks (paced at 500/s: ~30 s) with a crc32c header in each, then reads everything
# back and checks it;
# the migration runs while it writes
fio --name=verify --filename=/fio.dat --size=64M --rw=randwrite --bs=4k --ioengine=psync --direct=1 --rate_iops=500 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output-format=json --output=/tmp/fio.json > /tmp/fio.out 2>&1 &
FP=$!
sleep 3
check fio-running "pid $FP" kill -0 $FP
timeout 300 rootshift migrate /dev/vdb --yes --json > /tmp/m.json 2> /tmp/m.err; rc=$?
cp /tmp/m.json /tmp/m.err "$RES/"
still=$(kill -0 $FP 2>/dev/null && echo yes || echo no)
assert_eq migrate-exit-0 0 "$rc"
check fio-ran-across-the-switch "fio still running when migrate returned: $still" [ "$still" = yes ]
wait $FP; frc=$?
cp /tmp/fio.json /tmp/fio.out "$RES/" 2>/dev/null
verr=$(jq -r '.jobs[0].error' /tmp/fio.json 2>/dev/null)
written=$(jq -r '.jobs[0].write.io_bytes' /tmp/fio.json 2>/dev/null)
verified=$(jq -r '.jobs[0].read.io_bytes' /tmp/fio.json 2>/dev/null)
say "fio exit $frc, error $verr, wrote $written bytes, verified (read back) $verified bytes"
assert_eq fio-exit-0 0 "$frc"
assert_eq fio-zero-verify-errors 0 "$verr"
check fio-verified-everything "read back $verified of $written bytes" [ -n "$verified" -a "$verified" = "$written" -a "$verified" != null ]
figure fio_verified_bytes "$verified"
assert_eq on-target "$(devnum /dev/vdb)" "$(rootshift status --json | jq -r '.wrappers[0] | [.legs[].dev] | join(",")')"
fault_row "concurrent fio --verify writer through the migration" dm "0 verify errors; switched to the target" "$verified"
scenario_done
