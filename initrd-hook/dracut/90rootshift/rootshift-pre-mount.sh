#!/bin/sh
# dracut pre-mount hook (sourced; with systemd in the initrd by dracut-pre-mount.service, which is ordered
# after the initqueue and before sysroot.mount and the root fsck): wrap the root device, then make the root
# mount use the wrapper. On any failure the boot goes on unwrapped (see rootshift-lib.sh).

type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/rootshift-lib.sh

rootshift_dracut() {
    local _comp _node _fsck _u _d _be
    _be=$(rootshift_backend)
    case "$root" in
        live:*)
            # dmsquash-live: / is the dm snapshot live-rw (the overlayfs variant has no block device to wrap)
            _comp=/dev/mapper/live-rw
            if [ ! -b "$_comp" ]; then
                if rootshift_not_wrapping "$_be"; then
                    rootshift_off_state "$_be" "$root"
                else
                    rootshift_fail "$root" "$_be" "no $_comp (an overlayfs live root cannot be wrapped)"
                fi
                return 0
            fi
            ;;
        block:*)
            _comp=${root#block:}
            ;;
        *)
            if rootshift_not_wrapping "$_be"; then
                rootshift_off_state "$_be" "${root:-none}"
                return 0
            fi
            rootshift_fail "${root:-none}" "$_be" "root=${root:-(none)} is not a block device"
            return 0
            ;;
    esac
    _node=$(rootshift_wrap_root "$_comp")
    case $? in
        0) ;;
        2) die "rootshift: not booting: no device is known to be complete after an interrupted migration; see the message above (it names rd.rootshift.pick=)" ;;
        *) return 0 ;;
    esac

    if [ -n "$DRACUT_SYSTEMD" ]; then
        # sysroot.mount comes from a generator (systemd-fstab-generator, dracut-rootfs-generator or
        # dmsquash-generator) and names the bare device: point it at the wrapper. Generators rerun on
        # daemon-reload, so the override lives in the initrd's /etc (gone after switch-root).
        mkdir -p /etc/systemd/system/sysroot.mount.d
        {
            echo "[Mount]"
            echo "What=$_node"
        } > /etc/systemd/system/sysroot.mount.d/50-rootshift.conf
        # The root fsck checks the wrapper, not the claimed component: systemd-fsck@<root device>.service, or
        # (systemd-fstab-generator in the initrd, Debian 12) systemd-fsck-root.service naming the root= link.
        # Seen: only the first was overridden, so the root fsck went by the by-uuid link alone (which does point
        # at the wrapper, but nothing made sure of it).
        for _u in $(systemctl show -P Requires sysroot.mount 2> /dev/null); do
            case "$_u" in
                systemd-fsck@*.service | systemd-fsck-root.service)
                    _d=/etc/systemd/system/$_u.d
                    mkdir -p "$_d"
                    {
                        echo "[Service]"
                        echo "ExecStart="
                        echo "ExecStart=/lib/systemd/systemd-fsck $_node"
                    } > "$_d/50-rootshift.conf"
                    # recorded for `rootshift status` and the tests: which device the root fsck checks
                    echo "fsck=$_node" >> "$ROOTSHIFT_STATE/boot"
                    ;;
            esac
        done
        systemctl daemon-reload
    else
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
    fi
    ln -sf "$_node" /dev/root 2> /dev/null
    return 0
}

rootshift_dracut
