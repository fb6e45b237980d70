#!/bin/bash
# Issue 21 under dracut with systemd in the initrd (as Fedora boots an encrypted root): encrypt the running root,
# rebuild the initrd the way an admin would, and boot through systemd-cryptsetup with the wrapper *below* dm-crypt.
# main: the installed Debian system (root=UUID=... on vda1, wrapped at boot by the dracut module, dm) →
#   `rootshift migrate /dev/vdb --encrypt --key-file K --no-install` with a writer busy; then a host-only
#   `dracut --add crypt --install K` while / is on the wrapper over luks-<UUID> (the module records that container's
#   name in the initrd: root= keeps naming the filesystem by UUID, as Fedora's does). The initrd and the next
#   boot's `rd.luks.uuid=<LUKS UUID> rd.luks.key=K` go into the results.
# crypt (the same kernel, command line and disks, that initrd, those words appended): rootshift-generator writes
#   rootshift-crypt-wrap.service, which wraps vdb before systemd-cryptsetup@luks-<UUID> opens it through
#   /dev/disk/by-uuid, by then the wrapper's link: / is ext4 in luks-<UUID> over rootshift-root over vdb, and every
#   file written before the migration reads back. Then the power-cut proofs of an encrypted root (issue 21: the
#   journal is kept in the container's LUKS2 header too, a token the boot reads before unlocking): the container
#   moves as ciphertext to vdc (`--copy full`, a writer busy) and the power goes in the middle of the copy.
# cut-copy (crypt's kernel, initrd, command line and disks as the cut left them): vdb and the half copy on vdc
#   both carry the LUKS UUID; the boot must pick vdb by the tokens (journal: mirroring), with every file synced
#   before the cut; `rootshift abort` abandons the migration and clears the half copy. A second move to vdc is
#   stopped right after the switch (failpoint migrate::journal-switched), and the power goes.
# cut-switch: twins again (the old header's new UUID comes after that point); the boot must pick vdc (journal:
#   switched) with every synced file; `rootshift migrate --resume --key-file K` finishes: the old header's new
#   UUID, `cryptsetup resize`, the grow of ext4 to fill vdc, and the token leaves the header.
# vm-system: installed
# vm-disks: 2G 3G
# vm-then: crypt boot=same initrd=crypt.img args=next-args
# vm-then: cut-copy boot=same from=crypt
# vm-then: cut-switch boot=same from=cut-copy
# vm-timeout: 1200
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
KEY=/etc/vmtest-luks.key

if [ "$VMTEST_PHASE" = main ]; then
  crypt_main_start
  step prefill-8MiB prefill /data 4 2
  writer_start /live 600 1
  writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]
  timeout 900 rootshift migrate /dev/vdb --yes --json --no-install --encrypt --key-file $KEY --pbkdf-memory 32768 \
    --iter-time 200 > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
  cp /tmp/migrate.json /tmp/migrate.err "$RES/"
  check migrate-encrypt-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|' | cut -c1-400)" [ $rc = 0 ]
  switch_figures /tmp/migrate.json
  U=$(blkid -p -s UUID -o value /dev/vdb)
  MAPK=$(dm_by_name "luks-$U")
  assert_eq wrapper-over-mapping-over-vdb "rootshift-root ${MAPK:-none} vdb" "$(dm_name "$ROOTK") $(slaves_of "$ROOTK") $(slaves_of "${MAPK:-none}")"
  step writer-stop-no-errors writer_stop
  step verify-all-checksums verify_sums
  t0=$(now_cs)
  step dracut-crypt-initrd dracut -f -q --add crypt --install $KEY /tmp/crypt.img "$(uname -r)"
  figure dracut_s "$(fmt_cs $(($(now_cs) - t0)))"
  lsinitrd /tmp/crypt.img > /tmp/lsinitrd.txt 2>&1
  check initrd-records-the-container "$(lsinitrd -f etc/rootshift/crypt-root /tmp/crypt.img 2>&1)" \
    sh -c "[ \"\$(lsinitrd -f etc/rootshift/crypt-root /tmp/crypt.img 2>/dev/null)\" = luks-$U ]"
  check initrd-has-systemd-cryptsetup "" grep -q 'systemd-cryptsetup$' /tmp/lsinitrd.txt
  check initrd-has-the-key "" grep -q "${KEY#/}\$" /tmp/lsinitrd.txt
  cp /tmp/crypt.img "$RES/crypt.img"
  echo "rd.luks.uuid=$U rd.luks.key=$KEY" > "$RES/next-args"
  echo "$U" > "$RES/luks-uuid"
  sync
  scenario_done
  exit 0
