#!/bin/bash
# Issue 21 §2 with the install step: `rootshift install --disk /dev/vdb --encrypt` on the running installed system
# (root=UUID=... on vda1, wrapped at boot by the dracut module; the system's own initramfs tool is dracut with
# systemd), then SeaBIOS boots vdb alone.
# main: refusals first (nothing written to vdb): --crypttab-key without --encrypt, --encrypt with --initramfs keep,
#   --encrypt with --layout plain. Then, with a writer busy, `install --disk /dev/vdb --encrypt --key-file K
#   --crypttab-key K`: GPT with BIOS boot, ESP, an unencrypted /boot (laid out because of --encrypt) and the root
#   partition formatted as LUKS2; the root mirrored into the open container, the switch, the grow; the install step
#   writes /etc/crypttab (the container by its LUKS UUID, key K), keeps K in every future initramfs (dracut.conf.d),
#   regenerates the initramfs (crypttab and K in it) and installs GRUB with /boot on its own partition. A marker
#   written before the move is read through the mapping, and is not at its place in the raw root partition.
# target (vdb alone, as vda, through SeaBIOS and that GRUB): rootshift-crypt-wrap.service wraps the LUKS partition,
#   systemd-cryptsetup opens the container on the wrapper with K from the initramfs: / is ext4 in luks-<UUID> over
#   rootshift-root over vda4, /boot is vda3, and every file written before, during and after the move reads back.
# vm-system: installed
# vm-firmware: bios
# vm-disks: 4G
# vm-then: target firmware=bios disk=vdb
# vm-timeout: 1500
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
MiB=1048576
KEY=/etc/keys/root.key

