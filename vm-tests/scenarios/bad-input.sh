#!/bin/sh
# Preflight refusals: each bad `rootshift migrate` must exit 2, print "rootshift: error: ..." with the documented
# substring, and change nothing (dm devices, wrapper status, swaps, mounts, the target's first MiB).
# Disks: vda 512M source | vdb 256M too small | vdc 1G holds ext4 | vdd 1G mounted | vde 1G swap
#        vdf 1G held by another wrapper | vdg 1G with 4096-byte logical blocks | vdh 1G free and valid
#        vdi 1G md 1.0 superblock at its end | vdj 1G ZFS label | vdk 1G GPT whose ESP holds unrecognised data
#        vdl 1G under a dm-crypt mapping | vdm 1G free
# vm-fs: ext4
# vm-disks: 512M 256M 1G 1G 1G 1G 1G,lbs=4096 1G 1G 1G 1G 1G 1G
# vm-timeout: 600
. /vmtest/lib.sh
SRC_SZ=$(sectors /dev/vda)
say "source vda $(devnum /dev/vda) $((SRC_SZ * 512)) bytes"

# ---- setup (each step must work, or the refusals below prove nothing) ----------------------------------------------
status_json /tmp/st0.json; rc=$?
check precondition-status-works "exit=$rc table=$(jget /tmp/st0.json .table) state=$(jget /tmp/st0.json .state) $(head -c 200 /tmp/st0.json.err)" \
  [ $rc = 0 -a "$(jget /tmp/st0.json .table)" = linear ]
step setup-vdc-ext4 mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 -L holdme /dev/vdc
step setup-vdd-mount sh -c 'mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/vdd && mkdir -p /mnt/vdd && mount /dev/vdd /mnt/vdd'
step setup-vde-swap sh -c 'mkswap /dev/vde >/dev/null && swapon /dev/vde'
step setup-vdf-held rootshift wrap /dev/vdf --name holder
step setup-overlap-fixture rootshift testing dm-create overlap "0 $SRC_SZ linear /dev/vda 0"
check setup-vdg-lbs4096 "vdg logical_block_size=$(cat /sys/block/vdg/queue/logical_block_size)" \
  [ "$(cat /sys/block/vdg/queue/logical_block_size)" = 4096 ]
# a chroot whose / is a tmpfs (not on any rootshift wrapper)
setup_chroot() {
  C=/tmp/chroot; mkdir -p $C && mount -t tmpfs tmpfs $C || return 1
  mkdir -p $C/proc $C/sys $C/dev $C/run $C/tmp $C/usr/sbin && cp /usr/sbin/rootshift $C/usr/sbin/ || return 1
  mount -t proc proc $C/proc && mount --bind /sys $C/sys && mount --bind /dev $C/dev
}
step setup-chroot setup_chroot
mkdir -p /run/rootshift

snapshot() {  # snapshot OUT [TARGET]
  { for d in /sys/block/dm-*; do
      [ -e "$d" ] || continue
      echo "$(basename "$d") name=$(cat "$d/dm/name") size=$(cat "$d/size") slaves=$(ls "$d/slaves" | tr '\n' ,) holders=$(ls "$d/holders" | tr '\n' ,)"
    done
    rootshift status --json 2>&1 | jq -c '.wrappers[0] | {table, legs, state}' 2>&1
    rootshift status --json --name holder 2>&1 | jq -c '.wrappers[0] | {table, legs, state}' 2>&1
    echo "swaps: $(tail -n +2 /proc/swaps | awk '{print $1}' | tr '\n' ' ')"
    echo "mounts: $(awk '{print $1 "@" $2}' /proc/mounts | tr '\n' ' ')"
    if [ -n "$2" ] && [ -b "$2" ] && [ "$2" != /dev/vda ] && [ "$2" != /dev/mapper/overlap ]; then
      echo "first MiB of $2: $(head -c 1048576 "$2" | sha256sum | cut -c1-16)"
      echo "last MiB of $2: $(dd if="$2" bs=1M skip=$(( $(sectors "$2") / 2048 - 1 )) count=1 2>/dev/null | sha256sum | cut -c1-16)"
    fi
  } > "$1" 2>&1
}

