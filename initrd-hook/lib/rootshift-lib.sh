# rootshift boot-time wrapping, shared by the dracut module and the initramfs-tools hook.
# POSIX sh; uses shell builtins plus rootshift, udevadm, modprobe and timeout (the initramfs-tools initrd
# may have klibc tools only; the encrypted-root part also grep, mv and blkid, which cryptsetup-initramfs brings).
# Sourced, never executed.
#
#   rootshift_wrap_root DEVICE   choose the device to boot (`rootshift choose DEVICE`: DEVICE unless a rootshift
#                                journal says otherwise after an interrupted migration; also when not wrapping),
#                                then wrap it as configured (rootshift.conf's wrap=, rd.rootshift=). Prints what to mount (the wrapper
#                                node, or the chosen device unwrapped when it is not DEVICE) and returns 0; or logs
#                                one "rootshift: ..." line and returns 1: the caller then mounts DEVICE unwrapped
#                                (only ever when DEVICE is the chosen one). Returns 2 when rootshift refuses to
#                                choose (exit 4: twins and no journal says which is complete, a lone device whose
#                                journal needs its twin, an unknown journal version, any failure while twins
#                                exist): the caller must stop the boot (die/panic). The refusal names the way out,
#                                rd.rootshift.pick=PARTUUID=... (or SERIAL=...).
#
# Whether to wrap: opt-in. /etc/rootshift/rootshift.conf (copied into the initrd when it is built; written by
# `rootshift boot enable|disable`) says wrap=dm|md|no; no file or no wrap= line means no, so installing the package
# changes nothing about how a machine boots. rd.rootshift= on the kernel command line overrides it for one boot.
# Kernel command line: rd.rootshift=dm|md|0, rd.rootshift.pick=PARTUUID=...|SERIAL=... (boot that device whatever
# the journals say), rd.rootshift.wait=SECONDS (how long a lone device waits for the twin its journal names; 30).
# Under dracut the values are read with getarg, so /etc/cmdline.d/*.conf in the initrd counts as command line.
#
# State for the booted system and for tests: /run/rootshift/boot (key=value lines: state=wrapped|off|failed,
# backend, component, wrapper, message) and /run/rootshift/components/MAJ:MIN (read by 69-rootshift.rules:
# that device is a leg of the wrapper, not a device of its own).

ROOTSHIFT_BIN=${ROOTSHIFT_BIN:-/usr/sbin/rootshift}
ROOTSHIFT_STATE=/run/rootshift
ROOTSHIFT_CONF=${ROOTSHIFT_CONF:-/etc/rootshift/rootshift.conf}

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
# returns 1 when KEY is absent. Under dracut its getarg (which also reads /etc/cmdline.d; it prints nothing for a
# bare KEY, which every caller here takes as the default value).
rootshift_cmdline_value() {
    if command -v getarg > /dev/null 2>&1; then
        getarg "$1="
        return $?
    fi
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

# rootshift_conf_value KEY: the value of the last KEY=VALUE line of $ROOTSHIFT_CONF (blanks around the key and the
# value dropped, lines starting with # skipped; as src/state/bootconf.rs reads it: no quotes, no comment after a
# value); returns 1 when there is no such file or line.
rootshift_conf_value() {
    [ -r "$ROOTSHIFT_CONF" ] || return 1
    _rs_found=
    _rs_val=
    while IFS= read -r _rs_line || [ -n "$_rs_line" ]; do
        case "$_rs_line" in
            "#"* | [" 	"]*"#"*) continue ;;
            *=*) ;;
            *) continue ;;
        esac
        _rs_k=${_rs_line%%=*}
        _rs_k=$(echo $_rs_k)
        [ "$_rs_k" = "$1" ] || continue
        _rs_found=1
        _rs_val=$(echo ${_rs_line#*=})
    done < "$ROOTSHIFT_CONF"
    [ -n "$_rs_found" ] || return 1
    echo "$_rs_val"
}

# rootshift_backend: dm, md, off (rd.rootshift=0), none (not enabled: wrap=no or no setting, the default),
# invalid:VALUE (a bad rd.rootshift=) or badconf:VALUE (a bad wrap= in the file). The command line wins.
rootshift_backend() {
    if _rs_v=$(rootshift_cmdline_value rd.rootshift); then
        case "$_rs_v" in
            dm | 1 | "") echo dm ;;
            md) echo md ;;
            0 | no | off | false) echo off ;;
            *) echo "invalid:$_rs_v" ;;
        esac
        return 0
    fi
    _rs_v=$(rootshift_conf_value wrap) || _rs_v=
    case "$_rs_v" in
        dm) echo dm ;;
        md) echo md ;;
        "" | no | off | 0) echo none ;;
        *) echo "badconf:$_rs_v" ;;
    esac
}

