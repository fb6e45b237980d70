# Helpers shared by the guest init, the scenario PID 1 and the scenario scripts (busybox sh).
# Results live on tmpfs in $RES (moved across switch_root with /run) and are shipped as a tar on the results disk.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
RES=${VMTEST_RES:-/run/vmtest/results}   # VMTEST_RES: vm-tests/check-selftest runs these helpers on the host
SYSFS=${VMTEST_SYSFS:-/sys}
mkdir -p "$RES" 2>/dev/null
SUMS=$RES/sums
FAILS=0
# Debian's static busybox runs its own applets in preference to $PATH (even via `timeout`), so tools that exist as
# both an applet and a real binary are called by absolute path where the difference matters.
SHA256SUM=/usr/bin/sha256sum SETPRIV=/usr/bin/setpriv LOSETUP=/usr/sbin/losetup   # losetup: busybox's has no --show

now_cs() { read -r up _ < /proc/uptime; echo "${up%.*}${up#*.}"; }   # uptime in centiseconds
fmt_cs() { printf '%d.%02d' $(($1 / 100)) $(($1 % 100)); }
say() { echo "vmtest: $*"; }

# record NAME OK|FAIL CENTISECONDS [DETAIL...] -> one "STEP name OK|FAIL 1.23s detail" line in $RES/steps.txt
record() {
  _n=$1 _r=$2 _e=$3; shift 3
  [ "$_r" = OK ] || FAILS=$((FAILS + 1))
  printf 'STEP %-34s %-4s %ss%s\n' "$_n" "$_r" "$(fmt_cs "$_e")" "${*:+  $*}" | tee -a "$RES/steps.txt"
}

# step NAME CMD ARGS... : run a command, time it, record OK on exit 0 and FAIL otherwise (returns the same status)
step() {
  _sn=$1; shift
  _s=$(now_cs)
  "$@"; _rc=$?
  if [ $_rc = 0 ]; then record "$_sn" OK $(( $(now_cs) - _s )); else record "$_sn" FAIL $(( $(now_cs) - _s )) "exit=$_rc: $*"; fi
  return $_rc
}

# check NAME DETAIL CMD ARGS... : an assertion; DETAIL (observed values) is printed whatever the outcome
check() {
  _cn=$1 _cd=$2; shift 2
  if "$@"; then record "$_cn" OK 0 "$_cd"; return 0; else record "$_cn" FAIL 0 "$_cd"; return 1; fi
}
assert_eq() { check "$1" "expected='$2' observed='$3'" [ "$2" = "$3" ]; }   # assert_eq NAME EXPECTED OBSERVED
# assert_contains NAME FILE SUBSTRING : fixed-string match
assert_contains() { check "$1" "'$3' in $(basename "$2"): $(head -c 300 "$2" | tr '\n' '|')" grep -qF -- "$3" "$2"; }

# figure KEY VALUE : a key figure shown on the suite's summary line
figure() { echo "$1=$2" >> "$RES/figures"; say "figure $1=$2"; }

# ---- data with checksums taken from a tmpfs copy before it is written to the fs under test -------------------------
# mkfile PATH MIB
mkfile() {
  _t=/tmp/blob.$$.$(echo "$1" | tr / _)
  head -c $(($2 * 1048576)) /dev/urandom > "$_t" || { rm -f "$_t"; return 1; }
  _h=$($SHA256SUM "$_t" | cut -d' ' -f1)
  cp "$_t" "$1" || { rm -f "$_t"; return 1; }
  rm -f "$_t"
  echo "$_h  $1" >> "$SUMS"
}
# prefill DIR COUNT MIB
prefill() { mkdir -p "$1" || return 1; _i=0; while [ $_i -lt "$2" ]; do mkfile "$1/f$_i" "$3" || return 1; _i=$((_i + 1)); done; sync; }

