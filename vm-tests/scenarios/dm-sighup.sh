#!/bin/sh
# The terminal goes away mid-copy (issue 16 §1): rootshift's stdout/stderr go to a reader that dies, then SIGHUP
# arrives (what a dropped SSH session does). The migration must go on and finish (exit 0, on the target, grown),
# its output moved to /run/rootshift/output.log; a writer keeps writing; every file intact.
# vm-fs: ext4
# vm-disks: 512M 1G
# vm-timeout: 600
# vm-host-fsck: vdb
# vm-host-sums: vdb
. /vmtest/lib.sh
TGT=/dev/vdb TGT_SZ=$(sectors /dev/vdb)
step prefill-20MiB prefill /data 5 4
writer_start /live 150
writer_wait_more 1 60
# a slow target (writes delayed 20 ms) so that "mid-copy" lasts long enough to observe
step fixture-create rootshift testing dm-create slowtgt "0 $TGT_SZ delay $TGT 0 0 $TGT 0 20"
FIXDEV=$(cat "/sys/block/$(dm_by_name slowtgt)/dev")   # no udev here: /dev/mapper/slowtgt is a plain node
mkfifo /tmp/tty.fifo
cat /tmp/tty.fifo > /tmp/tty.seen &
READER=$!
rootshift migrate /dev/mapper/slowtgt --yes --json > /tmp/tty.fifo 2>&1 &
MP=$!
seen=0
for _ in $(seq 600); do
  p=$(grep '"event":"progress"' /tmp/tty.seen 2>/dev/null | tail -1 | jq -r '"\(.done_bytes) \(.total_bytes)"' 2>/dev/null)
  set -- $p
  if [ -n "${1:-}" ] && [ "$1" -gt 0 ] 2>/dev/null && [ "$1" -lt "$2" ]; then seen=1; break; fi
  kill -0 $MP 2>/dev/null || break
  sleep 0.1
done
check copy-under-way "last progress: ${p:-none}" [ "$seen" = 1 ]
# the terminal goes away: its reader dies (writes now fail), then the hang-up
kill -KILL $READER; wait $READER 2>/dev/null
kill -HUP $MP
say "SIGHUP sent to $MP at copied ${1:-?} of ${2:-?} bytes"
wait $MP; rc=$?
assert_eq exit-0-after-hangup 0 "$rc"
status_json /tmp/st.json
assert_eq done-on-target "done $FIXDEV" "$(jq -r '"\(.state) \(.legs[0].dev)"' /tmp/st.json)"
cp /run/rootshift/output.log "$RES/output.log" 2>/dev/null
check output-moved-to-log "$(head -c 300 /run/rootshift/output.log 2>/dev/null | tr '\n' '|')" grep -q '"event":"hangup"' /run/rootshift/output.log
check log-has-the-end "$(tail -c 300 /run/rootshift/output.log 2>/dev/null | tr '\n' '|')" grep -q '"event":"done"' /run/rootshift/output.log
size=$(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2 / 1048576}')
check fs-grown "statfs $size MiB" [ "$size" -gt 900 ]
step writer-stop-no-errors writer_stop
step verify-all-checksums verify_sums && fault_row "SIGHUP mid-copy (terminal gone)" dm "went on and finished on the target, output in /run/rootshift/output.log" "$(sums_bytes)"
scenario_done