# refuse NAME SUBSTRING TARGET CMD... : run CMD, expect exit 2, "rootshift: error: " first, SUBSTRING, no state change
N=0
refuse() {
  name=$1 want=$2 tgt=$3; shift 3
  N=$((N + 1))
  snapshot /tmp/snap.before "$tgt"
  s=$(now_cs)
  timeout 60 "$@" > /tmp/out 2> /tmp/err; rc=$?
  e=$(( $(now_cs) - s ))
  snapshot /tmp/snap.after "$tgt"
  why=""
  [ $rc = 2 ] || why="$why exit=$rc(want 2);"
  grep -qF -- "$want" /tmp/err || why="$why missing '$want';"
  head -1 /tmp/err | grep -q '^rootshift: error: ' || why="$why first stderr line not 'rootshift: error: ';"
  if ! cmp -s /tmp/snap.before /tmp/snap.after; then
    why="$why STATE CHANGED;"; say "state diff for $name:"; diff /tmp/snap.before /tmp/snap.after | sed 's/^/    | /'
  fi
  msg="$(head -3 /tmp/err | tr '\n' '|' | cut -c1-200)"
  { echo "== $name: $*"; echo "exit=$rc"; cat /tmp/err; } >> "$RES/refusals.txt"
  if [ -z "$why" ]; then record "refuse-$name" OK "$e" "exit=2 msg=\"$msg\""
  else record "refuse-$name" FAIL "$e" "$why msg=\"$msg\""; fi
}

M="rootshift migrate"
refuse not-root        "must be run as root"             /dev/vdh  $SETPRIV --reuid=65534 --regid=65534 --clear-groups -- $M /dev/vdh --yes
refuse not-on-wrapper  "is not on a rootshift wrapper"   /dev/vdh  chroot /tmp/chroot /usr/sbin/rootshift migrate /dev/vdh --yes
refuse missing         "does not exist"                  ""        $M /dev/nonexistent --yes
refuse not-block       "is not a block device"           ""        $M /dev/null --yes
refuse source          "is the source device"            /dev/vda  $M /dev/vda --yes
refuse mounted         "is mounted"                      /dev/vdd  $M /dev/vdd --yes
refuse swap            "is in use as swap"               /dev/vde  $M /dev/vde --yes
refuse held            "is held by"                      /dev/vdf  $M /dev/vdf --yes
refuse too-small       "is smaller than the source"      /dev/vdb  $M /dev/vdb --yes
check too-small-names-sizes "want $((SRC_SZ * 512)) and $(( $(sectors /dev/vdb) * 512 )) in: $(head -1 /tmp/err)" \
  sh -c "grep -qw $((SRC_SZ * 512)) /tmp/err && grep -qw $(( $(sectors /dev/vdb) * 512 )) /tmp/err"
refuse block-size      "logical block size"              /dev/vdg  $M /dev/vdg --yes
refuse already-holds   "already holds"                   /dev/vdc  $M /dev/vdc --yes
check already-holds-names-fs "$(head -1 /tmp/err)" grep -qE 'already holds ext4 "holdme"' /tmp/err
check vdc-fs-intact "blkid: $(blkid -p -o export /dev/vdc 2>&1 | grep -E '^(TYPE|LABEL)=' | tr '\n' ' ')" \
  sh -c 'blkid -p -s TYPE -o value /dev/vdc | grep -qx ext4 && e2fsck -fn /dev/vdc >/dev/null 2>&1'

