#!/bin/sh
# SIGTERM in the middle of the copy: the target is a dm-delay fixture (writes delayed 200 ms), so the mirror copy is
# slow and "mid-copy" is observable. rootshift must exit 3 and leave / on linear over the source alone.
# vm-fs: ext4
# vm-disks: 512M 1G
# vm-timeout: 600
# vm-host-fsck: vda
# vm-host-sums: vda
. /vmtest/lib.sh
SRC=/dev/vda TGT=/dev/vdb
SRC_DEV=$(devnum $SRC) SRC_SZ=$(sectors $SRC) TGT_SZ=$(sectors $TGT)
DM=$(dm_by_name rootshift-root)
say "source $SRC=$SRC_DEV ${SRC_SZ}s, raw target $TGT ${TGT_SZ}s, wrapper $DM"

step prefill-20MiB prefill /data 5 4
writer_start /live 150
writer_wait_more 1 60; check writer-running "files=$(writer_count)" [ "$(writer_count)" -ge 1 ]

# fixture: writes to the target delayed by 200 ms
step fixture-create rootshift testing dm-create slowtgt "0 $TGT_SZ delay $TGT 0 0 $TGT 0 200"
FIX=$(dm_by_name slowtgt)
check fixture-node "dm=$FIX $(ls -l /dev/mapper/slowtgt 2>&1)" [ -n "$FIX" -a -b /dev/mapper/slowtgt ] || { scenario_done; exit 1; }
say "fixture slowtgt = $FIX ($(cat /sys/block/$FIX/dev)), table over $(ls /sys/block/$FIX/slaves)"

rootshift migrate /dev/mapper/slowtgt --yes --json > /tmp/migrate.json 2> /tmp/migrate.err &
MP=$!
t_start=$(now_cs)
say "migrate started as pid $MP"

# poll until the copy is visibly in progress: 0 < in_sync < total
seen=0 obs="never polled"
dl=$(( $(now_cs) + 12000 ))
while [ "$(now_cs)" -lt $dl ]; do
  kill -0 $MP 2>/dev/null || { obs="$obs; migrate exited early"; break; }
  if status_json /tmp/stm.json; then
    ins=$(jget /tmp/stm.json '.sync.in_sync // empty'); tot=$(jget /tmp/stm.json '.sync.total // empty')
    obs="in_sync=$ins total=$tot table=$(jget /tmp/stm.json .table) state=$(jget /tmp/stm.json .state)"
    if [ -n "$ins" ] && [ -n "$tot" ] && [ "$ins" -gt 0 ] 2>/dev/null && [ "$ins" -lt "$tot" ]; then seen=1; break; fi
  else
    obs="status failed: $(head -c 200 /tmp/stm.json.err)"
  fi
  sleep 0.5
done
cp /tmp/stm.json "$RES/status-midcopy.json" 2>/dev/null
check mid-copy-observed "after $(fmt_cs $(( $(now_cs) - t_start )))s: $obs" [ $seen = 1 ]
assert_eq mid-copy-table mirror "$(jget /tmp/stm.json .table)"
assert_eq mid-copy-state mirroring "$(jget /tmp/stm.json .state)"

# SIGTERM, and a watchdog so a hung rootshift cannot hang the scenario
t_kill=$(now_cs)
kill -TERM $MP
( sleep 120; kill -KILL $MP 2>/dev/null && echo "vmtest: WATCHDOG killed migrate" ) &
WD=$!
wait $MP; rc=$?
kill $WD 2>/dev/null
t_back=$(now_cs)
cp /tmp/migrate.json /tmp/migrate.err "$RES/"
say "migrate exit=$rc, $(fmt_cs $((t_back - t_kill)))s after SIGTERM; stderr:"; tail -20 /tmp/migrate.err | sed 's/^/    | /'
figure rollback_s "$(fmt_cs $((t_back - t_kill)))"
figure killed_at_in_sync "${ins:-?}/${tot:-?}"
assert_eq migrate-exit-3 3 "$rc"
check no-switched-event "events: $(jq -r .event /tmp/migrate.json 2>/dev/null | uniq | tr '\n' ' ')" \
  [ -z "$(jq -r 'select(.event=="switched")' /tmp/migrate.json 2>/dev/null)" ]

status_json /tmp/st1.json; rc=$?; cp /tmp/st1.json "$RES/status-after.json"
check status-after-exit0 "exit=$rc $(head -c 200 /tmp/st1.json.err | tr '\n' ' ')" [ $rc = 0 ]
assert_eq status-after-table linear "$(jget /tmp/st1.json .table)"
assert_eq status-after-legs "$SRC_DEV" "$(jget /tmp/st1.json '[.legs[].dev] | join(",")')"
st=$(jget /tmp/st1.json .state)
check status-after-state "state='$st' (want aborted or wrapped)" [ "$st" = aborted -o "$st" = wrapped ]
assert_eq wrapper-slaves vda "$(ls /sys/block/$DM/slaves | tr '\n' ' ' | sed 's/ $//')"
assert_eq wrapper-size-unchanged "$SRC_SZ" "$(cat /sys/block/$DM/size)"
check fixture-has-no-holders "/sys/block/$FIX/holders: '$(ls /sys/block/$FIX/holders 2>&1 | tr '\n' ' ')'" [ -z "$(ls /sys/block/$FIX/holders)" ]
n0=$(writer_count); writer_wait_more 2 60; n1=$(writer_count)
check writer-kept-working "writer files: $n0 after the abort, $n1 after waiting (want +2)" [ $((n1 - n0)) -ge 2 ]
step writer-stop-no-errors writer_stop
figure writer_files "$(writer_count)"
step verify-all-checksums verify_sums

step fixture-remove rootshift testing dm-remove slowtgt
check fixture-gone "dm_by_name slowtgt='$(dm_by_name slowtgt)' node: $(ls /dev/mapper/ | tr '\n' ' ')" \
  [ -z "$(dm_by_name slowtgt)" -a ! -e /dev/mapper/slowtgt ]
scenario_done
