#!/bin/bash
# An installed Debian system (GPT, ext4 root partition vda1, root=UUID=...) booted through the rootshift boot hooks:
# dracut with systemd inside, dracut without systemd, and initramfs-tools; wrapped with dm and md, turned off with
# rd.rootshift=0, and boots where wrapping fails (a bogus rd.rootshift= value; dm_mod refused by the kernel, with
# initramfs-tools and with systemd's initrd, where the generator's plan to mount the wrapper must be redirected),
# which must still come up, unwrapped, with one "rootshift: ..." error line in the kernel log.
# Each boot runs on its own qcow2 overlay of the same disk image; rootshift.expect= says what this boot must show.
# vm-system: installed
# vm-boot: dracut-dm     dracut       rootshift.expect=dm
# vm-boot: itools-md     itools       rd.rootshift=md rootshift.expect=md
# vm-boot: nosd-md       dracut-nosd  rd.rootshift=md rootshift.expect=md
# vm-boot: itools-dm     itools       rootshift.expect=dm
# vm-boot: dracut-off    dracut       rd.rootshift=0 rootshift.expect=off
# vm-boot: dracut-bogus  dracut       rd.rootshift=bogus rootshift.expect=failed-value
# vm-boot: itools-nodm   itools       module_blacklist=dm_mod rootshift.expect=failed-wrap
# vm-boot: dracut-nodm   dracut       module_blacklist=dm_mod rootshift.expect=failed-wrap
# vm-timeout: 600
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
EXPECT=$(sed -n 's/.*rootshift\.expect=\([^ ]*\).*/\1/p' /proc/cmdline)
state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
figure boot_s "$(cut -d' ' -f1 /proc/uptime | cut -d. -f1)"
check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
ROOT=$(root_majmin); ROOTK=$(kname_of "$ROOT")
UUID=$(awk '$2 == "/" && sub(/^UUID=/, "", $1) { print $1 }' /etc/fstab)   # the root's entry (a swap entry follows)
BYUUID=$(basename "$(readlink -f "/dev/disk/by-uuid/$UUID")")
BYLABEL=$(basename "$(readlink -f /dev/disk/by-label/installed-root)")
kernel_rootshift_lines > "$RES/kernel-rootshift.txt"
say "expect=$EXPECT root=$ROOT ($ROOTK) by-uuid=$BYUUID by-label=$BYLABEL boot: $(tr '\n' ' ' < /run/rootshift/boot 2>/dev/null)"
say "kernel log: $(tr '\n' '|' < "$RES/kernel-rootshift.txt")"
lsblk -o NAME,MAJ:MIN,TYPE,FSTYPE,UUID,MOUNTPOINT | sed 's/^/    | /'
check root-mounted-rw "$(findmnt -no SOURCE,OPTIONS /)" [ "$(findmnt -no OPTIONS / | cut -d, -f1)" = rw ]
errors=$(grep -c 'booting unwrapped' "$RES/kernel-rootshift.txt")