# `rootshift targets` (issue 16 §4): every disk listed, usable or the refusal migrate would give; changes nothing
snapshot /tmp/snap.t0 /dev/vdh
rootshift targets --json > /tmp/targets.json 2> /tmp/targets.err; rc=$?
snapshot /tmp/snap.t1 /dev/vdh
cp /tmp/targets.json "$RES/" 2>/dev/null
tj() { jq -r --arg p "$1" '.targets[] | select(.path == $p) | "\(.usable) \(.why_not // "")"' /tmp/targets.json; }
assert_eq targets-exit-0 0 "$rc"
check targets-vdh-usable "$(tj /dev/vdh)" sh -c '[ "$(echo "$1" | cut -d" " -f1)" = true ]' _ "$(tj /dev/vdh)"
check targets-vdd-mounted "$(tj /dev/vdd)" sh -c 'echo "$1" | grep -q "^false .*is mounted"' _ "$(tj /dev/vdd)"
check targets-vde-swap "$(tj /dev/vde)" sh -c 'echo "$1" | grep -q "^false .*swap"' _ "$(tj /dev/vde)"
check targets-vdc-holds "$(tj /dev/vdc)" sh -c 'echo "$1" | grep -q "^false .*already holds"' _ "$(tj /dev/vdc)"
check targets-vda-is-source "$(tj /dev/vda)" sh -c 'echo "$1" | grep -q "^false .*source"' _ "$(tj /dev/vda)"
check targets-changed-nothing "state before/after" cmp -s /tmp/snap.t0 /tmp/snap.t1

# `migrate --dry-run` (issue 16 §4): every check, the plan, nothing changed (the kernel's count of sectors written to the
# target disk before and after, the kernel's state, no event log, no lock file); refused the same way a real run is
rm -f /run/rootshift/events.jsonl /run/rootshift/lock
# nothing written to vdh: the kernel's count of sectors written to it (/sys/block/vdh/stat, field 7) is the same
# after the dry run and a sync as before (whole-disk hashes of 1 GiB took 2 x 60 s under TCG)
written() { sync; blockdev --flushbufs "$1"; awk '{print $7}' "/sys/block/$(basename "$1")/stat"; }
snapshot /tmp/snap.d0 /dev/vdh; H0=$(written /dev/vdh)
timeout 60 $M /dev/vdh --dry-run --json > /tmp/dry.json 2> /tmp/dry.err; rc=$?
snapshot /tmp/snap.d1 /dev/vdh; H1=$(written /dev/vdh)
cp /tmp/dry.json /tmp/dry.err "$RES/" 2>/dev/null
assert_eq dry-run-exit-0 0 "$rc"
assert_eq dry-run-plan "plan /dev/vdh $(( $(sectors /dev/vdh) * 512 ))" "$(jq -r 'select(.event=="plan") | "\(.event) \(.target.path) \(.target.size_bytes)"' /tmp/dry.json)"
assert_eq dry-run-last-event dry-run "$(tail -1 /tmp/dry.json | jq -r .event)"
check_events dry-run-events-documented /tmp/dry.json
check dry-run-wrote-nothing-to-vdh "sectors written to vdh: $H0 before, $H1 after" [ "$H0" = "$H1" ]
check dry-run-state-unchanged "$(diff /tmp/snap.d0 /tmp/snap.d1 | head -3 | tr '\n' '|')" cmp -s /tmp/snap.d0 /tmp/snap.d1
check dry-run-wrote-no-log-or-lock "$(ls /run/rootshift | tr '\n' ' ')" [ ! -e /run/rootshift/events.jsonl -a ! -e /run/rootshift/lock ]
timeout 60 $M /dev/vdc --dry-run --json > /tmp/dry2.json 2> /tmp/dry2.err; rc=$?
assert_eq dry-run-refused-exit-2 2 "$rc"
assert_eq dry-run-refused-error-event "error 2" "$(tail -1 /tmp/dry2.json | jq -r '"\(.event) \(.exit_code)"')"
check dry-run-refusal-names-it "$(head -1 /tmp/dry2.err)" grep -q 'already holds ext4 "holdme"' /tmp/dry2.err

# -o: the lock fd is not inherited by `sleep`, so killing flock releases the lock
flock -o /run/rootshift/lock sleep 120 &
FP=$!
sleep 0.5
check lock-is-held "flock -n on /run/rootshift/lock from another process: $(flock -n /run/rootshift/lock true 2>&1 && echo free || echo busy)" \
  sh -c '! flock -n /run/rootshift/lock true' 
refuse lock-held       "another rootshift is running"    /dev/vdh  $M /dev/vdh --yes
kill $FP 2>/dev/null; wait $FP 2>/dev/null
check lock-released "$(flock -n /run/rootshift/lock true 2>&1 && echo free || echo busy)" flock -n /run/rootshift/lock true

