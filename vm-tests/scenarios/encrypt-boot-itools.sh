#!/bin/bash
# Issue 21 on a full system booted by initramfs-tools: encrypt the running root, boot it through Debian's cryptroot
# with the wrapper *below* dm-crypt, then move the encrypted root again as ciphertext.
# main: the installed Debian system (root=UUID=... on vda1, wrapped by the initramfs-tools hook, dm) with a writer
#   busy → `rootshift migrate /dev/vdb --encrypt --key-file K --no-install` (a LUKS2 container on vdb, light KDF).
#   It leaves the next boot's root=/dev/mapper/luks-<UUID> and cryptopts= (source=UUID=<the LUKS UUID>, the test
#   key the image's itools initrd carries) in its results.
# crypt (same kernel, initrd and disks, those words appended): the rootshift local-top script wraps the LUKS
#   partition vdb before cryptroot runs; cryptroot opens the container on rootshift-root (blkid -l prefers the dm
#   device to the partition carrying the same LUKS UUID) and / is ext4 in it. Every file written before the
#   migration (checksums) and the plaintext marker read back through the mapping. Then
#   `rootshift migrate /dev/vdc --key-file K --verify` with a writer busy: the container moves as ciphertext (the
#   used-only copy of dm, its free-space map shifted past the LUKS header), `cryptsetup resize`, the ext4 grows,
#   the old header gets a new LUKS UUID; fsck of the root (read-only) is clean.
# crypt-md (the crypt boot's kernel, command line and disks, plus rd.rootshift=md): the same boot with an md
#   wrapper (raid1, no superblock) under the container on vdc: cryptroot's blkid -l prefers the md device too, and
#   69-rootshift.rules gives it the by-uuid link of its crypto content.
# vm-system: installed
# vm-disks: 2G 3G
# vm-boot: main itools
# vm-then: crypt boot=same args=next-args
# vm-then: crypt-md boot=same from=crypt args=next-args
# vm-timeout: 1200
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
MiB=1048576
KEY=/etc/vmtest-luks.key
fs_bytes() { stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2}'; }

if [ "$VMTEST_PHASE" = main ]; then
  crypt_main_start
  M="rootshift-plaintext-marker-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  echo "$M" > "$RES/marker"
  i=0; while [ $i -lt 2000 ]; do echo "$M $i"; i=$((i + 1)); done > /marker.txt
  sync
  echo "$(sha256sum /marker.txt | cut -d' ' -f1)  /marker.txt" >> "$SUMS"
  step prefill-8MiB prefill /data 4 2
  writer_start /live 600 1
  writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]
  t_start=$(now_cs)
  timeout 900 rootshift migrate /dev/vdb --yes --json --no-install --encrypt --key-file $KEY --pbkdf-memory 32768 \
    --iter-time 200 > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
  t_end=$(now_cs)
  cp /tmp/migrate.json /tmp/migrate.err "$RES/"
  say "migrate --encrypt exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr: $(tail -5 /tmp/migrate.err | tr '\n' '|')"
  figure encrypt_s "$(fmt_cs $((t_end - t_start)))"
  check migrate-encrypt-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|' | cut -c1-400)" [ $rc = 0 ]
  check_events json-events-documented /tmp/migrate.json
  switch_figures /tmp/migrate.json
  EV=$(jq -r '.event' /tmp/migrate.json 2>/dev/null | uniq | tr '\n' ' ')
  check events-in-order "events: $EV" sh -c "echo ' $EV' | grep -qE ' encrypted (.* )?switched (.* )?grown (.* )?next-boot (.* )?done'"
  during=$(writer_count_between "$t_start" "$t_end")
  check writer-wrote-during-migrate "$during files between migrate start and end" [ "$during" -ge 1 ]
  U=$(blkid -p -s UUID -o value /dev/vdb)
  assert_eq vdb-is-luks crypto_LUKS "$(blkid -p -s TYPE -o value /dev/vdb)"
  assert_eq event-names-the-uuid "$U" "$(jq -r 'select(.event=="encrypted") | .luks_uuid' /tmp/migrate.json)"
  MAPK=$(dm_by_name "luks-$U")
  assert_eq wrapper-over-mapping-over-vdb "rootshift-root ${MAPK:-none} vdb" "$(dm_name "$ROOTK") $(slaves_of "$ROOTK") $(slaves_of "${MAPK:-none}")"
  check crypttab-line-told "$(jq -r 'select(.event=="next-boot") | .crypttab' /tmp/migrate.json)" \
    sh -c "jq -r 'select(.event==\"next-boot\") | .crypttab' /tmp/migrate.json | grep -qx 'luks-$U UUID=$U none luks'"
  step writer-stop-no-errors writer_stop
  step verify-all-checksums verify_sums
  # the next boot: cryptroot opens the container by its LUKS UUID with the initrd's test key
  echo "root=/dev/mapper/luks-$U cryptopts=target=luks-$U,source=UUID=$U,luks,key=$KEY" > "$RES/next-args"
  echo "$U" > "$RES/luks-uuid"
  say "next boot: $(cat "$RES/next-args")"
  sync
  scenario_done
  exit 0
