#!/bin/sh
# Shared by rootshift-generator.sh and rootshift-wrap.sh (dracut with systemd in the initrd; sourced after
# dracut-lib.sh and rootshift-lib.sh).
#
# How the root gets mounted from the wrapper without editing units while the boot runs: the generator points
# sysroot.mount (and the root's fsck) at the wrapper's node, whose name is fixed (/dev/mapper/rootshift-root,
# /dev/md_rootshift-root), and orders rootshift-wrap.service before them; the mount then waits for the wrapper
# like for any device. Only when the plan turns out wrong at run time (wrapping failed: boot the device unwrapped;
# or, not wrapping, an interrupted migration left another device to boot than root= names) does
# rootshift-wrap.service write /run/rootshift/redirect and `systemctl daemon-reload`: the generator reruns and
# points the mount at that device.

# rootshift_systemd_root: print the root device to wrap, as dracut's generators read root= (block: the device
# path; a dmsquash-live root: /dev/mapper/live-rw); return 1 when there is no block device to wrap (nfs, an
# overlayfs live root, no root=) and print what root= said.
rootshift_systemd_root() {
    _rs_root=$(getarg root=)
    case "$_rs_root" in
        live:* | CDLABEL=*)
            # dmsquash-live: overlayfs variants mount LiveOS_rootfs, not a device (the overlayfs issue)
            if getargbool 0 rd.live.overlay.overlayfs || [ -e /xor_overlayfs ]; then
                echo "$_rs_root"
                return 1
            fi
            echo /dev/mapper/live-rw
            return 0
            ;;
    esac
    if getargbool 0 rd.live.image; then
        echo /dev/mapper/live-rw
        return 0
    fi
    _rs_root=${_rs_root#block:}
    case "$_rs_root" in
        LABEL=* | UUID=* | PARTUUID=* | PARTLABEL=*)
            label_uuid_to_dev "$_rs_root"
            return 0
            ;;
        /dev/nfs) ;;
        /dev/*)
            echo "$_rs_root"
            return 0
            ;;
    esac
    echo "${_rs_root:-none}"
    return 1
}

# rootshift_systemd_what: print the device sysroot.mount must mount instead of root='s, and return 0; return 1
# when root='s device is right (not wrapping, nothing redirected, or no block device to wrap).
rootshift_systemd_what() {
    if [ -s "$ROOTSHIFT_STATE/redirect" ]; then
        read -r _rs_w < "$ROOTSHIFT_STATE/redirect"
        echo "$_rs_w"
        return 0
    fi
    rootshift_systemd_root > /dev/null || return 1
    case "$(rootshift_backend)" in
        dm) echo /dev/mapper/rootshift-root ;;
        md) echo /dev/md_rootshift-root ;;
        *) return 1 ;;
    esac
}
