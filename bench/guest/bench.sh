#!/bin/sh
# Guest half of bench/run (busybox sh, PID 1's child on the rootshift root). Sourced by the generated scenario
# /vmtest/scenarios/bench-<backend>.sh, which carries the `# vm-backend:` header; parameters come from
# /vmtest/bench/plan (written by bench/run). Measures only: every figure goes as one JSON line to $RES/bench.jsonl,
# the host computes medians, spreads and ratios. See bench/README.md for what each row means.
. /vmtest/lib.sh
. /vmtest/bench/plan
BACKEND=$(backend)
OUT=$RES/bench.jsonl
DD=/vmtest/bench/bin/dd    # coreutils dd (iflag=direct) by path: busybox's applet would shadow a bare `dd`
FIO=/vmtest/bench/bin/fio
: > "$OUT"
bsay() { echo "vmtest: bench: $*"; }
# emit KEY=JSONVALUE ... : one JSON object per line in $OUT (values must be valid JSON: quote strings with js)
emit() { _l="{"; _sep=""; for _kv in "$@"; do _l="$_l$_sep\"${_kv%%=*}\":${_kv#*=}"; _sep=","; done; echo "$_l}" >> "$OUT"; }
js() { jq -Rn --arg s "$1" '$s'; }   # a shell string as a JSON string
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# Before each measurement only `sync` (no dirty data pending): dropping the page cache would make every rootshift
# start cold, which under TCG costs 0.3-1.4 s of page faults before its first line (measured), noise unrelated
# to the copy. Both the copy (dm-io/kcopyd, md resync) and dd (O_DIRECT) bypass the page cache anyway.
settle() { sync; }

# ---- what we run on ----------------------------------------------------------------------------------------------
HAVE_COPY=0; rootshift migrate --help 2>/dev/null | grep -q -- '--copy' && HAVE_COPY=1
HAVE_SW=0; rootshift testing switch-window --help > /dev/null 2>&1 && HAVE_SW=1
emit kind='"meta"' backend="$(js "$BACKEND")" kernel="$(js "$(uname -r)")" \
  rootshift_sha256="$(js "$(cut -c1-16 /vmtest/rootshift.sha256)")" \
  rootshift_version="$(js "$(rootshift --version 2>&1 | head -1)")" \
  cpu="$(js "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')")" \
  mem_kib="$(awk '/MemTotal/{print $2}' /proc/meminfo)" have_copy_flag=$HAVE_COPY have_switch_window=$HAVE_SW \
  fio_version="$(js "$($FIO --version 2>&1)")" dd_version="$(js "$($DD --version 2>&1 | head -1)")" \
  migrate_args="$(js "$MIGRATE_ARGS")" limit_args="$(js "$(eval echo \$LIMIT_$BACKEND)")"
bsay "backend=$BACKEND kernel=$(uname -r) --copy flag: $HAVE_COPY, testing switch-window: $HAVE_SW"