fi

# ---- crypt-md: the container on vdc under an md wrapper ----------------------------------------------------------------
if [ "$VMTEST_PHASE" = crypt-md ]; then
  crypt_boot_start
  check mapping-over-md-wrapper "$WK: $(cat /sys/block/$WK/md/level 2>&1), $(readlink /dev/md_rootshift-root 2>&1)" \
    sh -c "[ \"\$(basename \"\$(readlink -f /dev/md_rootshift-root)\")\" = '$WK' ] && [ \"\$(cat /sys/block/$WK/md/level)\" = raid1 ]"
  assert_eq md-wrapper-over-vdc vdc "$(slaves_of "$WK")"
  assert_eq hook-state-wrapped "wrapped md $MAP" "$(boot_info state) $(boot_info backend) $(boot_info crypt)"
  assert_eq by-uuid-names-the-md-wrapper "$WK" "$(basename "$(readlink -f /dev/disk/by-uuid/$U)")"
  step files-intact verify_sums
  scenario_done
  exit 0
fi

# ---- crypt: booted through cryptroot, the wrapper below dm-crypt ---------------------------------------------------
crypt_boot_start
M=$(cat "$VMTEST_IN/prev/marker")
assert_eq mapping-over-wrapper-over-vdb "rootshift-root vdb" "$(dm_name "$WK") $(slaves_of "$WK")"
check mapping-is-luks2 "dm uuid $(cat /sys/block/$ROOTK/dm/uuid 2>&1)" grep -q "^CRYPT-LUKS2-" /sys/block/$ROOTK/dm/uuid
assert_eq hook-state-wrapped wrapped "$(boot_info state)"
assert_eq hook-wrapped-vdb /dev/vdb "$(boot_info component)"
assert_eq hook-names-the-container "$MAP" "$(boot_info crypt)"
assert_contains hook-logged-the-open "$RES/kernel-rootshift.txt" "the encrypted root $MAP opens on /dev/mapper/rootshift-root"
# the partition is a leg of the wrapper: by-uuid (the LUKS UUID) names the wrapper, as 69-rootshift.rules says
assert_eq by-uuid-names-the-wrapper "$WK" "$(basename "$(readlink -f /dev/disk/by-uuid/$U)")"
sync; echo 3 > /proc/sys/vm/drop_caches
step files-from-before-intact verify_sums
assert_eq marker-through-mapping 2000 "$(tr -c 'a-z0-9-' '\n' < /marker.txt | grep -cxF "$M")"

