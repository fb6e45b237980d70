#!/bin/sh
# Used-blocks-only copy is correct: / (ext4, 512 MiB, ~45 MiB used) moves to a target behind a dm-delay fixture
# (writes delayed 20 ms) so the copy of the used regions takes a while; the writer keeps creating files during it,
# and ext4 puts them in regions that were free — pre-seeded clean, never copied — so only the mirror's writes to
# both legs can bring them to the target. The host then reads every file back out of the target image.
# vm-fs: ext4
# vm-disks: 512M 1536M
# vm-timeout: 600
# vm-host-fsck: vdb
# vm-host-sums: vdb
# vm-tier: full (fio-verify (used-only copy, every block fio wrote during it read back))
. /vmtest/lib.sh
SRC=/dev/vda TGT=/dev/vdb
SRC_SZ=$(sectors $SRC) TGT_SZ=$(sectors $TGT)
MiB=1048576
step prefill-40MiB prefill /data 10 4
writer_start /live 150
writer_wait_more 1 60; check writer-running "files=$(writer_count)" [ "$(writer_count)" -ge 1 ]
step fixture-create rootshift testing dm-create slowtgt "0 $TGT_SZ delay $TGT 0 0 $TGT 0 20"

t_start=$(now_cs)
timeout 400 rootshift migrate /dev/mapper/slowtgt --yes --json > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
t_end=$(now_cs)
cp /tmp/migrate.json /tmp/migrate.err "$RES/"
say "migrate exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr:"; sed 's/^/    | /' /tmp/migrate.err | tail -8
check migrate-exit-0 "exit=$rc" [ $rc = 0 ]
DONE=$(jq -c 'select(.event=="done")' /tmp/migrate.json 2>/dev/null)
say "done event: $DONE"
mode=$(echo "$DONE" | jq -r .copy_mode); copied=$(echo "$DONE" | jq -r .copied_bytes); region=$(echo "$DONE" | jq -r .region_bytes)
figure copy_mode "$mode"; figure copied_mib $((copied / MiB)); figure region_kib $((region / 1024)); figure migrate_s "$(fmt_cs $((t_end - t_start)))"
assert_eq copy-mode-used used "$mode"
check copied-less-than-a-quarter "copied $copied of $((SRC_SZ * 512)) bytes" [ "$copied" -gt 0 -a "$copied" -lt $((SRC_SZ * 512 / 4)) ]
during=$(writer_count_between "$t_start" "$t_end")
figure writer_files_during "$during"
check files-created-during-copy "$during files completed while the copy ran" [ "$during" -ge 2 ]
assert_eq state-done done "$(rootshift status --json | jq -r '.wrappers[0].state')"
B1=$(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2}')
check fs-grown "statfs total $((B1 / MiB)) MiB" [ "$B1" -gt $((1331 * MiB)) ]
step writer-stop-no-errors writer_stop
figure writer_files "$(writer_count)"
step verify-all-checksums verify_sums
scenario_done