# rootshift_not_wrapping BACKEND: 0 when BACKEND says not to wrap (off or none).
rootshift_not_wrapping() {
    case "$1" in
        off | none) return 0 ;;
    esac
    return 1
}

# rootshift_off_state BACKEND DEVICE: log and record why the root is not wrapped (state=off).
rootshift_off_state() {
    if [ "$1" = off ]; then
        _rs_why="turned off by rd.rootshift=0"
    else
        _rs_why="wrapping is not enabled (no wrap=dm|md in $ROOTSHIFT_CONF: the default)"
    fi
    rootshift_log 6 "$_rs_why: not wrapping the root device $2"
    rootshift_state state=off backend= "component=$2" wrapper= "message=$_rs_why"
}

# rootshift_unwrappable BACKEND ROOT WHY: root= has no block device to wrap (an overlayfs live root, nfs, none):
# record state=off when not wrapping anyway, else the failure WHY (the boot goes on unwrapped). Returns 0.
rootshift_unwrappable() {
    if rootshift_not_wrapping "$1"; then
        rootshift_off_state "$1" "$2"
    else
        rootshift_fail "$2" "$1" "$3"
    fi
    return 0
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

# rootshift_fallback CHOSEN RESOLVED BACKEND MESSAGE: wrapping failed: boot CHOSEN unwrapped. Prints CHOSEN and
# returns 0 when it is not the device the initrd resolved (the caller mounts what was printed), else returns 1.
rootshift_fallback() {
    rootshift_fail "$1" "$3" "$4"
    if [ "$1" != "$2" ]; then
        echo "$1"
        return 0
    fi
    return 1
}

# rootshift_errs FILE: FILE's lines joined with " | ".
rootshift_errs() {
    _rs_err=
    while read -r _rs_line; do
        _rs_err="${_rs_err:+$_rs_err | }$_rs_line"
    done < "$1"
    echo "$_rs_err"
}

# rootshift_refuse BACKEND COMPONENT ERRFILE: log the refusal, record it, return 2 (stop the boot).
rootshift_refuse() {
    _rs_err=$(rootshift_errs "$3")
    rootshift_log 2 "NOT BOOTING: $_rs_err"
    rootshift_state state=refused "backend=$1" "component=$2" wrapper= "message=$_rs_err"
    return 2
}

rootshift_wrap_root() {
    _rs_backend=$(rootshift_backend)
    _rs_given=$(rootshift_resolve "$1")
    _rs_dev=$_rs_given
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
    _rs_given=$_rs_dev
    if [ ! -b "$_rs_dev" ]; then
        rootshift_fail "$_rs_dev" "$_rs_backend" "the root device $1 is not a block device"
        return 1
    fi
    if [ ! -x "$ROOTSHIFT_BIN" ]; then
        if rootshift_not_wrapping "$_rs_backend"; then
            rootshift_off_state "$_rs_backend" "$_rs_dev"
            return 1
        fi
        rootshift_fail "$_rs_dev" "$_rs_backend" "$ROOTSHIFT_BIN is missing from the initrd"
        return 1
    fi
    mkdir -p "$ROOTSHIFT_STATE"
    # Choosing comes first and always runs (rd.rootshift=0 too): after an interrupted migration the device the
    # initrd resolved may be the stale or half copy. Whatever happens later, only the chosen device is booted.
    _rs_wait=$(rootshift_cmdline_value rd.rootshift.wait) || _rs_wait=30
    case "$_rs_wait" in
        "" | *[!0-9]*) _rs_wait=30 ;;
    esac
    _rs_pick=$(rootshift_cmdline_value rd.rootshift.pick) || _rs_pick=
    _rs_timeout=
    command -v timeout > /dev/null 2>&1 && _rs_timeout="timeout $((_rs_wait + 60))"
    if $_rs_timeout "$ROOTSHIFT_BIN" choose --wait "$_rs_wait" ${_rs_pick:+--pick "$_rs_pick"} "$_rs_dev" \
        > "$ROOTSHIFT_STATE/choose.out" 2> "$ROOTSHIFT_STATE/choose.err"; then
        _rs_rc=0
    else
        _rs_rc=$?
    fi
    _rs_chosen_flag=
    if [ $_rs_rc = 4 ]; then
        rootshift_refuse "$_rs_backend" "$_rs_dev" "$ROOTSHIFT_STATE/choose.err"
        return 2
    elif [ $_rs_rc = 0 ]; then
        _rs_chosen=
        read -r _rs_chosen < "$ROOTSHIFT_STATE/choose.out" 2> /dev/null || true
        while read -r _rs_line; do
            [ -n "$_rs_line" ] && rootshift_log 5 "${_rs_line#rootshift: }"
        done < "$ROOTSHIFT_STATE/choose.err"
        if [ -b "$_rs_chosen" ]; then
            _rs_dev=$_rs_chosen
            _rs_chosen_flag=--chosen
        fi
    else
        # rootshift choose found no twins to refuse over (that is exit 4) but failed: wrap chooses again
        rootshift_log 4 "rootshift choose $_rs_dev failed (exit $_rs_rc): $(rootshift_errs "$ROOTSHIFT_STATE/choose.err")"
    fi
    case "$_rs_backend" in
        off | none)
            rootshift_off_state "$_rs_backend" "$_rs_dev"
            if [ "$_rs_dev" != "$_rs_given" ]; then
                echo "$_rs_dev"
                return 0
            fi
            return 1
            ;;
        invalid:*)
            rootshift_fallback "$_rs_dev" "$_rs_given" "" "rd.rootshift=${_rs_backend#invalid:} is not dm, md or 0"
            return $?
            ;;
        badconf:*)
            rootshift_fallback "$_rs_dev" "$_rs_given" "" \
                "wrap=${_rs_backend#badconf:} in $ROOTSHIFT_CONF is not dm, md or no (rootshift boot enable|disable writes it)"
            return $?
            ;;
    esac
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
    _rs_t0=$(rootshift_uptime_cs)
    if $_rs_timeout "$ROOTSHIFT_BIN" wrap --backend "$_rs_backend" $_rs_chosen_flag "$_rs_dev" \
        > "$ROOTSHIFT_STATE/wrap.out" 2> "$ROOTSHIFT_STATE/wrap.err"; then
        _rs_rc=0
    else
        _rs_rc=$?
    fi
    _rs_t1=$(rootshift_uptime_cs)
    _rs_node=
    read -r _rs_node < "$ROOTSHIFT_STATE/wrap.out" 2> /dev/null || true
    if [ $_rs_rc = 4 ]; then
        # No journal says which device is complete (an interrupted migration), or a journal's version is unknown to
        # this rootshift (see src/state/core/boot.rs): booting either could lose data. Never boot unwrapped here.
        rootshift_refuse "$_rs_backend" "$_rs_dev" "$ROOTSHIFT_STATE/wrap.err"
        return 2
    fi
    if [ $_rs_rc != 0 ] || [ ! -b "$_rs_node" ]; then
        _rs_err=$(rootshift_errs "$ROOTSHIFT_STATE/wrap.err")
        [ $_rs_rc = 124 ] && _rs_err="timed out after 60 s${_rs_err:+: $_rs_err}"
        # the fallback boots the chosen device, never merely the one the initrd resolved
        rootshift_fallback "$_rs_dev" "$_rs_given" "$_rs_backend" \
            "rootshift wrap --backend $_rs_backend $_rs_dev failed (exit $_rs_rc): ${_rs_err:-no message}"
        return $?
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
    # wrap_ms: how long `rootshift wrap` took here (its exec included; /proc/uptime: 10 ms steps)
    rootshift_state state=wrapped "backend=$_rs_backend" "component=$_rs_dev" "wrapper=$_rs_node" message= \
        "wrap_ms=$(( (_rs_t1 - _rs_t0) * 10 ))"
    echo "$_rs_node"
}

