#!/bin/bash
# Guest side of bench/plain/run (issue 19's benchmark): runs in the project's Debian live-boot ISO (a live session,
# `/` an overlay over the squashfs) under vm-tests/live/run-system-vm, -smp 2.
#
#   main       copy rows: on a fresh ext4 of the target disk (mkfs each time), page cache dropped, sync included:
#              raw (dd of the squashfs image file), copier (rootshift copy-tree of the squashfs's tree), unsquashfs
#              (of the image file), rsync -aHAXS (of the squashfs's tree), copier-merged (rootshift copy-tree / : the
#              session's merged view, what install --layout plain copies); ROUNDS rounds, the order rotated per
#              round; then one untimed-for-the-table check that the copier's tree equals its source (--compare).
#              Then the restart rows: soft1 .. softN (`systemctl soft-reboot` of the session into itself), then
#              reboot1 .. rebootN (`systemctl reboot`: QEMU resets, SeaBIOS, the ISO's GRUB, kernel, live-boot).
#   softK      (after a soft-reboot; /run and $RES survive) the login prompt is up -> BENCH-LOGIN-READY soft K
#   rebootK    (after a firmware reboot; found on the state disk, the runner says "main" again) the same marker;
#              the last one finishes: the results go back onto the vmtest disk.
# The markers go straight to /dev/console (ttyS0, no journald in between); the host times them (serial.log).
# Disks: serial benchtgt (the copy target), serial benchstate (a small ext4: $RES and the next phase across a
# firmware reboot). Plan: $VMTEST_IN/bench/plan; the host's rsync and unsquashfs: $VMTEST_IN/tools/ (run from a copy on
# the state disk: /run is noexec).
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
ROUNDS=2 RESTARTS=2 ROWS="raw copier unsquashfs rsync copier-merged" CHECK=1
. "$VMTEST_IN/bench/plan"
TOOLS=$VMTEST_IN/tools
TGT=/dev/disk/by-id/virtio-benchtgt
STDEV=/dev/disk/by-id/virtio-benchstate
ST=/mnt/benchstate
MNT=/mnt/t
SQ_FILE=/run/live/medium/live/filesystem.squashfs
SQ_TREE=/run/live/rootfs/filesystem.squashfs
JL=$RES/bench.jsonl

mark() { echo "$*" > /dev/console; echo "$*" >> "$RES/marks.txt"; }   # a timed marker: straight onto ttyS0
ns() { date +%s%N; }
ms_since() { echo $(( ($(ns) - $1) / 1000000 )); }

state_mount() {
  for _ in $(seq 100); do [ -b "$STDEV" ] && break; sleep 0.1; done
  mkdir -p $ST
  mountpoint -q $ST && return 0
  if [ "$(blkid -o value -s TYPE "$STDEV" 2>/dev/null)" != ext4 ]; then mkfs.ext4 -q -F -L benchstate "$STDEV" || return 1; fi
  mount "$STDEV" $ST
}
# state_save NEXT : $RES and the phase the next boot goes on with, onto the state disk
state_save() {
  state_mount || return 1
  rm -rf $ST/res; mkdir -p $ST/res
  cp -a "$RES/." $ST/res/
  echo "$1" > $ST/next
  sync
}

# login_ready : wait until agetty on ttyS0 waits for input (it printed its prompt); prints how it was decided
login_ready() {
  local p i stack first='' last_stack=''
  for i in $(seq 3000); do   # 0.2 s steps, at most 600 s
    for p in $(pgrep -x agetty); do
      [ "$(readlink /proc/$p/fd/0 2>/dev/null)" = /dev/ttyS0 ] || continue
      stack=$(cat /proc/$p/stack 2>/dev/null)
      if [ -n "$stack" ]; then
        # agetty prints the prompt, then waits in select() on the tty (and its issue-reload watches), then read()s
        case "$stack" in
          *n_tty_read*|*do_select*|*do_sys_poll*|*do_poll*) echo "agetty $p waits on ttyS0 ($(echo "$stack" | grep -m1 -oE 'n_tty_read|do_select|do_sys_poll|do_poll'))"; return 0 ;;
        esac
        last_stack=$stack
      else
        # no stack to read: agetty holding ttyS0 in two polls in a row
        [ "$first" = "$p" ] && { echo "agetty $p holds ttyS0 (wchan $(cat /proc/$p/wchan 2>/dev/null))"; return 0; }
        first=$p
      fi
    done
    sleep 0.2
  done
  echo "no agetty on ttyS0 waiting for input after 600 s (last stack: $(echo "$last_stack" | head -4 | tr '\n' ' '))"; return 1
}