if [ "$VMTEST_PHASE" = main ]; then
  state=$(wait_running 300)
  check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
  ROOTK=$(kname_of "$(root_majmin)")
  assert_eq root-on-wrapper-over-vda1 "rootshift-root vda1" "$(dm_name "$ROOTK") $(slaves_of "$ROOTK")"
  mkdir -p /etc/keys && (umask 077; printf 'vmtest luks passphrase' > $KEY)
  # ---- refusals: exit 2, the disk untouched
  refusal() {  # refusal NAME WANT ARGS...
    local n=$1 w=$2 rc; shift 2
    timeout 120 rootshift install --disk /dev/vdb --yes "$@" > /tmp/r.out 2> /tmp/r.err < /dev/null; rc=$?
    { echo "== $n: rootshift install --disk /dev/vdb --yes $*"; echo "exit=$rc"; cat /tmp/r.err; } >> "$RES/refusals.txt"
    check "refuse-$n" "exit=$rc: $(head -2 /tmp/r.err | tr '\n' '|' | cut -c1-300)" sh -c "[ $rc = 2 ] && grep -qF -- '$w' /tmp/r.err"
  }
  refusal crypttab-key-without-encrypt "nothing is encrypted here" --crypttab-key $KEY
  refusal encrypt-initramfs-keep "--initramfs keep" --encrypt --key-file $KEY --initramfs keep
  refusal encrypt-layout-plain "--layout plain" --encrypt --key-file $KEY --layout plain
  refusal encrypt-missing-key-file "is not a readable file" --encrypt --key-file /etc/keys/nothing
  assert_eq refusals-left-vdb-blank "" "$(blkid -p -s PTTYPE -o value /dev/vdb)"
  # ---- the install
  M="rootshift-plaintext-marker-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  i=0; while [ $i -lt 2000 ]; do echo "$M $i"; i=$((i + 1)); done > /marker.txt
  sync; echo "$($SHA256SUM /marker.txt | cut -d' ' -f1)  /marker.txt" >> "$SUMS"
  step prefill-8MiB prefill /data 4 2
  writer_start /live 600 1
  writer_wait_more 2 60
  t0=$(now_cs)
  timeout 1200 rootshift install --disk /dev/vdb --encrypt --key-file $KEY --crypttab-key $KEY --pbkdf-memory 32768 \
    --iter-time 200 --yes --json > /tmp/install.json 2> /tmp/install.err; rc=$?
  figure install_s "$(fmt_cs $(($(now_cs) - t0)))"
  cp /tmp/install.json /tmp/install.err "$RES/"
  check install-exit-0 "exit=$rc; stderr: $(tail -3 /tmp/install.err | tr '\n' '|' | cut -c1-400)" [ $rc = 0 ]
  switch_figures /tmp/install.json
  jq -r 'select(.event=="install") | .detail' /tmp/install.json > "$RES/install-steps.txt" 2>/dev/null
  say "install steps: $(tr '\n' '|' < "$RES/install-steps.txt")"
  EV=$(jq -r .event /tmp/install.json 2>/dev/null | uniq | tr '\n' ' ')
  check events-in-order "$EV" sh -c "echo ' $EV' | grep -qE ' layout (.* )?encrypted (.* )?switched (.* )?grown (.* )?plaintext-left (.* )?installed'"
  sfdisk -J /dev/vdb > "$RES/sfdisk.json"
  assert_eq partitions "bios esp boot root" "$(jq -r '[.partitiontable.partitions[].name] | join(" ")' "$RES/sfdisk.json")"
  assert_eq root-partition-is-luks crypto_LUKS "$(blkid -p -s TYPE -o value /dev/vdb4)"
  U=$(blkid -p -s UUID -o value /dev/vdb4); echo "$U" > "$RES/luks-uuid"
  MAPK=$(dm_by_name "luks-$U")
  assert_eq wrapper-over-mapping-over-vdb4 "rootshift-root ${MAPK:-none} vdb4" "$(dm_name "$ROOTK") $(slaves_of "$ROOTK") $(slaves_of "${MAPK:-none}")"
  FSU=$(blkid -s UUID -o value "/dev/$ROOTK"); echo "$FSU" > "$RES/fs-uuid"
  assert_eq boot-is-vdb3 /dev/vdb3 "$(findmnt -no SOURCE /boot)"
  cp /etc/crypttab "$RES/crypttab"
  check crypttab-names-the-container "$(grep -v '^#' /etc/crypttab | tr '\n' '|')" \
    grep -qE "^luks-$U UUID=$U $KEY luks,discard\$" /etc/crypttab
  check fstab-root-is-the-fs-uuid "$(grep ' / ' /etc/fstab)" grep -qE "^UUID=$FSU[[:space:]]+/[[:space:]]" /etc/fstab
  K=$(uname -r)
  lsinitrd "/boot/initrd.img-$K" > /tmp/lsinitrd.txt 2>&1
  check initrd-has-crypttab-entry "$(lsinitrd -f etc/crypttab "/boot/initrd.img-$K" 2>&1 | head -3 | tr '\n' '|')" \
    sh -c "lsinitrd -f etc/crypttab /boot/initrd.img-$K | grep -q '^luks-$U '"
  check initrd-has-the-key "" grep -q "${KEY#/}\$" /tmp/lsinitrd.txt
  check initrd-records-the-container "$(lsinitrd -f etc/rootshift/crypt-root "/boot/initrd.img-$K" 2>&1)" \
    sh -c "[ \"\$(lsinitrd -f etc/rootshift/crypt-root /boot/initrd.img-$K 2>/dev/null)\" = luks-$U ]"
  check grub-cfg-boots-the-fs-uuid "$(grep -m1 -E '^\s*linux\s' /boot/grub/grub.cfg)" \
    sh -c "grep -E '^\s*linux\s' /boot/grub/grub.cfg | head -1 | grep -q 'root=UUID=$FSU'"
  check mbr-of-vdb-has-grub "" sh -c "dd if=/dev/vdb bs=512 count=1 2>/dev/null | grep -aq GRUB"
  step writer-stop-no-errors writer_stop
  step verify-all-checksums verify_sums
  # the marker: through the mapping in plaintext, at its place on the raw partition not
  sync; echo 3 > /proc/sys/vm/drop_caches
  OFF=$(cryptsetup status "luks-$U" | awk '$1 == "offset:" {print $2}')
  P=$(debugfs -R "bmap /marker.txt 0" "/dev/mapper/luks-$U" 2>/dev/null)
  check marker-located "fs block '$P', payload offset '$OFF' sectors" [ -n "$P" -a "$P" -gt 0 -a -n "$OFF" ]
  dd if="/dev/mapper/luks-$U" bs=4096 skip="$P" count=1 2>/dev/null > /tmp/plain.blk
  dd if=/dev/vdb4 bs=512 skip=$((OFF + P * 8)) count=8 2>/dev/null > /tmp/raw.blk
  check marker-through-mapping "" grep -qF "$M" /tmp/plain.blk
  assert_eq marker-not-in-raw-partition 0 "$(grep -cF "$M" /tmp/raw.blk)"
  check raw-block-is-not-plaintext "" sh -c "! cmp -s /tmp/plain.blk /tmp/raw.blk"
  echo "$M" > "$RES/marker"
  scenario_done
  exit 0
