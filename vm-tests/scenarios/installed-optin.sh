#!/bin/bash
# Installing the package must not change how a machine boots (issue 17 §3): wrapping is opt-in.
# On the installed system (the image's spin turned wrapping on): purge the package and install it again from its
# .deb — a fresh install on a running system, no setting. Its dpkg trigger rebuilds the initrd (dracut, host-only);
# the host boots that initrd next, so each later boot runs an initrd built from the installed package:
#   package   the image's boot (wrapped, dm); purge + reinstall; the trigger's new initrd
#   fresh     booted from it: not wrapped, status says how to turn it on; `rootshift boot enable` rebuilds it
#   enabled   booted from that: wrapped (dm), status shows the wrapper; `rootshift boot disable` rebuilds it, and
#             that initrd carries wrap=no (not booted: an initrd without wrapping enabled booting unwrapped is what
#             `fresh` proves, and the hook's reading of wrap=no is initrd-hook/test-lib's)
# Each boot's initrd is shipped back as results/initrd.img and booted by the next (vm-then initrd=).
# vm-system: installed
# vm-boot: package dracut
# vm-disks: 2G
# vm-then: fresh boot=same initrd=initrd.img
# vm-then: enabled boot=same from=fresh initrd=initrd.img tier=full
# (CI boots package and fresh: the enable/disable commands' initrd rebuilds are 2 x ~100 s under TCG; an initrd with
# wrapping enabled booting wrapped is what installed-wrap and the crash scenarios boot every time)
# vm-timeout: 900
. "$VMTEST_IN/lib.sh"
. "$VMTEST_IN/syslib.sh"
state=$(wait_running 300)
echo "VMTEST-SYSTEM-RUNNING $state uptime=$(cut -d' ' -f1 /proc/uptime)"
check system-running "is-system-running=$state; failed: $(systemctl --failed --plain --no-legend | tr '\n' '|')" [ "$state" = running ]
K=$(uname -r)
INITRD=/boot/initrd.img-$K
ROOTK=$(kname_of "$(root_majmin)")
kernel_rootshift_lines > "$RES/kernel-rootshift.txt"
say "phase=$VMTEST_PHASE root=$ROOTK boot: $(tr '\n' ' ' < /run/rootshift/boot 2>/dev/null)"
say "setting: $(cat /etc/rootshift/rootshift.conf 2>&1 | tr '\n' '|')"

# ship_initrd: the initrd the next boot runs (the host boots it: vm-then initrd=initrd.img)
ship_initrd() {
  cp "$INITRD" "$RES/initrd.img" && figure initrd_mib $(( $(stat -c %s "$INITRD") >> 20 ))
  # what went into it: the setting (or none) and the hook
  lsinitrd "$INITRD" > /tmp/lsinitrd.txt 2>&1
  say "initrd rootshift files: $(grep -E 'rootshift' /tmp/lsinitrd.txt | awk '{print $NF}' | tr '\n' ' ')"
}

# assert_unwrapped WHY: this boot did not wrap the root, and says WHY
assert_unwrapped() {
  assert_eq boot-state-off off "$(boot_info state)"
  assert_eq root-is-vda1 vda1 "$ROOTK"
  check no-wrapper "$(for d in /sys/block/dm-*; do cat $d/dm/name 2>/dev/null; done | tr '\n' ' ')" \
    [ -z "$(ls /sys/block | grep rootshift; for d in /sys/block/dm-*; do cat $d/dm/name 2>/dev/null; done | grep rootshift)" ]
  assert_contains boot-says-why /run/rootshift/boot "$1"
  check no-wrap-errors "$(grep -c 'booting unwrapped' "$RES/kernel-rootshift.txt") error lines" \
    [ "$(grep -c 'booting unwrapped' "$RES/kernel-rootshift.txt")" = 0 ]
  # human status: nothing wrapped (exit 2), and the way to turn it on
  rootshift status > /tmp/st.out 2> /tmp/st.err; rc=$?
  say "status (exit $rc): $(cat /tmp/st.out /tmp/st.err | tr '\n' '|' | cut -c1-400)"
  check status-exit-2-unwrapped "exit=$rc" [ $rc = 2 ]
  check status-says-how-to-enable "$(cat /tmp/st.err | tr '\n' '|' | cut -c1-300)" grep -q 'rootshift boot enable' /tmp/st.err
  status_json /tmp/stj.json; rc=$?; cp /tmp/stj.json.doc "$RES/status-$VMTEST_PHASE.json"
  assert_eq status-json-off "0 0 off" "$rc $(jq -r '"\(.wrappers | length) \(.boot.state)"' /tmp/stj.json.doc)"
  # migrate refuses with the same way out, and changes nothing
  rootshift migrate /dev/vdb --dry-run > /tmp/mig.out 2> /tmp/mig.err; rc=$?
  check migrate-refuses-unwrapped "exit=$rc: $(tr '\n' '|' < /tmp/mig.err | cut -c1-300)" [ $rc = 2 ]
  check migrate-names-boot-enable "$(tr '\n' '|' < /tmp/mig.err | cut -c1-300)" grep -q 'rootshift boot enable' /tmp/mig.err
}

