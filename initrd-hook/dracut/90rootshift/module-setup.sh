#!/bin/bash
# dracut module: wrap the root device in a rootshift wrapper before it is mounted (see initrd-hook/README.md).

# called by dracut. Included whenever rootshift is installed, also when wrapping is not enabled: the hook then
# only runs `rootshift choose`, the check that picks the complete copy after an interrupted migration.
check() {
    require_binaries rootshift || return 1
    return 0
}

# called by dracut
depends() {
    # dm: its udev rules (10-dm/55-dm, 95-dm-notify) must be in the initrd, or rootshift (the devicemapper
    # library) waits forever for the udev cookie on the wrapper's first resume.
    echo dm rootfs-block
    return 0
}

# called by dracut
installkernel() {
    hostonly='' instmods dm_mod dm_mirror dm_log dm_region_hash md_mod raid1
    # live media (dmsquash-live): the session's upper on rootshift-upper (live=upper) is ext4 on zram
    if dracut_module_included "dmsquash-live"; then
        hostonly='' instmods zram ext4 overlay
    fi
}

# called by dracut
install() {
    inst_multiple rootshift readlink timeout udevadm modprobe mkdir mv sleep
    inst_simple "$moddir/rootshift-lib.sh" /lib/rootshift-lib.sh
    inst_rules "$moddir/69-rootshift.rules"
    if dracut_module_included "systemd"; then
        # systemd in the initrd: a generator orders rootshift-wrap.service before sysroot.mount and points the
        # mount and the root fsck at the wrapper; no unit is edited while the boot runs (rootshift-systemd-lib.sh)
        inst_multiple systemctl systemd-escape
        inst_simple "$moddir/rootshift-systemd-lib.sh" /lib/rootshift-systemd-lib.sh
        inst_simple "$moddir/rootshift-wrap.sh" /lib/rootshift-wrap.sh
        inst_simple "$moddir/rootshift-crypt-wrap.sh" /lib/rootshift-crypt-wrap.sh
        inst_script "$moddir/rootshift-generator.sh" "$systemdutildir/system-generators/rootshift-generator"
        inst_simple "$moddir/rootshift-wrap.service" "$systemdsystemunitdir/rootshift-wrap.service"
    else
        inst_hook pre-mount 50 "$moddir/rootshift-pre-mount.sh"
    fi
    # a `rootshift flatten` finishes at the first boot: the tree moves to the top of the root filesystem
    inst_hook pre-pivot 50 "$moddir/rootshift-flatten.sh"
    if dracut_module_included "dmsquash-live"; then
        # live=upper: the overlay's upper on rootshift-upper, made before udev triggers the medium
        # (rootshift-live-upper.sh); e2fsprogs' mke2fs makes its ext4
        inst_multiple mke2fs mount umount rmdir tr cat
        inst_hook pre-trigger 50 "$moddir/rootshift-live-upper.sh"
    fi
    # an encrypted root (/ on a dm-crypt mapping, or on a stack over one): its container's name, so the generator
    # knows which LUKS device to wrap when root= names the filesystem (root=UUID=..., as Fedora's is)
    local _mm _cn
    if _mm=$(mountpoint -d "${dracutsysrootdir:-/}" 2> /dev/null) \
        && _cn=$(. "$moddir/rootshift-lib.sh" && rootshift_crypt_name_below "$_mm"); then
        mkdir -p "$initdir/etc/rootshift"
        echo "$_cn" > "$initdir/etc/rootshift/crypt-root"
    fi
    # the setting (wrap=dm|md|no; no file: no): read at boot, so a change needs a new initrd
    # (`rootshift boot enable|disable` rebuilds it)
    if [ -f "${dracutsysrootdir-}/etc/rootshift/rootshift.conf" ]; then
        inst_simple /etc/rootshift/rootshift.conf
    fi
}