case "$EXPECT" in
  dm|md)
    assert_eq boot-state wrapped "$(boot_info state)"
    assert_eq boot-backend "$EXPECT" "$(boot_info backend)"
    if [ "$EXPECT" = dm ]; then
      assert_eq root-is-dm-wrapper rootshift-root "$(dm_name "$ROOTK")"
      node=/dev/mapper/rootshift-root
    else
      assert_eq root-is-md-wrapper md_rootshift-root "$ROOTK"
      node=/dev/md_rootshift-root
    fi
    assert_eq wrapper-over-vda1 vda1 "$(slaves_of "$ROOTK")"
    assert_eq by-uuid-is-wrapper "$ROOTK" "$BYUUID"
    assert_eq by-label-is-wrapper "$ROOTK" "$BYLABEL"
    assert_eq vda1-not-systemd-ready 0 "$(udev_prop /dev/vda1 SYSTEMD_READY)"
    # not plugged: "inactive", or "activating" = tentative, which a systemd initrd hands over for a device it saw
    # before the wrap (its udev state is SYSTEMD_READY=0 all the same); never "active"
    st=$(systemctl show -P SubState dev-vda1.device); jobs=$(systemctl list-jobs --no-legend | grep -c vda1)
    check vda1-device-unit-not-plugged "dev-vda1.device: $(systemctl is-active dev-vda1.device) ($st); jobs: $jobs" \
      [ \( "$st" = dead -o "$st" = tentative \) -a "$jobs" = 0 ]
    check kernel-log-says-wrapped "$(head -3 "$RES/kernel-rootshift.txt" | tr '\n' '|')" \
      grep -qF "/ is mounted from $node ($EXPECT wrapper over /dev/vda1)" "$RES/kernel-rootshift.txt"
    assert_eq no-wrap-errors 0 "$errors"
    status_json /tmp/st.json; cp /tmp/st.json "$RES/status.json"
    assert_eq status-state wrapped "$(jget /tmp/st.json .state)"
    assert_eq status-legs "$(cat /sys/class/block/vda1/dev)" "$(jget /tmp/st.json '[.legs[].dev] | join(",")')"
    # the root fsck ran, clean, on the wrapper and not on the claimed partition. Who checks it depends on the initrd:
    # dracut without systemd runs e2fsck itself and logs the device; dracut with systemd runs systemd-fsck-root in the
    # initrd, whose device the hook overrides (and records as fsck= in /run/rootshift/boot); initramfs-tools has no
    # fsck in its initrd, so the booted system's systemd-fsck-root checks "Root Device" = the device / is mounted from
    journalctl -b --no-pager -o short-monotonic 2>/dev/null | grep -E 'systemd-fsck\[[0-9]+\]: |dracut: issuing e2fsck|File System Check on' > "$RES/fsck-lines.txt"
    say "fsck lines: $(tr '\n' '|' < "$RES/fsck-lines.txt" | cut -c1-400)"
    check root-fsck-clean "$(grep -m1 -E 'clean|issuing' "$RES/fsck-lines.txt")" \
      grep -qE 'systemd-fsck\[[0-9]+\]: installed-root: clean, |dracut: issuing e2fsck -a ' "$RES/fsck-lines.txt"
    if grep -q 'dracut: issuing e2fsck' "$RES/fsck-lines.txt"; then
      fsckdev=$(sed -n 's/.*dracut: issuing e2fsck -a \(.*\)$/\1/p' "$RES/fsck-lines.txt" | head -1)
    elif [ -n "$(boot_info fsck)" ]; then
      fsckdev=$(boot_info fsck)
    elif grep -q 'File System Check on Root Device' "$RES/fsck-lines.txt"; then
      fsckdev=$(findmnt -no SOURCE /)    # systemd-fsck-root checks the device of the mounted /
    else
      fsckdev="(no record of which device the root fsck checked)"
    fi
    # fsck= is recorded resolved (the initrd's names differ from the booted system's): compare devices
    assert_eq root-fsck-on-wrapper "$(readlink -f "$node")" "$(readlink -f "$fsckdev" 2>/dev/null || echo "$fsckdev")"
    ;;
  off)
    assert_eq boot-state off "$(boot_info state)"
    assert_eq root-is-vda1 vda1 "$ROOTK"
    assert_eq by-uuid-is-vda1 vda1 "$BYUUID"
    check no-wrapper "$(ls /sys/block | grep -c rootshift) rootshift devices" [ -z "$(ls /sys/block | grep rootshift; for d in /sys/block/dm-*; do cat $d/dm/name 2>/dev/null; done | grep rootshift)" ]
    assert_eq no-wrap-errors 0 "$errors"
    assert_contains kernel-log-says-off "$RES/kernel-rootshift.txt" "turned off by rd.rootshift=0: not wrapping the root device /dev/vda1"
    assert_eq boot-message-off "turned off by rd.rootshift=0" "$(boot_info message)"
    ;;
  failed-*)
    assert_eq boot-state failed "$(boot_info state)"
    assert_eq root-is-vda1 vda1 "$ROOTK"
    assert_eq by-uuid-is-vda1 vda1 "$BYUUID"
    check no-wrapper "$(for d in /sys/block/dm-*; do cat $d/dm/name 2>/dev/null; done | tr '\n' ' ')" \
      [ -z "$(ls /sys/block | grep rootshift; for d in /sys/block/dm-*; do cat $d/dm/name 2>/dev/null; done | grep rootshift)" ]
    assert_eq one-error-line 1 "$errors"
    if [ "$EXPECT" = failed-value ]; then
      assert_contains error-names-the-value "$RES/kernel-rootshift.txt" "rd.rootshift=bogus is not dm, md or 0; booting unwrapped from /dev/vda1"
    else
      assert_contains error-names-the-command "$RES/kernel-rootshift.txt" "rootshift wrap --backend dm /dev/vda1 failed (exit"
      assert_contains error-says-unwrapped "$RES/kernel-rootshift.txt" "; booting unwrapped from /dev/vda1"
    fi
    check journal-has-the-message "$(journalctl -b -k --no-pager | grep -c 'rootshift: .*booting unwrapped') journal lines" \
      [ "$(journalctl -b -k --no-pager | grep -c 'rootshift: .*booting unwrapped')" -ge 1 ]
    rootshift status > /tmp/st.out 2> /tmp/st.err; rc=$?
    check status-refuses-unwrapped "exit=$rc: $(head -2 /tmp/st.err | tr '\n' ' ')" [ $rc = 2 ]
    check status-names-the-boot-failure "$(tail -1 /tmp/st.err)" grep -q 'this boot: the rootshift hook failed' /tmp/st.err
    # --json: the one shape, no wrappers, the hook's reason (issue 16 §4)
    status_json /tmp/stj.json; rc=$?; cp /tmp/stj.json.doc "$RES/status-unwrapped.json"
    assert_eq status-json-unwrapped-exit-0 0 "$rc"
    assert_eq status-json-no-wrappers "1 0 failed" "$(jq -r '"\(.version) \(.wrappers | length) \(.boot.state)"' /tmp/stj.json.doc)"
    jm=$(jq -r .boot.message /tmp/stj.json.doc); bm=$(boot_info message)
    check status-json-boot-reason "status: '$jm'; /run/rootshift/boot: '$bm'" [ -n "$jm" -a "$jm" = "$bm" ]
    ;;
  *)
    record expect-known FAIL 0 "no rootshift.expect= on the command line: '$(cat /proc/cmdline)'"
    ;;
