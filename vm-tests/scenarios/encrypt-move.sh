#!/bin/sh
# Issue 21 §2, encrypt while migrating (dm): / is ext4 on the wrapper over the plaintext vda. Refusals first (nothing
# written to vdb or vdc): no key and no terminal, --wipe-source without --encrypt, --encrypt with --install, a target
# too small for the root behind a LUKS2 header (vdc: 520 MiB for a 512 MiB root). Then `rootshift migrate /dev/vdb
# --encrypt --key-file K --wipe-source --verify` (light KDF settings: argon2id at its defaults is very slow under TCG)
# with a writer busy: vdb becomes LUKS2, opened as luks-<UUID>, the root (a used-only copy) is mirrored into the open
# mapping, compared, switched, grown; the old vda is overwritten with zeroes. After: / is on the wrapper over the
# mapping over vdb; a marker written before the move reads through the wrapper, and at its place in the raw vdb
# (past the payload offset) are not its bytes; at its old place on vda are zeroes; every file reads back; fsck of the
# root (read-only) is clean. (The host cannot fsck it: no dm there.)
# vm-disks: 512M 1536M 520M
# vm-timeout: 600
. /vmtest/lib.sh
SRC=/dev/vda TGT=/dev/vdb SMALL=/dev/vdc KEY=/tmp/new-luks.key
export DM_DISABLE_UDEV=1
MiB=1048576
DM=$(wrapper_block)
W=$(wrapper_node)
fs_bytes() { stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2}'; }
written() { sync; blockdev --flushbufs "$1"; awk '{print $7}' "/sys/block/$(basename "$1")/stat"; }
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > $KEY

assert_eq root-on-wrapper "$(cat /sys/block/$DM/dev)" "$(st_devnum /)"
assert_eq wrapper-over-vda vda "$(ls /sys/block/$DM/slaves)"
check cryptsetup-present "$(cryptsetup --version 2>&1)" cryptsetup --version

# a marker in plaintext: on vda as it is now (the check can see it), later only through the mapping
M="rootshift-plaintext-marker-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
i=0; while [ $i -lt 2000 ]; do echo "$M $i"; i=$((i + 1)); done > /marker.txt
sync
echo "$(sha256sum /marker.txt | cut -d' ' -f1)  /marker.txt" >> "$SUMS"
P0=$(debugfs -R "bmap /marker.txt 0" $W 2>/dev/null)
check marker-located "fs block '$P0'" [ -n "$P0" -a "$P0" -gt 0 ]
blockdev --flushbufs $SRC
dd if=$SRC bs=4096 skip=$P0 count=1 2>/dev/null > /tmp/before.blk
check marker-plaintext-on-vda-before "" grep -qF "$M" /tmp/before.blk

# ---- refusals: nothing written to the targets ---------------------------------------------------------------------
W0=$(written $TGT) S0=$(written $SMALL)
refusal() {  # refusal NAME WANT ARGS...
  _n=$1 _w=$2; shift 2
  timeout 60 setsid rootshift migrate "$@" > /tmp/r.out 2> /tmp/r.err < /dev/null; _rc=$?
  { echo "== $_n: setsid rootshift migrate $*"; echo "exit=$_rc"; cat /tmp/r.err; } >> "$RES/refusals.txt"
  check refuse-$_n "exit=$_rc: $(head -2 /tmp/r.err | tr '\n' '|' | cut -c1-300)" sh -c "[ $_rc = 2 ] && grep -qF -- '$_w' /tmp/r.err"
}
refusal no-key-no-terminal "--key-file" $TGT --yes --encrypt
refusal wipe-without-encrypt "--wipe-source overwrites" $TGT --yes --wipe-source
refusal encrypt-with-install "--no-install" $TGT --yes --encrypt --key-file $KEY --install
refusal too-small-for-header "behind a LUKS2 header" $SMALL --yes --encrypt --key-file $KEY
assert_eq refusals-wrote-nothing "$W0 $S0" "$(written $TGT) $(written $SMALL)"
assert_eq vdb-still-blank "" "$(blkid -p -s TYPE -o value $TGT)"

# ---- the move ------------------------------------------------------------------------------------------------------
step prefill-24MiB prefill /data 6 4
writer_start /live 150
writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]
t_start=$(now_cs)
timeout 450 rootshift migrate $TGT --yes --json --encrypt --key-file $KEY --pbkdf-memory 32768 --iter-time 200 \
  --wipe-source --verify > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
t_end=$(now_cs)
cp /tmp/migrate.json /tmp/migrate.err "$RES/"
say "migrate exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr: $(tail -5 /tmp/migrate.err | tr '\n' '|')"
figure migrate_s "$(fmt_cs $((t_end - t_start)))"
check migrate-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|')" [ $rc = 0 ]
check_events json-events-documented /tmp/migrate.json
switch_figures /tmp/migrate.json
EV=$(jq -r '.event' /tmp/migrate.json 2>/dev/null | uniq | tr '\n' ' ')
check events-in-order "events: $EV" \
  sh -c "echo ' $EV' | grep -qE ' encrypted (.* )?verified (.* )?switched (.* )?grown (.* )?source-wiped (.* )?next-boot (.* )?done'"
