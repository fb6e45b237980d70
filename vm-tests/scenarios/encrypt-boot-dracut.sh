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
#   file written before the migration reads back.
# vm-system: installed
# vm-disks: 2G
# vm-then: crypt boot=same initrd=crypt.img args=next-args
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

# ---- crypt: booted through systemd-cryptsetup, the wrapper below dm-crypt -------------------------------------------
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
scenario_done