# one sector short: a linear fixture over vdh of exactly the source's size minus 512 bytes
step setup-short-fixture rootshift testing dm-create short "0 $((SRC_SZ - 1)) linear /dev/vdh 0"
refuse one-sector-short "is smaller than the source"     /dev/mapper/short $M /dev/mapper/short --yes
check one-sector-short-names-sizes "$(head -1 /tmp/err)" grep -qw "$(( (SRC_SZ - 1) * 512 ))" /tmp/err
step remove-short-fixture rootshift testing dm-remove short
refuse unknown-backend  "invalid value 'raid5'"          /dev/vdh  rootshift wrap /dev/vdh --backend raid5 --name other
refuse bad-region-size  "must be a power of two"         /dev/vdh  $M /dev/vdh --yes --region-size 3M
refuse rate-limit-on-dm "no per-device copy rate"        /dev/vdh  $M /dev/vdh --yes --rate-limit 10M
refuse install-whole-disk "is a whole disk"              /dev/vdh  $M /dev/vdh --yes --install
refuse install-on-dm    "is not a plain disk"            /dev/mapper/overlap rootshift install --disk /dev/mapper/overlap --yes
refuse plain-not-live   "is not a live session's root"  /dev/vdh  rootshift install --disk /dev/vdh --layout plain --yes
refuse plain-options-alone "options of --layout plain"   /dev/vdh  rootshift install --disk /dev/vdh --no-soft-reboot --yes
refuse flatten-not-live-disk "there is nothing to flatten" /dev/vdh rootshift flatten --yes
refuse clone-is-target  "named twice"                    /dev/vdh  $M /dev/vdh --clone /dev/vdh --yes
refuse no-confirmation  "confirmation needed"            /dev/vdh  sh -c "$M /dev/vdh < /dev/null"
refuse status-no-such-name   "there is no rootshift wrapper named rootshift-nosuch" ""        rootshift status --json --name nosuch
refuse migrate-no-such-name  "there is no rootshift wrapper named rootshift-nosuch" /dev/vdh  $M /dev/vdh --yes --name nosuch