# ---- the ciphertext move to vdc --------------------------------------------------------------------------------------
B0=$(fs_bytes)
writer_start /live2 600 1
writer_wait_more 2 60; check writer-running-before-move "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]
t_start=$(now_cs)
timeout 900 rootshift migrate /dev/vdc --yes --json --key-file $KEY --verify > /tmp/move.json 2> /tmp/move.err; rc=$?
t_end=$(now_cs)
cp /tmp/move.json /tmp/move.err "$RES/"
say "migrate exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr: $(tail -5 /tmp/move.err | tr '\n' '|')"
figure move_s "$(fmt_cs $((t_end - t_start)))"
check move-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/move.err | tr '\n' '|' | cut -c1-400)" [ $rc = 0 ]
check_events move-events-documented /tmp/move.json
switch_figures /tmp/move.json
EV=$(jq -r '.event' /tmp/move.json 2>/dev/null | uniq | tr '\n' ' ')
check move-events-in-order "events: $EV" sh -c "echo ' $EV' | grep -qE ' verified (.* )?switched (.* )?source-id (.* )?crypt-grown (.* )?grown (.* )?done'"
assert_eq copy-mode-used used "$(jq -r 'select(.event=="copy") | .copy_mode' /tmp/move.json)"
check verify-no-mismatch "$(jq -c 'select(.event=="verified")' /tmp/move.json)" \
  sh -c "jq -s -e 'map(select(.event==\"verified\")) | length == 1 and .[0].mismatches == 0 and .[0].verified_bytes > 0' /tmp/move.json"
during=$(writer_count_between "$t_start" "$t_end")
check writer-wrote-during-move "$during files between migrate start and end" [ "$during" -ge 1 ]
assert_eq mapping-now-over-vdc "rootshift-root vdc" "$(dm_name "$WK") $(slaves_of "$WK")"
assert_eq vdc-carries-the-luks-uuid "$U" "$(blkid -p -s UUID -o value /dev/vdc)"
OLD=$(blkid -p -s UUID -o value /dev/vdb)
check old-header-new-uuid "vdb: '$OLD'" [ -n "$OLD" -a "$OLD" != "$U" ]
check key-opens-vdc "" cryptsetup open --test-passphrase --key-file $KEY /dev/vdc
B1=$(fs_bytes)
figure fs_before_mib $((B0 / MiB)); figure fs_after_mib $((B1 / MiB))
check fs-grew "statfs $((B0 / MiB)) -> $((B1 / MiB)) MiB" [ "$B1" -gt $((B0 + 800 * MiB)) ]
step writer-stop-no-errors writer_stop
sync; echo 3 > /proc/sys/vm/drop_caches
step verify-all-checksums verify_sums
# the marker's first block: plaintext on the mapping, ciphertext at its place past the payload offset on vdc
OFF=$(cryptsetup status "$MAP" | awk '$1 == "offset:" {print $2}')
P=$(debugfs -R "bmap /marker.txt 0" /dev/mapper/$MAP 2>/dev/null)
if check marker-located "fs block '$P', payload offset $OFF sectors" [ -n "$P" -a "${P:-0}" -gt 0 -a -n "$OFF" ]; then
  dd if=/dev/mapper/$MAP bs=4096 skip=$P count=1 2>/dev/null > /tmp/plain.blk
  dd if=/dev/vdc bs=512 skip=$((OFF + P * 8)) count=8 2>/dev/null > /tmp/raw.blk
  check marker-in-plaintext "" grep -qF "$M" /tmp/plain.blk
  assert_eq marker-not-in-raw-vdc 0 "$(grep -cF "$M" /tmp/raw.blk)"
fi
mount -o remount,ro / || say "remount read-only failed"
e2fsck -fn /dev/mapper/$MAP > "$RES/fsck.txt" 2>&1; rc=$?
check fsck-root-clean "exit=$rc: $(tail -2 "$RES/fsck.txt" | tr '\n' '|')" [ $rc = 0 ]
mount -o remount,rw / || true
# the next boot (crypt-md): the same, with the md backend
echo "rd.rootshift=md" > "$RES/next-args"
echo "$U" > "$RES/luks-uuid"
sync
scenario_done