# after a restart: the marker, then the system settled before anything else
restart_arrived() {  # restart_arrived KIND N
  local how
  how=$(login_ready); local rc=$?
  if [ $rc = 0 ]; then mark "BENCH-LOGIN-READY $1 $2"; else mark "BENCH-LOGIN-NOT-READY $1 $2"; fi
  say "$1 $2: $how; uptime=$(cut -d' ' -f1 /proc/uptime)"
  echo "{\"restart\":\"$1\",\"n\":$2,\"ready\":$((rc == 0)),\"how\":\"$how\",\"uptime\":\"$(cut -d' ' -f1 /proc/uptime)\",\"boot_id\":\"$(cat /proc/sys/kernel/random/boot_id)\"}" >> "$RES/restarts.jsonl"
  host_put restarts.jsonl "$RES/restarts.jsonl"
  local state; state=$(wait_running 300)
  say "$1 $2: is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')"
  journalctl -b -o short-monotonic --no-pager _PID=1 2>/dev/null | grep -E 'Soft-reboot finished|Startup finished' | tail -2 >> "$RES/systemd-times.txt"
  journalctl -b -o short-monotonic --no-pager -u serial-getty@ttyS0.service 2>/dev/null | tail -3 >> "$RES/getty-journal.txt"
}

# next_restart DONE-KIND DONE-N : soft-reboot or reboot into the next restart row, or finish
next_restart() {
  local kind=$1 n=$2
  if [ "$kind" = soft ] && [ "$n" -lt "$RESTARTS" ]; then kind=soft n=$((n + 1))
  elif [ "$kind" = soft ]; then kind=reboot n=1
  elif [ "$n" -lt "$RESTARTS" ]; then kind=reboot n=$((n + 1))
  else return 1; fi
  sleep 5   # a settled system, as a user would have it
  sync
  if [ $kind = soft ]; then
    echo "soft$n" > /run/vmtest/next-phase
    umount $ST 2>/dev/null
    mark "BENCH-SOFT-REBOOT-START $n"
    systemctl soft-reboot
  else
    state_save "reboot$n" || { say "cannot save the state: no firmware reboot"; return 1; }
    umount $ST
    mark "BENCH-REBOOT-START $n"
    systemctl reboot
  fi
  sleep 600
  say "still running 600 s after the $kind"
  return 1
}

fresh_fs() {
  umount $MNT 2>/dev/null
  # no lazy init: nothing may write in the background while a row is timed
  mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$TGT" > /tmp/mkfs.out 2>&1 || { cat /tmp/mkfs.out; return 1; }
  mkdir -p $MNT && mount "$TGT" $MNT
}

# copy_cmd TOOL : the timed command (output into $RES/out/TOOL-ROUND)
copy_cmd() {
  case $1 in
    raw) mkdir -p $MNT/x && dd if=$SQ_FILE of=$MNT/x/filesystem.squashfs bs=4M conv=fsync status=none ;;
    copier) mkdir -p $MNT/x && rootshift copy-tree --json $SQ_TREE/ $MNT/x ;;
    unsquashfs) LD_LIBRARY_PATH=$TOOLS/lib $TOOLS/unsquashfs -no-progress -f -d $MNT/x $SQ_FILE ;;
    rsync) mkdir -p $MNT/x && LD_LIBRARY_PATH=$TOOLS/lib $TOOLS/rsync -aHAXS $SQ_TREE/ $MNT/x/ ;;
    copier-merged) mkdir -p $MNT/x && rootshift copy-tree --json / $MNT/x ;;
  esac
}