esac
case "$VMTEST_PHASE" in
  dracut-*)
    # systemd in the initrd (issue 17 §3): rootshift-wrap.service ran before sysroot.mount, which the generator had
    # already pointed at the wrapper: no unit edited and no daemon-reload in the initrd, except when the plan was
    # wrong (dracut-nodm: wrapping failed, so the mount is redirected to the partition) — and then no device job
    # left waiting for the wrapper that never came
    journalctl -b --no-pager -o short-monotonic 2>/dev/null | awk '{print} /Switching root/ {exit}' > "$RES/initrd-journal.txt"
    reloads=$(grep -cE 'systemd\[1\]: Reloading' "$RES/initrd-journal.txt")
    fin=$(grep -nE 'Finished rootshift-wrap.service' "$RES/initrd-journal.txt" | head -1 | cut -d: -f1)
    mnt=$(grep -nE 'Mounted sysroot.mount|Mounted /sysroot' "$RES/initrd-journal.txt" | head -1 | cut -d: -f1)
    check wrap-unit-ran-before-mount "journal line of 'Finished rootshift-wrap.service': ${fin:-none}, of the /sysroot mount: ${mnt:-none}" \
      [ -n "$fin" -a -n "$mnt" -a "${fin:-0}" -lt "${mnt:-0}" ]
    if [ "$VMTEST_PHASE" = dracut-nodm ]; then
      check initrd-reloaded "$reloads reloads in the initrd" [ "$reloads" -ge 1 ]
      assert_contains redirect-logged "$RES/kernel-rootshift.txt" "the root is mounted from /dev/disk/by-uuid/$UUID (systemd reloads its units for that)"
    else
      assert_eq no-reload-in-initrd 0 "$reloads"
    fi
    tmo=$(journalctl -b --no-pager 2>/dev/null | grep -c 'Timed out waiting for device')
    assert_eq no-device-timeouts 0 "$tmo"
    ;;
esac
step write-and-read-root sh -c 'echo written > /root/probe && sync && [ "$(cat /root/probe)" = written ]'
if [ "$VMTEST_PHASE" = dracut-dm ]; then
  # the image installed the package built from the checkout (issue 17 §2): dpkg knows it, the man pages and the
  # completions are there, the binary is the packaged one (dynamic, the suite's testing build), and the spin's
  # setting (rootshift boot enable --backend dm --no-initramfs at image build) is what this initrd carried
  assert_eq package-installed "install ok installed" "$(dpkg-query -W -f '${Status}' rootshift 2>&1)"
  check binary-from-package "$(dpkg -S /usr/sbin/rootshift 2>&1)" sh -c 'dpkg -S /usr/sbin/rootshift | grep -q "^rootshift: "'
  check binary-dynamic "$(ldd /usr/sbin/rootshift 2>&1 | head -2 | tr '\n' ' ')" sh -c 'ldd /usr/sbin/rootshift | grep -q libc.so'
  check version-says-testing "$(rootshift --version)" sh -c 'rootshift --version | grep -q "testing build"'
  man rootshift-migrate > /tmp/man.txt 2> /tmp/man.err; rc=$?
  check man-rootshift-migrate "exit=$rc, $(wc -l < /tmp/man.txt) lines: $(grep -m1 -i -A1 '^NAME' /tmp/man.txt | tr '\n' ' ') $(head -c 200 /tmp/man.err)" \
    sh -c '[ '$rc' = 0 ] && grep -q -- "--detach" /tmp/man.txt && grep -qi "rootshift-migrate" /tmp/man.txt'
  check man-rootshift-boot "$(man -w rootshift-boot 2>&1)" man -w rootshift-boot
  check bash-completion "$(ls /usr/share/bash-completion/completions/rootshift 2>&1)" [ -s /usr/share/bash-completion/completions/rootshift ]
  assert_eq setting-file "wrap=dm" "$(grep -E '^[[:space:]]*wrap' /etc/rootshift/rootshift.conf 2>&1 | tr -d ' ')"
  rootshift boot show > /tmp/bshow.txt 2>&1; say "rootshift boot show: $(tr '\n' '|' < /tmp/bshow.txt)"
  assert_contains boot-show-setting /tmp/bshow.txt "wrap=dm"
fi
scenario_done