# ---- the bench filesystems: one rootshift wrapper per disk pair, mounted at /mnt/NAME --------------------------
# DISKS="NAME:A:B ..."; the wrapper starts on A (prefilled on the host); CUR_NAME/OTH_NAME track where it is now.
setup() {
  for _d in $DISKS; do
    _n=${_d%%:*}; _r=${_d#*:}; _a=${_r%%:*}; _b=${_r#*:}
    rootshift wrap --backend "$BACKEND" --name "$_n" /dev/$_a > /tmp/wrap.out 2> /tmp/wrap.err || {
      bsay "wrap $_n on $_a failed: $(cat /tmp/wrap.err)"; return 1; }
    _node=$(head -1 /tmp/wrap.out)
    mkdir -p /mnt/$_n
    mount -t ext4 "$_node" /mnt/$_n || { bsay "mount $_node failed"; return 1; }
    eval "CUR_$_n=$_a OTH_$_n=$_b NODE_$_n=$_node"
    _st=$(stat -f -c '%b %f %S' /mnt/$_n)
    emit kind='"disk"' name="$(js "$_n")" a="$(js "$_a")" b="$(js "$_b")" node="$(js "$_node")" \
      bytes="$(blockdev --getsize64 /dev/$_a)" b_bytes="$(blockdev --getsize64 /dev/$_b)" \
      fs_blocks="${_st%% *}" fs_free="$(echo "$_st" | cut -d' ' -f2)" fs_bsize="${_st##* }"
    bsay "wrapper $_n: $_node over $_a ($(( $(blockdev --getsize64 /dev/$_a) >> 20 )) MiB), spare $_b; $(df -k /mnt/$_n | tail -1 | awk '{print $3 " KiB used of " $2 " (" $5 ")"}')"
  done
}
step bench-setup setup || { scenario_done; exit 1; }
drop_caches

# ---- B1: raw O_DIRECT copy of the source range onto the spare disk ------------------------------------------------
rawdd() {  # rawdd LABEL NAME ROUND BLOCKSIZE_KIB
  eval "_s=\$CUR_$2 _t=\$OTH_$2"
  _bytes=$(blockdev --getsize64 /dev/$_s)
  settle
  _t0=$(now_cs)
  $DD if=/dev/$_s of=/dev/$_t bs=$4K count=$((_bytes / ($4 * 1024))) iflag=direct oflag=direct 2> /tmp/dd.err; _rc=$?
  _t1=$(now_cs)
  # coreutils: "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 9.8765 s, 109 MB/s"
  _ds=$(tail -1 /tmp/dd.err | sed -n 's/.* copied, \([0-9.]*\) s,.*/\1/p')
  emit kind='"run"' row="$(js "$1")" name="$(js "$2")" round=$3 rc=$_rc from="$(js "$_s")" to="$(js "$_t")" \
    bytes=$_bytes bs_kib=$4 wall_s="$(fmt_cs $((_t1 - _t0)))" dd_s="${_ds:-null}" err="$(js "$(tail -1 /tmp/dd.err)")"
  bsay "$1 round $3: dd bs=$4K $_s -> $_t $((_bytes >> 20)) MiB in ${_ds:-?}s (rc=$_rc)"
}

# ---- B2/B3/B4: rootshift migrate of wrapper NAME onto its spare disk ----------------------------------------------
# mig LABEL NAME ROUND MODE [EXTRA ARGS...] : MODE used|full|auto ("-" = pass no --copy flag)
# Sets MIG_RC and MIG_MODE (copy_mode of the done event). A refusal of --copy used (exit 2) is recorded and retried
# with --copy auto, so a backend without used-only copies still gets a (full-copy) figure, labelled as such.
mig() {
  _lab=$1 _n=$2 _rd=$3 _mode=$4; shift 4
  eval "_s=\$CUR_$_n _t=\$OTH_$_n"
  _copy=""; [ "$_mode" != - ] && [ $HAVE_COPY = 1 ] && _copy="--copy $_mode"
  settle
  _t0=$(now_cs)
  # stdout lines are stamped on arrival (uptime, centiseconds) for the phase breakdown
  ( timeout 1200 rootshift migrate /dev/$_t --name "$_n" --yes --json --force $_copy $MIGRATE_ARGS "$@" \
      2> /tmp/m.err; echo $? > /tmp/m.rc ) | while IFS= read -r _l; do echo "$(now_cs) $_l"; done > /tmp/m.ts
  _t1=$(now_cs)
  MIG_RC=$(cat /tmp/m.rc)
  cut -d' ' -f2- /tmp/m.ts > /tmp/m.json
  # seconds from the start of the command to the first line of each event (and to the last progress line)
  _ph=$(awk -v t0=$_t0 '{ if (match($0, /"event":"[a-z-]+"/)) { e = substr($0, RSTART + 9, RLENGTH - 10)
          if (e == "progress") last = $1
          if (!(e in seen)) { seen[e] = 1; o = o sep "\"" e "\":" ($1 - t0) / 100; sep = "," } } }
        END { if (last) o = o sep "\"progress_last\":" (last - t0) / 100; print "{" o "}" }' /tmp/m.ts)
  _done=$(jq -c 'select(.event=="done")' /tmp/m.json 2>/dev/null | tail -1)
  _sw=$(jq -c 'select(.event=="switched")' /tmp/m.json 2>/dev/null | tail -1)
  _start=$(jq -c 'select(.event=="start")' /tmp/m.json 2>/dev/null | head -1)
  _cp=$(jq -c 'select(.event=="copy")' /tmp/m.json 2>/dev/null | head -1)
  MIG_MODE=$(echo "${_done:-null}" | jq -r '.copy_mode // "?"')
  emit kind='"run"' row="$(js "$_lab")" name="$(js "$_n")" round=$_rd rc=$MIG_RC from="$(js "$_s")" to="$(js "$_t")" \
    mode_asked="$(js "$_mode")" args="$(js "$_copy $MIGRATE_ARGS $*")" wall_s="$(fmt_cs $((_t1 - _t0)))" \
    done="${_done:-null}" switched="${_sw:-null}" start="${_start:-null}" copy="${_cp:-null}" phases="${_ph:-null}" \
    err="$(js "$(tail -3 /tmp/m.err)")"
  bsay "$_lab round $_rd: migrate $_n $_s -> $_t ${_copy:-(default copy)} $*: exit $MIG_RC in $(fmt_cs $((_t1 - _t0)))s, mode=$MIG_MODE copied=$(echo "${_done:-null}" | jq -r '.copied_bytes // "?"') $(tail -1 /tmp/m.err)"
  if [ $MIG_RC = 0 ]; then
    eval "CUR_$_n=$_t OTH_$_n=$_s"
  elif [ $MIG_RC = 2 ] && [ "$_mode" = used ]; then
    { echo "== $_lab $_n: --copy used refused:"; cat /tmp/m.err; } >> "$RES/refusals.txt"
    USED_REFUSED=1
    mig "$_lab" "$_n" "$_rd" auto "$@"
  else
    { echo "== $_lab $_n round $_rd exit $MIG_RC"; cat /tmp/m.err; tail -5 /tmp/m.json; } >> "$RES/migrate-errors.txt"
  fi
}