# rootshift_uptime_cs: the time since boot in centiseconds (/proc/uptime), 0 when unreadable.
rootshift_uptime_cs() {
    _rs_up=0
    read -r _rs_up _rs_idle < "${ROOTSHIFT_PROC_UPTIME:-/proc/uptime}" 2> /dev/null || true
    case "$_rs_up" in
        *.??) _rs_up=${_rs_up%.*}${_rs_up#*.} ;;
        *) _rs_up=0 ;;
    esac
    # no leading zeros (shell arithmetic would read them as octal)
    while [ "${_rs_up#0}" != "$_rs_up" ] && [ "$_rs_up" != 0 ]; do _rs_up=${_rs_up#0}; done
    echo "$_rs_up"
}

# ---- encrypted roots: the wrapper below dm-crypt ----------------------------------------------------------------
# An encrypted root moves as ciphertext: the wrapper must hold the LUKS partition, and the initrd's cryptsetup open
# the container on the wrapper (the wrapper holds the partition exclusively, so an open of the partition would fail).
# initramfs-tools: the local-top script runs this before cryptroot (cryptroot's prereqs put it last in local-top).
# Which container holds the root: the name in /etc/rootshift/crypt-root (written by the hook when the initrd is built
# for a root on a dm-crypt mapping), else root=/dev/mapper/NAME; an entry that is only a swap or another volume is
# never wrapped. cryptroot then finds the container by the source we rewrite in /cryptroot/crypttab; a
# cryptopts=source= on the command line (cryptroot makes its crypttab from that) must name it by UUID= or LABEL=
# (blkid -l prefers a dm or md device to a partition carrying the same UUID) or by a /dev/disk/by-uuid|by-label
# link (69-rootshift.rules moves those to the wrapper).
ROOTSHIFT_CRYPTTAB=${ROOTSHIFT_CRYPTTAB:-/cryptroot/crypttab}
ROOTSHIFT_CRYPT_ROOT=${ROOTSHIFT_CRYPT_ROOT:-/etc/rootshift/crypt-root}
ROOTSHIFT_PROC_CMDLINE=${ROOTSHIFT_PROC_CMDLINE:-/proc/cmdline}

