#!/bin/sh
# dracut pre-mount hook, for initrds without systemd (sourced by dracut's init; with systemd in the initrd,
# rootshift-generator.sh and rootshift-wrap.service do this instead): wrap the root device, then make the root
# mount use the wrapper. On any failure the boot goes on unwrapped (see rootshift-lib.sh).

type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/rootshift-lib.sh

rootshift_dracut() {
    local _comp _node _d _be
    _be=$(rootshift_backend)
    case "$root" in
        live:*)
            # dmsquash-live: / is the dm snapshot live-rw (the overlayfs variant has no block device to wrap)
            _comp=/dev/mapper/live-rw
            if [ ! -b "$_comp" ]; then
                # the overlay's upper is on rootshift-upper (rootshift-live-upper.sh): that is what moves
                rootshift_live_upper_made && return 0
                rootshift_unwrappable "$_be" "$root" "no $_comp (an overlayfs live root cannot be wrapped)"
                return 0
            fi
            ;;
        block:*)
            _comp=${root#block:}
            ;;
        *)
            rootshift_unwrappable "$_be" "${root:-none}" "root=${root:-(none)} is not a block device"
            return 0
            ;;
    esac
    _node=$(rootshift_wrap_root "$_comp")
    case $? in
        0) ;;
        2) die "rootshift: not booting: no device is known to be complete after an interrupted migration; see the message above (it names rd.rootshift.pick=)" ;;
        *) return 0 ;;
    esac

    case "$root" in
        live:*)
            # dmsquash-live wrote mount/01-*-live.sh for live-rw; mount hooks run in order, first mount wins.
            _d=$(getarg rootflags=)
            printf 'mount %s %s "$NEWROOT"\n' "${_d:+-o $_d}" "$_node" > "$hookdir/mount/00-rootshift.sh"
            ;;
        *)
            # rootfs-block's mount hook mounts (and fscks) ${root#block:}.
            root="block:$_node"
            export root
            ;;
    esac
    ln -sf "$_node" /dev/root 2> /dev/null
    return 0
}

rootshift_dracut
