# Guest side of one vm-tests/crash-campaign run (an installed Debian system, root=UUID=… on vda1 wrapped at boot by
# the dracut hook in $BACKEND). The campaign prepends RUN, BACKEND (dm|md), KILL (the instant) and FIRST (the disk
# order of the first boot after the cut). Four boots, one phase each, every one carrying the previous one's results:
#   main    partition the 3 GiB vdb (GPT: BIOS boot + root), `rootshift migrate /dev/vdb2 --install` with a writer
#           busy and a snapshotter that syncs the list of finished files every half second; at the instant the VM
#           is killed (the host SIGKILLs QEMU, and first the disks' nbdkit write cache when the run uses one)
#   after1  both disks, in the order FIRST: the boot must come up on the right device (the journal decides), every
#           file synced before the cut intact, fsck clean; nothing is changed
#   after2  both disks, in the other order: the same checks, then what `rootshift status` advises (`next`) until it
#           advises nothing; exactly one device carries the root's UUID; two more files written
#   alone   the surviving device alone (the target through SeaBIOS and the GRUB rootshift installed; the source
#           with the same kernel and command line): it boots, every file is intact, fsck clean
# Disks keep their serials in every order: the source disk is "vda", the target disk "vdb" (by-id names).
# KILL: progress:P (the copy at P %), fp:NAME (paused at that failpoint: a guest-requested kill at an exact step),
#       after:EVENT+MS (MS milliseconds after that --json event; EVENT install/STEP for an install step).
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
PREV=$VMTEST_IN/prev
LAYOUT='label: gpt
size=1MiB, type=21686148-6449-6E6F-744E-656564454649, name=bios
type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=root'

# role_of KNAME : "source" (vda1 of the disk with serial vda), "target" (partition 2 of serial vdb), else the name
role_of() {
  local disk part ser
  disk=$(basename "$(dirname "$(readlink -f "/sys/class/block/$1")")")
  part=$(cat "/sys/class/block/$1/partition" 2>/dev/null)
  ser=$(cat "/sys/block/$disk/serial" 2>/dev/null)
  case "$ser#$part" in vda#1) echo source ;; vdb#2) echo target ;; *) echo "$1($ser#$part)" ;; esac
}
root_leg() { slaves_of "$(kname_of "$(root_majmin)")"; }
fsck_clean() {
  journalctl -b --no-pager 2>/dev/null | grep -E 'systemd-fsck\[[0-9]+\]: ' > "$RES/fsck-lines.txt"
  check root-fsck-clean "$(tr '\n' '|' < "$RES/fsck-lines.txt" | cut -c1-300)" grep -qE 'systemd-fsck\[[0-9]+\]: .*: clean, ' "$RES/fsck-lines.txt"
}
# devices (partitions) whose superblock shows UUID $1, by role
carriers() { for p in /sys/class/block/vd*[0-9]; do p=${p##*/}; [ "$(blkid -p -s UUID -o value "/dev/$p")" = "$1" ] && role_of "$p"; done | sort | tr '\n' ' ' | sed 's/ $//'; }
intact() {  # intact NAME SUMSFILE
  sync; echo 3 > /proc/sys/vm/drop_caches
  check "$1" "$(wc -l < "$2") files" $SHA256SUM -c --quiet "$2"
}

# ---- main: migrate, and pull the plug at the instant ---------------------------------------------------------------
trigger() {
  case $KILL in
    progress:*)
      pct=$(jq -r 'select(.event=="progress") | .percent' /run/m.json 2>/dev/null | tail -1)
      [ -n "$pct" ] && [ "${pct%.*}" -ge "${KILL#progress:}" ] && echo "copy at $pct%" ;;
    fp:*)
      grep -q "failpoint ${KILL#fp:}: sleeping" /run/m.err 2>/dev/null && echo "paused at failpoint ${KILL#fp:}" ;;
    after:*)
      spec=${KILL#after:} ev=${spec%+*} ms=${spec##*+}
      if [ "${ev%%/*}" = install ]; then sel="select(.event==\"install\" and .step==\"${ev#install/}\")"
      else sel="select(.event==\"$ev\")"; fi
      [ -n "$(jq -c "$sel" /run/m.json 2>/dev/null | head -1)" ] || return 1
      sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
      echo "$ms ms after $ev" ;;
    *) echo "unknown KILL $KILL" >&2; return 1 ;;
  esac
}
# every half second: the list of finished files, synced; /run/snap.sums is the newest list whose sync returned (a
# sync blocks while the root is suspended: the list then stays the one from before)
snapshotter_start() {
  ( while :; do cp "$SUMS" /run/snap.tmp && sync && mv /run/snap.tmp /run/snap.sums; sleep 0.5; done ) &
}

