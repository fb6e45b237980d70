#!/bin/bash
# The guest side of scripts/demo (not a test). Every line meant for the viewer starts with "DEMO| ".
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
show() { sed -u 's/^/DEMO| /' > /dev/console; }
say_() { echo "$*" | show; }
banner() { say_ ""; say_ "==== $* ===="; }
wait_running 300 > /dev/null

if [ "$VMTEST_PHASE" = main ]; then
  banner "the live system is up: / is on the rootshift wrapper over the live image"
  findmnt -no SOURCE,FSTYPE,SIZE / | show
  lsblk -o NAME,SIZE,TYPE,MOUNTPOINTS | show
  rootshift status 2>&1 | show
  banner "a writer keeps writing files on / the whole time"
  writer_start /demo 400 2
  writer_wait_more 1 60
  banner "rootshift install --disk /dev/vda --yes   (lay out the blank disk, move / there live, make it boot)"
  rootshift install --disk /dev/vda --yes --initramfs keep 2>&1 | show
  say_ "exit status ${PIPESTATUS[0]}"
  banner "the CD is no longer in use: eject it"
  say_ "eject: $(host_request eject)"
  n0=$(writer_count); writer_wait_more 2 60; writer_stop
  say_ "the writer went on: $n0 -> $(writer_count) files, none lost: $(verify_sums > /dev/null && echo 'all checksums match')"
  banner "now / runs from the new disk"
  findmnt -no SOURCE,FSTYPE,SIZE / | show
  lsblk -o NAME,SIZE,TYPE,MOUNTPOINTS | show
  blkid -s UUID -o value "$(findmnt -no SOURCE /)" > "$RES/uuid"
  say_ "powering off; next the disk boots on its own (no CD, no -kernel: firmware + GRUB)"
else
  banner "booted from the installed disk alone"
  say_ "kernel command line: $(cat /proc/cmdline)"
  say_ "/ is $(findmnt -no SOURCE,FSTYPE,SIZE /) over $(ls /sys/dev/block/$(mountpoint -d /)/slaves)"
  say_ "root filesystem UUID $(blkid -s UUID -o value "$(findmnt -no SOURCE /)") (set during the install: $(cat "$VMTEST_IN/prev/uuid"))"
  n=$(grep -c . "$VMTEST_IN/prev/sums")
  say_ "files written during the live session: $n, $($SHA256SUM -c --quiet "$VMTEST_IN/prev/sums" > /dev/null 2>&1 && echo 'all intact' || echo 'MISMATCH')"
  rootshift status 2>&1 | show
fi
scenario_done
