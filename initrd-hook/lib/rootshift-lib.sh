# rootshift boot-time wrapping, shared by the dracut module and the initramfs-tools hook.
# POSIX sh; uses only shell builtins plus rootshift, udevadm, modprobe and timeout (the initramfs-tools initrd
# may have klibc tools only). Sourced, never executed.
#
#   rootshift_wrap_root DEVICE   wrap DEVICE (the root filesystem's device) as configured by rd.rootshift=;
#                                prints the wrapper node and returns 0, or logs one "rootshift: ..." line and
#                                returns 1: the caller then mounts DEVICE unwrapped. Returns 2 only when two
#                                devices carry the root filesystem after an interrupted migration and nothing
#                                says which is complete: the caller must stop the boot (die/panic).
#
# State for the booted system and for tests: /run/rootshift/boot (key=value lines: state=wrapped|off|failed,
# backend, component, wrapper, message) and /run/rootshift/components/MAJ:MIN (read by 69-rootshift.rules:
# that device is a leg of the wrapper, not a device of its own).

ROOTSHIFT_BIN=${ROOTSHIFT_BIN:-/usr/sbin/rootshift}
ROOTSHIFT_STATE=/run/rootshift

# rootshift_log PRIO MESSAGE: one line to the kernel log (so it reaches the journal) and to the console.
rootshift_log() {
    _rs_prio=$1
    shift
    if [ -w /dev/kmsg ]; then
        echo "<$_rs_prio>rootshift: $*" > /dev/kmsg 2> /dev/null
    fi
    echo "rootshift: $*" >&2
}

# rootshift_cmdline_value KEY: the value of the last KEY=VALUE on the kernel command line ("1" for a bare KEY);
# returns 1 when KEY is absent.
rootshift_cmdline_value() {
    _rs_found=
    _rs_val=
    read -r _rs_cmdline < /proc/cmdline || true
    for _rs_arg in $_rs_cmdline; do
        case "$_rs_arg" in
            "$1="*)
                _rs_found=1
                _rs_val=${_rs_arg#"$1="}
                ;;
            "$1")
                _rs_found=1
                _rs_val=1
                ;;
        esac
    done
    [ -n "$_rs_found" ] || return 1
    echo "$_rs_val"
}

# rootshift_backend: dm (default), md, off, or invalid:VALUE, from rd.rootshift=.
rootshift_backend() {
    _rs_v=$(rootshift_cmdline_value rd.rootshift) || {
        echo dm
        return 0
    }
    case "$_rs_v" in
        dm | 1 | "") echo dm ;;
        md) echo md ;;
        0 | no | off | false) echo off ;;
        *) echo "invalid:$_rs_v" ;;
    esac
}

# rootshift_state KEY=VALUE...: (re)write /run/rootshift/boot.
rootshift_state() {
    mkdir -p "$ROOTSHIFT_STATE" 2> /dev/null
    : > "$ROOTSHIFT_STATE/boot.tmp"
    for _rs_kv in "$@"; do
        echo "$_rs_kv" >> "$ROOTSHIFT_STATE/boot.tmp"
    done
    mv -f "$ROOTSHIFT_STATE/boot.tmp" "$ROOTSHIFT_STATE/boot"
}

