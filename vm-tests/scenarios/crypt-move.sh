#!/bin/sh
# Issue 21 §1, the migration of an encrypted root (dm): / is ext4 in a LUKS2 container that was opened *over* the
# wrapper (the guest's init does what a LUKS-aware boot hook does: vda is the LUKS partition, rootshift-root wraps it,
# luks-root is opened on rootshift-root), so the wrapper carries ciphertext. Refusals first (nothing written to
# vdb): a used-only copy, no key where the resize needs one (LUKS2: the volume key is in the kernel keyring) and no
# terminal, a wrong key. Then `rootshift migrate /dev/vdb --key-file K` with a writer busy: the container moves
# whole, the switch, `cryptsetup resize` of the open mapping, the grow of the ext4 in it, a new LUKS UUID for the
# old header. A marker written before the move is read through the mapping, and at its place in the raw target
# are the same ciphertext bytes as in the raw source, not the marker; every file reads back; fsck of the root
# (read-only) is clean. (The host cannot fsck it: no dm there.)
# vm-root: luks
# vm-disks: 512M 1536M
# vm-timeout: 600
. /vmtest/lib.sh
SRC=/dev/vda TGT=/dev/vdb MAP=/dev/mapper/luks-root KEY=/etc/vmtest-luks.key
export DM_DISABLE_UDEV=1
MiB=1048576
DM=$(wrapper_block)
CRYPTK=$(dm_by_name luks-root)
fs_bytes() { stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2}'; }
written() { sync; blockdev --flushbufs "$1"; awk '{print $7}' "/sys/block/$(basename "$1")/stat"; }
luks_uuid() { blkid -p -s UUID -o value "$1"; }

# ---- the stack -----------------------------------------------------------------------------------------------------
assert_eq root-on-luks-mapping "$(cat /sys/block/$CRYPTK/dev)" "$(st_devnum /)"
assert_eq mapping-over-wrapper "$DM" "$(ls /sys/block/$CRYPTK/slaves)"
assert_eq wrapper-over-vda vda "$(ls /sys/block/$DM/slaves)"
assert_eq vda-is-luks crypto_LUKS "$(blkid -p -s TYPE -o value $SRC)"
U=$(luks_uuid $SRC)
say "LUKS UUID $U; table of luks-root: $(cryptsetup status luks-root | tr -s ' ' | tr '\n' '|')"
B0=$(fs_bytes)
figure fs_before_mib $((B0 / MiB))

# a marker in plaintext: found through the mapping, never in the raw devices
M="rootshift-plaintext-marker-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
i=0; while [ $i -lt 2000 ]; do echo "$M $i"; i=$((i + 1)); done > /marker.txt
sync
echo "$(sha256sum /marker.txt | cut -d' ' -f1)  /marker.txt" >> "$SUMS"
assert_eq marker-search-finds-it 2000 "$(tr -c 'a-z0-9-' '\n' < /marker.txt | grep -cxF "$M")"

# ---- refusals: nothing written to the target -----------------------------------------------------------------------
W0=$(written $TGT)
refusal() {  # refusal NAME WANT ARGS...
  _n=$1 _w=$2; shift 2
  timeout 60 rootshift migrate $TGT --yes "$@" > /tmp/r.out 2> /tmp/r.err < /dev/null; _rc=$?
  { echo "== $_n: rootshift migrate $TGT --yes $*"; echo "exit=$_rc"; cat /tmp/r.err; } >> "$RES/refusals.txt"
  check refuse-$_n "exit=$_rc: $(head -2 /tmp/r.err | tr '\n' '|' | cut -c1-300)" sh -c "[ $_rc = 2 ] && grep -qF -- '$_w' /tmp/r.err"
}
refusal used-only-copy "copied whole" --copy used --key-file $KEY
# (setsid: no controlling terminal to ask on)
timeout 60 setsid rootshift migrate $TGT --yes > /tmp/r.out 2> /tmp/r.err < /dev/null; rc=$?
{ echo "== no-key: setsid rootshift migrate $TGT --yes"; echo "exit=$rc"; cat /tmp/r.err; } >> "$RES/refusals.txt"
check refuse-no-key "exit=$rc: $(head -2 /tmp/r.err | tr '\n' '|' | cut -c1-300)" sh -c "[ $rc = 2 ] && grep -qF -- '--key-file' /tmp/r.err"
printf 'not the passphrase' > /tmp/wrong.key
refusal wrong-key "does not open the LUKS container" --key-file /tmp/wrong.key
assert_eq refusals-wrote-nothing "$W0" "$(written $TGT)"
assert_eq refusals-left-one-leg "$(devnum $SRC)" "$(rootshift status --json | jq -r '.wrappers[0].legs | map(.dev) | join(",")')"