# rootshift_cryptopts_tab: the crypttab lines cryptroot makes from the command line's cryptopts= (as its local-top
# does: target= (default cryptroot), source=, key= (default none), the rest as options); nothing without cryptopts=.
rootshift_cryptopts_tab() {
    read -r _rs_cmdline < "$ROOTSHIFT_PROC_CMDLINE" || true
    for _rs_arg in $_rs_cmdline; do
        case "$_rs_arg" in
            cryptopts=*) ;;
            *) continue ;;
        esac
        _rs_t=cryptroot _rs_s= _rs_k=none _rs_o=
        _rs_ifs=$IFS
        IFS=,
        for _rs_x in ${_rs_arg#cryptopts=}; do
            case "$_rs_x" in
                target=*) _rs_t=${_rs_x#target=} ;;
                source=*) _rs_s=${_rs_x#source=} ;;
                key=*) _rs_k=${_rs_x#key=} ;;
                *) _rs_o=${_rs_o:+$_rs_o,}$_rs_x ;;
            esac
        done
        IFS=$_rs_ifs
        [ -n "$_rs_s" ] && echo "$_rs_t $_rs_s $_rs_k $_rs_o"
    done
    return 0
}

# rootshift_crypt_root_entry ROOT TABFILE: "NAME SOURCE" of the TABFILE entry holding the root (see above); returns
# 1 when no entry is known to hold it.
rootshift_crypt_root_entry() {
    _rs_want=
    [ -r "$ROOTSHIFT_CRYPT_ROOT" ] && read -r _rs_want < "$ROOTSHIFT_CRYPT_ROOT"
    if [ -z "$_rs_want" ]; then
        case "$1" in
            /dev/mapper/?*) _rs_want=${1#/dev/mapper/} ;;
            *) return 1 ;;
        esac
    fi
    [ -r "$2" ] || return 1
    while read -r _rs_n _rs_s _rs_rest; do
        case "$_rs_n" in
            "" | \#*) continue ;;
        esac
        if [ "$_rs_n" = "$_rs_want" ] && [ -n "$_rs_s" ]; then
            echo "$_rs_n $_rs_s"
            return 0
        fi
    done < "$2"
    return 1
}