# ---- B1, B2, B3 interleaved; the order is reversed every other round (A B C, C B A, ...) to cancel drift -----------
# B1b: dd at the request size of the kernel's copy engines (kcopyd/md resync issue small I/Os; under TCG the cost per
# request, not per byte, dominates). B2r/B3r: the same copies at another region size (dm only; none in the plan: skip).
USED_REFUSED=0
# on a backend that refuses --copy used, B3 is measured once (as the full copy it falls back to), not every round
b3() { [ $USED_REFUSED = 1 ] || mig B3 pct10 $r used; }
b2r() { [ "$BACKEND" = dm ] && [ -n "$ALT_FULL_REGION" ] && mig B2r full $r full --region-size $ALT_FULL_REGION; }
b3r() { [ "$BACKEND" = dm ] && [ -n "$ALT_USED_REGION" ] && mig B3r pct10 $r used --region-size $ALT_USED_REGION; }
b1b() { [ -n "$SMALL_DD_KIB" ] && rawdd B1b full $r $SMALL_DD_KIB; }
r=1
while [ $r -le "$ROUNDS_COPY" ]; do
  if [ $((r % 2)) = 1 ]; then
    rawdd B1 full $r 4096; b1b; mig B2 full $r full; b2r; b3; b3r
  else
    b3r; b3; b2r; mig B2 full $r full; b1b; rawdd B1 full $r 4096
  fi
  r=$((r + 1))
done

# ---- B4: used-only at a fixed amount of data, growing device sizes (rotated order per round) -----------------------
r=1; rounds=$ROUNDS_SWEEP
while [ $r -le $rounds ]; do
  set -- $SWEEP
  case $((r % 3)) in 2) set -- $3 $1 $2;; 0) set -- $2 $3 $1;; esac
  for n in "$@"; do
    mig B4 $n $r used
    # no used-only copy on this backend: the sweep is a plain full-copy size scan, one round is enough
    [ "$MIG_MODE" = full ] && rounds=1
  done
  r=$((r + 1))