if [ "$VMTEST_PHASE" = main ]; then
  state=$(wait_running 300)
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  ROOTK=$(kname_of "$(root_majmin)")
  check "root-on-$BACKEND-wrapper" "/ on $ROOTK" wrapper_is "$BACKEND" "$ROOTK"
  assert_eq root-over-vda1 vda1 "$(slaves_of "$ROOTK")"
  blkid -s UUID -o value /dev/vda1 > "$RES/uuid"
  step partition-vdb sh -c "echo '$LAYOUT' | sfdisk -q /dev/vdb && udevadm settle"
  step prefill-4MiB prefill /data 4 1
  writer_start /live 900 0.3
  snapshotter_start
  writer_wait_more 2 60
  host_put uuid "$RES/uuid" || say "host channel: no reply"   # also warms what pull_the_plug runs
  FP=; case $KILL in fp:*) FP="${KILL#fp:}=sleep:600000" ;; esac
  say "run $RUN: $BACKEND, kill at $KILL${FP:+ (ROOTSHIFT_FAILPOINTS=$FP)}"
  ROOTSHIFT_FAILPOINTS=$FP rootshift migrate /dev/vdb2 --install --yes --json > /run/m.json 2> /run/m.err &
  MP=$! reached= t0=$(now_cs)
  while [ $(( $(now_cs) - t0 )) -lt 60000 ]; do
    reached=$(trigger) && break
    reached=
    kill -0 $MP 2>/dev/null || break
    sleep 0.1
  done
  last=$(jq -r 'select(.event != "progress") | .event + (if .step then "/" + .step else "" end)' /run/m.json 2>/dev/null | tail -1)
  cp /run/snap.sums "$RES/synced.sums"
  echo "${reached:-not reached}" > "$RES/reached"; echo "$last" > "$RES/last-event"
  tail -c 20000 /run/m.json > "$RES/m.json"; tail -c 20000 /run/m.err > "$RES/m.err"
  alive=yes; kill -0 $MP 2>/dev/null || { wait $MP; alive="no: migrate exited $?"; }
  check kill-instant-reached "$KILL: ${reached:-not reached}; rootshift running: $alive; last event: $last; stderr: $(tail -2 /run/m.err | tr '\n' '|' | cut -c1-200)" [ -n "$reached" ]
  figure reached "${reached:-none}"
  figure last_event "${last:-none}"
  figure synced_files "$(wc -l < "$RES/synced.sums")"
  [ -n "$reached" ] && pull_the_plug
  exit 1
fi

