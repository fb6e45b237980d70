#!/bin/sh
# Guest half of bench/run (busybox sh, PID 1's child on the rootshift root). Sourced by the generated scenario
# /vmtest/scenarios/bench-<backend>.sh, which carries the `# vm-backend:` header; parameters come from
# /vmtest/bench/plan (written by bench/run). Measures only: every figure goes as one JSON line to $RES/bench.jsonl,
# the host computes medians, spreads and ratios. See bench/README.md for what each row means.
. /vmtest/bench/common.sh

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

b6_rows
finish_bench