# rootshift_resolve PATH: follow symlinks (readlink -f, or by hand with plain readlink).
rootshift_resolve() {
    if _rs_r=$(readlink -f "$1" 2> /dev/null) && [ -n "$_rs_r" ]; then
        echo "$_rs_r"
        return 0
    fi
    _rs_p=$1
    _rs_n=0
    while [ -L "$_rs_p" ] && [ $_rs_n -lt 20 ]; do
        _rs_t=$(readlink "$_rs_p") || break
        case "$_rs_t" in
            /*) _rs_p=$_rs_t ;;
            *) _rs_p=${_rs_p%/*}/$_rs_t ;;
        esac
        _rs_n=$((_rs_n + 1))
    done
    echo "$_rs_p"
}

# rootshift_fail COMPONENT BACKEND MESSAGE: log, record, return 1.
rootshift_fail() {
    rootshift_log 3 "$3; booting unwrapped from $1"
    rootshift_state state=failed "backend=$2" "component=$1" wrapper= "message=$3"
    return 1
}

rootshift_wrap_root() {
    _rs_backend=$(rootshift_backend)
    _rs_dev=$(rootshift_resolve "$1")
    case "$_rs_backend" in
        off)
            rootshift_log 6 "rd.rootshift=0: not wrapping the root device $_rs_dev"
            rootshift_state state=off backend= "component=$_rs_dev" wrapper= "message=turned off by rd.rootshift=0"
            return 1
            ;;
        invalid:*)
            rootshift_fail "$_rs_dev" "" "rd.rootshift=${_rs_backend#invalid:} is not dm, md or 0"
            return 1
            ;;
    esac
    # The root's /dev/disk/by-* link can be missing for a moment although the initrd waited for the device: udev
    # rewrites links while it (re)processes an event for the disk (coldplug's "add" replay, a "change" after a
    # partition table re-read). Seen under load: "is not a block device" on a healthy disk. Settle and retry
    # (bounded) before giving up.
    _rs_n=0
    while [ ! -b "$_rs_dev" ] && [ $_rs_n -lt 50 ]; do
        command -v udevadm > /dev/null 2>&1 && udevadm settle --timeout=2 > /dev/null 2>&1
        sleep 0.2
        _rs_dev=$(rootshift_resolve "$1")
        _rs_n=$((_rs_n + 1))
    done
    if [ ! -b "$_rs_dev" ]; then
        rootshift_fail "$_rs_dev" "$_rs_backend" "the root device $1 is not a block device"
        return 1
    fi
    if [ ! -x "$ROOTSHIFT_BIN" ]; then
        rootshift_fail "$_rs_dev" "$_rs_backend" "$ROOTSHIFT_BIN is missing from the initrd"
        return 1
    fi
    _rs_kname=${_rs_dev##*/}
    _rs_majmin=
    read -r _rs_majmin < "/sys/class/block/$_rs_kname/dev" 2> /dev/null || true
    if [ "$_rs_backend" = md ]; then
        _rs_mods="md_mod raid1"
    else
        _rs_mods="dm_mod dm_mirror dm_log dm_region_hash"
    fi
    for _rs_m in $_rs_mods; do
        modprobe -q "$_rs_m" 2> /dev/null || rootshift_log 4 "modprobe $_rs_m failed (rootshift wrap will say whether it matters)"
    done
    # Never hang the boot: the devicemapper library waits for udev without a timeout.
    _rs_timeout=
    command -v timeout > /dev/null 2>&1 && _rs_timeout="timeout 60"
    mkdir -p "$ROOTSHIFT_STATE"
    if $_rs_timeout "$ROOTSHIFT_BIN" wrap --backend "$_rs_backend" "$_rs_dev" \
        > "$ROOTSHIFT_STATE/wrap.out" 2> "$ROOTSHIFT_STATE/wrap.err"; then
        _rs_rc=0
    else
        _rs_rc=$?
    fi
    _rs_node=
    read -r _rs_node < "$ROOTSHIFT_STATE/wrap.out" 2> /dev/null || true
    if [ $_rs_rc = 4 ]; then
        # Two devices carry the root filesystem and no journal says which one is complete (an
        # interrupted migration), or a journal's version is unknown to this rootshift (see
        # src/migrate/core.rs): booting either could lose data. Never boot unwrapped here.
        _rs_err=
        while read -r _rs_line; do
            _rs_err="${_rs_err:+$_rs_err | }$_rs_line"
        done < "$ROOTSHIFT_STATE/wrap.err"
        rootshift_log 2 "NOT BOOTING: $_rs_err"
        rootshift_state state=refused "backend=$_rs_backend" "component=$_rs_dev" wrapper= "message=$_rs_err"
        return 2
    fi
    if [ $_rs_rc != 0 ] || [ ! -b "$_rs_node" ]; then
        _rs_err=
        while read -r _rs_line; do
            _rs_err="${_rs_err:+$_rs_err | }$_rs_line"
        done < "$ROOTSHIFT_STATE/wrap.err"
        [ $_rs_rc = 124 ] && _rs_err="timed out after 60 s${_rs_err:+: $_rs_err}"
        rootshift_fail "$_rs_dev" "$_rs_backend" "rootshift wrap --backend $_rs_backend $_rs_dev failed (exit $_rs_rc): ${_rs_err:-no message}"
        return 1
    fi
    # what rootshift said on success (e.g. which leg an interrupted migration left to boot) goes to the journal
    while read -r _rs_line; do
        [ -n "$_rs_line" ] && rootshift_log 5 "${_rs_line#rootshift: }"
    done < "$ROOTSHIFT_STATE/wrap.err"
    # rootshift wrap may have picked another device than the initrd resolved (see recovery.rs): the
    # component is whatever the wrapper maps.
    _rs_wk=$(rootshift_resolve "$_rs_node")
    _rs_wk=${_rs_wk##*/}
    for _rs_s in /sys/class/block/"$_rs_wk"/slaves/*; do
        [ -e "$_rs_s" ] || continue
        if [ "${_rs_s##*/}" != "$_rs_kname" ]; then
            rootshift_log 5 "the root device is /dev/${_rs_s##*/}, not $_rs_dev (an interrupted migration; see rootshift status)"
            _rs_kname=${_rs_s##*/}
            _rs_dev=/dev/$_rs_kname
            read -r _rs_majmin < "/sys/class/block/$_rs_kname/dev" 2> /dev/null || true
        fi
    done
    # The component is a leg of the wrapper from now on: no SYSTEMD_READY, no by-uuid link (69-rootshift.rules).
    if [ -n "$_rs_majmin" ]; then
        mkdir -p "$ROOTSHIFT_STATE/components"
        : > "$ROOTSHIFT_STATE/components/$_rs_majmin"
    fi
    if command -v udevadm > /dev/null 2>&1 && [ -e /run/udev/control ]; then
        udevadm trigger --action=change "/sys/class/block/$_rs_kname" 2> /dev/null
        udevadm settle --timeout=10 2> /dev/null
    fi
    rootshift_log 6 "/ is mounted from $_rs_node ($_rs_backend wrapper over $_rs_dev)"
    rootshift_state state=wrapped "backend=$_rs_backend" "component=$_rs_dev" "wrapper=$_rs_node" message=
    echo "$_rs_node"
}