assert_eq copy-mode-used used "$(jq -r 'select(.event=="copy") | .copy_mode' /tmp/migrate.json)"
check verify-no-mismatch "$(jq -c 'select(.event=="verified")' /tmp/migrate.json)" \
  sh -c "jq -s -e 'map(select(.event==\"verified\")) | length == 1 and .[0].mismatches == 0 and .[0].verified_bytes > 0' /tmp/migrate.json"
during=$(writer_count_between "$t_start" "$t_end")
check writer-wrote-during-migrate "$during files between migrate start and end" [ "$during" -ge 1 ]

# ---- after: wrapper -> luks-<UUID> -> vdb ----------------------------------------------------------------------
U=$(blkid -p -s UUID -o value $TGT)
assert_eq vdb-is-luks crypto_LUKS "$(blkid -p -s TYPE -o value $TGT)"
assert_eq event-names-the-uuid "$U" "$(jq -r 'select(.event=="encrypted") | .luks_uuid' /tmp/migrate.json)"
MAPK=$(dm_by_name "luks-$U")
check mapping-named-luks-uuid "luks-$U is '${MAPK:-missing}'" [ -n "$MAPK" ]
assert_eq root-still-on-wrapper "$(cat /sys/block/$DM/dev)" "$(st_devnum /)"
assert_eq wrapper-over-mapping "$MAPK" "$(ls /sys/block/$DM/slaves)"
assert_eq mapping-over-vdb vdb "$(ls /sys/block/$MAPK/slaves 2>/dev/null)"
check mapping-is-luks2 "dm uuid $(cat /sys/block/$MAPK/dm/uuid 2>&1)" grep -q '^CRYPT-LUKS2-' /sys/block/$MAPK/dm/uuid
check crypttab-line-told "$(jq -r 'select(.event=="next-boot") | .crypttab' /tmp/migrate.json)" \
  sh -c "jq -r 'select(.event==\"next-boot\") | .crypttab' /tmp/migrate.json | grep -qx 'luks-$U UUID=$U none luks'"
check key-opens-target "" cryptsetup open --test-passphrase --key-file $KEY $TGT
MAPB=$(( $(sectors /dev/mapper/luks-$U) * 512 )); TGTB=$(( $(sectors $TGT) * 512 ))
figure mapping_mib $((MAPB / MiB))
check mapping-fills-target "luks-$U $MAPB bytes, vdb $TGTB (the LUKS2 header: 16 MiB)" \
  [ $((TGTB - MAPB)) -gt 0 -a $((TGTB - MAPB)) -le $((32 * MiB)) ]
B1=$(fs_bytes)
figure fs_after_mib $((B1 / MiB))
check fs-grown-to-mapping "statfs $B1 bytes, luks-$U $MAPB" [ "$B1" -gt $((MAPB * 9 / 10)) ]
n0=$(writer_count); writer_wait_more 3 60; n1=$(writer_count)
check writer-continues-after-switch "files: $n0 then $n1" [ $((n1 - n0)) -ge 3 ]
step writer-stop-no-errors writer_stop
sync; echo 3 > /proc/sys/vm/drop_caches

# the marker: plaintext through the wrapper, not in the raw target, gone from the old disk
OFF=$(cryptsetup status "luks-$U" | awk '$1 == "offset:" {print $2}')
NB=$(( ($(stat -c %s /marker.txt) + 4095) / 4096 ))
for b in 0 $((NB - 1)); do
  P=$(debugfs -R "bmap /marker.txt $b" $W 2>/dev/null)
  check marker-block-$b-located "fs block '$P', payload offset $OFF sectors" [ -n "$P" -a "$P" -gt 0 -a -n "$OFF" ] || continue
  dd if=$W bs=4096 skip=$P count=1 2>/dev/null > /tmp/plain.blk
  dd if=$TGT bs=512 skip=$((OFF + P * 8)) count=8 2>/dev/null > /tmp/raw.blk
  dd if=$SRC bs=4096 skip=$P count=1 2>/dev/null > /tmp/old.blk
  check marker-block-$b-through-wrapper "" grep -qF "$M" /tmp/plain.blk
  assert_eq marker-block-$b-not-in-raw-target 0 "$(grep -cF "$M" /tmp/raw.blk)"
  check marker-block-$b-raw-is-not-plaintext "" sh -c "! cmp -s /tmp/plain.blk /tmp/raw.blk"
  check marker-block-$b-old-disk-zeroed "" cmp -s -n 4096 /tmp/old.blk /dev/zero
done
check vda-first-64MiB-zero "" cmp -s -n $((64 * MiB)) $SRC /dev/zero
assert_eq vda-no-signature "" "$(blkid -p -s TYPE -o value $SRC)"
step verify-all-checksums verify_sums
mount -o remount,ro / || say "remount read-only failed"
e2fsck -fn $W > "$RES/fsck.txt" 2>&1; rc=$?
check fsck-root-clean "exit=$rc: $(tail -2 "$RES/fsck.txt" | tr '\n' '|')" [ $rc = 0 ]
scenario_done
