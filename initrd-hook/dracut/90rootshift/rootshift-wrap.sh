#!/bin/sh
# rootshift-wrap.service (dracut with systemd in the initrd): choose and wrap the root device before
# sysroot.mount, which rootshift-generator already pointed at the wrapper (see rootshift-systemd-lib.sh). On any
# failure the boot goes on unwrapped from the chosen device; only a refusal to choose (exit 2 of
# rootshift_wrap_root) stops it.

. /lib/dracut-lib.sh
. /lib/rootshift-lib.sh
. /lib/rootshift-systemd-lib.sh

# rootshift_cancel_wrapper_job: no wrapper exists, so a start job queued for its device (the generator's first
# plan, before a reload changed it: ours, or dmsquash-live's when it turns to overlayfs at run time) would wait for
# a device that never comes: cancel it.
rootshift_cancel_wrapper_job() {
    [ -b /dev/mapper/rootshift-root ] || [ -b /dev/md_rootshift-root ] && return 0
    for _j in $(systemctl list-jobs --no-legend 2> /dev/null | while read -r _id _unit _rest; do
        case "$_unit" in
            *rootshift?x2droot.device) echo "$_id" ;;
        esac
    done); do
        systemctl cancel "$_j" 2> /dev/null
    done
}

# rootshift_redirect DEVICE: the generator's plan was wrong: make sysroot.mount (and the root fsck) use DEVICE.
# The generator reruns on the reload and reads /run/rootshift/redirect.
rootshift_redirect() {
    rootshift_log 5 "the root is mounted from $1 (systemd reloads its units for that)"
    echo "$1" > "$ROOTSHIFT_STATE/redirect"
    systemctl daemon-reload
    rootshift_cancel_wrapper_job
}

# rootshift_record_fsck: which device the root fsck checks, as systemd loaded it (for `rootshift status` and the
# tests; resolved, since the names differ between the initrd and the booted system)
rootshift_record_fsck() {
    for _u in $(systemctl show -P Requires sysroot.mount 2> /dev/null); do
        case "$_u" in
            systemd-fsck@*.service | systemd-fsck-root.service)
                _x=$(systemctl show -P ExecStart "$_u" 2> /dev/null)
                _x=${_x#*argv\[\]=}
                _x=${_x%% ;*}
                _x=${_x##* }
                echo "fsck=$(rootshift_resolve "$_x")" >> "$ROOTSHIFT_STATE/boot"
                ;;
        esac
    done
}

rootshift_systemd_wrap() {
    if [ -e "$ROOTSHIFT_STATE/crypt-root" ]; then
        # an encrypted root: rootshift-crypt-wrap.service wrapped (or recorded why not) the container's device
        rootshift_cancel_wrapper_job
        return 0
    fi
    _be=$(rootshift_backend)
    _planned=$(rootshift_systemd_what) || _planned=
    if ! _comp=$(rootshift_systemd_root); then
        if rootshift_live_upper_made; then
            # the overlay's upper is on rootshift-upper (rootshift-live-upper.sh): that is what moves
            rootshift_log 6 "/ is the live overlay; its upper is on rootshift-upper"
            rootshift_cancel_wrapper_job
            return 0
        fi
        case "$_comp" in
            live:* | CDLABEL=*) _why="no /dev/mapper/live-rw (an overlayfs live root cannot be wrapped)" ;;
            *) _why="root=$_comp is not a block device" ;;
        esac
        rootshift_unwrappable "$_be" "$_comp" "$_why"
        rootshift_cancel_wrapper_job
        return 0
    fi
    _node=$(rootshift_wrap_root "$_comp")
    case $? in
        0) ;;
        2)
            die "rootshift: not booting: no device is known to be complete after an interrupted migration; see the message above (it names rd.rootshift.pick=)"
            return 1
            ;;
        *) _node=$_comp ;;
    esac
    ln -sf "$_node" /dev/root 2> /dev/null
    if [ -n "$_planned" ]; then
        [ "$(rootshift_resolve "$_node")" = "$(rootshift_resolve "$_planned")" ] || rootshift_redirect "$_node"
    elif [ "$(rootshift_resolve "$_node")" != "$(rootshift_resolve "$_comp")" ]; then
        rootshift_redirect "$_node"
    fi
    rootshift_record_fsck
    return 0
}

rootshift_systemd_wrap