# ---- the move ------------------------------------------------------------------------------------------------------
step prefill-24MiB prefill /data 6 4
writer_start /live 150
writer_wait_more 2 60; check writer-running-before-migrate "files=$(writer_count)" [ "$(writer_count)" -ge 2 ]
t_start=$(now_cs)
timeout 400 rootshift migrate $TGT --yes --json --key-file $KEY > /tmp/migrate.json 2> /tmp/migrate.err; rc=$?
t_end=$(now_cs)
cp /tmp/migrate.json /tmp/migrate.err "$RES/"
say "migrate exit=$rc in $(fmt_cs $((t_end - t_start)))s; stderr: $(tail -5 /tmp/migrate.err | tr '\n' '|')"
figure migrate_s "$(fmt_cs $((t_end - t_start)))"
check migrate-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/migrate.err | tr '\n' '|')" [ $rc = 0 ]
check_events json-events-documented /tmp/migrate.json
switch_figures /tmp/migrate.json
EV=$(jq -r '.event' /tmp/migrate.json 2>/dev/null | uniq | tr '\n' ' ')
check events-in-order "events: $EV" sh -c "echo ' $EV' | grep -qE ' switched (.* )?crypt-grown (.* )?grown (.* )?source-id (.* )?done'"
assert_eq copy-mode-full full "$(jq -r 'select(.event=="copy") | .copy_mode' /tmp/migrate.json)"
during=$(writer_count_between "$t_start" "$t_end")
check writer-wrote-during-migrate "$during files between migrate start and end" [ "$during" -ge 1 ]

# ---- after -------------------------------------------------------------------------------------------------------
assert_eq wrapper-on-target-alone "$(devnum $TGT)" "$(rootshift status --json | jq -r '.wrappers[0].legs | map(.dev) | join(",")')"
assert_eq wrapper-over-vdb vdb "$(ls /sys/block/$DM/slaves)"
assert_eq mapping-still-over-wrapper "$DM" "$(ls /sys/block/$CRYPTK/slaves)"
assert_eq target-holds-the-container "$U" "$(luks_uuid $TGT)"
OLD=$(luks_uuid $SRC)
check old-header-new-uuid "vda: $OLD (the container: $U); event: $(jq -c 'select(.event=="source-id")' /tmp/migrate.json)" \
  [ -n "$OLD" -a "$OLD" != "$U" ]
MAPB=$(( $(sectors $MAP) * 512 )); TGTB=$(( $(sectors $TGT) * 512 ))
figure mapping_mib $((MAPB / MiB))
check mapping-fills-target "luks-root $MAPB bytes, vdb $TGTB (the LUKS2 header: 16 MiB)" \
  [ $((TGTB - MAPB)) -gt 0 -a $((TGTB - MAPB)) -le $((32 * MiB)) ]
B1=$(fs_bytes)
figure fs_after_mib $((B1 / MiB))
check fs-grown-to-mapping "statfs $B1 bytes, luks-root $MAPB" [ "$B1" -gt $((MAPB * 9 / 10)) ]
n0=$(writer_count); writer_wait_more 3 60; n1=$(writer_count)
check writer-continues-after-switch "files: $n0 then $n1" [ $((n1 - n0)) -ge 3 ]
step writer-stop-no-errors writer_stop
sync; echo 3 > /proc/sys/vm/drop_caches
# Where the marker's first and last blocks are: the filesystem's block numbers (debugfs bmap), so their bytes are
# read on the mapping (plaintext) and at the same place in the raw target, past the LUKS payload offset. (A search
# of the whole raw devices is no option here: grep reads a device as one endless line and runs out of memory, and
# splitting it with tr takes minutes per GiB under TCG.)
OFF=$(cryptsetup status luks-root | awk '$1 == "offset:" {print $2}')
NB=$(( ($(stat -c %s /marker.txt) + 4095) / 4096 ))
for b in 0 $((NB - 1)); do
  P=$(debugfs -R "bmap /marker.txt $b" $MAP 2>/dev/null)
  say "marker block $b: filesystem block $P, payload offset $OFF sectors"
  check marker-block-$b-located "fs block '$P'" [ -n "$P" -a "$P" -gt 0 ] || continue
  dd if=$MAP bs=4096 skip=$P count=1 2>/dev/null > /tmp/plain.blk
  dd if=$TGT bs=512 skip=$((OFF + P * 8)) count=8 2>/dev/null > /tmp/raw.blk
  dd if=$SRC bs=512 skip=$((OFF + P * 8)) count=8 2>/dev/null > /tmp/rawsrc.blk
  check marker-block-$b-through-mapping "" grep -qF "$M" /tmp/plain.blk
  assert_eq marker-block-$b-not-in-raw-target 0 "$(grep -cF "$M" /tmp/raw.blk)"
  check marker-block-$b-raw-is-not-plaintext "" sh -c "! cmp -s /tmp/plain.blk /tmp/raw.blk"
  assert_eq marker-block-$b-not-in-raw-source 0 "$(grep -cF "$M" /tmp/rawsrc.blk)"
  check marker-block-$b-ciphertext-moved "" cmp -s /tmp/raw.blk /tmp/rawsrc.blk
done
step verify-all-checksums verify_sums
mount -o remount,ro / || say "remount read-only failed"
e2fsck -fn $MAP > "$RES/fsck.txt" 2>&1; rc=$?
check fsck-root-clean "exit=$rc: $(tail -2 "$RES/fsck.txt" | tr '\n' '|')" [ $rc = 0 ]
scenario_done