# ---- after1 / after2: both disks, the boot after the cut -----------------------------------------------------------
if [ "$VMTEST_PHASE" = after1 ] || [ "$VMTEST_PHASE" = after2 ]; then
  for f in uuid synced.sums reached last-event booted1; do [ -f "$PREV/$f" ] && cp "$PREV/$f" "$RES/"; done
  UUID=$(cat "$RES/uuid")
  state=$(wait_running 300)
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  ROOTK=$(kname_of "$(root_majmin)")
  say "disks: $(for d in /sys/block/vd?; do echo "${d##*/}=$(cat $d/serial)"; done | tr '\n' ' '); kernel: $(kernel_rootshift_lines | tr '\n' '|' | cut -c1-400)"
  check "root-on-$BACKEND-wrapper" "/ on $ROOTK" wrapper_is "$BACKEND" "$ROOTK"
  LEG=$(root_leg); ROLE=$(role_of "$LEG")
  status_json "$RES/status-$VMTEST_PHASE.json"
  D="$RES/status-$VMTEST_PHASE.json.doc"
  check status-json-one-shape "$(jq -c '{version, wrappers: (.wrappers | length), boot: .boot.state}' "$D" 2>&1 | cut -c1-200)" \
    jq -e '.version == 1 and (.wrappers | length) == 1 and .boot.state == "wrapped"' "$D"
  JSTEP=$(jq -r '.journal.step // "none"' "$RES/status-$VMTEST_PHASE.json")
  say "booted $ROLE ($LEG); journal step $JSTEP; status advises: $(jq -r '.next.command // "nothing"' "$RES/status-$VMTEST_PHASE.json")"
  figure "booted_$VMTEST_PHASE" "$ROLE"
  figure "journal_$VMTEST_PHASE" "$JSTEP"
  # the device booted is the one the journal on it says has every write: the source until the switch began
  # (or no journal yet), the target from then on
  case "$ROLE:$JSTEP" in
    source:none|source:mirroring|target:switching|target:switched|target:grown|target:done) ok=1 ;;
    *) ok= ;;
  esac
  check booted-device-agrees-with-journal "$ROLE with journal step $JSTEP" [ -n "$ok" ]
  assert_eq root-uuid-kept "$UUID" "$(blkid -s UUID -o value "/dev/$ROOTK")"
  fsck_clean
  intact files-synced-before-the-cut-intact "$RES/synced.sums"
  if [ "$VMTEST_PHASE" = after1 ]; then
    echo "$ROLE" > "$RES/booted1"
    scenario_done
    exit 0
  fi
  assert_eq same-device-in-either-order "$(cat "$RES/booted1")" "$ROLE"
  # what status advises, until it advises nothing
  : > "$RES/advice"
  for i in 1 2 3; do
    status_json /run/st.json
    cmd=$(jq -r '.next.command // empty' /run/st.json); act=$(jq -r '.next.action // empty' /run/st.json)
    [ -z "$cmd" ] && break
    echo "$act" >> "$RES/advice"
    extra="--yes --json"; [ "$act" = abort ] && extra=--json
    say "status advises ($i): $cmd — $(jq -r .next.why /run/st.json)"
    timeout 900 $cmd $extra > "/run/r$i.json" 2> "/run/r$i.err"; rc=$?
    cp "/run/r$i.json" "/run/r$i.err" "$RES/"
    check "advice-$i-$act-exit-0" "$cmd: exit $rc; $(tail -3 "/run/r$i.err" | tr '\n' '|' | cut -c1-300)" [ "$rc" = 0 ]
    [ "$rc" = 0 ] || break
  done
  status_json "$RES/status-final.json"
  assert_eq nothing-more-advised "" "$(jq -r '.next.command // empty' "$RES/status-final.json")"
  LEG=$(root_leg); OUT=$(role_of "$LEG"); echo "$OUT" > "$RES/outcome"
  figure advice "$(tr '\n' ',' < "$RES/advice" | sed 's/,$//')"
  figure outcome "$OUT"
  if [ "$OUT" = target ]; then
    assert_eq state-done done "$(jq -r .state "$RES/status-final.json")"
    assert_eq install-done done "$(jq -r '.journal.install.state' "$RES/status-final.json")"
    size=$(stat -f -c '%b %S' / | awk '{printf "%d", $1 * $2 / 1048576}')
    check fs-fills-the-target "statfs $size MiB" [ "$size" -gt 2800 ]
    check grub-in-the-target-mbr "" sh -c "dd if=/dev/disk/by-id/virtio-vdb bs=512 count=1 2>/dev/null | grep -aq GRUB"
  else
    assert_eq on-the-source source "$OUT"
  fi
  # one device carries the root's UUID: the half copy was cleared, or the old source got a fresh one
  assert_eq only-the-survivor-carries-the-uuid "$OUT" "$(carriers "$UUID")"
  cp "$RES/synced.sums" "$SUMS"
  step write-after-recovery-1 mkfile /after-1.bin 2
  step write-after-recovery-2 mkfile /after-2.bin 1
  intact all-files-intact "$SUMS"
  figure files "$(wc -l < "$SUMS")"
  scenario_done
  exit 0
fi

# ---- alone: the survivor alone -------------------------------------------------------------------------------------
OUT=$(cat "$PREV/outcome")
state=$(wait_running 300)
check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
ROOTK=$(kname_of "$(root_majmin)")
any_wrapper() { wrapper_is dm "$1" || wrapper_is md "$1"; }   # the target's grub command line picks the backend
check root-on-a-wrapper "/ on $ROOTK" any_wrapper "$ROOTK"
assert_eq booted-the-survivor "$OUT" "$(role_of "$(root_leg)")"
[ "$OUT" = target ] && check booted-through-grub "$(cat /proc/cmdline)" grep -q 'BOOT_IMAGE=' /proc/cmdline
fsck_clean
intact all-files-intact "$PREV/sums"
figure files_verified "$(wc -l < "$PREV/sums")"
scenario_done
