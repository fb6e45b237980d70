#!/bin/sh
# dracut pre-trigger hook (with and without systemd in the initrd): on a dmsquash-live boot with live=upper
# (rootshift.conf) or rd.rootshift.live=upper, put the live session's overlayfs upper on a rootshift-upper wrapper
# instead of the tmpfs /run/overlayfs, so `rootshift migrate` can move the running session onto a disk later.
#
# It is laid out as dracut's own persistent OverlayFS overlay (dmsquash-live-root.sh, do_live_overlay): ext4 with
# a label unique to this boot on rootshift-upper (dm linear over a zram device), holding the empty directories
# /LiveOS/overlay-rootshift (the upper) and /LiveOS/ovlwork (dracut takes the work directory as
# <upper>/../ovlwork). dmsquash-live-root then mounts the device on /run/initramfs/overlayfs, links /run/overlayfs
# and /run/ovlwork into it and mounts / as overlayfs (lower /run/rootfsbase) — for a root tree directly in
# squashfs.img (Fedora >= 41, KIWI) as always, and also for a LiveOS/rootfs.img medium (a directory overlay turns
# dracut to overlayfs over the mounted rootfs.img instead of the dm snapshot live-rw).
#
# How dracut hears of it: /etc/cmdline.d/90-rootshift-live.conf with rd.live.overlay=<wrapper>:/LiveOS/overlay-
# rootshift and rd.live.overlay.nouserconfirmprompt. dmsquash-live-root is a script of its own started later from
# the initqueue, and reads its options with getarg, which reads /etc/cmdline.d/*.conf (before /proc/cmdline, so a
# user's own option would still win) every time it is called: the file is the one input it is sure to read, with
# or without systemd. Setting shell variables here would not reach it. rd.live.overlay is the name dracut 059-106
# read; dracut-ng >= 110 reads it too (rd.overlay's deprecated alias). nouserconfirmprompt: should the overlay not
# be usable after all, dracut falls back to a temporary overlay instead of waiting at a prompt forever.
#
# Runs as a pre-trigger hook: udevd runs (rootshift's dm calls wait for its acknowledgement, as everywhere else),
# no device has been triggered yet, and dmsquash-live-root, started by udev for the medium, comes later. Does
# nothing unless root= is a live: root (or rd.live.image), or when the command line has its own overlay
# (rd.live.overlay=, rd.overlay=<device>), a read-only overlay or rd.writable.fsimg. Any failure logs one line and
# the session keeps its upper in RAM, as dracut does by default.

# ROOTSHIFT_LIBDIR, ROOTSHIFT_CMDLINE_D: the initrd's /lib and /etc/cmdline.d (initrd-hook/test-generator points
# them elsewhere)
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. "${ROOTSHIFT_LIBDIR:-/lib}/rootshift-lib.sh"

ROOTSHIFT_DRACUT_UPPER=/LiveOS/overlay-rootshift

# rootshift_dracut_live_skip: print why the live upper stays where dracut puts it and return 0, or return 1
rootshift_dracut_live_skip() {
    _rs_v=$(getarg rd.live.overlay=) && [ -n "$_rs_v" ] && echo "the command line has rd.live.overlay=$_rs_v" && return 0
    _rs_v=$(getarg rd.overlay=)
    case "$_rs_v" in
        "" | 0 | 1 | no | off | yes | on) ;;
        *) echo "the command line has rd.overlay=$_rs_v" && return 0 ;;
    esac
    getargbool 0 rd.live.overlay.readonly && echo "the command line has rd.live.overlay.readonly" && return 0
    getargbool 0 rd.overlay.readonly && echo "the command line has rd.overlay.readonly" && return 0
    getargbool 0 rd.writable.fsimg && echo "the command line has rd.writable.fsimg" && return 0
    return 1
}

rootshift_dracut_live_upper() {
    [ "$(rootshift_live_setting)" = upper ] || return 0
    case "$(getarg root=)" in
        live:*) ;;
        *) getargbool 0 rd.live.image || return 0 ;;
    esac
    if _rs_why=$(rootshift_dracut_live_skip); then
        rootshift_log 5 "not putting the live upper on rootshift-upper: $_rs_why"
        rootshift_state state=off backend=dm component= wrapper= "message=live upper as the command line says: $_rs_why"
        return 0
    fi
    if [ ! -x "$ROOTSHIFT_BIN" ]; then
        rootshift_log 3 "$ROOTSHIFT_BIN is missing from the initrd: the live upper stays in RAM"
        return 0
    fi
    # ext4 labels hold 16 bytes: "rsupper-" + 8 hex digits, fresh each boot
    read -r _rs_uuid < /proc/sys/kernel/random/uuid
    _rs_label=rsupper-${_rs_uuid%%-*}
    _rs_node=$(rootshift_make_upper "$_rs_label" "" "${ROOTSHIFT_DRACUT_UPPER#/} LiveOS/ovlwork") || return 0
    mkdir -p "${ROOTSHIFT_CMDLINE_D:-/etc/cmdline.d}"
    echo "rd.live.overlay=$_rs_node:$ROOTSHIFT_DRACUT_UPPER rd.live.overlay.nouserconfirmprompt" \
        > "${ROOTSHIFT_CMDLINE_D:-/etc/cmdline.d}/90-rootshift-live.conf"
    echo "label=$_rs_label" >> "$ROOTSHIFT_STATE/boot"
    echo "upperdir=$ROOTSHIFT_DRACUT_UPPER" >> "$ROOTSHIFT_STATE/boot"
    return 0
}

rootshift_dracut_live_upper
