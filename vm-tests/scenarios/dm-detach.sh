#!/bin/sh
# A detached migration (issue 16 §1): `migrate --detach` without --yes is refused; with --yes it returns at once and
# the work goes on in a process of its own (no systemd here: the background path, output in /run/rootshift/);
# `rootshift status --follow` from another "shell" shows its progress (plain lines: not a TTY) until it is done.
# vm-fs: ext4
# vm-disks: 512M 1G
# vm-timeout: 600
# vm-host-fsck: vdb
# vm-host-sums: vdb
# vm-tier: full (installed-move migrates with --detach (the systemd-unit path) and follows it with status --follow; this one adds the background path without systemd and the refusal without --yes)
. /vmtest/lib.sh
step prefill-20MiB prefill /data 5 4
writer_start /live 100
writer_wait_more 1 60
rootshift migrate /dev/vdb --detach > /tmp/d0.out 2> /tmp/d0.err; rc=$?
assert_eq detach-without-yes-refused 2 "$rc"
assert_contains detach-needs-yes /tmp/d0.err "--detach runs without a terminal to confirm on"
t0=$(now_cs)
rootshift migrate /dev/vdb --detach --yes --copy full > /tmp/d1.out 2> /tmp/d1.err; rc=$?
t1=$(now_cs)
assert_eq detach-exit-0 0 "$rc"
assert_contains detach-says-how-to-follow /tmp/d1.err "rootshift status --follow"
check detach-returns-at-once "returned after $(fmt_cs $((t1 - t0)))s" [ $((t1 - t0)) -lt 500 ]
timeout 300 rootshift status --follow > /tmp/follow.out 2>&1; rc=$?
cp /tmp/follow.out /run/rootshift/output.log /run/rootshift/events.jsonl "$RES/" 2>/dev/null
say "follow: exit $rc: $(tr '\n' '|' < /tmp/follow.out | cut -c1-600)"
assert_eq follow-exit-0 0 "$rc"
check follow-showed-progress "$(grep -c 'copying:' /tmp/follow.out) progress lines" grep -q 'copying:' /tmp/follow.out
check follow-showed-the-end "$(tail -1 /tmp/follow.out)" grep -qi 'done\|grown\|switched' /tmp/follow.out
status_json /tmp/st.json
assert_eq done-on-vdb "done $(devnum /dev/vdb)" "$(jq -r '"\(.state) \(.legs[0].dev)"' /tmp/st.json)"
step writer-stop-no-errors writer_stop
step verify-all-checksums verify_sums
scenario_done