# writer_start DIR MAXFILES : background writer of checksummed 1 MiB files; logs "index uptime_cs" per finished file
writer_start() {  # writer_start DIR MAXFILES [PAUSE-SECONDS-BETWEEN-FILES]
  rm -f /tmp/writer.stop /tmp/writer.log /tmp/writer.err
  mkdir -p "$1"
  ( i=0
    while [ ! -e /tmp/writer.stop ] && [ $i -lt "$2" ]; do
      if mkfile "$1/w$i" 1; then echo "$i $(now_cs)" >> /tmp/writer.log; else echo "write error at w$i" >> /tmp/writer.err; break; fi
      i=$((i + 1))
      [ -n "$3" ] && sleep "$3"
    done ) &
  WRITER_PID=$!
  say "writer started (pid $WRITER_PID) in $1"
}
writer_count() { [ -f /tmp/writer.log ] && wc -l < /tmp/writer.log || echo 0; }
# writer_count_between FROM_CS TO_CS : files completed in that window
writer_count_between() { [ -f /tmp/writer.log ] && awk -v a="$1" -v b="$2" '$2 >= a && $2 <= b' /tmp/writer.log | wc -l || echo 0; }
# writer_wait_more N TIMEOUT_S : wait until N more files completed than now
writer_wait_more() {
  _base=$(writer_count); _dl=$(( $(now_cs) + $2 * 100 ))
  while [ $(( $(writer_count) - _base )) -lt "$1" ]; do
    [ "$(now_cs)" -gt $_dl ] && return 1
    kill -0 "$WRITER_PID" 2>/dev/null || return 1
    sleep 0.2
  done
}
writer_stop() { touch /tmp/writer.stop; wait "$WRITER_PID"; sync; [ ! -s /tmp/writer.err ]; }

# verify_sums : sync, drop caches, re-read every checksummed file from the fs under test
verify_sums() {
  sync; echo 3 > /proc/sys/vm/drop_caches
  _n=$(wc -l < "$SUMS")
  if $SHA256SUM -c --quiet "$SUMS" > /tmp/verify.out 2>&1; then
    say "verified $_n files"; return 0
  else
    say "CHECKSUM MISMATCH ($_n files checked):"; head -20 /tmp/verify.out; cp /tmp/verify.out "$RES/verify-failures.txt"; return 1
  fi
}

# ---- the fault report (vm-tests/RESULTS.md) ------------------------------------------------------------------------
# sums_bytes [SUMSFILE] : bytes of all the checksummed files listed (what a verify_sums re-reads)
sums_bytes() { awk '{print $2}' "${1:-$SUMS}" | while read -r f; do stat -c %s "$f" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }
# fault_case : a fault case starts here; fault_row then reports it only if no assertion failed since.
# fault_row FAULT BACKEND OUTCOME BYTES_VERIFIED : one row of the fault table (tab-separated in $RES/faults), written
# only when every assertion of this case (since the last fault_case, or since the scenario started) held.
CASE_FAILS=0
fault_case() { CASE_FAILS=$FAILS; }
fault_row() {
  if [ "$FAILS" != "$CASE_FAILS" ]; then
    say "fault row NOT written ($((FAILS - CASE_FAILS)) assertion(s) of this case failed): $1 | $2"
  else
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RES/faults"; say "fault row: $1 | $2 | $3 | $4 bytes verified"
  fi
  CASE_FAILS=$FAILS
}

# any_suspended BACKEND : 1 when any dm device is suspended, or (md) the wrapper array is not in a running state
any_suspended() {
  _s=0
  for _d in "$SYSFS"/block/dm-*/dm/suspended; do [ -e "$_d" ] && [ "$(cat "$_d")" != 0 ] && _s=1; done
  if [ "$1" = md ]; then
    _st=$(cat "$SYSFS/block/md_rootshift-root/md/array_state" 2>/dev/null || echo missing)
    case "$_st" in clean|active|active-idle|write-pending|read-auto) ;; *) _s=1;; esac
  fi
  echo $_s
}
# wrapper_is BACKEND KNAME : the kernel device KNAME is the root wrapper of that backend (dm-N named rootshift-root,
# or the md array md_rootshift-root) — and not the other backend's
wrapper_is() {
  if [ "$1" = md ]; then [ "$2" = md_rootshift-root ]
  else [ "$(cat "$SYSFS/block/$2/dm/name" 2>/dev/null)" = rootshift-root ]; fi
}