fi

# ---- phase "target": vdb alone (the guest's vda), through SeaBIOS and the GRUB rootshift installed ----------------
state=$(wait_running 300)
check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
PREV=$VMTEST_IN/prev
U=$(cat "$PREV/luks-uuid"); FSU=$(cat "$PREV/fs-uuid")
say "cmdline: $(cat /proc/cmdline)"
kernel_rootshift_lines > "$RES/kernel-rootshift.txt"
say "kernel log: $(tr '\n' '|' < "$RES/kernel-rootshift.txt" | cut -c1-600)"
lsblk -o NAME,MAJ:MIN,TYPE,FSTYPE,UUID,MOUNTPOINT | sed 's/^/    | /'
assert_eq vda-is-the-4GiB-disk 4294967296 "$(blockdev --getsize64 /dev/vda)"
check booted-through-grub "$(cat /proc/cmdline)" grep -q 'BOOT_IMAGE=' /proc/cmdline
ROOTK=$(kname_of "$(root_majmin)")
WK=$(slaves_of "$ROOTK")
assert_eq root-is-the-luks-mapping "luks-$U" "$(dm_name "$ROOTK")"
assert_eq mapping-over-wrapper-over-vda4 "rootshift-root vda4" "$(dm_name "$WK") $(slaves_of "$WK")"
assert_eq root-fs-uuid "$FSU" "$(blkid -s UUID -o value "/dev/$ROOTK")"
assert_eq boot-is-vda3 /dev/vda3 "$(findmnt -no SOURCE /boot)"
journalctl -b --no-pager -o short-monotonic > /tmp/journal.txt 2>&1
check crypt-wrap-unit-ran-first "$(grep -m2 -E 'Finished rootshift-crypt-wrap|Finished .*systemd-cryptsetup@' /tmp/journal.txt | tr '\n' '|')" \
  sh -c "grep -n -E 'Finished rootshift-crypt-wrap.service|Finished systemd-cryptsetup@' /tmp/journal.txt | head -1 | grep -q rootshift-crypt-wrap"
check root-fsck-clean "$(grep -m1 -E 'systemd-fsck' /tmp/journal.txt)" grep -qE 'systemd-fsck\[[0-9]+\]: .*: clean, ' /tmp/journal.txt
sync; echo 3 > /proc/sys/vm/drop_caches
n=$(wc -l < "$PREV/sums")
check all-files-intact "$n files written before, during and after the move" $SHA256SUM -c --quiet "$PREV/sums"
check marker-reads-back "" grep -qF "$(cat "$PREV/marker")" /marker.txt
cp "$PREV/sums" "$SUMS"
step write-on-moved-system mkfile /moved-write.bin 2
step verify-new-write verify_sums
scenario_done