# rootshift_crypt_source_dev SOURCE: the block device a crypttab SOURCE names (UUID=, LABEL=, PARTUUID=, PARTLABEL=
# or a path); waits up to 30 s for it. Returns 1 when it did not appear.
rootshift_crypt_source_dev() {
    case "$1" in
        UUID=*) _rs_p=/dev/disk/by-uuid/${1#UUID=} ;;
        LABEL=*) _rs_p=/dev/disk/by-label/${1#LABEL=} ;;
        PARTUUID=*) _rs_p=/dev/disk/by-partuuid/${1#PARTUUID=} ;;
        PARTLABEL=*) _rs_p=/dev/disk/by-partlabel/${1#PARTLABEL=} ;;
        *) _rs_p=$1 ;;
    esac
    _rs_n=0
    while [ $_rs_n -lt 60 ]; do
        _rs_d=$(rootshift_resolve "$_rs_p")
        if [ ! -b "$_rs_d" ] && [ "$_rs_p" != "$1" ] && command -v blkid > /dev/null 2>&1; then
            _rs_d=$(blkid -l -t "$1" -o device 2> /dev/null)
        fi
        if [ -b "$_rs_d" ]; then
            echo "$_rs_d"
            return 0
        fi
        command -v udevadm > /dev/null 2>&1 && udevadm settle --timeout=2 > /dev/null 2>&1
        sleep 0.5
        _rs_n=$((_rs_n + 1))
    done
    return 1
}