fi

# token_journal DEV FIELD : FIELD of the journal in DEV's rootshift-journal token ("" without one)
token_journal() {
  local id
  id=$(cryptsetup luksDump "$1" 2>/dev/null | awk '$2 == "rootshift-journal" {sub(":", "", $1); print $1; exit}')
  [ -n "$id" ] && cryptsetup token export --token-id "$id" "$1" 2>/dev/null | jq -r .journal | jq -r ".$2"
}
# migrate_to_vdc_and_cut WHERE [FAILPOINT] : the ciphertext move to vdc with a writer busy; pull the plug at WHERE
# (copy: between 15 and 85 %; switch: at the failpoint's pause); what was synced before goes to synced.sums
migrate_to_vdc_and_cut() {
  local reached= pct
  writer_start "/live-$1" 600 0.3
  writer_wait_more 2 60
  ROOTSHIFT_FAILPOINTS=$2 rootshift migrate /dev/vdc --yes --json --copy full --key-file $KEY > /tmp/m.json 2> /tmp/m.err &
  MP=$!
  for _ in $(seq 3000); do
    if [ "$1" = copy ]; then
      pct=$(jq -r 'select(.event=="progress") | .percent' /tmp/m.json 2>/dev/null | tail -1)
      [ -n "$pct" ] && [ "${pct%.*}" -ge 15 ] && [ "${pct%.*}" -le 85 ] && { reached="copy at ${pct}%"; break; }
    else
      grep -q 'failpoint migrate::journal-switched: sleeping' /tmp/m.err 2>/dev/null && { reached="switched (paused)"; break; }
    fi
    kill -0 $MP 2>/dev/null || break
    sleep 0.1
  done
  cp "$SUMS" /tmp/snap.sums; sync
  cp /tmp/snap.sums "$RES/synced.sums"; cp /tmp/m.json /tmp/m.err "$RES/" 2>/dev/null
  check cut-point-reached-$1 "${reached:-not reached}; events: $(jq -r .event /tmp/m.json | uniq | tr '\n' ' ')" [ -n "$reached" ]
  figure "files_before_cut_$1" "$(wc -l < /tmp/snap.sums)"
  # the journal is in the header on the wrapper, which is where the boot will read it (before unlocking)
  local want=mirroring; [ "$1" = switch ] && want=switched
  assert_eq "header-token-says-$want" "$want" "$(token_journal /dev/mapper/rootshift-root step)"
  echo "$U" > "$RES/luks-uuid"
  pull_the_plug
}
# after_cut LEG : the boot after a cut came up on LEG, found the twins and chose by the tokens, every synced file intact
after_cut() {
  crypt_boot_start
  cp "$VMTEST_IN/prev/synced.sums" "$SUMS"
  say "devices with LUKS UUID $U: $(blkid -t UUID=$U -o device | tr '\n' ' ')"
  assert_eq "root-on-mapping-over-wrapper-over-$1" "rootshift-root $1" "$(dm_name "$WK") $(slaves_of "$WK")"
  check "hook-picked-$1-by-the-token" "$(grep -m1 'carry' "$RES/kernel-rootshift.txt")" \
    grep -q "2 devices carry .* journal .* picks /dev/$1" "$RES/kernel-rootshift.txt"
  sync; echo 3 > /proc/sys/vm/drop_caches
  check files-synced-before-the-cut-intact "$(wc -l < "$SUMS") files" $SHA256SUM -c --quiet "$SUMS"
  status_json /tmp/st.json; cp /tmp/st.json "$RES/status-after-cut.json"
}