done

# ---- B5: foreground fio random writes on a bench fs, idle vs during a copy of that same device --------------------
FIO_FS=/mnt/$FIO_ON
# fio_fg : the measured foreground load; sets FIO_RC and FIO_W (one JSON object of the figures, or empty)
fio_fg() {
  $FIO --name=fg --filename=$FIO_FS/fio.dat --size=64M --rw=randwrite --bs=4k --ioengine=psync --direct=1 \
    --runtime="$FIO_SECONDS" --time_based --randrepeat=1 --output-format=json > /tmp/fio.json 2> /tmp/fio.err
  FIO_RC=$?
  FIO_W=$(jq -c '.jobs[0].write | {bw_bytes, iops, runtime_ms: .runtime, lat_mean_ns: .clat_ns.mean,
              p50_ns: .clat_ns.percentile["50.000000"], p99_ns: .clat_ns.percentile["99.000000"],
              p999_ns: .clat_ns.percentile["99.900000"], max_ns: .clat_ns.max}' /tmp/fio.json 2>/dev/null)
}
fio_txt() { echo "${FIO_W:-null}" | jq -r '"\(.bw_bytes / 1048576 * 10 | floor / 10) MiB/s \(.iops | floor) IOPS p99 \(.p99_ns / 1000 | floor) us"' 2>/dev/null; }
fio_run() {  # fio_run LABEL ROUND
  fio_fg
  emit kind='"run"' row="$(js "$1")" name="$(js "$FIO_ON")" round=$2 rc=$FIO_RC fio="${FIO_W:-null}" \
    err="$(js "$(tail -2 /tmp/fio.err)")"
  bsay "$1 round $2: fio rc=$FIO_RC $(fio_txt)"
}
# fio_during LABEL ROUND [MIGRATE ARGS...]: start a full copy of $FIO_ON in the background, wait until it copies,
# run fio, then SIGTERM the migration (documented: rolls back to the source, exit 3) unless it already finished.
fio_during() {
  _lab=$1 _rd=$2; shift 2
  eval "_s=\$CUR_$FIO_ON _t=\$OTH_$FIO_ON"
  _copy=""; [ $HAVE_COPY = 1 ] && _copy="--copy full"
  rootshift migrate /dev/$_t --name "$FIO_ON" --yes --json --force $_copy $MIGRATE_ARGS "$@" > /tmp/bg.json 2> /tmp/bg.err &
  _pid=$!
  _i=0
  while [ $_i -lt 600 ]; do   # until the first progress event with copied bytes (60 s at most)
    jq -e 'select(.event=="progress" and (.done_bytes // 0) > 0)' /tmp/bg.json > /dev/null 2>&1 && break
    kill -0 $_pid 2>/dev/null || break
    sleep 0.1; _i=$((_i + 1))
  done
  _p0=$(jq -c 'select(.event=="progress")' /tmp/bg.json 2>/dev/null | tail -1)
  _t0=$(now_cs)
  kill -0 $_pid 2>/dev/null; _alive0=$?
  fio_fg
  _t1=$(now_cs)
  _p1=$(jq -c 'select(.event=="progress")' /tmp/bg.json 2>/dev/null | tail -1)
  if kill -0 $_pid 2>/dev/null; then _alive1=1; kill -TERM $_pid; else _alive1=0; fi
  wait $_pid; _mrc=$?
  _info=$(jq -nc --argjson a "${_p0:-null}" --argjson b "${_p1:-null}" --arg args "$_copy $MIGRATE_ARGS $*" \
    --argjson alive0 $((1 - _alive0)) --argjson alive1 $_alive1 --argjson mrc $_mrc --argjson secs "$(fmt_cs $((_t1 - _t0)))" \
    '{progress_before: $a, progress_after: $b, args: $args, copy_running_at_start: ($alive0 == 1),
      copy_running_at_end: ($alive1 == 1), migrate_exit: $mrc, fio_wall_s: $secs}')
  emit kind='"run"' row="$(js "$_lab")" name="$(js "$FIO_ON")" round=$_rd rc=$FIO_RC fio="${FIO_W:-null}" during="$_info" \
    err="$(js "$(tail -2 /tmp/fio.err) $(tail -2 /tmp/bg.err)")"
  bsay "$_lab round $_rd: fio rc=$FIO_RC $(fio_txt); copy running start/end: $((1 - _alive0))/$_alive1, migrate exit $_mrc, copy done_bytes $(echo "${_p0:-null}" | jq -r '.done_bytes // "?"') -> $(echo "${_p1:-null}" | jq -r '.done_bytes // "?"')"
  if [ $_mrc = 0 ]; then eval "CUR_$FIO_ON=$_t OTH_$FIO_ON=$_s"; fi
  [ $_mrc = 0 ] || [ $_mrc = 3 ] || { echo "== $_lab round $_rd migrate exit $_mrc"; cat /tmp/bg.err; } >> "$RES/migrate-errors.txt"
}
# lay the file out once (not measured), then idle / during / during-limited, interleaved
$FIO --name=layout --filename=$FIO_FS/fio.dat --size=64M --rw=write --bs=1M --fallocate=none --create_only=1 > /dev/null 2>&1
$FIO --name=warm --filename=$FIO_FS/fio.dat --size=64M --rw=randwrite --bs=4k --ioengine=psync --direct=1 \
  --runtime=2 --time_based > /dev/null 2>&1
