#!/bin/sh
# `rootshift copy-tree` on a real overlayfs root (issue 19 §1, the copier a plain install is made of): / is the
# live-media overlay stage 1 builds (squashfs lower on a read-only loop, ext4 upper). The session changes the merged
# view the ways a live system does — a lower file changed (copied up), a lower file removed (a whiteout in the
# upper), new directories and files owned by a user, hard links, a symlink, a fifo, a device node — while a writer
# keeps writing 1 MiB files. Pass one copies / onto a fresh ext4 on vdb with the writer busy; the writer stops; a
# catch-up pass from pass one's `next_since` makes the copy equal to the merged view: --compare finds 0 differences,
# every file the writer wrote reads back with its checksum, no whiteout (char 0:0) and no trusted.overlay.* reached
# the copy, the target's own mount and /proc, /sys, /dev, /run, /tmp are empty directories, and the host's fsck of
# vdb is clean.
# vm-root: overlay
# vm-disks: 384M 1G
# vm-timeout: 600
# vm-host-fsck: vdb
. /vmtest/lib.sh
T=/mnt/copy
assert_eq root-is-overlay overlay "$(mnt_field / 8)"

# ---- the session's changes -------------------------------------------------------------------------------------
GONE=/etc/vmtest-base-inputs
check lower-files-present "$(ls -l /etc/passwd $GONE 2>&1 | tr '\n' '|')" [ -f /etc/passwd -a -f $GONE ]
echo "user:x:1000:1000::/home/user:/bin/sh" >> /etc/passwd
rm $GONE
mkdir -p /home/user/docs
echo hello > /home/user/docs/a
ln /home/user/docs/a /home/user/docs/a-link
ln -s docs/a /home/user/link
mkfifo /home/user/fifo
mknod /home/user/null c 1 3
chown -R 1000:1000 /home/user
chmod 4750 /home/user/docs/a
check whiteout-in-upper "$(ls -l /run/live/overlay/rw$GONE 2>&1)" [ -c /run/live/overlay/rw$GONE ]

# ---- pass one with a writer busy, then a catch-up pass -----------------------------------------------------------
step mkfs-target mkfs.ext4 -q -F /dev/vdb
mkdir -p $T
step mount-target mount -t ext4 /dev/vdb $T
writer_start /home/user/writes 60 0.2
writer_wait_more 2 60
W0=$(writer_count)
rootshift copy-tree / $T --catch-up 0 --json > /tmp/p1.json 2> /tmp/p1.err; rc=$?
W1=$(writer_count)
say "pass 1: exit $rc, $(cat /tmp/p1.json /tmp/p1.err | tr '\n' '|' | head -c 600)"
assert_eq pass1-exit 0 "$rc"
check writer-wrote-during-pass1 "writer files: $W0 before, $W1 after" [ "$W1" -gt "$W0" ]
SINCE=$(jq -r 'select(.event == "pass") | .next_since' /tmp/p1.json)
figure pass1_s "$(jq -r 'select(.event == "pass") | .seconds' /tmp/p1.json)"
figure pass1_mib $(( $(jq -r 'select(.event == "pass") | .bytes' /tmp/p1.json) / 1048576 ))
check writer-stopped-clean "$(cat /tmp/writer.err 2>/dev/null)" writer_stop
rootshift copy-tree / $T --since "$SINCE" --catch-up 0 --compare --json > /tmp/p2.json 2> /tmp/p2.err; rc=$?
say "pass 2: exit $rc, $(cat /tmp/p2.json /tmp/p2.err | tr '\n' '|' | head -c 900)"
assert_eq pass2-exit 0 "$rc"
assert_eq compared-equal 0 "$(jq -r 'select(.event == "compared") | .differences' /tmp/p2.json)"
P2F=$(jq -r 'select(.event == "pass") | .files' /tmp/p2.json)
P2U=$(jq -r 'select(.event == "pass") | .unchanged' /tmp/p2.json)
check pass2-is-a-catch-up "pass 2 copied $P2F files, left $P2U unchanged" [ "$P2F" -ge 1 -a "$P2U" -gt "$P2F" ]
figure pass2_s "$(jq -r 'select(.event == "pass") | .seconds' /tmp/p2.json)"

# ---- what the copy holds ---------------------------------------------------------------------------------------
sync; echo 3 > /proc/sys/vm/drop_caches
N=$(wc -l < "$SUMS")
sed "s|  /|  $T/|" "$SUMS" > /tmp/copy.sums
check writer-files-read-back "$N checksummed files" sh -c "[ $N -ge 3 ] && $SHA256SUM -c /tmp/copy.sums > /tmp/sumcheck.txt 2>&1"
check passwd-as-changed "$(tail -1 $T/etc/passwd)" grep -q '^user:x:1000:' $T/etc/passwd
check removed-file-absent "$(ls -l $T$GONE 2>&1)" [ ! -e $T$GONE -a ! -L $T$GONE ]
WH=$(find $T -xdev -type c | while read -r f; do stat -c '%t:%T %n' "$f"; done | awk '$1 == "0:0"' | head -3 | tr '\n' ' ')
assert_eq no-whiteouts "" "$WH"
assert_eq owner-kept "1000:1000 4750" "$(stat -c '%u:%g %a' $T/home/user/docs/a)"
assert_eq hard-link-kept "$(stat -c %i $T/home/user/docs/a) 2" "$(stat -c '%i %h' $T/home/user/docs/a-link)"
assert_eq symlink-kept "docs/a 1000" "$(readlink $T/home/user/link) $(stat -c %u $T/home/user/link)"
assert_eq nodes-kept "fifo 1:3" "$(stat -c %F $T/home/user/fifo | cut -d' ' -f1) $(stat -c '%t:%T' $T/home/user/null)"
E=""; for d in proc sys dev run tmp mnt/copy; do [ -d $T/$d ] && [ -z "$(ls -A $T/$d)" ] || E="$E $d"; done
assert_eq not-entered-dirs-empty "" "$E"
step umount-target umount $T
scenario_done