# ---- crypt: booted through systemd-cryptsetup, the wrapper below dm-crypt -------------------------------------------
if [ "$VMTEST_PHASE" = cut-copy ]; then
  after_cut vdb
  assert_eq journal-says-mirroring mirroring "$(jq -r .journal.step /tmp/st.json)"
  assert_eq half-copy-carries-the-luks-uuid "$U" "$(blkid -p -s UUID -o value /dev/vdc)"
  rootshift abort --json > /tmp/ab.json 2> /tmp/ab.err; rc=$?
  say "abort: exit $rc: $(tr '\n' '|' < /tmp/ab.err) $(jq -r .event /tmp/ab.json | tr '\n' ' ')"
  assert_eq abort-exit-0 0 "$rc"
  check abort-cleared-the-half-copy "$(jq -c 'select(.event=="cleared")' /tmp/ab.json)" grep -q '"cleared"' /tmp/ab.json
  assert_eq half-copy-cleared "" "$(blkid -p -s UUID -o value /dev/vdc)"
  migrate_to_vdc_and_cut switch "migrate::journal-switched=sleep:600000"
fi
if [ "$VMTEST_PHASE" = cut-switch ]; then
  after_cut vdc
  assert_eq journal-says-switched switched "$(jq -r .journal.step /tmp/st.json)"
  timeout 900 rootshift migrate --resume --yes --json --key-file $KEY > /tmp/r.json 2> /tmp/r.err; rc=$?
  cp /tmp/r.json /tmp/r.err "$RES/"
  EV=$(jq -r .event /tmp/r.json 2>/dev/null | uniq | tr '\n' ' ')
  say "resume: exit $rc: $(tail -3 /tmp/r.err | tr '\n' '|') events: $EV"
  assert_eq resume-exit-0 0 "$rc"
  check resume-events-in-order "events: $EV" sh -c "echo ' $EV' | grep -qE ' source-id (.* )?crypt-grown (.* )?grown (.* )?done'"
  OLD=$(blkid -p -s UUID -o value /dev/vdb)
  check old-header-new-uuid "vdb: $OLD (the container: $U)" [ -n "$OLD" -a "$OLD" != "$U" ]
  size=$(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2 / 1048576}')
  check fs-fills-vdc "statfs $size MiB" [ "$size" -gt 2700 ]
  assert_eq token-left-the-header "" "$(cryptsetup luksDump /dev/vdc | awk '$2 == "rootshift-journal"')"
  status_json /tmp/st2.json
  assert_eq state-done done "$(jq -r .state /tmp/st2.json)"
  step files-intact-after-resume verify_sums
  scenario_done
  exit 0
fi
crypt_boot_start
assert_eq mapping-over-wrapper-over-vdb "rootshift-root vdb" "$(dm_name "$WK") $(slaves_of "$WK")"
assert_eq hook-state "wrapped dm /dev/vdb $MAP" "$(boot_info state) $(boot_info backend) $(boot_info component) $(boot_info crypt)"
journalctl -b --no-pager -o short-monotonic > /tmp/journal.txt 2>&1
check crypt-wrap-unit-ran-first "$(grep -m2 -E 'rootshift: wrap the encrypted|Finished .*systemd-cryptsetup@' /tmp/journal.txt | tr '\n' '|')" \
  sh -c "grep -n -E 'Finished rootshift-crypt-wrap.service|Finished systemd-cryptsetup@' /tmp/journal.txt | head -1 | grep -q rootshift-crypt-wrap"
check cryptsetup-opened-the-wrapper "$(grep -m1 -i 'systemd-cryptsetup\[' /tmp/journal.txt)" \
  sh -c "! grep -qiE 'systemd-cryptsetup\[[0-9]+\]: .*(busy|failed)' /tmp/journal.txt"
assert_eq by-uuid-names-the-wrapper "$WK" "$(basename "$(readlink -f /dev/disk/by-uuid/$U)")"
step files-from-before-intact verify_sums
migrate_to_vdc_and_cut copy