eval "LIMIT=\$LIMIT_$BACKEND"
r=1
while [ $r -le "$ROUNDS_FIO" ]; do
  fio_run B5-idle $r
  fio_during B5-copy $r
  [ -n "$LIMIT" ] && fio_during B5-limited $r $LIMIT
  r=$((r + 1))
done
rm -f $FIO_FS/fio.dat; sync

# ---- B6: the switch's critical section on the root wrapper, N times ------------------------------------------------
if [ "$BACKEND" = md ]; then
  # md has no suspend: its switch is SET_DISK_FAULTY + HOT_REMOVE, timed in the migrations' done events
  emit kind='"run"' row='"B6"' name='"root"' round=1 rc=0 result=null skipped='"md: no suspend window (testing switch-window is dm-only)"'
elif [ $HAVE_SW = 1 ]; then
  timeout 600 rootshift testing switch-window "$SWITCHES" > /tmp/sw.json 2> /tmp/sw.err; rc=$?
  l=$(jq -c 'select(has("windows_ms"))' /tmp/sw.json 2>/dev/null | tail -1)
  emit kind='"run"' row='"B6"' name='"root"' round=1 rc=$rc result="${l:-null}" err="$(js "$(tail -3 /tmp/sw.err)")"
  bsay "B6: exit $rc $(head -c 300 /tmp/sw.json) $(tail -1 /tmp/sw.err)"
else
  emit kind='"run"' row='"B6"' name='"root"' round=1 rc=127 result=null err='"rootshift testing switch-window: not in this build"'
fi

# ---- the end: where each wrapper is, fs checks of every bench fs (read-only, unmounted) ------------------------------
for d in $DISKS; do
  n=${d%%:*}
  eval "c=\$CUR_$n node=\$NODE_$n"
  umount /mnt/$n || bsay "umount /mnt/$n failed"
  e2fsck -fn "$node" > /tmp/fsck.out 2>&1; rc=$?
  emit kind='"final"' name="$(js "$n")" on="$(js "$c")" fsck_rc=$rc fsck="$(js "$(tail -2 /tmp/fsck.out)")" \
    status="$(rootshift status --name "$n" --json 2>/dev/null | jq -c . 2>/dev/null || echo null)"
  bsay "final $n on $c, e2fsck -fn exit $rc"
done
step bench-finished true
scenario_done