copy_row() {  # copy_row ROUND TOOL
  local r=$1 t=$2 s ms rc bytes files used out=$RES/out/$2-$1
  fresh_fs || { echo "{\"round\":$r,\"tool\":\"$t\",\"error\":\"mkfs\"}" >> "$JL"; return 1; }
  sync; echo 3 > /proc/sys/vm/drop_caches
  local load0; load0=$(cut -d' ' -f1-3 /proc/loadavg)
  mark "BENCH-ROW-START $r $t"
  s=$(ns)
  copy_cmd "$t" > "$out" 2>&1; rc=$?
  sync
  ms=$(ms_since "$s")
  mark "BENCH-ROW-END $r $t"
  bytes=$(du -sb $MNT/x 2>/dev/null | cut -f1)
  files=$(find $MNT/x 2>/dev/null | wc -l)
  used=$(df -B1 --output=used $MNT | tail -1 | tr -d ' ')
  echo "{\"round\":$r,\"tool\":\"$t\",\"ms\":$ms,\"exit\":$rc,\"bytes\":${bytes:-0},\"files\":$files,\"fs_used\":$used,\"guest_load_before\":\"$load0\"}" >> "$JL"
  host_put bench.jsonl "$JL"   # kept by the host even if a later boot never ships the results
  say "row round=$r $t: $(fmt_cs $((ms / 10)))s exit=$rc bytes=$bytes files=$files fs_used=$used"
  [ $rc = 0 ] || say "  $t output: $(tail -3 "$out" | tr '\n' '|' | cut -c1-300)"
  # a sample of the copier's files against the source, by checksum (the full check is the --compare below)
  if [ "$t" = copier ] && [ "$r" = 1 ]; then
    (cd $SQ_TREE && find . -type f -size +0 | awk 'NR % 97 == 1' | head -300 > /tmp/sample.list)
    (cd $SQ_TREE && xargs -d '\n' sha256sum < /tmp/sample.list > /tmp/sample.src 2>&1)
    (cd $MNT/x && xargs -d '\n' sha256sum < /tmp/sample.list > /tmp/sample.dst 2>&1)
    if cmp -s /tmp/sample.src /tmp/sample.dst; then ok=1; else ok=0; diff /tmp/sample.src /tmp/sample.dst | head -20 > "$RES/sample-diff.txt"; fi
    echo "{\"check\":\"copier-sample-sha256\",\"files\":$(wc -l < /tmp/sample.list),\"equal\":$ok}" >> "$JL"
    check copier-sample-sha256 "$(wc -l < /tmp/sample.list) files" [ $ok = 1 ]
  fi
  umount $MNT
}

# ==== main: the copy rows, then the first restart ==================================================================
PHASE=$VMTEST_PHASE
if [ "$PHASE" = main ]; then
  state_mount || say "no state disk"
  if [ -s $ST/next ]; then
    PHASE=$(cat $ST/next); rm -f $ST/next
    cp -a $ST/res/. "$RES/"
    mark "BENCH-PHASE $PHASE (after a firmware reboot)"
  elif [ -e $ST/started ]; then
    mark "BENCH-UNEXPECTED-BOOT"
    say "this boot was not asked for (the state disk says a run started, no next phase): finishing"
    check no-unexpected-boot "a reboot nobody asked for" false
    scenario_done; exit 0
  else
    date -u +%FT%TZ > $ST/started; sync
  fi
fi