# ---- md copy speed limits (issue 22 §1) ------------------------------------------------------------------------
# What rootshift sets on the md array for a copy without --rate-limit, as md prints "sync_speed_min|sync_speed_max"
# (src/backend/md_raid1.rs SPEED_FLOOR_KIB, SPEED_MAX_KIB): a 50 MiB/s floor and no practical cap (i32::MAX KiB/s)
MD_COPY_SPEEDS="51200 (local)|2147483647 (local)"
# md_speeds NAME : array NAME's limits as md prints them, "sync_speed_min|sync_speed_max" ("1000 (system)|200000
# (system)" with no per-array value); "missing" for a file that cannot be read
md_speeds_read() {  # sets _mn _mx (no subshell: the sampler below runs it often)
  _mn=missing _mx=missing
  read -r _mn 2>/dev/null < "$SYSFS/block/$1/md/sync_speed_min"
  read -r _mx 2>/dev/null < "$SYSFS/block/$1/md/sync_speed_max"
}
md_speeds() { md_speeds_read "$1"; echo "$_mn|$_mx"; }
# md_speeds_system NAME : neither limit of array NAME has a per-array value (both read "N (system)")
md_speeds_system() { case "$(md_speeds "$1")" in *" (system)|"*" (system)") return 0;; *) return 1;; esac; }
# md_speed_sample NAME : one "min|max" line, printed only when sync_completed reads "DONE / TOTAL" both before and
# after the limits are read: the limits in force while md's copy thread runs. (sync_action alone is not enough: it
# reads "recover" for a moment whenever md re-checks an array, e.g. after the switch fails the source, with no copy
# running; sync_completed then reads "none" or "delayed". md.c md_sync_action, sync_completed_show.)
md_speed_sample() {
  _c0= _c1=
  read -r _c0 2>/dev/null < "$SYSFS/block/$1/md/sync_completed"
  md_speeds_read "$1"
  read -r _c1 2>/dev/null < "$SYSFS/block/$1/md/sync_completed"
  case "$_c0" in [0-9]*" / "[0-9]*) ;; *) return 1;; esac
  case "$_c1" in [0-9]*" / "[0-9]*) echo "$_mn|$_mx";; *) return 1;; esac
}
# md_speed_watch NAME FILE [EVENTS] : sample array NAME every 0.1 s into FILE in the background until
# md_speed_watch_stop, or until EVENTS (a --json stream being written) shows the `switched` event: from there on
# the copy is over and rootshift gives the limits back, while md may still run its own resync (the grow) or re-check
# the array. A sample whose limits were read before the event was seen is kept; one read after it is dropped.
md_speed_watch() {
  rm -f "$2.stop"; : > "$2"; MDSPEED_FILE=$2
  ( while [ ! -e "$2.stop" ]; do
      _s=$(md_speed_sample "$1")
      [ -n "$3" ] && grep -q '"event":"switched"' "$3" 2>/dev/null && break
      [ -n "$_s" ] && echo "$_s" >> "$2"
      sleep 0.1
    done ) &
  MDSPEED_PID=$!
}
md_speed_watch_stop() { touch "$MDSPEED_FILE.stop"; wait "$MDSPEED_PID"; }
# md_samples_all FILE EXPECTED : FILE holds at least one sample and every sample is EXPECTED
md_samples_all() { [ -s "$1" ] && ! grep -qvxF -- "$2" "$1"; }
md_samples_summary() { echo "$(wc -l < "$1") samples while md copied: $(sort "$1" | uniq -c | sed 's/^ *//' | tr '\n' ';')"; }

# switch_figures FILE : the switch's timing from a --json stream's `switched` event (issue 22 §4): the window, the
# suspend ioctl within it (dm), the syncfs before it
switch_figures() {
  for _k in window_ms suspend_ms presync_ms; do
    figure "$_k" "$(jq -r "select(.event == \"switched\") | .$_k" "$1" 2>/dev/null | tail -1)"
  done
  # issue 22 §3d: what the migration cost in memory (bench/fullsys collects it)
  figure peak_rss_kib "$(jq -r 'select(.event == "done") | .peak_rss_kib' "$1" 2>/dev/null | tail -1)"
}