# rootshift_crypt_set_source NAME SOURCE: point NAME's entry of $ROOTSHIFT_CRYPTTAB at SOURCE (the rest of the file
# as it was).
rootshift_crypt_set_source() {
    _rs_cn=$1 _rs_cs=$2
    : > "$ROOTSHIFT_CRYPTTAB.rootshift" || return 1
    while IFS= read -r _rs_line; do
        set -f
        # shellcheck disable=SC2086
        set -- $_rs_line
        set +f
        if [ $# -ge 2 ] && [ "$1" = "$_rs_cn" ]; then
            shift 2
            echo "$_rs_cn $_rs_cs${*:+ $*}"
        else
            echo "$_rs_line"
        fi
    done < "$ROOTSHIFT_CRYPTTAB" >> "$ROOTSHIFT_CRYPTTAB.rootshift" || return 1
    mv -f "$ROOTSHIFT_CRYPTTAB.rootshift" "$ROOTSHIFT_CRYPTTAB"
}

# rootshift_crypt_wrap_entry NAME SOURCE: wrap the device the crypttab SOURCE of the container NAME names (the
# container holds the root), and print what cryptsetup must open: the wrapper, or the device `rootshift choose`
# picked, booted unwrapped. Returns 0 then; 2 when the boot must stop; 1 otherwise (recorded: the container then
# opens from its own device). Marks /run/rootshift/crypt-root first, whatever happens: the hooks that wrap a
# plain root must leave the opened mapping alone (rootshift refuses to wrap dm-crypt).
rootshift_crypt_wrap_entry() {
    mkdir -p "$ROOTSHIFT_STATE"
    echo "$1" > "$ROOTSHIFT_STATE/crypt-root"
    if ! _rs_cdev=$(rootshift_crypt_source_dev "$2"); then
        rootshift_fail "$2" "$(rootshift_backend)" "the encrypted root's device $2 ($1) did not appear"
        return 1
    fi
    _rs_cnode=$(rootshift_wrap_root "$_rs_cdev")
    _rs_crc=$?
    [ $_rs_crc = 2 ] && return 2
    [ $_rs_crc = 0 ] && [ -b "$_rs_cnode" ] || return 1
    echo "crypt=$1" >> "$ROOTSHIFT_STATE/boot"
    rootshift_log 6 "the encrypted root $1 opens on $_rs_cnode"
    echo "$_rs_cnode"
    return 0
}

# rootshift_crypt_wrap ROOT (initramfs-tools' local-top): wrap the LUKS container holding the root before
# cryptroot opens it, and point cryptroot at the wrapper. Returns 0 when it wrapped (the caller leaves root= alone:
# the root is still the mapping cryptsetup opens), 2 when the boot must stop (see rootshift_wrap_root), 1
# otherwise: no encrypted root is known, or the wrap failed (recorded; the container then opens from the
# partition, unwrapped).
rootshift_crypt_wrap() {
    _rs_tab=$ROOTSHIFT_CRYPTTAB _rs_cmd=
    if grep -qE '(^| )cryptopts=' "$ROOTSHIFT_PROC_CMDLINE" 2> /dev/null; then
        _rs_tab=$ROOTSHIFT_STATE/cryptopts.tab _rs_cmd=1
        mkdir -p "$ROOTSHIFT_STATE"
        rootshift_cryptopts_tab > "$_rs_tab"
    fi
    _rs_entry=$(rootshift_crypt_root_entry "$1" "$_rs_tab") || return 1
    _rs_cname=${_rs_entry%% *}
    _rs_csrc=${_rs_entry#* }
    if [ -n "$_rs_cmd" ]; then
        case "$_rs_csrc" in
            UUID=* | LABEL=* | /dev/disk/by-uuid/* | /dev/disk/by-label/*) ;;
            *)
                mkdir -p "$ROOTSHIFT_STATE"
                echo "$_rs_cname" > "$ROOTSHIFT_STATE/crypt-root"
                rootshift_fail "$_rs_csrc" "$(rootshift_backend)" \
                    "cryptopts=source=$_rs_csrc names the LUKS partition in a way that cannot lead to a wrapper (use source=UUID=<the LUKS UUID>)"
                return 1
                ;;
        esac
    fi
    _rs_cnode=$(rootshift_crypt_wrap_entry "$_rs_cname" "$_rs_csrc")
    _rs_crc=$?
    [ $_rs_crc = 0 ] || return $_rs_crc
    # cryptroot opens what its crypttab names (a cryptopts= source finds the wrapper by itself, see above)
    if [ -z "$_rs_cmd" ] && ! rootshift_crypt_set_source "$_rs_cname" "$_rs_cnode"; then
        rootshift_log 3 "could not point $_rs_cname in $ROOTSHIFT_CRYPTTAB at $_rs_cnode"
    fi
    return 0
}

# rootshift_dracut_crypt_tab: "NAME SOURCE" lines of the containers a dracut initrd with systemd opens:
# rd.luks.name=UUID=NAME, rd.luks.uuid=[luks-]UUID (named luks-UUID, as systemd-cryptsetup-generator names it)
# and the initrd's /etc/crypttab.
rootshift_dracut_crypt_tab() {
    for _rs_x in $(getargs rd.luks.name=); do
        echo "${_rs_x#*=} UUID=${_rs_x%%=*}"
    done
    for _rs_x in $(getargs rd.luks.uuid=); do
        echo "luks-${_rs_x#luks-} UUID=${_rs_x#luks-}"
    done
    if [ -r "${ROOTSHIFT_INITRD_CRYPTTAB:-/etc/crypttab}" ]; then
        while read -r _rs_n _rs_s _rs_rest; do
            case "$_rs_n" in
                "" | \#*) continue ;;
            esac
            echo "$_rs_n $_rs_s"
        done < "${ROOTSHIFT_INITRD_CRYPTTAB:-/etc/crypttab}"
    fi
    return 0
}

# rootshift_dracut_crypt_entry: "NAME SOURCE" of the container holding the root in a dracut initrd with systemd
# (see rootshift_crypt_root_entry); returns 1 when none is known.
rootshift_dracut_crypt_entry() {
    _rs_r=$(getarg root=) || _rs_r=
    rootshift_dracut_crypt_tab | rootshift_crypt_root_entry "${_rs_r#block:}" /dev/stdin
}

# rootshift_crypt_name_below MAJ:MIN: the dm name of the first dm-crypt mapping in the stack below the device
# MAJ:MIN (itself included; single-slave chains only: a wrapper over the mapping, LVM on it); returns 1 when
# there is none. The hooks record it when the initrd is built (the root's container).
rootshift_crypt_name_below() {
    _rs_b=${ROOTSHIFT_SYS_DEV_BLOCK:-/sys/dev/block}/$1
    _rs_n=0
    while [ -d "$_rs_b/dm" ] && [ $_rs_n -lt 8 ]; do
        _rs_u=
        read -r _rs_u < "$_rs_b/dm/uuid" 2> /dev/null
        case "$_rs_u" in
            CRYPT-*)
                cat "$_rs_b/dm/name"
                return 0
                ;;
        esac
        set -- "$_rs_b"/slaves/*
        [ $# = 1 ] && [ -e "$1" ] || return 1
        _rs_b=$1
        _rs_n=$((_rs_n + 1))
    done
    return 1
}

# ---- live media: the overlay's upper layer on a wrapper ----------------------------------------------------------
# Today's live media mount / as an overlay whose upper layer is a tmpfs: nothing a migration could mirror. With
# live=upper in rootshift.conf (or rd.rootshift.live=upper on the command line; rd.rootshift.live=0 turns it off
# for one boot) the boot puts the upper on ext4 on a zram device under the dm wrapper rootshift-upper instead, laid
# out as the distribution's own persistence, so `rootshift migrate` can move the session onto a disk later.

# rootshift_live_setting: upper, or no (the default; also for a value it does not know, which it logs)
rootshift_live_setting() {
    _rs_v=$(rootshift_cmdline_value rd.rootshift.live) || _rs_v=$(rootshift_conf_value live) || _rs_v=no
    case "$_rs_v" in
        upper) echo upper ;;
        no | off | 0 | "") echo no ;;
        *)
            rootshift_log 4 "live=$_rs_v is not a value rootshift knows (upper or no): the live upper stays in RAM"
            echo no
            ;;
    esac
}

# rootshift_live_upper_made: 0 when this boot put the live upper on rootshift-upper (rootshift_make_upper recorded
# state=live-upper): / is then the live overlay, there is no root device to wrap, and the record stays as it is.
rootshift_live_upper_made() {
    [ -r "$ROOTSHIFT_STATE/boot" ] || return 1
    while read -r _rs_line; do
        [ "$_rs_line" = state=live-upper ] && return 0
    done < "$ROOTSHIFT_STATE/boot"
    return 1
}

# rootshift_zram_bytes: the size of the zram device for the upper. live-boot's overlay-size= when given (a tmpfs
# size: 50%, 2G, 512M), or dracut's rd.live.overlay.size= (MiB), else half the RAM, like the tmpfs it replaces.
# zram only takes memory for what is written.
rootshift_zram_bytes() {
    _rs_mem=0
    while read -r _rs_k _rs_v _rs_u; do
        [ "$_rs_k" = MemTotal: ] && _rs_mem=$((_rs_v * 1024))
    done < /proc/meminfo
    if ! _rs_sz=$(rootshift_cmdline_value overlay-size); then
        _rs_sz=$(rootshift_cmdline_value rd.live.overlay.size) && _rs_sz=${_rs_sz}M || _rs_sz=50%
    fi
    case "$_rs_sz" in
        *%) _rs_b=$((_rs_mem / 100 * ${_rs_sz%\%})) ;;
        *[kK]) _rs_b=$((${_rs_sz%?} * 1024)) ;;
        *[mM]) _rs_b=$((${_rs_sz%?} * 1048576)) ;;
        *[gG]) _rs_b=$((${_rs_sz%?} * 1073741824)) ;;
        *[!0-9]* | "") _rs_b=$((_rs_mem / 2)) ;;
        *) _rs_b=$_rs_sz ;;
    esac
    [ "$_rs_b" -gt 0 ] 2> /dev/null || _rs_b=$((_rs_mem / 2))
    echo "$_rs_b"
}

# rootshift_make_upper LABEL [PERSISTENCE-CONF [DIRS]]: a zram device of rootshift_zram_bytes, wrapped as
# rootshift-upper, with an ext4 labelled LABEL on it holding the empty directories DIRS (relative paths; default
# "rw work": overlayfs' upper and work directories as live-boot names them; dracut's are
# "LiveOS/overlay-rootshift LiveOS/ovlwork") and, when given, persistence.conf with PERSISTENCE-CONF, and nothing
# else. Prints the wrapper node; returns 1 (after logging why, and undoing what it made) on failure: the live
# system then boots with its upper in RAM as usual.
rootshift_make_upper() {
    modprobe zram num_devices=1 > /dev/null 2>&1
    modprobe dm_mod > /dev/null 2>&1
    _rs_id=
    if [ -e /sys/block/zram0/disksize ] && [ "$(cat /sys/block/zram0/disksize)" = 0 ]; then
        _rs_id=0
    elif [ -r /sys/class/zram-control/hot_add ]; then
        read -r _rs_id < /sys/class/zram-control/hot_add
    fi
    if [ -z "$_rs_id" ] || [ ! -e "/sys/block/zram$_rs_id" ]; then
        rootshift_log 3 "no free zram device (module zram missing?): the live upper stays in RAM"
        return 1
    fi
    _rs_zram=/dev/zram$_rs_id
    _rs_n=0
    while [ ! -b "$_rs_zram" ] && [ $_rs_n -lt 50 ]; do sleep 0.1; _rs_n=$((_rs_n + 1)); done
    if ! echo "$(rootshift_zram_bytes)" > "/sys/block/zram$_rs_id/disksize"; then
        rootshift_log 3 "cannot size $_rs_zram: the live upper stays in RAM"
        return 1
    fi
    mkdir -p "$ROOTSHIFT_STATE"
    if ! "$ROOTSHIFT_BIN" wrap --chosen --backend dm --name upper "$_rs_zram" \
        > "$ROOTSHIFT_STATE/upper.out" 2> "$ROOTSHIFT_STATE/upper.err"; then
        rootshift_log 3 "rootshift wrap $_rs_zram failed: $(rootshift_errs "$ROOTSHIFT_STATE/upper.err"); the live upper stays in RAM"
        echo 1 > "/sys/block/zram$_rs_id/reset"
        return 1
    fi
    read -r _rs_node < "$ROOTSHIFT_STATE/upper.out"
    # the zram device is a leg of rootshift-upper, not a volume of its own (69-rootshift.rules)
    if read -r _rs_majmin < "/sys/block/zram$_rs_id/dev"; then
        mkdir -p "$ROOTSHIFT_STATE/components"
        : > "$ROOTSHIFT_STATE/components/$_rs_majmin"
    fi
    _rs_mnt=$ROOTSHIFT_STATE/upper-mnt
    mkdir -p "$_rs_mnt"
    _rs_dirs_ok=
    if mke2fs -q -t ext4 -L "$1" -E lazy_itable_init=1,nodiscard "$_rs_node" > "$ROOTSHIFT_STATE/upper.err" 2>&1 \
        && mount -t ext4 "$_rs_node" "$_rs_mnt"; then
        _rs_dirs_ok=1
        for _rs_d in ${3:-rw work}; do
            mkdir -p "$_rs_mnt/$_rs_d" 2>> "$ROOTSHIFT_STATE/upper.err" || _rs_dirs_ok=
        done
    fi
    if [ -n "$_rs_dirs_ok" ]; then
        [ -n "${2:-}" ] && printf '%s\n' "$2" > "$_rs_mnt/persistence.conf"
        umount "$_rs_mnt"
        rmdir "$_rs_mnt"
        rootshift_state state=live-upper backend=dm "component=$_rs_zram" "wrapper=$_rs_node" "message=live upper on $_rs_node (ext4 $1 on $_rs_zram)"
        rootshift_log 5 "the live session's changes go to $_rs_node (ext4 labelled $1 on $_rs_zram)"
        echo "$_rs_node"
        return 0
    fi
    rootshift_log 3 "making the live upper on $_rs_node failed: $(tr '\n' ' ' < "$ROOTSHIFT_STATE/upper.err"); the live upper stays in RAM"
    umount "$_rs_mnt" 2> /dev/null
    # an unused rootshift-upper over the zram device is harmless; remove it where the initrd can
    command -v dmsetup > /dev/null 2>&1 && dmsetup remove rootshift-upper > /dev/null 2>&1
    return 1
}