# regen_step NAME CMD...: run CMD (it rebuilds the initrd), check the initrd is new
regen_step() {
  local name=$1 before after t0 rc
  shift
  before=$(stat -c %Y.%s "$INITRD" 2>/dev/null)
  sleep 1
  t0=$(now_cs)
  "$@" > "/tmp/$name.out" 2> "/tmp/$name.err"; rc=$?
  figure "${name}_s" "$(fmt_cs $(( $(now_cs) - t0 )))"
  say "$*: exit $rc: $(cat "/tmp/$name.out" "/tmp/$name.err" | tr '\n' '|' | cut -c1-600)"
  check "$name" "exit=$rc" [ $rc = 0 ]
  after=$(stat -c %Y.%s "$INITRD" 2>/dev/null)
  check "$name-rebuilt-initrd" "before=$before after=$after" [ -n "$after" -a "$before" != "$after" ]
}

case "$VMTEST_PHASE" in
  package)
    assert_eq image-boot-wrapped "wrapped dm" "$(boot_info state) $(boot_info backend)"
    deb=/var/cache/rootshift-vmtest/rootshift.deb
    step purge-package dpkg --purge rootshift
    check purge-removed-setting "$(ls /etc/rootshift 2>&1)" [ ! -e /etc/rootshift/rootshift.conf ]
    # installing it is what a user does: dpkg -i, the update-initramfs trigger rebuilds the initrd
    regen_step install-package dpkg -i "$deb"
    assert_eq package-installed "install ok installed" "$(dpkg-query -W -f '${Status}' rootshift 2>&1)"
    check no-setting-after-install "$(ls -la /etc/rootshift 2>&1 | tr '\n' ' ')" [ ! -e /etc/rootshift/rootshift.conf ]
    rootshift boot show > /tmp/bshow.txt 2>&1; say "boot show: $(tr '\n' '|' < /tmp/bshow.txt)"
    assert_contains boot-show-default /tmp/bshow.txt "wrap=no"
    ship_initrd
    check initrd-has-hook "$(grep -c rootshift /tmp/lsinitrd.txt) rootshift files" grep -q 'usr/sbin/rootshift' /tmp/lsinitrd.txt
    check initrd-has-no-setting "" sh -c '! grep -q "etc/rootshift/rootshift.conf" /tmp/lsinitrd.txt'
    ;;
  fresh)
    assert_unwrapped "message=wrapping is not enabled"
    # the hook still ran its check (rootshift choose) although it does not wrap
    check choose-ran "$(ls /run/rootshift 2>&1 | tr '\n' ' ')" [ -e /run/rootshift/choose.out ]
    regen_step boot-enable rootshift boot enable
    assert_eq setting-enabled "wrap=dm" "$(grep -E '^[[:space:]]*wrap' /etc/rootshift/rootshift.conf 2>&1 | tr -d ' ')"
    ship_initrd
    check initrd-has-setting "" grep -q 'etc/rootshift/rootshift.conf' /tmp/lsinitrd.txt
    ;;
  enabled)
    assert_eq boot-state wrapped "$(boot_info state)"
    assert_eq boot-backend dm "$(boot_info backend)"
    assert_eq root-is-dm-wrapper rootshift-root "$(dm_name "$ROOTK")"
    assert_eq wrapper-over-vda1 vda1 "$(slaves_of "$ROOTK")"
    status_json /tmp/st.json; cp /tmp/st.json.doc "$RES/status-enabled.json"
    assert_eq status-wrapped wrapped "$(jget /tmp/st.json .state)"
    regen_step boot-disable rootshift boot disable
    assert_eq setting-disabled "wrap=no" "$(grep -E '^[[:space:]]*wrap' /etc/rootshift/rootshift.conf 2>&1 | tr -d ' ')"
    ship_initrd
    lsinitrd -f etc/rootshift/rootshift.conf "$INITRD" > /tmp/initrd-conf.txt 2>&1
    say "the setting in the new initrd: $(tr '\n' '|' < /tmp/initrd-conf.txt)"
    assert_eq initrd-setting-disabled "wrap=no" "$(grep -E '^[[:space:]]*wrap' /tmp/initrd-conf.txt | tr -d ' ')"
    ;;
  *)
    record phase-known FAIL 0 "unknown phase $VMTEST_PHASE"
    ;;
esac
step write-and-read-root sh -c 'echo written > /root/probe && sync && [ "$(cat /root/probe)" = written ]'
scenario_done