if [ "$PHASE" = main ]; then
  state=$(wait_running 300)
  echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
  say "failed units: $(systemctl --failed --plain --no-legend | tr '\n' '|')"
  mkdir -p "$RES/out"
  # /run is mounted noexec: the host's tools run from the state disk (an ext4 of its own: not in the merged copy)
  rm -rf $ST/tools && cp -a "$TOOLS" $ST/tools && TOOLS=$ST/tools
  {
    echo "cmdline: $(cat /proc/cmdline)"
    echo "nproc: $(nproc)"; grep -m1 'model name' /proc/cpuinfo; free -m
    echo "root: $(findmnt -no SOURCE,FSTYPE,OPTIONS /)"; echo "run: $(findmnt -no OPTIONS /run) in: $(findmnt -no TARGET,OPTIONS -T "$VMTEST_IN")"
    findmnt -rno TARGET,SOURCE,FSTYPE | grep -E '/run/live|^/ ' 
    ls -la /run/live/medium/live/ 2>&1
    echo "rootshift: $(rootshift --version 2>&1)"
    echo "rsync: $(LD_LIBRARY_PATH=$TOOLS/lib $TOOLS/rsync --version 2>&1 | head -1)"
    echo "unsquashfs: $(LD_LIBRARY_PATH=$TOOLS/lib $TOOLS/unsquashfs -v 2>&1 | head -1)"
    echo "target: $(lsblk -bno SIZE "$TGT") bytes"
    systemctl status serial-getty@ttyS0.service --no-pager 2>&1 | head -5
    echo "agetty: $(pgrep -a agetty | tr '\n' '|')"
  } > "$RES/guest-info.txt" 2>&1
  cat "$RES/guest-info.txt" | sed 's/^/vmtest: info: /'
  ok=1
  [ -f $SQ_FILE ] && mountpoint -q $SQ_TREE || ok=0
  check squashfs-paths "$SQ_FILE and $SQ_TREE: $(findmnt -no SOURCE,FSTYPE $SQ_TREE)" [ $ok = 1 ]
  # (unsquashfs -v prints its version, then exits 1 for want of an image: its output is what tells)
  check tools-run "rsync and unsquashfs run in the guest" sh -c "LD_LIBRARY_PATH=$TOOLS/lib $TOOLS/rsync --version >/dev/null && LD_LIBRARY_PATH=$TOOLS/lib $TOOLS/unsquashfs -v 2>&1 | grep -q '^unsquashfs version'"
  # the session's own changes (the overlay's upper), which the merged copy carries and unsquashfs cannot
  upper=$(findmnt -no OPTIONS / | tr ',' '\n' | sed -n 's/^upperdir=//p')
  echo "{\"session_upper\":\"$upper\",\"upper_bytes\":$(du -sbx "$upper" 2>/dev/null | cut -f1 || echo 0),\"upper_files\":$(find "$upper" -xdev 2>/dev/null | wc -l)}" >> "$JL"
  echo "{\"squashfs_file_bytes\":$(stat -c %s $SQ_FILE),\"squashfs_tree_bytes\":$(du -sb $SQ_TREE | cut -f1),\"squashfs_tree_files\":$(find $SQ_TREE | wc -l)}" >> "$JL"
  tail -2 "$JL" | sed 's/^/vmtest: /'
  read -r -a rows <<< "$ROWS"
  n=${#rows[@]}
  for r in $(seq "$ROUNDS"); do
    # rotate the order each round: a drift of the host speed hits every tool alike
    order=
    for i in $(seq 0 $((n - 1))); do order+="${rows[(i + r - 1) % n]} "; done
    say "round $r: $order"
    for t in $order; do copy_row "$r" "$t"; done
  done
  if [ "$CHECK" = 1 ]; then
    # the copier's tree equals its source (untimed row, not in the table): a fresh copy with --compare
    fresh_fs && sync && echo 3 > /proc/sys/vm/drop_caches
    mkdir -p $MNT/x
    s=$(ns)
    rootshift copy-tree --compare --json $SQ_TREE/ $MNT/x > "$RES/out/compare" 2>&1; rc=$?
    ms=$(ms_since "$s")
    echo "{\"check\":\"copier-compare\",\"exit\":$rc,\"ms\":$ms}" >> "$JL"
    check copier-compare-equal "rootshift copy-tree --compare exit=$rc in ${ms} ms: $(tail -2 "$RES/out/compare" | tr '\n' '|' | cut -c1-400)" [ $rc = 0 ]
    umount $MNT
  fi
  if [ "$RESTARTS" -gt 0 ]; then
    state=$(wait_running 300)
    next_restart soft 0
  fi
  scenario_done; exit 0
fi

case "$PHASE" in
  soft[0-9]*) kind=soft n=${PHASE#soft} ;;
  reboot[0-9]*) kind=reboot n=${PHASE#reboot} ;;
  *) say "unknown phase $PHASE"; scenario_done; exit 1 ;;
esac
restart_arrived $kind "$n"
next_restart $kind "$n"
umount $ST 2>/dev/null
scenario_done
exit 0