# Issue 16 §3: "already holds" is what wipefs (libblkid's full probe) finds anywhere on the target, not only in its
# first 68 KiB: an md 1.0 superblock (8 KiB before the end of the 1 GiB vdi; written here byte for byte, checksum
# included) and a ZFS label (uberblock magics in labels 0 and 1 of vdj) are refused without --force.
MD10=/E4rqQEAAAAAAAAAAAAAAKXKVn1JIB9IgYYuCTkkPgJyb290c2hpZnQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAQAAAAAAAADw/x8AAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAPD/HwAAAAAA8P8fAAAAAAAAAAAAAAAAAAAAAAAAAAAARTS45mT3zrBKiWI9wZsc1gAAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAjg1MAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA//8AAAAA
step setup-vdi-md10 sh -c "echo $MD10 | base64 -d | dd of=/dev/vdi bs=512 seek=2097136 conv=notrunc status=none && sync"
zfs_label() { for L in 0 262144; do for i in 0 1 2 3 4 5 6 7; do
  printf '\014\261\272\000\000\000\000\000' | dd of=/dev/vdj bs=1 seek=$((L + 131072 + i * 1024)) conv=notrunc status=none || return 1
done; done; sync; }
step setup-vdj-zfs zfs_label
say "wipefs -n: vdi: $(wipefs -n /dev/vdi | tail -n +2 | head -2 | tr '\n' '|') vdj: $(wipefs -n /dev/vdj | tail -n +2 | head -1)"
refuse md10-at-the-end  "already holds linux_raid_member" /dev/vdi  $M /dev/vdi --yes
refuse zfs-label        "already holds zfs_member"       /dev/vdj  $M /dev/vdj --yes
rootshift targets --json > /tmp/targets2.json 2>&1
tj2() { jq -r --arg p "$1" '.targets[] | select(.path == $p) | "\(.usable) \(.holds // "")"' /tmp/targets2.json; }
check targets-vdi-holds-md "$(tj2 /dev/vdi)" sh -c 'echo "$1" | grep -q "^false linux_raid_member"' _ "$(tj2 /dev/vdi)"
check targets-vdj-holds-zfs "$(tj2 /dev/vdj)" sh -c 'echo "$1" | grep -q "^false zfs_member"' _ "$(tj2 /dev/vdj)"
# an ESP whose content no probe recognises (random bytes) is not run through mkfs.vfat: refused; with --force the
# ESP passes and the next check answers (this guest has no mkfs.vfat or grub-efi: "missing on this system"), the
# ESP still untouched
step setup-vdk-gpt-esp sh -c "printf 'label: gpt\nsize=64MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\ntype=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n' | sfdisk -q /dev/vdk && head -c 1048576 /dev/urandom > /tmp/junk && dd if=/tmp/junk of=/dev/vdk1 bs=1M conv=notrunc status=none && sync"
refuse esp-unknown      "EFI System Partition /dev/vdk1 holds data no probe recognises" /dev/vdk1  $M /dev/vdk2 --install --bootloader grub-efi --initramfs keep --yes
refuse esp-unknown-force "missing on this system"       /dev/vdk1  $M /dev/vdk2 --install --bootloader grub-efi --initramfs keep --yes --force
check esp-force-passed-the-esp "$(head -1 /tmp/err)" sh -c '! grep -q "EFI System Partition" /tmp/err'
check esp-kept-its-bytes "first MiB of vdk1 = the junk written" sh -c 'head -c 1048576 /dev/vdk1 | cmp -s - /tmp/junk'
# Issue 16 §2: a root on dm-crypt is neither wrapped at boot nor migrated (the copy would be plaintext). The mapping
# is made without cryptsetup (cipher_null, no uuid): recognised by its crypt table.
step setup-crypt rootshift testing dm-create plain "0 $(sectors /dev/vdl) crypt cipher_null-ecb - 0 /dev/vdl 0"
refuse wrap-on-crypt    "is on the dm-crypt device"      ""        rootshift wrap /dev/mapper/plain --name cr
check wrap-on-crypt-no-wrapper "$(ls /dev/mapper | tr '\n' ' ')" [ ! -e /dev/mapper/rootshift-cr ]
step setup-wrapper-over-crypt rootshift testing dm-create rootshift-crw "0 $(sectors /dev/vdl) linear /dev/mapper/plain 0"
refuse migrate-crypt-source "moving it would write the decrypted data" /dev/vdm $M /dev/vdm --name crw --yes
step remove-crypt-fixtures sh -c "rootshift testing dm-remove rootshift-crw && rootshift testing dm-remove plain"

# The boot-time guard: two devices with the same filesystem UUID and no journal saying which one is complete (what
# an interrupted migration could leave) -> `rootshift wrap` refuses to pick (exit 4; the initrd hooks stop the boot).
step setup-twin e2image -ra /dev/vdc /dev/vdh   # every used block (dd of the whole 1 GiB: 40 s): it mounts cleanly
timeout 60 rootshift wrap /dev/vdc --name twin > /tmp/out 2> /tmp/err; rc=$?
say "wrap with a twin: exit $rc: $(tr '\n' '|' < /tmp/err)"
assert_eq ambiguous-root-exit-4 4 "$rc"
assert_contains ambiguous-root-message /tmp/err "refusing to pick the root device: 2 devices carry the root filesystem's UUID"
check ambiguous-root-no-wrapper "$(ls /dev/mapper | tr '\n' ' ')" [ ! -e /dev/mapper/rootshift-twin ]
step remove-twin dd if=/dev/zero of=/dev/vdh bs=64k count=2 conv=notrunc status=none

# Last, because a failure here can really migrate / onto the overlap device and change the state for what follows.
# --force: the overlap device shows the source's own filesystem, so without it "already holds" would answer first.
refuse overlap         "overlaps the source"             /dev/mapper/overlap $M /dev/mapper/overlap --yes --force

figure refusal_cases "$N"
umount /tmp/chroot/proc /tmp/chroot/sys /tmp/chroot/dev /tmp/chroot 2>/dev/null
swapoff /dev/vde 2>/dev/null
umount /mnt/vdd 2>/dev/null
scenario_done
