# Shared by the bench guest scripts (bench.sh, b6.sh; bench/run ships this as /vmtest/bench/common.sh): the
# JSON-lines output, the meta row, the bench filesystems' setup, `mig`, the B6 rows and the final checks.
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

# b6_rows : the B6 rows (switch window on the root wrapper)
b6_rows() {
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
}

# finish_bench : where each wrapper is, fs checks of every bench fs, the end of the scenario
finish_bench() {
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
}
