#!/bin/bash
# Reinstall onto a disk that holds an earlier install and a data partition, keeping the data partition (KIWI's
# retain_last), under UEFI: the data partition stays mounted (read-only) throughout, so the kernel learns the new
# table through BLKPG. `--retain-last exact` with a layout that would not start its last partition where the
# kept one starts is refused with both addresses, and the disk's bytes (both tables and the data) are unchanged;
# `--retain-last fit` installs with systemd-boot (bootctl + kernel-install: a Boot Loader Specification entry on the
# ESP the layout made), and after OVMF with an empty NVRAM boots the disk alone through systemd-boot (its LoaderInfo
# EFI variable) the data files all match.
# vm-system: live
# vm-firmware: uefi
# vm-disks: 4G
# vm-then: target firmware=uefi tier=full
# (CI boots main: the kept partition and the new layout are checked there; a disk laid out by install --disk
# booting alone is what disk-install (BIOS) and live-install-uefi (UEFI, Secure Boot) prove in CI)
# vm-timeout: 1500
# vm-host-fsck: vda2
ROOTP=/dev/vda2
BACKEND=dm
FW=uefi
BOOTLOADER=systemd-boot
INSTALL_CMD="rootshift install --disk /dev/vda --retain-last fit --bootloader systemd-boot --initramfs keep --yes --json"
OLD_LAYOUT='label: gpt
size=64MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=oldesp
size=1500MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=oldroot
size=64MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=data'

disk_hashes() {  # both partition tables and the whole data partition
  { dd if=/dev/vda bs=1M count=1 2>/dev/null | $SHA256SUM
    dd if=/dev/vda bs=1M skip=$(( $(blockdev --getsize64 /dev/vda) / 1048576 - 1 )) 2>/dev/null | $SHA256SUM
    $SHA256SUM < /dev/vda3; } | cut -d' ' -f1 | tr '\n' ' '
}

before_install() {
  step old-layout sh -c "echo '$OLD_LAYOUT' | sfdisk -q /dev/vda && udevadm settle"
  step data-mkfs /usr/sbin/mkfs.ext4 -q -L data -E lazy_itable_init=0,lazy_journal_init=0 /dev/vda3
  mkdir -p /srv/data && mount /dev/vda3 /srv/data
  : > "$RES/data.sums"
  for i in 0 1 2 3 4 5; do
    head -c 1048576 /dev/urandom > /tmp/d.bin && echo "$($SHA256SUM < /tmp/d.bin | cut -d' ' -f1)  /srv/data/d$i" >> "$RES/data.sums" && cp /tmp/d.bin /srv/data/d$i
  done
  umount /srv/data && mount -o ro /dev/vda3 /srv/data
  DATA_PARTUUID=$(blkid -p -s PART_ENTRY_UUID -o value /dev/vda3); echo "$DATA_PARTUUID" > "$RES/data-partuuid"
  say "old layout: $(lsblk -rno NAME,SIZE,PARTLABEL /dev/vda | tr '\n' '|'); data PARTUUID $DATA_PARTUUID"
  H0=$(disk_hashes); echo "$H0" > "$RES/hashes-before"

  # exact: the new layout (systemd-boot: no BIOS boot partition) would start its last partition at 1 MiB + 256 MiB +
  # 1 GiB = sector 2623488, the kept one starts at 1 MiB + 64 MiB + 1500 MiB = sector 3205120: refused, nothing written
  rootshift install --disk /dev/vda --retain-last exact --bootloader systemd-boot --root-size 1G --yes > /tmp/ex.out 2> /tmp/ex.err; rc=$?
  cp /tmp/ex.err "$RES/exact-refusal.txt"; say "exact: exit $rc: $(tr '\n' '|' < /tmp/ex.err)"
  assert_eq exact-mismatch-exit-2 2 "$rc"
  assert_contains exact-names-new-start /tmp/ex.err "sector 2623488"
  assert_contains exact-names-kept-start /tmp/ex.err "sector 3205120"
  # fit with a root that runs into the kept partition: refused too
  rootshift install --disk /dev/vda --retain-last fit --bootloader systemd-boot --root-size 3G --yes > /tmp/fit.out 2> /tmp/fit.err; rc=$?
  cp /tmp/fit.err "$RES/fit-refusal.txt"; say "fit 3G: exit $rc: $(tr '\n' '|' < /tmp/fit.err)"
  assert_eq fit-overlap-exit-2 2 "$rc"
  assert_contains fit-names-the-overlap /tmp/fit.err "3205120"
  H1=$(disk_hashes); echo "$H1" > "$RES/hashes-after-refusals"
  say "hashes (gpt head, gpt tail, data) before: $H0"
  say "hashes (gpt head, gpt tail, data) after:  $H1"
  assert_eq refusals-changed-no-byte "$H0" "$H1"
  check data-still-mounted "$(findmnt -no SOURCE,OPTIONS /srv/data)" mountpoint -q /srv/data
}

main_extra() {
  sfdisk -J /dev/vda > "$RES/sfdisk.json"
  assert_eq three-partitions-data-kept "esp root data" "$(jq -r '[.partitiontable.partitions[].name] | join(" ")' "$RES/sfdisk.json")"
  assert_eq data-partuuid-kept "$(cat "$RES/data-partuuid")" "$(blkid -p -s PART_ENTRY_UUID -o value /dev/vda3)"
  assert_eq data-start-kept 3205120 "$(cat /sys/class/block/vda3/start)"
  check data-still-mounted-after "$(findmnt -no SOURCE,OPTIONS /srv/data)" mountpoint -q /srv/data
  sync; echo 3 > /proc/sys/vm/drop_caches
  check data-files-intact "$(wc -l < "$RES/data.sums") files" $SHA256SUM -c --quiet "$RES/data.sums"
  check blkpg-was-used "partitioned event: $(jq -c 'select(.event=="partitioned")' /tmp/migrate.json)" \
    sh -c "jq -r 'select(.event==\"partitioned\") | .kernel' /tmp/migrate.json | grep -q blkpg"
  umount /srv/data
}

target_extra() {
  assert_eq target-data-partuuid "$(cat "$VMTEST_IN/prev/data-partuuid")" "$(blkid -p -s PART_ENTRY_UUID -o value /dev/vda3)"
  mkdir -p /srv/data && mount -o ro /dev/vda3 /srv/data
  check target-data-files-intact "$(wc -l < "$VMTEST_IN/prev/data.sums") files" $SHA256SUM -c --quiet "$VMTEST_IN/prev/data.sums"
  umount /srv/data
}
. "$VMTEST_IN/_live-install-boot.inc"