# check_events NAME FILE : every line of a --json stream is an object with "event" and "version" 1, names an event
# docs/events.json documents, and carries that event's documented fields (docs/json.md)
check_events() {
  _bad=$(jq -c --slurpfile doc "${EVENTS_DOC:-/vmtest/events.json}" '
      . as $e | $doc[0] as $d
      | if (type != "object") then "not an object"
        elif (.version != $d.version) then "version \(.version)"
        elif ($d.events[.event] == null) then "undocumented event \(.event)"
        else ($d.events[.event] - ($e | keys)) as $miss | if ($miss | length) > 0 then "\(.event) lacks \($miss)" else empty end
        end' "$2" 2>&1 | head -3 | tr '\n' '|')
  check "$1" "$(wc -l < "$2") events; ${_bad:-all documented}" [ -z "$_bad" -a -s "$2" ]
}

# ---- block device facts ---------------------------------------------------------------------------------------
devnum() { cat "/sys/class/block/$(basename "$(readlink -f "$1")")/dev"; }        # /dev/vdb -> 254:16
# st_devnum PATH : MAJOR:MINOR of the filesystem PATH is on (stat's st_dev, decoded as glibc's gnu_dev_major/minor)
st_devnum() {
  _d=$(stat -c %d "$1") || return 1
  echo "$(( ((_d >> 8) & 0xfff) | ((_d >> 32) & ~0xfff) )):$(( (_d & 0xff) | ((_d >> 12) & ~0xff) ))"
}
# mnt_field MOUNTPOINT FIELD : a field of that mount point's last line in /proc/self/mountinfo, numbered as if it had no
# optional fields (3 = MAJOR:MINOR, 4 = root, 8 = fs type, 9 = source, 10 = super options); "" when not mounted
mnt_field() { awk -v m="$1" -v f="$2" '{ for (i = 7; $i != "-"; i++) ; x = (f > 7) ? $(i + f - 7) : $f } $5 == m { r = x } END { print r }' /proc/self/mountinfo; }
sectors() { blockdev --getsz "$1"; }
# the wrapper of this run's backend (dm: /dev/mapper/rootshift-root, md: /dev/md_rootshift-root); with a live-media
# root (`# vm-root: overlay`, stage 1 writes $RES/root) the wrapper of the overlay's upper, /dev/mapper/rootshift-upper
backend() { cat "$RES/backend" 2>/dev/null || echo dm; }
root_kind() { cat "$RES/root" 2>/dev/null || echo wrapper; }   # wrapper | overlay | luks
wrapper_name() { if [ "$(root_kind)" = overlay ]; then echo rootshift-upper; else echo rootshift-root; fi; }
wrapper_node() { if [ "$(backend)" = md ]; then echo "/dev/md_$(wrapper_name)"; else echo "/dev/mapper/$(wrapper_name)"; fi; }
wrapper_block() { if [ "$(backend)" = md ]; then echo "md_$(wrapper_name)"; else dm_by_name "$(wrapper_name)"; fi; }   # name in /sys/block
dm_by_name() { for d in /sys/block/dm-*; do [ "$(cat "$d/dm/name" 2>/dev/null)" = "$1" ] && { basename "$d"; return 0; }; done; return 1; }
# status_json OUT : `rootshift status --json` (one shape: {version, wrappers: [...], boot}) into OUT.doc, the first
# wrapper's report into OUT ("null" when none); returns rootshift's exit status
status_json() {
  rootshift status --json > "$1.doc" 2> "$1.err"; local rc=$?
  jq '.wrappers[0]' "$1.doc" > "$1" 2>> "$1.err" || cp "$1.doc" "$1"
  return $rc
}
jget() { jq -r "$2" "$1" 2>/dev/null; }

# ---- end of run (PID 1 only) ---------------------------------------------------------------------------------
results_dev() { sed -n 's/.*[[:space:]]results=\([^[:space:]]*\).*/\1/p' /proc/cmdline; }
vm_finish() {  # vm_finish STAGE : ship $RES to the results disk and power off
  say "finishing ($1): $(grep -c ' FAIL ' "$RES/steps.txt" 2>/dev/null) failed steps"
  dmesg > "$RES/dmesg.txt" 2>/dev/null
  cat /proc/mounts > "$RES/mounts.txt"
  _rd=$(results_dev)
  if [ -n "$_rd" ] && [ -b "$_rd" ]; then
    tar -C "$RES" -cf "$_rd" . && sync && echo "VMTEST-RESULTS-WRITTEN $_rd"
  else
    echo "VMTEST-NO-RESULTS-DISK '$_rd'"
  fi
  sync
  echo "VMTEST-POWEROFF uptime=$(cut -d' ' -f1 /proc/uptime)"
  poweroff -f
  sleep 5; echo o > /proc/sysrq-trigger
}
# scenario_done : the scenario ran to its end (the host treats a scenario without this marker as FAIL)
scenario_done() { echo "$(now_cs)" > "$RES/complete"; say "scenario complete"; }
